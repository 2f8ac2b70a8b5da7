//! The applet: `process(command) -> response` over persistent memory.
//!
//! Two layers, split where apdu-dispatch splits a card:
//!
//! - `io` sees the raw APDUs: the class byte and logical
//!   channels, GET RESPONSE and Le, SELECT, SCP03 secure messaging (opening a
//!   session, unwrapping commands, wrapping responses) and command chaining.
//!   It hands `Card::dispatch` one whole, verified [`Request`].
//! - Below it, one module per group of commands, each seeing only requests:
//!   `objects` (GET DATA, PUT DATA, DELETE), `pin` (VERIFY, CHANGE REFERENCE
//!   DATA, RESET RETRY COUNTER), `bootstrap` (bootstrap MACs), `approval`
//!   (signatures, CHECK APPROVAL, CONFIRM INSTALLED), `keys` (SCP03
//!   authentication, PUT KEY, the identity key) and `audit`. They share
//!   `rights` (principals, rights, refusals) and `Card::commit`.
//!
//! `init` personalises a new card and powers one up from its store.
//!
//! Each state-changing command works on a copy of the state and ends with one
//! transaction that writes exactly the records that changed; the RAM mirror is
//! replaced only after the store confirms the commit. VERIFY, CHANGE REFERENCE
//! DATA and RESET RETRY COUNTER commit the decremented try counter first and
//! compare afterwards, so a power cut can never give a try back; everything
//! else such a command changes (counter restored, new PIN, audit) is its
//! second and last transaction.

mod approval;
mod audit;
mod bootstrap;
mod init;
mod io;
mod keys;
mod objects;
mod pin;
mod rights;

pub use io::MAX_CHAINED_DATA;

use alloc::string::String;
use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::{Request, DEFAULT_FAILURE_LIMIT};
use dmsc_card_model::scp03::{InitializeUpdateResponse, SecureChannel};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::state::{State, DEFAULT_CAPACITY};
use crate::store::{PersistentMemory, Records, StoreError};

/// The card's answer to reset: T=1 only (TD1 = `01`), historical bytes "dmsc-sim",
/// and the check byte TCK.
pub const ATR: [u8; 12] = atr();

const fn atr() -> [u8; 12] {
    let mut a = [
        0x3B, 0x88, 0x01, b'd', b'm', b's', b'c', b'-', b's', b'i', b'm', 0,
    ];
    let mut tck = 0u8;
    let mut i = 1;
    while i < 11 {
        tck ^= a[i];
        i += 1;
    }
    a[11] = tck;
    a
}

/// Prefix of what INTERNAL AUTHENTICATE signs, so the identity key never signs
/// bytes that could mean something else (an approval statement, a policy).
pub const INTERNAL_AUTHENTICATE_PREFIX: &[u8] = b"dmsc-internal-authenticate/1\n";

/// An authority key set given at initialisation.
pub struct AuthorityKeys {
    /// The key set's key version (01 to FE).
    pub key_version: u8,
    /// The authority's name.
    pub name: String,
    /// The static ENC key (16, 24 or 32 bytes).
    pub enc: Zeroizing<Vec<u8>>,
    /// The static MAC key (same length as ENC).
    pub mac: Zeroizing<Vec<u8>>,
    /// The static DEK (same length as ENC).
    pub dek: Zeroizing<Vec<u8>>,
}

/// Personalisation of a new card.
pub struct InitParams {
    /// Wiped when the parameters are dropped.
    pub pin: Zeroizing<Vec<u8>>,
    /// Wiped when the parameters are dropped.
    pub puk: Zeroizing<Vec<u8>>,
    /// Tries of the user PIN (1 to 15).
    pub pin_tries: u8,
    /// Tries of the PUK (1 to 15).
    pub puk_tries: u8,
    /// Object storage in bytes.
    pub capacity: u32,
    /// Consecutive authorisation failures per principal before an alarm (at least 4).
    pub failure_limit: u8,
    /// Use 16-byte SCP03 challenges, cryptograms and MACs.
    pub scp_s16: bool,
    /// At least one; the first is the card's initial administrator.
    pub authorities: Vec<AuthorityKeys>,
}

