//! The dmsc DM smart-card applet.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;

pub mod applet;
mod crypto;
#[cfg(feature = "std")]
pub mod disk;
pub mod fault;
#[cfg(feature = "std")]
pub mod file_store;
#[cfg(all(feature = "std", unix))]
pub mod modem;
#[cfg(feature = "std")]
pub mod sim;
pub mod state;
pub mod store;
#[cfg(feature = "std")]
pub mod uicc;
#[cfg(feature = "std")]
pub mod vpcd;

pub use applet::{AuthorityKeys, Card, CardError, InitParams, Regression, ATR};
pub use store::{MemoryStore, PersistentMemory, StoreError};
