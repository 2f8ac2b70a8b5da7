//! Portable enterprise policy (`docs/policy.md`): a signed policy kept on the
//! card with the enterprise key, and the device-side engine that enforces it.
//!
//! - [`format`](mod@format): the policy file (TOML, schema `dmsc-policy` version 1) and
//!   its validation, with line/column and rule in every error;
//! - [`geo`]: sites (circles, polygons) in WGS84;
//! - [`engine`]: [`evaluate`], [`next_change`] and [`next_reevaluation`];
//! - [`signing`]: the signed envelope stored in the card's `policy` object,
//!   P-256 keys as openssl writes them, and administrators' signed commands;
//! - [`card`]: putting a policy on the card and reading it back verified by
//!   the card's enterprise key (PSO VERIFY DIGITAL SIGNATURE);
//! - [`device`]: applying decisions to the device and the report for the DM server;
//! - [`watch`](mod@watch): applying the policy again when the card changes or a
//!   decision does, driven by the caller's callbacks and clock.

pub mod card;
pub mod device;
pub mod engine;
pub mod format;
pub mod geo;
pub mod problem;
pub mod signing;
pub mod watch;

pub use engine::{
    evaluate, next_change, next_reevaluation, Context, DecidedBy, Decision, Override,
};
pub use format::{Policy, State};
pub use geo::{Position, PositionError, Site};
pub use problem::{
    EnvelopeFault, KeyIssue, Malformation, MissingItem, PolicyProblem, Refusal, SignatureIssue,
    StatementFault,
};

use crate::HostError;

/// Errors of the policy use case. `Clone`, so that the report written to the
/// device (`report.json`) and the caller both get the error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// The policy file does not parse or does not validate.
    #[error("line {line}, column {column}{}: {problem}", rule.as_ref().map(|r| format!(" (rule {r})")).unwrap_or_default())]
    Invalid {
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// The rule or section concerned, if any.
        rule: Option<String>,
        /// What is wrong.
        #[source]
        problem: PolicyProblem,
    },
    /// The policy is not UTF-8.
    #[error("the policy is not UTF-8 text")]
    NotUtf8,
    /// A key file could not be read as a P-256 key, or the card holds
    /// another enterprise key.
    #[error("{0}")]
    Key(#[source] KeyIssue),
    /// The stored policy envelope or a command is malformed.
    #[error("{0}")]
    Malformed(#[source] Malformation),
    /// A signature does not verify with the card's enterprise key, or the
    /// signed objects are not protected by an authority.
    #[error("{0}")]
    BadSignature(#[source] SignatureIssue),
    /// A signed command is refused (replay, expired, other policy, unknown resource).
    #[error("command refused: {0}")]
    CommandRefused(#[source] Refusal),
    /// The card has no policy or no enterprise key.
    #[error("{0}")]
    Missing(#[source] MissingItem),
    /// A card error.
    #[error("{0}")]
    Card(#[from] HostError),
    /// Writing the device state.
    #[error("{step} {}: {source}", .path.display())]
    Io {
        /// What was being done: `creating`, `reading`, `writing`, `sync the
        /// file system of`.
        step: &'static str,
        /// The file or folder.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::sync::Arc<std::io::Error>,
    },
}