impl InitParams {
    /// Defaults: PIN `123456`, PUK `12345678`, 3 and 10 tries, 256 KiB, limit 4, S8.
    pub fn with_authorities(authorities: Vec<AuthorityKeys>) -> Self {
        InitParams {
            pin: Zeroizing::new(b"123456".to_vec()),
            puk: Zeroizing::new(b"12345678".to_vec()),
            pin_tries: 3,
            puk_tries: 10,
            capacity: DEFAULT_CAPACITY,
            failure_limit: DEFAULT_FAILURE_LIMIT,
            scp_s16: false,
            authorities,
        }
    }
}

/// Why a card could not be initialised or powered up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardError {
    /// The store failed.
    Store(StoreError),
    /// An initialisation parameter is out of range; the text says which.
    InvalidParameter(&'static str),
}

impl core::fmt::Display for CardError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CardError::Store(e) => write!(f, "{e}"),
            CardError::InvalidParameter(p) => write!(f, "invalid card parameter: {p}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CardError {}

impl From<StoreError> for CardError {
    fn from(e: StoreError) -> Self {
        CardError::Store(e)
    }
}

#[derive(Clone)]
struct PendingAuth {
    key_version: u8,
    /// The sequence counter value the session uses, committed only by a
    /// successful EXTERNAL AUTHENTICATE.
    counter: u32,
    host_challenge: Vec<u8>,
    response: InitializeUpdateResponse,
}

#[derive(Clone)]
struct ScpSession {
    authority: String,
    /// The key version whose keys opened the session (its DEK protects PUT KEY).
    key_version: u8,
    channel: SecureChannel,
}

#[derive(Clone)]
struct Chain {
    header: (u8, u8, u8, u8),
    /// The authority whose secure messaging protected the first link, if any:
    /// every link of a chain must come under the same protection.
    authority: Option<String>,
    data: Vec<u8>,
}

/// What lives only until reset, power-off or deselect.
#[derive(Default, Clone)]
struct Volatile {
    selected: bool,
    pin_verified: bool,
    session_id: u32,
    pending_auth: Option<PendingAuth>,
    scp: Option<ScpSession>,
    mac_key: Option<u8>,
    chain: Option<Chain>,
    /// Response bytes not yet fetched by GET RESPONSE.
    outgoing: Vec<u8>,
    /// The SCP03 security level that protected the command being processed (0: plain).
    command_level: u8,
}

/// Earlier behaviours of the card that attacks defeated (issue 11), which a
/// card built with the `regressions` feature can be switched back to with
#[cfg_attr(feature = "regressions", doc = "[`Card::reintroduce`].")]
#[cfg_attr(not(feature = "regressions"), doc = "`Card::reintroduce`.")]
/// They exist so that the attack tests can show, on the real card, that they
/// catch each one. Never enable the feature in a card that holds anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regression {
    /// One flat ring of 256 records, nothing aggregated: a flood of refused
    /// CHECK APPROVALs evicts alarms.
    FlatAuditRing,
    /// A verified bootstrap MAC clears the caller's failure count.
    BootstrapClearsFailures,
    /// INITIALIZE UPDATE spends a sequence counter value by itself.
    CounterSpentByInitializeUpdate,
    /// CHECK APPROVAL reports a floor (and its value) to callers without Get on it.
    FloorToAnyone,
    /// PUT DATA stores an MO record whose root lies inside or above another
    /// record's: one node held by two records, as on cards written before
    /// the rule.
    MoOverlapAccepted,
}

#[derive(Debug, Clone, Copy, Default)]
struct Regressions(u8);

impl Regressions {
    fn has(self, r: Regression) -> bool {
        cfg!(feature = "regressions") && self.0 & (1 << r as u8) != 0
    }
}

/// The simulated DM smart card.
///
/// A clone is the same card at the same moment, store and volatile state
/// (an open SCP03 session included) copied: for tests and fuzzing that start
/// many runs from one prepared card.
#[derive(Clone)]
pub struct Card<S: PersistentMemory, R: RngCore + CryptoRng> {
    store: S,
    rng: R,
    state: State,
    records: Records,
    volatile: Volatile,
    /// Set when a persistent write failed: the card answers nothing until powered up again.
    mute: bool,
    regressions: Regressions,
}

