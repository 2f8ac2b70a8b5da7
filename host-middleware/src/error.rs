//! Typed errors of card sessions and the mapping of status words to them.

use dmsc_card_model::apdu::{ApduError, Command, Response, CLA_CHAINING};
use dmsc_card_model::commands::{ins, DecodeError, CLA_SECURE_MESSAGING};

use crate::transport::TransportError;

/// What went wrong talking to the card. Status-word variants name the command
/// and show the status word in hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// `63Cx` after VERIFY, CHANGE REFERENCE DATA or RESET RETRY COUNTER.
    #[error(
        "{command}: wrong {}, {} left (SW 63C{tries_left:X})",
        pin_or_puk(.command),
        tries(*.tries_left)
    )]
    WrongPin {
        /// The command that failed.
        command: &'static str,
        /// Tries left before the PIN (or PUK) blocks.
        tries_left: u8,
    },
    /// `6983`: the PIN, PUK or key is blocked.
    #[error("{command}: authentication method blocked (SW 6983)")]
    Blocked {
        /// The command that failed.
        command: &'static str,
    },
    /// `6982`: the caller lacks the right (PIN not verified, no authority session, ACL).
    #[error("{command}: security status not satisfied (SW 6982)")]
    SecurityStatusNotSatisfied {
        /// The command that failed.
        command: &'static str,
    },
    /// `6A82` (file or application not found) or `6A88` (referenced data not found).
    #[error("{command}: not found (SW {sw:04X})")]
    NotFound {
        /// The command that failed.
        command: &'static str,
        /// `6A82` or `6A88`.
        sw: u16,
    },
    /// `6A84`: not enough memory on the card.
    #[error("{command}: not enough memory on the card (SW 6A84)")]
    NotEnoughMemory {
        /// The command that failed.
        command: &'static str,
    },
    /// `6985`: conditions of use not satisfied.
    #[error("{command}: conditions of use not satisfied (SW 6985)")]
    ConditionsNotSatisfied {
        /// The command that failed.
        command: &'static str,
    },
    /// `6984`: reference data not usable.
    #[error("{command}: reference data not usable (SW 6984)")]
    ReferenceDataNotUsable {
        /// The command that failed.
        command: &'static str,
    },
    /// `6700`: wrong length.
    #[error("{command}: wrong length (SW 6700)")]
    WrongLength {
        /// The command that failed.
        command: &'static str,
    },
    /// `6A80`: incorrect parameters in the data field.
    #[error("{command}: incorrect data (SW 6A80)")]
    IncorrectData {
        /// The command that failed.
        command: &'static str,
    },
    /// `6A86`: incorrect P1-P2.
    #[error("{command}: incorrect P1-P2 (SW 6A86)")]
    IncorrectP1P2 {
        /// The command that failed.
        command: &'static str,
    },
    /// `6D00`: instruction not supported.
    #[error("{command}: instruction not supported (SW 6D00)")]
    InsNotSupported {
        /// The command that failed.
        command: &'static str,
    },
    /// `6E00`: class not supported.
    #[error("{command}: class not supported (SW 6E00)")]
    ClaNotSupported {
        /// The command that failed.
        command: &'static str,
    },
    /// `6300`: verification failed (e.g. a MAC that does not verify).
    #[error("{command}: verification failed (SW 6300)")]
    VerificationFailed {
        /// The command that failed.
        command: &'static str,
    },
    /// Any other status word than `9000`.
    #[error("{command}: card returned SW {sw:04X} ({})", sw_meaning(*.sw))]
    Status {
        /// The command that failed.
        command: &'static str,
        /// The status word.
        sw: u16,
    },
    /// The transport failed (no service, no card, card removed or reset, …).
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The card's response data does not decode.
    #[error("{command}: cannot decode the card's response: {source}")]
    Decode {
        /// The command whose response is malformed.
        command: &'static str,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// A command cannot be encoded as an APDU.
    #[error("{command}: cannot encode the command APDU: {source}")]
    Apdu {
        /// The command.
        command: &'static str,
        /// Why.
        #[source]
        source: ApduError,
    },
    /// The card broke the APDU protocol (endless `61xx`, oversized response, …).
    #[error("{command}: protocol error: {detail}")]
    Protocol {
        /// The command.
        command: &'static str,
        /// What happened.
        detail: String,
    },
    /// Secure messaging failed to wrap a command or to verify/decrypt a response.
    #[error("{command}: secure messaging: {detail}")]
    SecureMessaging {
        /// The command.
        command: &'static str,
        /// What failed.
        detail: String,
    },
    /// After a reconnection, another card answered than the one the session began with.
    #[error(
        "a different card is in the reader now (card ID {}, expected {}); start a new session",
        hex::encode_upper(.found),
        hex::encode_upper(.expected)
    )]
    CardChanged {
        /// The card ID the session was bound to.
        expected: [u8; 16],
        /// The card ID found after re-selecting.
        found: [u8; 16],
    },
}

