//! The hook for secure messaging (GlobalPlatform SCP03 on the host side).
//!
//! The session applies it in this order (GlobalPlatform Card Specification
//! §E / SCP03 §6.2): the plain command is split into a chain first, then every
//! APDU of the chain is wrapped on its own; each wrapped APDU's response is
//! reassembled from `61xx` / GET RESPONSE first and unwrapped afterwards. GET
//! RESPONSE itself is never wrapped. A `6Cxx` answer makes the session wrap the
//! plain APDU again with the corrected Le (the MAC chain has moved on).

use dmsc_card_model::apdu::{Command, Response};

/// Why secure messaging failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SmError(pub String);

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
