//! What exactly went wrong in the policy use case: the typed causes carried
//! by [`PolicyError`](super::PolicyError)'s variants.

use dmsc_card_model::objects::{Acl, Principal, Right};
use jiff::Timestamp;

use super::signing::{COMMAND_MAGIC, ENVELOPE_MAGIC};
use crate::p256_keys::KeyError;

/// Why a key cannot be used ([`PolicyError::Key`](super::PolicyError::Key)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIssue {
    /// The key file does not hold a P-256 key.
    #[error("{0}")]
    Load(#[source] KeyError),
    /// The card holds another enterprise key than the signing key's, and
    /// replacing it was not asked for.
    #[error(
        "the card's enterprise key (fingerprint {card}) is not the signing key's ({signer}); \
         to replace it, give --replace-key"
    )]
    NotTheSigningKey {
        /// The first 16 hex digits of the card's key's fingerprint.
        card: String,
        /// The first 16 hex digits of the signing key's fingerprint.
        signer: String,
    },
}

/// What is malformed ([`PolicyError::Malformed`](super::PolicyError::Malformed)).
#[derive(Debug, thiserror::Error)]
pub enum Malformation {
    /// The card's policy object is not a signed-policy envelope.
    #[error("the card's policy object is not a signed policy ({0})")]
    Envelope(EnvelopeFault),
    /// A command statement is not in the canonical form.
    #[error("command statement: {0}")]
    Statement(StatementFault),
    /// A signed command of another schema version.
    #[error("command schema_version {0} (this dmsc reads 1)")]
    SchemaVersion(u32),
    /// A signed command's signature is not hex.
    #[error("command signature is not hex")]
    SignatureNotHex,
    /// The card's policy object holds another kind of value.
    #[error("the policy object has another kind")]
    PolicyKind,
    /// `approver:enterprise` holds another kind of value.
    #[error("approver:enterprise has another kind")]
    EnterpriseKind,
    /// The device's record of accepted commands does not parse.
    #[error("{path}: {source}")]
    CommandsFile {
        /// The file, relative to the device directory.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Where a signed-policy envelope is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeFault {
    /// No empty line ends the header.
    #[error("no header")]
    NoHeader,
    /// The header is not UTF-8.
    #[error("header not UTF-8")]
    HeaderNotUtf8,
    /// The first line is not the envelope's magic.
    #[error("first line is not {ENVELOPE_MAGIC}")]
    FirstLine,
    /// The signer line names another signer.
    #[error("signer is not approver:enterprise")]
    Signer,
    /// No `signature=` line with hex.
    #[error("no hex signature line")]
    NoSignature,
    /// More header lines than the three.
    #[error("extra header lines")]
    ExtraHeaderLines,
}

/// Where a command statement is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatementFault {
    /// The first line is not the statement's magic.
    #[error("the first line must be {COMMAND_MAGIC}")]
    FirstLine,
    /// A line is not the expected field.
    #[error("expected the line {0}=…")]
    ExpectedLine(&'static str),
    /// `action` is neither `enable` nor `disable`.
    #[error("action is neither enable nor disable")]
    Action,
    /// `until` is not a time.
    #[error("until is not a time")]
    Until,
    /// `counter` is not a number.
    #[error("counter is not a number")]
    Counter,
    /// `not-after` is not a time.
    #[error("not-after is not a time")]
    NotAfter,
    /// The text is not exactly what the statement encodes to.
    #[error("not in canonical form")]
    NotCanonical,
}

/// Why a signature is not accepted
/// ([`PolicyError::BadSignature`](super::PolicyError::BadSignature)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureIssue {
    /// The policy signature is not DER.
    #[error("the policy signature is not DER")]
    PolicyNotDer,
    /// The policy signature does not verify with the given key.
    #[error("the policy signature does not verify")]
    PolicyDoesNotVerify,
    /// The card does not verify the policy's signature with its enterprise key.
    #[error("the policy's signature does not verify with the card's enterprise key")]
    PolicyRefusedByCard,
    /// The card does not verify a command's signature with its enterprise key.
    #[error("the command's signature does not verify with the card's enterprise key")]
    CommandRefusedByCard,
    /// The policy or the enterprise key can be rewritten without an authority,
    /// so its signature proves nothing.
    #[error(
        "{what} is not protected by an authority: its ACL '{acl}' grants {right:?} to {principal}"
    )]
    Unprotected {
        /// The object ("the policy", "the enterprise key").
        what: &'static str,
        /// Its ACL.
        acl: Acl,
        /// The right granted.
        right: Right,
        /// To whom.
        principal: Principal,
    },
}

/// Why a signed command is refused
/// ([`PolicyError::CommandRefused`](super::PolicyError::CommandRefused)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The command is for another policy than the card's.
    #[error("it is for policy {command}, the card holds {card}")]
    OtherPolicy {
        /// The policy digest the command names.
        command: String,
        /// The digest of the card's policy.
        card: String,
    },
    /// The command is past its `not-after` time.
    #[error("it expired at {0}")]
    Expired(Timestamp),
    /// The policy does not manage the command's resource.
    #[error("the policy does not manage '{0}'")]
    Unmanaged(String),
    /// The counter is not above the last accepted one.
    #[error("counter {counter} is not above the last accepted {last} (replay)")]
    Replay {
        /// The command's counter.
        counter: u64,
        /// The last counter accepted on this device.
        last: u64,
    },
}

/// What the card does not hold
/// ([`PolicyError::Missing`](super::PolicyError::Missing)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingItem {
    /// No `approver:enterprise` on the card.
    #[error("the card holds no enterprise key (approver:enterprise)")]
    EnterpriseKey,
    /// No policy the device may read.
    #[error("the card holds no policy the device may read")]
    ReadablePolicy,
    /// No enterprise key the device may read.
    #[error("the card holds no enterprise key (approver:enterprise) the device may read")]
    ReadableEnterpriseKey,
}
