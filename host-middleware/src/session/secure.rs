//! The hook for secure messaging (GlobalPlatform SCP03 on the host side).
//!
//! The session applies it in this order (GlobalPlatform Card Specification
//! §E / SCP03 §6.2): the plain command is split into a chain first, then every
//! APDU of the chain is wrapped on its own; each wrapped APDU's response is
//! reassembled from `61xx` / GET RESPONSE first and unwrapped afterwards. GET
//! RESPONSE itself is never wrapped. A `6Cxx` answer makes the session wrap the
//! plain APDU again with the corrected Le (the MAC chain has moved on).

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::scp03::Scp03Error;

/// Why secure messaging failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmError {
    /// SCP03 could not wrap the command, or the response's MAC, padding or
    /// encryption does not check.
    #[error("{0}")]
    Scp03(#[from] Scp03Error),
    /// The card's cryptogram does not check with the host's keys while
    /// opening the channel.
    #[error("{reason} (wrong key set for key version 0x{key_version:02X}?)")]
    KeysRejected {
        /// The key version the card reported.
        key_version: u8,
        /// Why (e.g. the card cryptogram does not match).
        reason: Scp03Error,
    },
    /// The APDU size limit leaves no room for data once wrapped.
    #[error("no room for data in a wrapped APDU")]
    NoRoom,
}

/// A secure channel that protects commands and responses.
///
/// An implementation keeps its own state (MAC chaining value, encryption
/// counter). The session drops it when the card is reset, removed or
/// re-selected: the card ends the secure channel then too.
pub trait SecureMessaging: Send {
    /// Protects one command APDU (one link of a chain): sets the class byte's
    /// secure-messaging bit, encrypts and/or MACs the data field.
    fn wrap(&mut self, cmd: &Command) -> Result<Command, SmError>;

    /// Checks and removes the protection of one (reassembled) response.
    fn unwrap(&mut self, resp: &Response) -> Result<Response, SmError>;

    /// The largest plain data field whose wrapped form fits in `max_wrapped`
    /// bytes; the session chains commands by this size. The default assumes
    /// wrapping adds nothing.
    fn max_plain_len(&self, max_wrapped: usize) -> usize {
        max_wrapped
    }
}
