//! dmsc host middleware: what device software links to use a dmsc card.
//!
//! Every public module, one line each:
//!
//! - [`transport`]: the [`Transport`] trait (one APDU at a time, exclusive
//!   access), its typed errors and reader selection;
//! - [`pcsc_transport`] (feature `pcsc`, on by default): PC/SC readers through
//!   pcscd, with recovery from card resets and pcscd restarts;
//! - `sim_transport` (feature `sim`): the simulated card in-process;
//! - [`watch`] (feature `pcsc`): follows a reader, refreshing the device tree as cards come and go;
//! - [`session`]: [`Session`] — SELECT, chaining, extended length, `61xx`/`6Cxx`,
//!   secure-messaging hook, APDU trace, and the typed command set ([`CardCommands`]);
//! - [`error`]: [`HostError`], the card's refusal as one [`Status`], and the one
//!   table of status-word meanings;
//! - [`secure`]: the [`SecureMessaging`] hook SCP03 plugs into;
//! - [`scp`]: SCP03 host side (authority sessions);
//! - [`diversify`]: per-card authority keys diversified from master keys (SP 800-108 KDF, AES-CMAC);
//! - [`hsm`]: master keys in a PKCS#11 token (the KDF's CMAC computed inside it);
//! - [`records`]: provisioning records (SQLite): one claim per card per job, every attempt recorded;
//! - [`session_manager`]: authority sessions ended after an idle time, with a concurrency limit
//!   counted across processes (lock files per card; used by `dmsc shell`);
//! - [`trace`]: redacted APDU trace events;
//! - [`files`]: atomic replacement of the files a device writes;
//! - [`device_tree`]: the device's own DM tree ([`device_tree::DeviceTree`], a directory of TNDS files);
//! - [`mo`]: OMA DM management objects: the TNDS tree model, its JSON and binary forms, MO records on the card;
//! - [`provisioning`]: refresh the device tree from the card, copy and compare MOs;
//! - [`bootstrap`]: HTTP bootstrap packets verified with the card's key, then applied;
//! - [`wbxml`]: WBXML-encoded TNDS documents decoded to XML;
//! - [`firmware`]: firmware approval by the card (package hash, approval files, the decision);
//! - [`mcuboot`]: MCUboot image hash and signature checked while the package streams;
//! - [`p256_keys`]: P-256 keys and ECDSA signatures as `openssl` writes them;
//! - [`ota`]: over-the-air updates relayed by the device (a precomputed SCP03 script);
//! - [`policy`]: the portable enterprise policy (signed policy on the card, enforcement engine);
//! - [`fleet`]: many cards at once: listing, profiles, provisioning, all-or-nothing ACL grants;
//! - [`governance`]: ACLs, authority key sets (PUT KEY), failure limit, audit filters and events;
//! - [`uicc`]: standard UICC file access, PKCS#15 and the LwM2M / OMA DM bootstrap on a SIM.
//!
//! ```no_run
//! # #[cfg(feature = "pcsc")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use dmsc_host::{find_reader, CardCommands, PcscContext, Session};
//! use dmsc_host::card_model::objects::ObjectRef;
//!
//! let mut ctx = PcscContext::establish()?;
//! let readers = ctx.list_readers()?;
//! let reader = find_reader(&readers, "vpcd")?;
//! let mut session = Session::new(ctx.connect(&reader.name)?);
//! session.set_trace(Box::new(|e| eprintln!("{e}")));
//! let info = session.select()?;
//! println!("generation {}", info.generation);
//! let policy = session.read_object(&ObjectRef::Policy)?;
//! # let _ = policy;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "pcsc"))]
//! # fn main() {}
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use dmsc_card_model as card_model;

pub mod bootstrap;
pub mod device_tree;
pub mod diversify;
pub mod error;
pub mod files;
pub mod firmware;
pub mod fleet;
pub mod governance;
pub mod hsm;
pub mod mcuboot;
pub mod mo;
pub mod ota;
pub mod p256_keys;
#[cfg(feature = "pcsc")]
pub mod pcsc_transport;
pub mod policy;
pub mod provisioning;
pub mod records;
pub mod scp;
pub mod secure;
pub mod session;
pub mod session_manager;
#[cfg(feature = "sim")]
pub mod sim_transport;
pub mod syncml;
pub mod trace;
pub mod transport;
pub mod uicc;
#[cfg(feature = "pcsc")]
pub mod watch;
pub mod wbxml;

#[cfg(test)]
pub(crate) mod scripted;
#[cfg(test)]
mod session_tests;

pub use error::{HostError, Status};
pub use governance::{AuditFilter, AuditWatcher, AuthorityEntry, Governance};
#[cfg(feature = "pcsc")]
pub use pcsc_transport::{PcscCard, PcscContext};
pub use scp::{open_secure_channel, AuthorityKeySet, ChannelInfo};
pub use secure::{SecureMessaging, SmError};
pub use session::{ApduLimits, CardCommands, ExclusiveSession, PinStatus, Session};
pub use trace::{Direction, TraceEvent, TraceHook};
pub use transport::{
    find_reader, with_exclusive, ReaderEvent, ReaderInfo, Transport, TransportError,
};
