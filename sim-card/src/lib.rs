//! The dmsc DM smart-card applet.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod applet;
mod crypto;
pub mod state;
pub mod store;

pub use applet::{AuthorityKeys, Card, CardError, InitParams, ATR};
pub use store::{MemoryStore, PersistentMemory, StoreError};
