//! The host side of GlobalPlatform SCP03: opening a secure channel with an
//! authority's key set and protecting the session's commands with it.

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::scp03::{
    self, InitializeUpdateResponse, SMode, SecureChannel, SecurityLevel, StaticKeys,
};

use crate::error::{HostError, ProtocolFault};
use crate::session::secure::{SecureMessaging, SmError};
use crate::session::{CardCommands, Session};
use crate::transport::Transport;

/// What identifies an authority's key set on the card.
#[derive(Clone)]
pub struct AuthorityKeySet {
    /// Key version number (P1 of INITIALIZE UPDATE; 0 = the card's first key set).
    pub key_version: u8,
    /// ENC, MAC and DEK.
    pub keys: StaticKeys,
}

/// What the card said during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The key version the card used.
    pub key_version: u8,
    /// The card's SCP03 `i` parameter.
    pub i: u8,
    /// S8 or S16.
    pub smode: SMode,
    /// The security level in force.
    pub level: SecurityLevel,
    /// The card's sequence counter, when it reports one.
    pub sequence_counter: Option<[u8; 3]>,
}

/// [`SecureMessaging`] over an SCP03 [`SecureChannel`].
pub struct Scp03Messaging {
    channel: SecureChannel,
}

impl SecureMessaging for Scp03Messaging {
    fn wrap(&mut self, cmd: &Command) -> Result<Command, SmError> {
        self.channel.wrap_command(cmd).map_err(SmError::Scp03)
    }

    fn unwrap(&mut self, resp: &Response) -> Result<Response, SmError> {
        self.channel.unwrap_response(resp).map_err(SmError::Scp03)
    }

    fn max_plain_len(&self, max_wrapped: usize) -> usize {
        let level = self.channel.security_level();
        let mac = if level.contains(SecurityLevel::C_MAC) {
            self.channel.smode().size()
        } else {
            0
        };
        let room = max_wrapped.saturating_sub(mac);
        if level.contains(SecurityLevel::C_DECRYPTION) {
            // Padding always adds at least one byte, up to a whole block.
            (room / 16 * 16).saturating_sub(1)
        } else {
            room
        }
    }
}

/// A fresh host challenge from the operating system.
fn host_challenge(smode: SMode) -> Result<Vec<u8>, HostError> {
    let mut challenge = vec![0u8; smode.size()];
    getrandom::getrandom(&mut challenge).map_err(|e| HostError::Protocol {
        command: "INITIALIZE UPDATE",
        fault: ProtocolFault::NoRandomness(e),
    })?;
    Ok(challenge)
}

/// Opens an SCP03 secure channel: INITIALIZE UPDATE, checks the card
/// cryptogram, EXTERNAL AUTHENTICATE at `level`, then installs secure messaging
/// on the session. The channel ends on SELECT, reset or card removal.
///
/// The card tells S8 from S16 in its `i` parameter; the host challenge follows
/// the mode the card reported at SELECT (`SelectInfo::scp_i`).
pub fn open_secure_channel<T: Transport>(
    session: &mut Session<T>,
    authority: &AuthorityKeySet,
    level: SecurityLevel,
) -> Result<ChannelInfo, HostError> {
    session.clear_secure_messaging();
    let protocol = |e, command| HostError::Protocol {
        command,
        fault: ProtocolFault::Scp03(e),
    };
    // SELECT, INITIALIZE UPDATE and EXTERNAL AUTHENTICATE in one exclusive
    // transaction: no other application's APDU can come between them, and a
    // handshake interrupted by a reset is reported, never half retried.
    let (channel, card) = session.transaction(|x| {
        let info = x.select()?;
        let challenge = host_challenge(SMode::from_i(info.scp_i))?;
        let iu = scp03::initialize_update(authority.key_version, &challenge)
            .map_err(|e| protocol(e, "INITIALIZE UPDATE"))?;
        let rsp = x.transmit(&iu)?;
        let data = crate::error::check_status(&iu, rsp)?;
        let card = InitializeUpdateResponse::decode(&data)
            .map_err(|e| protocol(e, "INITIALIZE UPDATE"))?;
        let (channel, external_authenticate) =
            SecureChannel::host_authenticate(&authority.keys, &challenge, &card, level).map_err(
                |reason| HostError::SecureMessaging {
                    command: "INITIALIZE UPDATE",
                    source: SmError::KeysRejected {
                        key_version: card.key_version,
                        reason,
                    },
                },
            )?;
        let rsp = x.transmit(&external_authenticate)?;
        crate::error::check_status(&external_authenticate, rsp)?;
        Ok((channel, card))
    })?;
    session.set_secure_messaging(Box::new(Scp03Messaging { channel }));
    Ok(ChannelInfo {
        key_version: card.key_version,
        i: card.i,
        smode: card.smode(),
        level,
        sequence_counter: card.sequence_counter,
    })
}
