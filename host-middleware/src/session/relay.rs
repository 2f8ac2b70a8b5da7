//! Raw APDUs relayed inside an open secure channel: what an interactive
//! session on one card (`dmsc shell`) does with the APDUs its commands send
//! while an authority is logged in.
//!
//! The applet is already selected: a SELECT of it is answered from the
//! session's own SELECT, since a real one would end the secure channel on
//! the card. Every other command goes through `send` (which wraps it in the
//! channel).

use crate::card_model::apdu::{ApduError, Command, Response};
use crate::card_model::commands::{SelectInfo, AID};
use crate::error::HostError;

/// INS of SELECT (ISO 7816-4).
const INS_SELECT: u8 = 0xA4;
/// P1 of SELECT by DF name (the AID).
const SELECT_BY_NAME: u8 = 0x04;
/// CLA bit of proprietary (non-interindustry) classes.
const CLA_PROPRIETARY: u8 = 0x80;

/// Why a relayed APDU got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The bytes are not a command APDU.
    #[error("not a command APDU: {0}")]
    NotACommand(#[source] ApduError),
    /// Sending it failed; a [`HostError::SecureMessaging`] ended the
    /// channel on the card (see [`RelayError::ends_channel`]).
    #[error(transparent)]
    Card(HostError),
}

impl RelayError {
    /// Whether the failure ended the secure channel on the card (a
    /// secure-messaging failure).
    pub fn ends_channel(&self) -> bool {
        matches!(self, RelayError::Card(HostError::SecureMessaging { .. }))
    }
}

/// Whether `cmd` is a SELECT of the dmsc applet by its AID.
pub fn is_select_of_applet(cmd: &Command) -> bool {
    cmd.cla & CLA_PROPRIETARY == 0
        && cmd.ins == INS_SELECT
        && cmd.p1 == SELECT_BY_NAME
        && cmd.data.as_slice() == AID
}

/// One raw APDU inside the channel: its response bytes (data and SW).
/// `select` is what the session's SELECT returned.
pub fn relay(
    apdu: &[u8],
    select: &SelectInfo,
    send: impl FnOnce(&Command) -> Result<Response, HostError>,
) -> Result<Vec<u8>, RelayError> {
    let cmd = Command::decode(apdu).map_err(RelayError::NotACommand)?;
    if is_select_of_applet(&cmd) {
        let mut answer = select.encode();
        answer.extend_from_slice(&[0x90, 0x00]);
        return Ok(answer);
    }
    send(&cmd).map(|r| r.to_bytes()).map_err(RelayError::Card)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::card_model::scp03::Scp03Error;
    use crate::session::secure::SmError;

    fn select() -> SelectInfo {
        SelectInfo {
            card_id: [7; 16],
            applet_version: (1, 0),
            generation: 42,
            max_command: 4096,
            max_response: 4096,
            extended_length: true,
            algorithms: 0,
            free_memory: 1,
            total_memory: 2,
            scp_i: 0x70,
        }
    }

    fn select_apdu() -> Vec<u8> {
        let mut apdu = vec![0x00, INS_SELECT, SELECT_BY_NAME, 0x00, AID.len() as u8];
        apdu.extend_from_slice(&AID);
        apdu
    }

    #[test]
    fn a_select_of_the_applet_is_answered_without_the_card() {
        let answer = relay(&select_apdu(), &select(), |_| panic!("sent to the card")).unwrap();
        let mut expected = select().encode();
        expected.extend_from_slice(&[0x90, 0x00]);
        assert_eq!(answer, expected);
    }

    #[test]
    fn other_commands_go_through_the_channel() {
        // A SELECT of another AID, and a proprietary-class command.
        let mut other = select_apdu();
        let last = other.len() - 1;
        other[last] ^= 1;
        for apdu in [other, vec![0x80, INS_SELECT, SELECT_BY_NAME, 0x00]] {
            let mut sent = None;
            let answer = relay(&apdu, &select(), |cmd| {
                sent = Some(cmd.clone());
                Ok(Response {
                    data: vec![1, 2],
                    sw: 0x9000,
                })
            })
            .unwrap();
            assert_eq!(answer, [1, 2, 0x90, 0x00]);
            assert_eq!(sent.unwrap(), Command::decode(&apdu).unwrap());
        }
    }

    #[test]
    fn bad_bytes_and_secure_messaging_failures() {
        let e = relay(&[0x00, 0xA4], &select(), |_| panic!("sent")).unwrap_err();
        assert!(matches!(e, RelayError::NotACommand(_)), "{e:?}");
        assert!(!e.ends_channel());
        let e = relay(&[0x80, 0xCA, 0x00, 0x00], &select(), |_| {
            Err(HostError::SecureMessaging {
                command: "GET DATA",
                source: SmError::KeysRejected {
                    key_version: 0x30,
                    reason: Scp03Error::CardCryptogramMismatch,
                },
            })
        })
        .unwrap_err();
        assert!(e.ends_channel());
    }
}