impl HostError {
    /// The status word behind this error, if it came from one.
    pub fn sw(&self) -> Option<u16> {
        Some(match self {
            HostError::WrongPin { tries_left, .. } => 0x63C0 | u16::from(*tries_left & 0x0F),
            HostError::Blocked { .. } => 0x6983,
            HostError::SecurityStatusNotSatisfied { .. } => 0x6982,
            HostError::NotFound { sw, .. } | HostError::Status { sw, .. } => *sw,
            HostError::NotEnoughMemory { .. } => 0x6A84,
            HostError::ConditionsNotSatisfied { .. } => 0x6985,
            HostError::ReferenceDataNotUsable { .. } => 0x6984,
            HostError::WrongLength { .. } => 0x6700,
            HostError::IncorrectData { .. } => 0x6A80,
            HostError::IncorrectP1P2 { .. } => 0x6A86,
            HostError::InsNotSupported { .. } => 0x6D00,
            HostError::ClaNotSupported { .. } => 0x6E00,
            HostError::VerificationFailed { .. } => 0x6300,
            _ => return None,
        })
    }

    /// The transport error behind this error, if any.
    pub fn transport(&self) -> Option<&TransportError> {
        match self {
            HostError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

/// A short English meaning of common ISO 7816-4 status words.
pub fn sw_meaning(sw: u16) -> &'static str {
    match sw {
        0x9000 => "success",
        0x6281 => "part of returned data may be corrupted",
        0x6282 => "end of data reached before Le bytes",
        0x6283 => "selected file deactivated",
        0x6400 => "execution error, state unchanged",
        0x6581 => "memory failure",
        0x6881 => "logical channel not supported",
        0x6882 => "secure messaging not supported",
        0x6883 => "last command of the chain expected",
        0x6884 => "command chaining not supported",
        0x6981 => "command incompatible with file structure",
        0x6986 => "command not allowed (no current EF)",
        0x6987 => "expected secure messaging data objects missing",
        0x6988 => "incorrect secure messaging data objects",
        0x6A81 => "function not supported",
        0x6A83 => "record not found",
        0x6A87 => "Nc inconsistent with P1-P2",
        0x6A89 => "file already exists",
        0x6B00 => "wrong parameters P1-P2",
        0x6F00 => "no precise diagnosis",
        sw if sw & 0xFF00 == 0x6200 => "warning, state unchanged",
        sw if sw & 0xFF00 == 0x6300 => "warning, state changed",
        sw if sw & 0xFF00 == 0x6400 => "execution error, state unchanged",
        sw if sw & 0xFF00 == 0x6500 => "execution error, state changed",
        sw if sw & 0xFF00 == 0x6600 => "security-related error",
        sw if sw & 0xFF00 == 0x6800 => "function in CLA not supported",
        sw if sw & 0xFF00 == 0x6900 => "command not allowed",
        sw if sw & 0xFF00 == 0x6A00 => "wrong parameters",
        _ => "unknown status",
    }
}

/// The class byte without the chaining and secure-messaging bits.
fn base_cla(cla: u8) -> u8 {
    cla & !(CLA_CHAINING | CLA_SECURE_MESSAGING)
}

/// The command's name for messages, from its class and instruction.
pub fn command_name(cmd: &Command) -> &'static str {
    let cla = base_cla(cmd.cla);
    match (cla, cmd.ins) {
        (0x00, ins::SELECT) => "SELECT",
        (0x00, ins::GET_DATA) => "GET DATA",
        (0x00, ins::PUT_DATA) => "PUT DATA",
        (0x80, ins::DELETE) => "DELETE",
        (0x00, ins::VERIFY) => "VERIFY",
        (0x00, ins::CHANGE_REFERENCE_DATA) => "CHANGE REFERENCE DATA",
        (0x00, ins::RESET_RETRY_COUNTER) => "RESET RETRY COUNTER",
        (0x00, ins::GET_CHALLENGE) => "GET CHALLENGE",
        (0x00, ins::INTERNAL_AUTHENTICATE) => "INTERNAL AUTHENTICATE",
        (0x00, ins::MANAGE_SECURITY_ENVIRONMENT) => "MANAGE SECURITY ENVIRONMENT",
        (0x00, ins::PERFORM_SECURITY_OPERATION) => "PERFORM SECURITY OPERATION",
        (0x80, ins::CHECK_APPROVAL) => "CHECK APPROVAL",
        (0x80, ins::CONFIRM_INSTALLED) => "CONFIRM INSTALLED",
        (0x80, ins::INITIALIZE_UPDATE) => "INITIALIZE UPDATE",
        (0x80, ins::EXTERNAL_AUTHENTICATE) => "EXTERNAL AUTHENTICATE",
        (0x80, ins::PUT_KEY) => "PUT KEY",
        (0x00, ins::GET_RESPONSE) => "GET RESPONSE",
        _ => "command",
    }
}

/// Whether `63Cx` of this command means "wrong PIN, x tries left".
fn is_pin_command(cmd: &Command) -> bool {
    base_cla(cmd.cla) == 0x00
        && matches!(
            cmd.ins,
            ins::VERIFY | ins::CHANGE_REFERENCE_DATA | ins::RESET_RETRY_COUNTER
        )
}

/// Which secret a `63Cx` of `command` is about.
fn pin_or_puk(command: &str) -> &'static str {
    if command == "RESET RETRY COUNTER" {
        "PUK"
    } else {
        "PIN"
    }
}

