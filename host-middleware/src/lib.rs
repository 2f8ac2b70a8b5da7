//! dmsc host middleware: what device software links to use a dmsc card.
//!
//! The crate is grouped by layer, then by use case. Every public module, one
//! line each:
//!
//! **Talking to a card**
//! - [`transport`]: the [`Transport`] trait (one APDU at a time, exclusive
//!   access), its typed errors and reader selection; below it
//!   `transport::pcsc` (feature `pcsc`, on by default: PC/SC readers through
//!   pcscd, with recovery from card resets and pcscd restarts),
//!   `transport::sim` (feature `sim`: the simulated card in-process) and
//!   `transport::modem` (Unix: a UICC behind a cellular modem, AT+CSIM/AT+CGLA);
//! - [`session`]: [`Session`] — SELECT, chaining, extended length, `61xx`/`6Cxx`,
//!   the typed command set ([`CardCommands`]); below it [`session::secure`] (the
//!   [`SecureMessaging`] hook), [`session::scp`] (SCP03 host side, authority
//!   sessions), [`session::trace`] (redacted APDU trace events) and
//!   [`session::manager`] (authority sessions ended after an idle time, with a
//!   concurrency limit counted across processes; used by `dmsc shell`);
//! - [`error`]: [`HostError`], the card's refusal as one [`Status`], and the one
//!   table of status-word meanings;
//! - [`card_keys`]: the static keys of a card's key set and why a card's keys
//!   could not be derived (the vocabulary [`fleet::diversify`] and [`error`] share).
//!
//! **What the device keeps**
//! - [`files`]: atomic replacement of the files a device writes;
//! - [`device_tree`]: the device's own DM tree ([`device_tree::DeviceTree`], a directory of TNDS files);
//! - [`mo`]: OMA DM management objects: the TNDS tree model, its JSON and binary forms, MO records on the card;
//! - [`p256_keys`]: P-256 keys and ECDSA signatures as `openssl` writes them.
//!
//! **Use cases**
//! - [`provisioning`]: refresh the device tree from the card, copy and compare MOs;
//!   `provisioning::watch` (feature `pcsc`) follows a reader, refreshing as cards come and go;
//! - [`bootstrap`]: HTTP bootstrap packets verified with the card's key, then applied;
//!   [`bootstrap::wbxml`] (WBXML decoding) and [`bootstrap::syncml`] (OMA DM bootstrap messages);
//! - [`firmware`]: firmware approval by the card (package hash, approval files, the decision);
//!   [`firmware::mcuboot`] checks MCUboot images while the package streams;
//! - [`policy`]: the portable enterprise policy (signed policy on the card, enforcement engine);
//! - [`ota`]: over-the-air updates relayed by the device (a precomputed SCP03 script);
//! - [`governance`]: ACLs, authority key sets (PUT KEY), failure limit, audit filters and events;
//! - [`fleet`]: many cards at once: listing, profiles, provisioning, all-or-nothing ACL grants;
//!   [`fleet::diversify`] (per-card keys from master keys, SP 800-108 KDF with AES-CMAC),
//!   [`fleet::hsm`] (master keys in a PKCS#11 token; feature `hsm`) and
//!   [`fleet::records`] (provisioning records: one claim per card per job, every
//!   attempt recorded; feature `records`);
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
pub mod card_keys;
pub mod device_tree;
pub mod error;
pub mod files;
pub mod firmware;
pub mod fleet;
pub mod governance;
pub mod mo;
pub mod ota;
pub mod p256_keys;
pub mod policy;
pub mod provisioning;
pub mod session;
pub mod transport;
pub mod uicc;

pub use error::{HostError, Status};
pub use governance::{AuditFilter, AuditWatcher, AuthorityEntry, Governance};
pub use session::scp::{open_secure_channel, AuthorityKeySet, ChannelInfo};
pub use session::secure::{SecureMessaging, SmError};
pub use session::trace::{Direction, TraceEvent, TraceHook};
pub use session::{ApduLimits, CardCommands, ExclusiveSession, PinStatus, Session};
#[cfg(feature = "pcsc")]
pub use transport::pcsc::{PcscCard, PcscContext};
pub use transport::{
    find_reader, with_exclusive, ReaderEvent, ReaderInfo, Transport, TransportError,
};
