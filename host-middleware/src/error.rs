//! Typed errors of card sessions and the mapping of status words to them.

use dmsc_card_model::apdu::{ApduError, Command, Response, CLA_CHAINING};
use dmsc_card_model::commands::{ins, DecodeError, CLA_SECURE_MESSAGING};

use crate::card_keys::DiversifyError;
use crate::session::secure::SmError;
use crate::transport::TransportError;
use dmsc_card_model::scp03::Scp03Error;

pub use iso7816::Status;

/// What went wrong talking to the card. A refusal by the card is one variant,
/// [`HostError::Card`], naming the command and carrying its ISO 7816-4 status word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The card answered with a status word other than `9000`: it refused or failed
    /// the command. The message says what the status word means (see [`sw_meaning`]);
    /// `63Cx` of VERIFY, CHANGE REFERENCE DATA or RESET RETRY COUNTER reads as
    /// "wrong PIN (or PUK), x tries left".
    #[error("{command}: {}", describe(.command, *.status))]
    Card {
        /// The command that failed.
        command: &'static str,
        /// The status word.
        status: Status,
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
    /// The card broke the APDU protocol (endless `61xx`, oversized response, …),
    /// or the command could not be carried to it; [`ProtocolFault`] says which.
    #[error("{command}: protocol error: {fault}")]
    Protocol {
        /// The command.
        command: &'static str,
        /// What happened.
        #[source]
        fault: ProtocolFault,
    },
    /// Secure messaging failed to wrap a command or to verify/decrypt a response.
    #[error("{command}: secure messaging: {source}")]
    SecureMessaging {
        /// The command.
        command: &'static str,
        /// What failed.
        #[source]
        source: SmError,
    },
    /// The card's own keys could not be derived from the master keys
    /// ([`crate::fleet::diversify`]).
    #[error(
        "{command}: cannot derive the keys of card {}: {source}",
        hex::encode_upper(.card_id)
    )]
    KeyDerivation {
        /// The command the keys were needed for.
        command: &'static str,
        /// The card ID the keys are derived from.
        card_id: Vec<u8>,
        /// Why.
        #[source]
        source: DiversifyError,
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

/// How the card broke the APDU protocol, or why a command could not be carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolFault {
    /// The operating system gave no randomness for the SCP03 host challenge.
    #[error("no operating-system randomness for the host challenge: {0}")]
    NoRandomness(#[source] getrandom::Error),
    /// An SCP03 command or answer (INITIALIZE UPDATE, PUT KEY) could not be
    /// built or decoded.
    #[error("{0}")]
    Scp03(#[source] Scp03Error),
    /// A transaction's operation was asked to run a second time.
    #[error("the operation cannot run twice")]
    RanTwice,
    /// The transport returned without running the transaction's operation.
    #[error("the transport did not run the operation")]
    NotRun,
    /// Chaining produced no command APDU.
    #[error("empty command chain")]
    EmptyChain,
    /// The data field needs extended length, which the card or reader lacks.
    #[error("a {len}-byte data field needs extended length, which this card or reader lacks")]
    NeedsExtendedLength {
        /// The data field's length.
        len: usize,
    },
    /// The card kept answering `61xx`.
    #[error("no final status after {rounds} GET RESPONSE rounds")]
    NoFinalStatus {
        /// The rounds tried.
        rounds: usize,
    },
    /// The reassembled response grew beyond the limit.
    #[error("response longer than {max} bytes")]
    ResponseTooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// A READ/UPDATE BINARY offset that P1-P2 cannot carry.
    #[error("offset {offset} is beyond 32767 (P1-P2 15-bit offset)")]
    OffsetTooLarge {
        /// The offset asked for.
        offset: usize,
    },
    /// A selected file's FCP does not give its size.
    #[error("file {path} has no size in its FCP")]
    NoFileSize {
        /// The file's path.
        path: String,
    },
    /// The card answered something the command cannot answer.
    #[error("the card answered {what}")]
    UnexpectedAnswer {
        /// What it answered.
        what: &'static str,
    },
    /// SELECT gave no card ID where one is needed.
    #[error("no card ID after the authority session opened")]
    NoCardId,
}

impl HostError {
    /// The card's refusal of `command` with status word `sw`.
    pub fn card(command: &'static str, sw: u16) -> Self {
        HostError::Card {
            command,
            status: Status::from(sw),
        }
    }

    /// The status word of the card's refusal, if this error is one.
    pub fn status(&self) -> Option<Status> {
        match self {
            HostError::Card { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The status word behind this error, as a number, if it came from one.
    pub fn sw(&self) -> Option<u16> {
        self.status().map(u16::from)
    }

    /// Whether the card refused with exactly `status`.
    pub fn is(&self, status: Status) -> bool {
        self.status() == Some(status)
    }

    /// Tries left, when this is a wrong PIN or PUK (`63Cx` of a PIN command).
    pub fn wrong_pin_tries_left(&self) -> Option<u8> {
        match self {
            HostError::Card {
                command,
                status: Status::RemainingRetries(n),
            } if is_pin_command(command) => Some(*n),
            _ => None,
        }
    }

    /// Whether a PIN, PUK or key is blocked (`6983`).
    pub fn is_blocked(&self) -> bool {
        self.is(Status::OperationBlocked)
    }

    /// Whether the card said "not found" (`6A82` file or application, `6A88`
    /// referenced data).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.status(),
            Some(Status::NotFound | Status::KeyReferenceNotFound)
        )
    }
}

/// The one table of status words: what a status word means and whether messages
/// name it in words first (`not found (SW 6A82)`) or lead with the number
/// (`card returned SW 6F00 (no precise diagnosis)`). Keyed by ISO 7816-4's
/// [`Status`]; words without a variant there fall back to their SW1 group.
fn entry(status: Status) -> (&'static str, bool) {
    use Status as S;
    let named = match status {
        S::OperationBlocked => "authentication method blocked",
        S::SecurityStatusNotSatisfied => "security status not satisfied",
        S::NotFound | S::KeyReferenceNotFound => "not found",
        S::NotEnoughMemory => "not enough memory on the card",
        S::ConditionsOfUseNotSatisfied => "conditions of use not satisfied",
        S::ReferenceDataNotUsable => "reference data not usable",
        S::WrongLength => "wrong length",
        S::IncorrectDataParameter => "incorrect data",
        S::IncorrectP1OrP2Parameter => "incorrect P1-P2",
        S::InstructionNotSupportedOrInvalid => "instruction not supported",
        S::ClassNotSupported => "class not supported",
        S::VerificationFailed => "verification failed",
        _ => "",
    };
    if !named.is_empty() {
        return (named, true);
    }
    let meaning = match status {
        S::Success => "success",
        S::CorruptedData => "part of returned data may be corrupted",
        S::UnexpectedEof => "end of data reached before Le bytes",
        S::SelectFileDeactivated => "selected file deactivated",
        S::UnspecifiedNonpersistentExecutionError => "execution error, state unchanged",
        S::MemoryFailure => "memory failure",
        S::LogicalChannelNotSupported => "logical channel not supported",
        S::SecureMessagingNotSupported => "secure messaging not supported",
        S::LastCommandOfChainExpected => "last command of the chain expected",
        S::CommandChainingNotSupported => "command chaining not supported",
        S::CommandIncompatibleFileStructure => "command incompatible with file structure",
        S::CommandNotAllowedNoEf => "command not allowed (no current EF)",
        S::ExectedSecureMessagingDataObjectsMissing => {
            "expected secure messaging data objects missing"
        }
        S::IncorrectSecureMessagingDataObjects => "incorrect secure messaging data objects",
        S::FunctionNotSupported => "function not supported",
        S::RecordNotFound => "record not found",
        S::NcInconsistentWithP1p2 => "Nc inconsistent with P1-P2",
        S::FileAlreadyExists => "file already exists",
        S::WrongParameters => "wrong parameters P1-P2",
        S::UnspecifiedCheckingError => "no precise diagnosis",
        other => match u16::from(other) & 0xFF00 {
            0x6200 => "warning, state unchanged",
            0x6300 => "warning, state changed",
            0x6400 => "execution error, state unchanged",
            0x6500 => "execution error, state changed",
            0x6600 => "security-related error",
            0x6800 => "function in CLA not supported",
            0x6900 => "command not allowed",
            0x6A00 => "wrong parameters",
            _ => "unknown status",
        },
    };
    (meaning, false)
}

/// A short English meaning of an ISO 7816-4 status word.
pub fn sw_meaning(sw: u16) -> &'static str {
    entry(Status::from(sw)).0
}

/// The message of the card's refusal of `command` with `status`.
fn describe(command: &str, status: Status) -> String {
    let sw = u16::from(status);
    match status {
        Status::RemainingRetries(n) if is_pin_command(command) => {
            format!(
                "wrong {}, {} left (SW {sw:04X})",
                pin_or_puk(command),
                tries(n)
            )
        }
        _ => match entry(status) {
            (meaning, true) => format!("{meaning} (SW {sw:04X})"),
            (meaning, false) => format!("card returned SW {sw:04X} ({meaning})"),
        },
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
fn is_pin_command(command: &str) -> bool {
    matches!(
        command,
        "VERIFY" | "CHANGE REFERENCE DATA" | "RESET RETRY COUNTER"
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

/// Maps a response to its data (`9000`) or to the card's refusal.
pub fn check_status(cmd: &Command, resp: Response) -> Result<Vec<u8>, HostError> {
    match resp.sw {
        0x9000 => Ok(resp.data),
        sw => Err(HostError::card(command_name(cmd), sw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(cmd: &Command, sw: u16) -> HostError {
        check_status(cmd, Response { data: vec![], sw }).unwrap_err()
    }

    #[test]
    fn status_words_map_to_the_cards_refusal() {
        let verify = Command::new(0x00, ins::VERIFY, 0, 0x81).with_data(vec![0x31; 8]);
        let get = Command::new(0x00, ins::GET_DATA, 0x3F, 0xFF);
        assert_eq!(
            sw(&verify, 0x63C2),
            HostError::Card {
                command: "VERIFY",
                status: Status::RemainingRetries(2)
            }
        );
        assert_eq!(sw(&verify, 0x63C2).wrong_pin_tries_left(), Some(2));
        // 63Cx of a non-PIN command is just a status.
        assert_eq!(sw(&get, 0x63C2).wrong_pin_tries_left(), None);
        assert_eq!(
            sw(&get, 0x63C2).to_string(),
            "GET DATA: card returned SW 63C2 (warning, state changed)"
        );
        let cases = [
            (0x6983, Status::OperationBlocked),
            (0x6982, Status::SecurityStatusNotSatisfied),
            (0x6A82, Status::NotFound),
            (0x6A88, Status::KeyReferenceNotFound),
            (0x6A84, Status::NotEnoughMemory),
            (0x6985, Status::ConditionsOfUseNotSatisfied),
            (0x6984, Status::ReferenceDataNotUsable),
            (0x6700, Status::WrongLength),
            (0x6A80, Status::IncorrectDataParameter),
            (0x6A86, Status::IncorrectP1OrP2Parameter),
            (0x6D00, Status::InstructionNotSupportedOrInvalid),
            (0x6E00, Status::ClassNotSupported),
            (0x6300, Status::VerificationFailed),
        ];
        for (code, status) in cases {
            let e = sw(&get, code);
            assert!(e.is(status), "{code:04X} -> {e:?}");
            assert_eq!(e.sw(), Some(code));
            let msg = e.to_string();
            assert!(msg.starts_with("GET DATA: "), "{msg}");
            assert!(msg.ends_with(&format!(" (SW {code:04X})")), "{msg}");
        }
        assert!(sw(&get, 0x6A88).is_not_found());
        assert!(sw(&get, 0x6983).is_blocked());
        assert_eq!(
            sw(&get, 0x6982).to_string(),
            "GET DATA: security status not satisfied (SW 6982)"
        );
        assert_eq!(
            sw(&get, 0x6F00).to_string(),
            "GET DATA: card returned SW 6F00 (no precise diagnosis)"
        );
        assert_eq!(
            sw(&verify, 0x63C1).to_string(),
            "VERIFY: wrong PIN, 1 try left (SW 63C1)"
        );
        let puk = Command::new(0x00, ins::RESET_RETRY_COUNTER, 0, 0x81);
        assert_eq!(
            sw(&puk, 0x63C0).to_string(),
            "RESET RETRY COUNTER: wrong PUK, 0 tries left (SW 63C0)"
        );
    }

    /// Protocol and secure-messaging failures carry typed causes as their
    /// source, and read as before.
    #[test]
    fn protocol_faults_are_typed_sources() {
        use std::error::Error;
        let e = HostError::Protocol {
            command: "GET DATA",
            fault: ProtocolFault::ResponseTooLong { max: 65536 },
        };
        assert_eq!(
            e.to_string(),
            "GET DATA: protocol error: response longer than 65536 bytes"
        );
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("response longer than 65536 bytes")
        );
        let e = HostError::SecureMessaging {
            command: "INITIALIZE UPDATE",
            source: SmError::KeysRejected {
                key_version: 0x30,
                reason: Scp03Error::CardCryptogramMismatch,
            },
        };
        let text = e.to_string();
        assert!(
            text.starts_with("INITIALIZE UPDATE: secure messaging: ")
                && text.ends_with(" (wrong key set for key version 0x30?)"),
            "{text}"
        );
        assert!(matches!(
            e.source().and_then(|s| s.downcast_ref::<SmError>()),
            Some(SmError::KeysRejected {
                key_version: 0x30,
                ..
            })
        ));
    }

    #[test]
    fn meanings_come_from_the_one_table() {
        assert_eq!(sw_meaning(0x9000), "success");
        assert_eq!(sw_meaning(0x6A82), "not found");
        assert_eq!(sw_meaning(0x6A89), "file already exists");
        assert_eq!(sw_meaning(0x6A8A), "wrong parameters");
        assert_eq!(sw_meaning(0x6601), "security-related error");
        assert_eq!(sw_meaning(0x1234), "unknown status");
    }
}
