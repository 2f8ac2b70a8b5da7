//! The contract between a dmsc host and a dmsc card.
//!
//! - [`apdu`]: command and response APDUs (cases 1–4, short/extended, chaining);
//! - [`tlv`]: a strict BER-TLV codec;
//! - [`objects`]: principals, OMA DM rights and ACLs, object references;
//! - [`commands`]: the typed command set, encoded and decoded by both sides;
//! - [`scp03`]: GlobalPlatform SCP03 primitives for both sides;
//! - [`put_key`]: GlobalPlatform PUT KEY of an SCP03 key set (DEK-encrypted keys, KCVs).
//!
//! The crate is `no_std` with `alloc`; the `std` feature only adds
//! `std::error::Error` implementations.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod apdu;
pub mod commands;
pub mod objects;
pub use commands::put_key;
pub mod scp03;
pub mod tlv;

pub use apdu::{Command, Response, Status};