type Outcome = Result<Vec<u8>, Status>;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// The answer to reset.
    pub fn atr(&self) -> &'static [u8] {
        &ATR
    }

    /// Warm reset or power cycle: every volatile state is lost.
    pub fn reset(&mut self) {
        let session_id = self.volatile.session_id.wrapping_add(1);
        self.volatile = Volatile {
            session_id,
            ..Volatile::default()
        };
    }

    /// Switches the card back to an earlier, broken behaviour until it is
    /// powered up again (see [`Regression`]). For self-tests only.
    #[cfg(feature = "regressions")]
    pub fn reintroduce(&mut self, regression: Regression) {
        self.regressions.0 |= 1 << regression as u8;
        if regression == Regression::FlatAuditRing {
            self.state.flat_audit_ring = true;
        }
    }

    /// Whether a persistent write failed and the card stopped answering.
    pub fn is_mute(&self) -> bool {
        self.mute
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back (e.g. to power the card up again after a cut).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The committed records, exactly as the store holds them.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The card ID.
    pub fn card_id(&self) -> [u8; 16] {
        self.state.card_id
    }

    /// The generation counter.
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Tries left of the user PIN and the PUK.
    pub fn pin_tries(&self) -> (u8, u8) {
        (self.state.pin.tries_left, self.state.puk.tries_left)
    }

    /// Writes the records that differ between the current and the next state in one
    /// transaction; only then does the next state become current.
    pub(super) fn commit(&mut self, mut next: State) -> Result<(), Status> {
        if self.state.content_differs(&next) {
            next.generation = self.state.generation.wrapping_add(1);
        }
        let records = next.to_records();
        let result = (|| {
            self.store.begin()?;
            for (k, v) in &records {
                if self.records.get(k) != Some(v) {
                    self.store.write(k, v)?;
                }
            }
            for k in self.records.keys() {
                if !records.contains_key(k) {
                    self.store.remove(k)?;
                }
            }
            self.store.commit()
        })();
        match result {
            Ok(()) => {
                self.state = next;
                self.records = records;
                Ok(())
            }
            Err(_) => {
                self.store.abort();
                self.mute = true;
                Err(Status::MemoryFailure)
            }
        }
    }

    /// Routes one whole, verified request to its group's handler. SELECT and
    /// GET RESPONSE never get here as requests: the I/O layer answers them.
    pub(super) fn dispatch(&mut self, req: Request) -> Outcome {
        match req {
            Request::Select { .. } | Request::GetResponse { .. } => {
                Err(Status::ConditionsOfUseNotSatisfied)
            }
            Request::ReadObject { object, audit_from } => self.read_object(object, audit_from),
            Request::ListObjects { kind } => self.list(kind),
            Request::ReadAllObjects { kind } => self.read_all(kind),
            Request::PutObject { object, value, acl } => self.put_object(object, value, acl),
            Request::SetAcl { object, acl } => self.set_acl(object, acl),
            Request::DeleteObject { object } => self.delete(object),
            Request::Verify { reference, pin } => self.verify(reference, pin),
            Request::ChangePin { old, new } => self.change_pin(old, new, false),
            Request::ResetRetryCounter { puk, new } => self.change_pin(puk, new, true),
            Request::GetChallenge { len } => self.get_challenge(len),
            Request::InternalAuthenticate { challenge } => self.internal_authenticate(&challenge),
            Request::SelectMacKey { key_id } => self.select_mac_key(key_id),
            Request::VerifyMac { data, mac } => self.verify_mac(&data, &mac),
            Request::VerifySignature {
                approver,
                data,
                signature,
            } => self.verify_signature(approver, &data, &signature),
            Request::CheckApproval { package, approvals } => {
                self.check_approval(package, approvals)
            }
            Request::ConfirmInstalled { package } => self.confirm_installed(package),
            Request::PutKey(p) => self.put_key(p),
        }
    }
}