fn tries(n: u8) -> String {
    if n == 1 {
        "1 try".into()
    } else {
        format!("{n} tries")
    }
}

/// Maps a response to its data (`9000`) or to the typed error of its status word.
pub fn check_status(cmd: &Command, resp: Response) -> Result<Vec<u8>, HostError> {
    let command = command_name(cmd);
    Err(match resp.sw {
        0x9000 => return Ok(resp.data),
        sw if sw & 0xFFF0 == 0x63C0 && is_pin_command(cmd) => HostError::WrongPin {
            command,
            tries_left: (sw & 0x0F) as u8,
        },
        0x6983 => HostError::Blocked { command },
        0x6982 => HostError::SecurityStatusNotSatisfied { command },
        sw @ (0x6A82 | 0x6A88) => HostError::NotFound { command, sw },
        0x6A84 => HostError::NotEnoughMemory { command },
        0x6985 => HostError::ConditionsNotSatisfied { command },
        0x6984 => HostError::ReferenceDataNotUsable { command },
        0x6700 => HostError::WrongLength { command },
        0x6A80 => HostError::IncorrectData { command },
        0x6A86 => HostError::IncorrectP1P2 { command },
        0x6D00 => HostError::InsNotSupported { command },
        0x6E00 => HostError::ClaNotSupported { command },
        0x6300 => HostError::VerificationFailed { command },
        sw => HostError::Status { command, sw },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(cmd: &Command, sw: u16) -> HostError {
        check_status(cmd, Response { data: vec![], sw }).unwrap_err()
    }

    #[test]
    fn status_words_map_to_typed_errors() {
        let verify = Command::new(0x00, ins::VERIFY, 0, 0x81).with_data(vec![0x31; 8]);
        let get = Command::new(0x00, ins::GET_DATA, 0x3F, 0xFF);
        assert!(matches!(
            sw(&verify, 0x63C2),
            HostError::WrongPin {
                command: "VERIFY",
                tries_left: 2
            }
        ));
        // 63Cx of a non-PIN command is just a status.
        assert!(matches!(
            sw(&get, 0x63C2),
            HostError::Status { sw: 0x63C2, .. }
        ));
        type Is = fn(&HostError) -> bool;
        let cases: [(u16, Is); 12] = [
            (0x6983, |e| matches!(e, HostError::Blocked { .. })),
            (0x6982, |e| {
                matches!(e, HostError::SecurityStatusNotSatisfied { .. })
            }),
            (0x6A82, |e| {
                matches!(e, HostError::NotFound { sw: 0x6A82, .. })
            }),
            (0x6A88, |e| {
                matches!(e, HostError::NotFound { sw: 0x6A88, .. })
            }),
            (0x6A84, |e| matches!(e, HostError::NotEnoughMemory { .. })),
            (0x6985, |e| {
                matches!(e, HostError::ConditionsNotSatisfied { .. })
            }),
            (0x6984, |e| {
                matches!(e, HostError::ReferenceDataNotUsable { .. })
            }),
            (0x6700, |e| matches!(e, HostError::WrongLength { .. })),
            (0x6A80, |e| matches!(e, HostError::IncorrectData { .. })),
            (0x6A86, |e| matches!(e, HostError::IncorrectP1P2 { .. })),
            (0x6D00, |e| matches!(e, HostError::InsNotSupported { .. })),
            (0x6E00, |e| matches!(e, HostError::ClaNotSupported { .. })),
        ];
        for (code, is) in cases {
            let e = sw(&get, code);
            assert!(is(&e), "{code:04X} -> {e:?}");
            assert_eq!(e.sw(), Some(code));
            let msg = e.to_string();
            assert!(msg.starts_with("GET DATA: "), "{msg}");
            assert!(msg.contains(&format!("{code:04X}")), "{msg}");
        }
        assert!(matches!(
            sw(&get, 0x6300),
            HostError::VerificationFailed { .. }
        ));
        assert_eq!(
            sw(&get, 0x6F00).to_string(),
            "GET DATA: card returned SW 6F00 (no precise diagnosis)"
        );
        assert_eq!(
            sw(&verify, 0x63C1).to_string(),
            "VERIFY: wrong PIN, 1 try left (SW 63C1)"
        );
    }
}
