//! The dmsc command set: one typed request per command, encoded to and decoded
//! from APDUs, and the typed responses, so host and card share one definition.
//! `docs/commands.md` describes every command in prose.
//!
//! The modules, leaves first (each uses only those before it):
//!
//! - [`ins`], [`tag`] and the constants: instruction bytes, data-field tags,
//!   class bytes, PIN references, limits;
//! - `error`: [`DecodeError`], and the status word a card answers with it;
//! - `field`: decoding helpers for values inside TLV fields;
//! - `pin`: [`Pin`];
//! - [`put_key`]: GlobalPlatform PUT KEY of an SCP03 key set;
//! - `values`: [`ObjectValue`] and the values of each object kind;
//! - `audit`: [`AuditEvent`], [`AuditEntry`];
//! - `select`: [`SelectInfo`];
//! - `object_data`: GET DATA answers ([`ObjectData`], listings, "read all");
//! - `approval`: [`PackageId`], [`Approval`], [`ApprovalVerdict`];
//! - `request`: [`Request`], the codec to and from command APDUs.

mod approval;
mod audit;
mod consts;
mod error;
mod field;
pub mod ins;
mod object_data;
mod pin;
pub mod put_key;
mod request;
mod select;
pub mod tag;
mod values;

#[cfg(test)]
mod tests;

pub use approval::{Approval, ApprovalVerdict, PackageId, RefusalReason};
pub use audit::{AuditEntry, AuditEvent, Repeats};
pub use consts::{
    AID, APPLET_VERSION, CLA_ISO, CLA_PROPRIETARY, CLA_SECURE_MESSAGING, DEFAULT_FAILURE_LIMIT,
    MIN_FAILURE_LIMIT, PIN_BLOCK_LEN, PIN_MIN_LEN, PIN_REF_PUK, PIN_REF_USER,
};
pub use error::DecodeError;
pub use object_data::{
    decode_list, decode_records, encode_list, encode_records, ListEntry, ObjectData, ObjectRecord,
};
pub use pin::Pin;
pub use put_key::{KeyBlock, PutKey, PutKeyResponse, PUT_KEY_P2};
pub use request::{command_carries_secret, Request};
pub use select::{algorithms, SelectInfo};
pub use values::{
    ApprovalRule, AuthorityInfo, BootstrapKeyValue, CardConfig, MoRecord, ObjectValue,
};
