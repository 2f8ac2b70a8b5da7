//! The applet: `process(command) -> response` over persistent memory.
//!
//! Each state-changing command works on a copy of the state and ends with one
//! transaction that writes exactly the records that changed; the RAM mirror is
//! replaced only after the store confirms the commit. VERIFY, CHANGE REFERENCE
//! DATA and RESET RETRY COUNTER commit the decremented try counter first and
//! compare afterwards, so a power cut can never give a try back; everything
//! else such a command changes (counter restored, new PIN, audit) is its
//! second and last transaction.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dmsc_card_model::apdu::{
    ApduError, Command, Response, Status, CLA_CHAINING, EXTENDED_MAX_NC, EXTENDED_MAX_NE,
};
use dmsc_card_model::commands::{
    algorithms, ins, ApprovalVerdict, AuditEvent, AuthorityInfo, CardConfig, DecodeError,
    ListEntry, ObjectData, ObjectValue, PackageId, Pin, RefusalReason, Request, SelectInfo, AID,
    APPLET_VERSION, CLA_PROPRIETARY, CLA_SECURE_MESSAGING, DEFAULT_FAILURE_LIMIT,
    MIN_FAILURE_LIMIT, PIN_REF_PUK, PIN_REF_USER,
};
use dmsc_card_model::objects::{Acl, ObjectKind, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::{self, InitializeUpdateResponse, SecureChannel, StaticKeys};
use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto;
use crate::state::{default_acl, Authority, Record, Secret, State, Stored, DEFAULT_CAPACITY};
use crate::store::{PersistentMemory, Records, StoreError};

/// Largest command data the card assembles from a chain.
pub const MAX_CHAINED_DATA: usize = 128 * 1024;

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
    pub key_version: u8,
    pub name: String,
    pub enc: Zeroizing<Vec<u8>>,
    pub mac: Zeroizing<Vec<u8>>,
    pub dek: Zeroizing<Vec<u8>>,
}

/// Personalisation of a new card.
pub struct InitParams {
    /// Wiped when the parameters are dropped.
    pub pin: Zeroizing<Vec<u8>>,
    /// Wiped when the parameters are dropped.
    pub puk: Zeroizing<Vec<u8>>,
    pub pin_tries: u8,
    pub puk_tries: u8,
    /// Object storage in bytes.
    pub capacity: u32,
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
/// [`Card::reintroduce`]. They exist so that the attack tests can show, on
/// the real card, that they catch each one. Never enable the feature in a
/// card that holds anything.
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
    /// Personalises a new card in an empty store: random card ID and identity key,
    /// PIN/PUK, authorities, the card's root objects. One transaction.
    pub fn initialize(mut store: S, mut rng: R, params: InitParams) -> Result<Self, CardError> {
        if !store.load()?.is_empty() {
            return Err(CardError::InvalidParameter(
                "the store already holds a card",
            ));
        }
        if params.failure_limit < MIN_FAILURE_LIMIT {
            return Err(CardError::InvalidParameter("failure limit below 4"));
        }
        let pin = Pin::new(&params.pin)
            .map_err(|_| CardError::InvalidParameter("PIN must be 4 to 8 bytes"))?;
        let puk = Pin::new(&params.puk)
            .map_err(|_| CardError::InvalidParameter("PUK must be 4 to 8 bytes"))?;
        if params.pin_tries == 0
            || params.pin_tries > 15
            || params.puk_tries == 0
            || params.puk_tries > 15
        {
            return Err(CardError::InvalidParameter("tries must be 1 to 15"));
        }
        let first = params
            .authorities
            .first()
            .ok_or(CardError::InvalidParameter(
                "at least one authority key set",
            ))?;
        let admin = Principal::Authority(first.name.clone());
        let mut authorities = BTreeMap::new();
        for a in &params.authorities {
            dmsc_card_model::objects::check_name(&a.name)
                .map_err(|_| CardError::InvalidParameter("authority name"))?;
            if a.name == "user" || StaticKeys::new(&a.enc, &a.mac, &a.dek).is_err() {
                return Err(CardError::InvalidParameter(
                    "authority keys must be AES-128/192/256",
                ));
            }
            if authorities.contains_key(&a.key_version)
                || a.key_version == 0
                || a.key_version == 0xFF
            {
                return Err(CardError::InvalidParameter(
                    "key versions must be distinct, 01 to FE",
                ));
            }
            authorities.insert(
                a.key_version,
                Authority {
                    name: a.name.clone(),
                    enc: a.enc.clone(),
                    mac: a.mac.clone(),
                    dek: a.dek.clone(),
                },
            );
        }
        let mut card_id = [0u8; 16];
        rng.fill_bytes(&mut card_id);
        let mut secret = Zeroizing::new([0u8; 32]);
        let public = loop {
            rng.fill_bytes(secret.as_mut());
            if let Some(p) = crypto::public_point(&secret) {
                break p;
            }
        };
        let mut objects = BTreeMap::new();
        let mut card_acl = Acl::empty();
        for right in [Right::Get, Right::Add, Right::Replace, Right::Delete] {
            card_acl.grant(right, admin.clone());
        }
        let config = CardConfig {
            failure_limit: params.failure_limit,
            used_memory: 0,
            total_memory: 0,
        };
        objects.insert(
            ObjectRef::Card,
            Stored {
                acl: card_acl,
                value: ObjectValue::Card(config),
            },
        );
        objects.insert(
            ObjectRef::IdentityKey,
            Stored {
                acl: default_acl(ObjectKind::IdentityKey, &admin),
                value: ObjectValue::IdentityKey(public),
            },
        );
        let mut audit_acl = Acl::empty();
        for (kvn, a) in &authorities {
            audit_acl.grant(Right::Get, Principal::Authority(a.name.clone()));
            let mut acl = Acl::empty();
            acl.grant(Right::Get, admin.clone());
            acl.grant(Right::Get, Principal::Authority(a.name.clone()));
            objects.insert(
                ObjectRef::Authority(*kvn),
                Stored {
                    acl,
                    value: authority_info(a),
                },
            );
        }
        objects.insert(
            ObjectRef::AuditLog,
            Stored {
                acl: audit_acl,
                value: ObjectValue::AuditLog(Vec::new()),
            },
        );
        let mut state = State {
            card_id,
            capacity: params.capacity,
            generation: 1,
            failure_limit: params.failure_limit,
            next_audit: 1,
            scp_counter: 0,
            scp_i: scp03::I_PSEUDO_RANDOM_CHALLENGE
                | scp03::I_RMAC_SUPPORT
                | scp03::I_RENC_SUPPORT
                | if params.scp_s16 { scp03::I_S16 } else { 0 },
            identity_secret: secret,
            pin: Secret {
                value: Zeroizing::new(pin.as_bytes().to_vec()),
                tries_left: params.pin_tries,
                max_tries: params.pin_tries,
            },
            puk: Secret {
                value: Zeroizing::new(puk.as_bytes().to_vec()),
                tries_left: params.puk_tries,
                max_tries: params.puk_tries,
            },
            failures: BTreeMap::new(),
            objects,
            authorities,
            audit: BTreeMap::new(),
            approved: None,
            flat_audit_ring: false,
        };
        state.audit(
            AuditEvent::Initialised,
            admin.acl_name(),
            0,
            "card personalised",
        );
        let records = state.to_records();
        store.begin()?;
        for (k, v) in &records {
            if let Err(e) = store.write(k, v) {
                store.abort();
                return Err(e.into());
            }
        }
        store.commit()?;
        Ok(Card {
            store,
            rng,
            state,
            records,
            volatile: Volatile::default(),
            mute: false,
            regressions: Regressions::default(),
        })
    }

    /// Powers up a card from its store. A damaged state is an error, never a blank card.
    pub fn power_up(mut store: S, mut rng: R) -> Result<Self, CardError> {
        let records = store.load()?;
        if records.is_empty() {
            return Err(CardError::Store(StoreError::Corrupt(
                "the store holds no card (not initialised)".into(),
            )));
        }
        let state = State::from_records(&records)?;
        let volatile = Volatile {
            session_id: rng.next_u32() & 0x00FF_FFFF,
            ..Volatile::default()
        };
        Ok(Card {
            store,
            rng,
            state,
            records,
            volatile,
            mute: false,
            regressions: Regressions::default(),
        })
    }

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

    /// Processes one command APDU given as bytes; returns the response bytes
    /// (empty when the card is mute after a power loss).
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if self.mute {
            return Vec::new();
        }
        let response = match Command::decode(apdu) {
            Ok(cmd) => self.process_command(&cmd),
            Err(ApduError::InvalidClass) => Response::status(Status::ClassNotSupported),
            Err(_) => Response::status(Status::WrongLength),
        };
        if self.mute {
            return Vec::new();
        }
        response.to_bytes()
    }

    /// Processes one decoded command.
    pub fn process_command(&mut self, cmd: &Command) -> Response {
        if self.mute {
            return Response::status(Status::UnspecifiedPersistentExecutionError);
        }
        if let Some(refusal) = class_refusal(cmd.cla) {
            return Response::status(refusal);
        }
        let base_cla = cmd.cla & !(CLA_SECURE_MESSAGING | CLA_CHAINING);
        if base_cla == 0x00 && cmd.ins == ins::GET_RESPONSE && cmd.cla & CLA_SECURE_MESSAGING == 0 {
            return self.get_response(cmd);
        }
        self.volatile.outgoing.clear();
        let is_select = base_cla == 0x00 && cmd.ins == ins::SELECT;
        if is_select {
            let outcome = self.select(cmd);
            let rsp = self.finish(outcome, false);
            return self.limit_to_ne(rsp, cmd.le.unwrap_or(256));
        }
        if !self.volatile.selected {
            return Response::status(Status::ConditionsOfUseNotSatisfied);
        }
        let pending_auth = self.volatile.pending_auth.take();
        if base_cla == CLA_PROPRIETARY
            && cmd.ins == ins::INITIALIZE_UPDATE
            && cmd.cla & CLA_SECURE_MESSAGING == 0
        {
            self.volatile.scp = None;
            self.volatile.chain = None;
            let outcome = self.initialize_update(cmd);
            let rsp = self.finish(outcome, false);
            return self.limit_to_ne(rsp, cmd.le.unwrap_or(256));
        }
        if cmd.ins == ins::EXTERNAL_AUTHENTICATE && cmd.cla == 0x84 {
            self.volatile.chain = None;
            let outcome = self.external_authenticate(cmd, pending_auth);
            return self.finish(outcome, false);
        }
        // Secure messaging.
        let plain = if cmd.cla & CLA_SECURE_MESSAGING != 0 {
            let Some(scp) = self.volatile.scp.as_mut() else {
                return Response::status(Status::SecurityStatusNotSatisfied);
            };
            match scp.channel.unwrap_command(cmd) {
                Ok(c) => c,
                Err(_) => {
                    let name = scp.authority.clone();
                    self.volatile.scp = None;
                    self.volatile.chain = None;
                    let r = self.record_failure(
                        &name,
                        AuditEvent::AuthFailure,
                        "secure messaging check failed",
                        Record::Single,
                    );
                    return self.finish(r.and(Err(Status::SecurityStatusNotSatisfied)), false);
                }
            }
        } else {
            // A plain command ends an authority session (GlobalPlatform).
            self.volatile.scp = None;
            cmd.clone()
        };
        let secured = cmd.cla & CLA_SECURE_MESSAGING != 0;
        // Command chaining.
        let header = (plain.cla & !CLA_CHAINING, plain.ins, plain.p1, plain.p2);
        let protection = if secured {
            self.volatile.scp.as_ref().map(|s| s.authority.clone())
        } else {
            None
        };
        if let Some(chain) = self.volatile.chain.as_ref() {
            if chain.header != header || chain.authority != protection {
                self.volatile.chain = None;
                return self.finish(Err(Status::LastCommandOfChainExpected), secured);
            }
        }
        if plain.is_chained() {
            let chain = self.volatile.chain.get_or_insert_with(|| Chain {
                header,
                authority: protection,
                data: Vec::new(),
            });
            if chain.data.len() + plain.data.len() > MAX_CHAINED_DATA {
                self.volatile.chain = None;
                return self.finish(Err(Status::WrongLength), secured);
            }
            chain.data.extend_from_slice(&plain.data);
            return self.finish(Ok(Vec::new()), secured);
        }
        let full = match self.volatile.chain.take() {
            Some(mut chain) => {
                if chain.data.len() + plain.data.len() > MAX_CHAINED_DATA {
                    return self.finish(Err(Status::WrongLength), secured);
                }
                chain.data.extend_from_slice(&plain.data);
                Command {
                    cla: header.0,
                    ins: header.1,
                    p1: header.2,
                    p2: header.3,
                    data: chain.data,
                    le: plain.le,
                }
            }
            None => plain,
        };
        self.volatile.command_level = match (&protection, self.volatile.scp.as_ref()) {
            (Some(_), Some(scp)) => scp.channel.security_level().bits(),
            _ => 0,
        };
        let outcome = match Request::from_command(&full) {
            Ok(req) => self.dispatch(req),
            Err(DecodeError::UnknownCommand) => Err(unknown_status(&full)),
            Err(e) => Err(e.status()),
        };
        self.volatile.command_level = 0;
        let mut rsp = self.finish(outcome, secured);
        if let Some(ne) = full.le {
            rsp = self.limit_to_ne(rsp, ne);
        } else if !rsp.data.is_empty() {
            rsp = self.limit_to_ne(rsp, 256);
        }
        rsp
    }

    /// Builds the response, applying R-MAC/R-ENC when a session asks for it.
    fn finish(&mut self, outcome: Outcome, secured: bool) -> Response {
        let rsp = match outcome {
            Ok(data) => Response::ok(data),
            Err(status) => Response::status(status),
        };
        if self.mute {
            return Response::status(Status::UnspecifiedPersistentExecutionError);
        }
        match (secured, self.volatile.scp.as_mut()) {
            (true, Some(scp)) => scp.channel.wrap_response(&rsp),
            _ => rsp,
        }
    }

    /// Returns at most `ne` bytes now and keeps the rest for GET RESPONSE (61xx).
    fn limit_to_ne(&mut self, mut rsp: Response, ne: usize) -> Response {
        let ne = ne.min(EXTENDED_MAX_NE);
        if rsp.data.len() <= ne {
            return rsp;
        }
        let rest = rsp.data.split_off(ne);
        let remaining = rest.len();
        self.volatile.outgoing = rest;
        rsp.sw = more_available(remaining);
        rsp
    }

    fn get_response(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 || !cmd.data.is_empty() {
            return Response::status(Status::IncorrectP1OrP2Parameter);
        }
        if self.volatile.outgoing.is_empty() {
            return Response::status(Status::ConditionsOfUseNotSatisfied);
        }
        let ne = cmd.le.unwrap_or(256);
        let mut data = core::mem::take(&mut self.volatile.outgoing);
        let rest = if data.len() > ne {
            data.split_off(ne)
        } else {
            Vec::new()
        };
        let remaining = rest.len();
        self.volatile.outgoing = rest;
        Response {
            data,
            sw: if remaining == 0 {
                0x9000
            } else {
                more_available(remaining)
            },
        }
    }

    // ---- principals and rights -------------------------------------------

    fn caller(&self) -> Vec<Principal> {
        let mut p = alloc::vec![Principal::Anyone];
        if self.volatile.pin_verified {
            p.push(Principal::User);
        }
        if let Some(scp) = &self.volatile.scp {
            p.push(Principal::Authority(scp.authority.clone()));
        }
        p
    }

    /// The principal failures are counted against: the authority, else the user, else `*`.
    fn acting(&self) -> String {
        if let Some(scp) = &self.volatile.scp {
            return scp.authority.clone();
        }
        if self.volatile.pin_verified {
            "user".into()
        } else {
            "*".into()
        }
    }

    fn holds(&self, object: &ObjectRef, right: Right) -> bool {
        self.state
            .objects
            .get(object)
            .is_some_and(|o| o.acl.allows(&self.caller(), right))
    }

    /// Counts a rights failure (persisted) and answers 6982.
    fn deny(&mut self, object: &ObjectRef, right: Right) -> Outcome {
        let who = self.acting();
        let detail = alloc::format!("{right} on {object}");
        let how = self.record_kind();
        self.record_failure(&who, AuditEvent::AccessDenied, &detail, how)?;
        Err(Status::SecurityStatusNotSatisfied)
    }

    /// How the current command's records enter the audit log: aggregated
    /// when no SCP03 session is open (see `State::audit_as`).
    fn record_kind(&self) -> Record {
        if self.volatile.scp.is_some() {
            Record::Single
        } else {
            Record::Aggregated
        }
    }

    /// Persists an authorisation failure of `who`, its audit record and any alarm.
    fn record_failure(
        &mut self,
        who: &str,
        event: AuditEvent,
        detail: &str,
        how: Record,
    ) -> Result<(), Status> {
        let mut next = self.state.clone();
        let session = self.volatile.session_id;
        next.audit_as(how, event, who, session, detail);
        next.count_failure(who, session, how);
        self.commit(next)
    }

    /// Checks that the caller may use `right` on `object`; for a missing object,
    /// answers "not found" only to callers who may read the card's directory, so
    /// an unauthorised caller cannot tell a protected object from a missing one.
    fn require(&mut self, object: &ObjectRef, right: Right) -> Result<(), Status> {
        if self.state.objects.contains_key(object) {
            if self.holds(object, right) {
                return Ok(());
            }
            return self.deny(object, right).map(|_| ());
        }
        if self.holds(&ObjectRef::Card, Right::Get) {
            return Err(Status::KeyReferenceNotFound);
        }
        self.deny(object, right).map(|_| ())
    }

    /// Rights on an authority's key set: the right on its object, the same
    /// right on the card object (the card's administrators), or — for Replace —
    /// being that authority (an authority may rotate its own keys).
    fn require_authority_right(&mut self, kvn: u8, right: Right) -> Result<(), Status> {
        let object = ObjectRef::Authority(kvn);
        let own = right == Right::Replace
            && self.volatile.scp.as_ref().is_some_and(|s| {
                self.state
                    .authorities
                    .get(&kvn)
                    .is_some_and(|a| a.name == s.authority)
            });
        if self.state.objects.contains_key(&object) && (own || self.holds(&ObjectRef::Card, right))
        {
            return Ok(());
        }
        self.require(&object, right)
    }

    // ---- persistence -------------------------------------------------------

    /// Writes the records that differ between the current and the next state in one
    /// transaction; only then does the next state become current.
    fn commit(&mut self, mut next: State) -> Result<(), Status> {
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

    // ---- commands ------------------------------------------------------------

    fn select(&mut self, cmd: &Command) -> Outcome {
        // Deselect: every volatile right is lost, whatever was asked for.
        self.reset();
        if cmd.p1 != 0x04 || cmd.p2 != 0x00 {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        if cmd.data.as_slice() != AID {
            return Err(Status::NotFound);
        }
        self.volatile.selected = true;
        Ok(self.select_info().encode())
    }

    fn select_info(&self) -> SelectInfo {
        let used = self.state.used_memory();
        SelectInfo {
            card_id: self.state.card_id,
            applet_version: APPLET_VERSION,
            generation: self.state.generation,
            max_command: EXTENDED_MAX_NC as u32,
            max_response: EXTENDED_MAX_NE as u32,
            extended_length: true,
            algorithms: algorithms::AES_CMAC
                | algorithms::HMAC_SHA256
                | algorithms::HMAC_SHA1
                | algorithms::ECDSA_P256_SHA256
                | algorithms::SCP03_AES128
                | algorithms::SCP03_AES192
                | algorithms::SCP03_AES256
                | algorithms::SCP03_S16,
            free_memory: self.state.capacity.saturating_sub(used),
            total_memory: self.state.capacity,
            scp_i: self.state.scp_i,
        }
    }

    fn dispatch(&mut self, req: Request) -> Outcome {
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
            Request::GetChallenge { len } => {
                if len == 0 || len > 256 {
                    return Err(Status::WrongLength);
                }
                let mut c = alloc::vec![0u8; len];
                self.rng.fill_bytes(&mut c);
                Ok(c)
            }
            Request::InternalAuthenticate { challenge } => {
                self.require(&ObjectRef::IdentityKey, Right::Exec)?;
                let message = [INTERNAL_AUTHENTICATE_PREFIX, challenge.as_slice()].concat();
                crypto::sign(&self.state.identity_secret, &message)
                    .ok_or(Status::UnspecifiedCheckingError)
            }
            Request::SelectMacKey { key_id } => {
                self.require(&ObjectRef::BootstrapKey(key_id), Right::Exec)?;
                self.volatile.mac_key = Some(key_id);
                Ok(Vec::new())
            }
            Request::VerifyMac { data, mac } => self.verify_mac(&data, &mac),
            Request::VerifySignature {
                approver,
                data,
                signature,
            } => {
                let object = ObjectRef::Approver(approver);
                self.require(&object, Right::Exec)?;
                let key = match self.state.objects.get(&object).map(|o| &o.value) {
                    Some(ObjectValue::Approver(k)) => k.clone(),
                    _ => return Err(Status::KeyReferenceNotFound),
                };
                if crypto::verify_ecdsa(&key, &data, &signature) {
                    Ok(Vec::new())
                } else {
                    Err(Status::VerificationFailed)
                }
            }
            Request::CheckApproval { package, approvals } => {
                self.check_approval(package, approvals)
            }
            Request::ConfirmInstalled { package } => self.confirm_installed(package),
            Request::PutKey(p) => self.put_key(p),
        }
    }

    fn read_object(&mut self, object: ObjectRef, audit_from: Option<u32>) -> Outcome {
        self.require(&object, Right::Get)?;
        let stored = self
            .state
            .objects
            .get(&object)
            .ok_or(Status::KeyReferenceNotFound)?;
        let value = match (&object, &stored.value) {
            (ObjectRef::Card, _) => ObjectValue::Card(CardConfig {
                failure_limit: self.state.failure_limit,
                used_memory: self.state.used_memory(),
                total_memory: self.state.capacity,
            }),
            (ObjectRef::BootstrapKey(_), ObjectValue::BootstrapKey(k)) => {
                ObjectValue::BootstrapKey(dmsc_card_model::commands::BootstrapKeyValue {
                    algorithm: k.algorithm,
                    key: None,
                })
            }
            (ObjectRef::AuditLog, _) => {
                let from = audit_from.unwrap_or(0);
                // Newest entries that fit one extended response.
                let mut entries: Vec<_> = self
                    .state
                    .audit
                    .range(from..)
                    .map(|(_, e)| e.clone())
                    .collect();
                let mut size: usize = entries.iter().map(|e| e.encode().len() + 4).sum();
                while size > 60_000 && !entries.is_empty() {
                    size -= entries[0].encode().len() + 4;
                    entries.remove(0);
                }
                ObjectValue::AuditLog(entries)
            }
            (ObjectRef::Authority(kvn), _) => {
                let a = self
                    .state
                    .authorities
                    .get(kvn)
                    .ok_or(Status::KeyReferenceNotFound)?;
                authority_info(a)
            }
            (_, v) => v.clone(),
        };
        Ok(ObjectData {
            value,
            acl: stored.acl.clone(),
        }
        .encode())
    }

    fn list(&mut self, kind: ObjectKind) -> Outcome {
        let caller = self.caller();
        let entries: Vec<ListEntry> = self
            .state
            .objects
            .iter()
            .filter(|(r, o)| r.kind() == kind && o.acl.allows(&caller, Right::Get))
            .map(|(r, o)| ListEntry {
                object: r.clone(),
                size: o.value.encode().len() as u32,
            })
            .collect();
        Ok(dmsc_card_model::commands::encode_list(&entries))
    }

    /// Every object of `kind` the caller holds Get on, with value and ACL
    /// (MOs only: the request decoder accepts no other kind).
    fn read_all(&mut self, kind: ObjectKind) -> Outcome {
        let caller = self.caller();
        let records: Vec<dmsc_card_model::commands::ObjectRecord> = self
            .state
            .objects
            .iter()
            .filter(|(r, o)| r.kind() == kind && o.acl.allows(&caller, Right::Get))
            .map(|(r, o)| dmsc_card_model::commands::ObjectRecord {
                object: r.clone(),
                data: dmsc_card_model::commands::ObjectData {
                    value: o.value.clone(),
                    acl: o.acl.clone(),
                },
            })
            .collect();
        Ok(dmsc_card_model::commands::encode_records(&records))
    }

    fn put_object(&mut self, object: ObjectRef, value: ObjectValue, acl: Option<Acl>) -> Outcome {
        let exists = self.state.objects.contains_key(&object);
        if exists {
            if !self.holds(&object, Right::Replace) {
                return self.deny(&object, Right::Replace);
            }
        } else if !self.holds(&ObjectRef::Card, Right::Add) {
            return self.deny(&object, Right::Add);
        }
        if value.kind() != object.kind() {
            return Err(Status::IncorrectDataParameter);
        }
        // Secret key material travels only under C-DECRYPTION.
        if matches!(value, ObjectValue::BootstrapKey(_))
            && self.volatile.command_level & scp03::SecurityLevel::C_DECRYPTION == 0
        {
            return self.deny(&object, Right::Replace);
        }
        let session = self.volatile.session_id;
        let who = self.acting();
        let mut next = self.state.clone();
        let mut event = if exists {
            AuditEvent::ObjectChanged
        } else {
            AuditEvent::ObjectCreated
        };
        let value = match (&object, value) {
            (ObjectRef::IdentityKey | ObjectRef::AuditLog | ObjectRef::Authority(_), _) => {
                return Err(Status::ConditionsOfUseNotSatisfied)
            }
            (ObjectRef::Card, ObjectValue::Card(c)) => {
                if c.failure_limit < MIN_FAILURE_LIMIT {
                    return Err(Status::IncorrectDataParameter);
                }
                next.failure_limit = c.failure_limit;
                event = AuditEvent::ConfigChanged;
                ObjectValue::Card(CardConfig {
                    failure_limit: c.failure_limit,
                    used_memory: 0,
                    total_memory: 0,
                })
            }
            (ObjectRef::BootstrapKey(_), ObjectValue::BootstrapKey(k)) => {
                if k.key.is_none() {
                    return Err(Status::IncorrectDataParameter);
                }
                ObjectValue::BootstrapKey(k)
            }
            (ObjectRef::Approver(_), ObjectValue::Approver(p)) => {
                if p256::PublicKey::from_sec1_bytes(&p).is_err() {
                    return Err(Status::IncorrectDataParameter);
                }
                ObjectValue::Approver(p)
            }
            (ObjectRef::Mo(_), ObjectValue::Mo(mut m)) => {
                m.version = match next.objects.get(&object).map(|o| &o.value) {
                    Some(ObjectValue::Mo(old)) => old.version.wrapping_add(1),
                    _ => 1,
                };
                ObjectValue::Mo(m)
            }
            (_, v) => v,
        };
        let acl = match (acl, next.objects.get(&object)) {
            (Some(acl), _) => acl,
            (None, Some(old)) => old.acl.clone(),
            (None, None) => {
                let creator = Principal::parse(&who).unwrap_or(Principal::Anyone);
                default_acl(object.kind(), &creator)
            }
        };
        next.objects.insert(object.clone(), Stored { acl, value });
        if next.used_memory() > next.capacity {
            return Err(Status::NotEnoughMemory);
        }
        next.audit(event, &who, session, object.to_string());
        self.commit(next)?;
        Ok(Vec::new())
    }

    fn set_acl(&mut self, object: ObjectRef, acl: Acl) -> Outcome {
        self.require(&object, Right::Replace)?;
        let who = self.acting();
        let mut next = self.state.clone();
        if let Some(o) = next.objects.get_mut(&object) {
            o.acl = acl.clone();
        }
        // ACL text is stored with the object and counts as used memory.
        if next.used_memory() > next.capacity {
            return Err(Status::NotEnoughMemory);
        }
        next.audit(
            AuditEvent::AclChanged,
            &who,
            self.volatile.session_id,
            alloc::format!("{object} {acl}"),
        );
        self.commit(next)?;
        Ok(Vec::new())
    }

    fn delete(&mut self, object: ObjectRef) -> Outcome {
        match &object {
            ObjectRef::Authority(kvn) => self.require_authority_right(*kvn, Right::Delete)?,
            _ => self.require(&object, Right::Delete)?,
        }
        if matches!(
            object,
            ObjectRef::Card | ObjectRef::IdentityKey | ObjectRef::AuditLog
        ) {
            return Err(Status::ConditionsOfUseNotSatisfied);
        }
        let who = self.acting();
        let mut next = self.state.clone();
        let mut event = AuditEvent::ObjectDeleted;
        if let ObjectRef::Authority(kvn) = &object {
            // The card never loses its last way in.
            if next.authorities.len() <= 1 {
                return Err(Status::ConditionsOfUseNotSatisfied);
            }
            next.authorities.remove(kvn);
            event = AuditEvent::AuthorityRemoved;
        }
        next.objects.remove(&object);
        next.audit(event, &who, self.volatile.session_id, object.to_string());
        self.commit(next)?;
        Ok(Vec::new())
    }

    fn verify(&mut self, reference: u8, pin: Option<Pin>) -> Outcome {
        let secret = if reference == PIN_REF_PUK {
            &self.state.puk
        } else {
            &self.state.pin
        };
        let Some(pin) = pin else {
            // Tries left, or 9000 when already verified in this session.
            if reference == PIN_REF_USER && self.volatile.pin_verified {
                return Ok(Vec::new());
            }
            return Err(tries_status(secret.tries_left));
        };
        if reference != PIN_REF_USER {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        self.volatile.pin_verified = false;
        let next = self.consume_try_and_compare(false, &pin)?;
        self.commit(next)?;
        self.volatile.pin_verified = true;
        Ok(Vec::new())
    }

    /// Decrements and commits the try counter, then compares in constant time.
    /// On a match returns the next state, not yet committed: counter restored,
    /// failures cleared, success audited; the caller adds what the command
    /// changes and commits it all in the command's second (and last)
    /// transaction. On a mismatch the failure is counted, audited and committed.
    fn consume_try_and_compare(&mut self, puk: bool, given: &Pin) -> Result<State, Status> {
        let secret = if puk {
            &self.state.puk
        } else {
            &self.state.pin
        };
        if secret.tries_left == 0 {
            return Err(Status::OperationBlocked);
        }
        let mut next = self.state.clone();
        let counter = if puk { &mut next.puk } else { &mut next.pin };
        counter.tries_left -= 1;
        self.commit(next)?;
        let secret = if puk {
            &self.state.puk
        } else {
            &self.state.pin
        };
        let stored_block = Pin::new(&secret.value).map(|p| p.block());
        let matches =
            stored_block.is_ok_and(|b| bool::from(b.as_slice().ct_eq(given.block().as_slice())));
        let session = self.volatile.session_id;
        let how = self.record_kind();
        let mut next = self.state.clone();
        let label = if puk { "PUK" } else { "PIN" };
        if matches {
            let counter = if puk { &mut next.puk } else { &mut next.pin };
            counter.tries_left = counter.max_tries;
            next.clear_failures("user");
            next.audit_as(
                how,
                AuditEvent::AuthSuccess,
                "user",
                session,
                alloc::format!("{label} verified"),
            );
            Ok(next)
        } else {
            let left = if puk {
                next.puk.tries_left
            } else {
                next.pin.tries_left
            };
            next.audit_as(
                how,
                AuditEvent::AuthFailure,
                "user",
                session,
                alloc::format!("wrong {label}, {left} tries left"),
            );
            next.count_failure("user", session, how);
            self.commit(next)?;
            Err(tries_status(left))
        }
    }

    fn change_pin(&mut self, check: Pin, new: Pin, with_puk: bool) -> Outcome {
        self.volatile.pin_verified = false;
        let mut next = self.consume_try_and_compare(with_puk, &check)?;
        next.pin.value = Zeroizing::new(new.as_bytes().to_vec());
        next.pin.tries_left = next.pin.max_tries;
        let event = if with_puk {
            AuditEvent::PinUnblocked
        } else {
            AuditEvent::PinChanged
        };
        next.audit(event, "user", self.volatile.session_id, "user PIN");
        self.commit(next)?;
        self.volatile.pin_verified = true;
        Ok(Vec::new())
    }

    fn verify_mac(&mut self, data: &[u8], mac: &[u8]) -> Outcome {
        let key_id = self
            .volatile
            .mac_key
            .ok_or(Status::ConditionsOfUseNotSatisfied)?;
        let object = ObjectRef::BootstrapKey(key_id);
        self.require(&object, Right::Exec)?;
        let Some(ObjectValue::BootstrapKey(k)) = self.state.objects.get(&object).map(|o| &o.value)
        else {
            return Err(Status::KeyReferenceNotFound);
        };
        if mac.len() != k.algorithm.mac_len() {
            return Err(Status::WrongLength);
        }
        let key = k.key.clone().unwrap_or_default();
        let ok = crypto::verify_mac(k.algorithm, &key, data, mac);
        let who = self.acting();
        let session = self.volatile.session_id;
        let mut next = self.state.clone();
        let detail = alloc::format!("key {key_id}, {} bytes", data.len());
        let how = self.record_kind();
        // A verified MAC proves nothing about the caller (the packet may be a
        // replay): it clears no failure count.
        if ok {
            if self.regressions.has(Regression::BootstrapClearsFailures) {
                next.failures.remove(&who);
            }
            next.audit_as(how, AuditEvent::BootstrapVerified, &who, session, detail);
            self.commit(next)?;
            Ok(Vec::new())
        } else {
            next.audit_as(how, AuditEvent::BootstrapRejected, &who, session, detail);
            next.count_failure(&who, session, how);
            self.commit(next)?;
            Err(Status::VerificationFailed)
        }
    }

    fn check_approval(
        &mut self,
        package: PackageId,
        approvals: Vec<dmsc_card_model::commands::Approval>,
    ) -> Outcome {
        if !self.state.objects.contains_key(&ObjectRef::ApprovalRule) {
            let verdict = ApprovalVerdict {
                approved: false,
                reasons: alloc::vec![RefusalReason::NoRule],
                user_consent_needs_pin: false,
            };
            return Ok(verdict.encode());
        }
        self.require(&ObjectRef::ApprovalRule, Right::Exec)?;
        let Some(ObjectValue::ApprovalRule(rule)) = self
            .state
            .objects
            .get(&ObjectRef::ApprovalRule)
            .map(|o| &o.value)
        else {
            return Err(Status::KeyReferenceNotFound);
        };
        let rule = rule.clone();
        let mut reasons = Vec::new();
        if rule.required.is_empty() {
            reasons.push(RefusalReason::NoRule);
        }
        let mut valid: Vec<String> = Vec::new();
        for a in &approvals {
            let key = match self
                .state
                .objects
                .get(&ObjectRef::Approver(a.approver.clone()))
                .map(|o| &o.value)
            {
                Some(ObjectValue::Approver(k)) => k,
                _ => {
                    reasons.push(RefusalReason::UnknownApprover(a.approver.clone()));
                    continue;
                }
            };
            let statement = package.statement(&a.approver).to_signed_bytes();
            if crypto::verify_ecdsa(key, &statement, &a.signature) {
                valid.push(a.approver.clone());
            } else {
                reasons.push(RefusalReason::BadSignature(a.approver.clone()));
            }
        }
        for name in &rule.required {
            if !valid.contains(name)
                && !reasons
                    .iter()
                    .any(|r| matches!(r, RefusalReason::BadSignature(n) if n == name))
            {
                reasons.push(RefusalReason::MissingApprover(name.clone()));
            }
        }
        // Approvals from outside the rule (unknown or not verifying) do not block an
        // otherwise complete approval.
        reasons.retain(|r| match r {
            RefusalReason::UnknownApprover(n) | RefusalReason::BadSignature(n) => {
                rule.required.contains(n)
            }
            _ => true,
        });
        // The floor still decides, but only a caller that may read it is told
        // why: for any other caller the verdict must be the one a card without
        // that floor would give, except that a package below it is never
        // approved. Refused for other reasons, the floor adds nothing; refused
        // for the floor alone, the verdict says "not approved" with no reason.
        let floor_ref = ObjectRef::Floor(package.device_class.clone());
        let mut below_hidden_floor = false;
        if let Some(ObjectValue::Floor(floor)) =
            self.state.objects.get(&floor_ref).map(|o| &o.value)
        {
            if package.version < *floor {
                if self.holds(&floor_ref, Right::Get)
                    || self.regressions.has(Regression::FloorToAnyone)
                {
                    reasons.push(RefusalReason::BelowFloor(floor.clone()));
                } else {
                    below_hidden_floor = true;
                }
            }
        }
        let approved = reasons.is_empty() && !below_hidden_floor;
        let who = self.acting();
        let session = self.volatile.session_id;
        let mut next = self.state.clone();
        let detail = alloc::format!("{} {}", package.device_class, package.version);
        let how = self.record_kind();
        if approved {
            next.approved = Some(package);
            next.audit_as(how, AuditEvent::ApprovalGranted, &who, session, detail);
        } else {
            next.audit_as(how, AuditEvent::ApprovalRefused, &who, session, detail);
        }
        self.commit(next)?;
        Ok(ApprovalVerdict {
            approved,
            reasons,
            user_consent_needs_pin: rule.user_consent_needs_pin,
        }
        .encode())
    }

    /// The ACL of a floor the card creates itself: anyone may read it and confirm
    /// installs against it; only the card's administrators may replace or delete it.
    fn floor_acl(&self) -> Acl {
        let mut acl = Acl::empty();
        acl.grant(Right::Get, Principal::Anyone);
        acl.grant(Right::Exec, Principal::Anyone);
        if let Some(card) = self.state.objects.get(&ObjectRef::Card) {
            for admin in card.acl.holders(Right::Replace) {
                acl.grant(Right::Replace, admin.clone());
                acl.grant(Right::Delete, admin.clone());
            }
        }
        acl
    }

    fn confirm_installed(&mut self, package: PackageId) -> Outcome {
        if self.state.approved.as_ref() != Some(&package) {
            return Err(Status::ConditionsOfUseNotSatisfied);
        }
        let object = ObjectRef::Floor(package.device_class.clone());
        if self.state.objects.contains_key(&object) {
            self.require(&object, Right::Exec)?;
        }
        let who = self.acting();
        let mut next = self.state.clone();
        let acl = next
            .objects
            .get(&object)
            .map(|o| o.acl.clone())
            .unwrap_or_else(|| self.floor_acl());
        let raise = match next.objects.get(&object).map(|o| &o.value) {
            Some(ObjectValue::Floor(v)) => package.version > *v,
            _ => true,
        };
        if raise {
            next.objects.insert(
                object,
                Stored {
                    acl,
                    value: ObjectValue::Floor(package.version.clone()),
                },
            );
        }
        next.approved = None;
        let detail = alloc::format!("{} {}", package.device_class, package.version);
        next.audit(
            AuditEvent::FloorMoved,
            &who,
            self.volatile.session_id,
            detail,
        );
        self.commit(next)?;
        Ok(Vec::new())
    }

    /// GlobalPlatform PUT KEY: adds (P1 `00`) or rotates (P1 = its key version)
    /// an authority's SCP03 key set. The keys arrive encrypted with the DEK of
    /// the authority whose session carries the command, each with its key
    /// check value; one transaction stores the key set and its object.
    fn put_key(&mut self, p: dmsc_card_model::commands::PutKey) -> Outcome {
        let adding = p.replace_kvn == 0;
        let Some((session_kvn, who)) = self
            .volatile
            .scp
            .as_ref()
            .map(|s| (s.key_version, s.authority.clone()))
        else {
            // Keys travel only inside an authority session.
            let (object, right) = if adding {
                (ObjectRef::Authority(p.new_kvn), Right::Add)
            } else {
                (ObjectRef::Authority(p.replace_kvn), Right::Replace)
            };
            return self.deny(&object, right);
        };
        if adding {
            if !self.holds(&ObjectRef::Card, Right::Add) {
                return self.deny(&ObjectRef::Authority(p.new_kvn), Right::Add);
            }
        } else {
            self.require_authority_right(p.replace_kvn, Right::Replace)?;
        }
        let dek = self
            .state
            .authorities
            .get(&session_kvn)
            .map(|a| a.dek.clone())
            .ok_or(Status::ReferenceDataNotUsable)?;
        let [enc, mac, dek_new] = p.decrypt(&dek).map_err(|e| e.status())?;
        if StaticKeys::new(&enc, &mac, &dek_new).is_err() {
            return Err(Status::IncorrectDataParameter);
        }
        let mut next = self.state.clone();
        let name = if adding {
            let name = p.name.clone().ok_or(Status::IncorrectDataParameter)?;
            if next.authorities.contains_key(&p.new_kvn)
                || next.authorities.values().any(|a| a.name == name)
            {
                return Err(Status::IncorrectDataParameter);
            }
            name
        } else {
            let old = next
                .authorities
                .get(&p.replace_kvn)
                .ok_or(Status::KeyReferenceNotFound)?;
            let moving = p.new_kvn != p.replace_kvn;
            if (moving && next.authorities.contains_key(&p.new_kvn))
                || p.name.as_ref().is_some_and(|n| *n != old.name)
            {
                return Err(Status::IncorrectDataParameter);
            }
            old.name.clone()
        };
        let authority = Authority {
            name: name.clone(),
            enc,
            mac,
            dek: dek_new,
        };
        let value = authority_info(&authority);
        let (acl, event, detail) = if adding {
            let creator = Principal::Authority(who.clone());
            if let Some(log) = next.objects.get_mut(&ObjectRef::AuditLog) {
                log.acl
                    .grant(Right::Get, Principal::Authority(name.clone()));
            }
            (
                authority_acl(&creator, &name),
                AuditEvent::AuthorityAdded,
                alloc::format!("{name} key version {:02X}", p.new_kvn),
            )
        } else {
            next.authorities.remove(&p.replace_kvn);
            let acl = next
                .objects
                .remove(&ObjectRef::Authority(p.replace_kvn))
                .map(|o| o.acl)
                .unwrap_or_else(|| authority_acl(&Principal::Authority(who.clone()), &name));
            (
                acl,
                AuditEvent::AuthorityRotated,
                alloc::format!(
                    "{name} key version {:02X} -> {:02X}",
                    p.replace_kvn,
                    p.new_kvn
                ),
            )
        };
        next.authorities.insert(p.new_kvn, authority);
        next.objects
            .insert(ObjectRef::Authority(p.new_kvn), Stored { acl, value });
        if next.used_memory() > next.capacity {
            return Err(Status::NotEnoughMemory);
        }
        next.audit(event, &who, self.volatile.session_id, detail);
        self.commit(next)?;
        Ok(dmsc_card_model::commands::PutKeyResponse {
            key_version: p.new_kvn,
            kcvs: p.kcvs(),
        }
        .encode())
    }

    // ---- SCP03 ---------------------------------------------------------------

    fn initialize_update(&mut self, cmd: &Command) -> Outcome {
        let (kvn, host_challenge) =
            scp03::parse_initialize_update(cmd).map_err(|_| Status::IncorrectDataParameter)?;
        let smode = scp03::SMode::from_i(self.state.scp_i);
        if host_challenge.len() != smode.size() {
            return Err(Status::WrongLength);
        }
        let (kvn, authority) = match kvn {
            0 => self.state.authorities.iter().next(),
            k => self.state.authorities.get_key_value(&k),
        }
        .ok_or(Status::KeyReferenceNotFound)?;
        let (kvn, keys) = (
            *kvn,
            authority
                .static_keys()
                .ok_or(Status::ReferenceDataNotUsable)?,
        );
        // The session would use the next counter value, but it is committed
        // only by a successful EXTERNAL AUTHENTICATE: until then, every
        // INITIALIZE UPDATE gets the same value and so the same pseudo-random
        // card challenge (docs/security.md, "SCP03 sequence counter").
        let counter = self.state.scp_counter.wrapping_add(1);
        if counter > 0x00FF_FFFF {
            return Err(Status::ReferenceDataNotUsable);
        }
        let name = authority.name.clone();
        let mut next = self.state.clone();
        next.audit_as(
            Record::Aggregated,
            AuditEvent::InitializeUpdate,
            &name,
            self.volatile.session_id,
            alloc::format!("key version {kvn:02X}, counter {counter:06X} offered"),
        );
        if self
            .regressions
            .has(Regression::CounterSpentByInitializeUpdate)
        {
            next.scp_counter = counter;
        }
        self.commit(next)?;
        let seq: [u8; 3] = [(counter >> 16) as u8, (counter >> 8) as u8, counter as u8];
        let card_challenge = scp03::pseudo_random_card_challenge(&keys, seq, &AID, smode);
        let mut kdd = [0u8; 10];
        kdd.copy_from_slice(&self.state.card_id[..10]);
        let response = InitializeUpdateResponse::for_card(
            &keys,
            &host_challenge,
            kdd,
            kvn,
            self.state.scp_i,
            &card_challenge,
            Some(seq),
        )
        .map_err(|_| Status::UnspecifiedCheckingError)?;
        let data = response.encode();
        self.volatile.pending_auth = Some(PendingAuth {
            key_version: kvn,
            counter,
            host_challenge,
            response,
        });
        Ok(data)
    }

    fn external_authenticate(&mut self, cmd: &Command, pending: Option<PendingAuth>) -> Outcome {
        self.volatile.scp = None;
        let pending = pending.ok_or(Status::ConditionsOfUseNotSatisfied)?;
        // Level 00 would let unprotected commands run with the authority's rights.
        if cmd.p1 & scp03::SecurityLevel::C_MAC == 0 {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        let authority = self
            .state
            .authorities
            .get(&pending.key_version)
            .ok_or(Status::KeyReferenceNotFound)?
            .clone();
        let keys = authority
            .static_keys()
            .ok_or(Status::ReferenceDataNotUsable)?;
        match SecureChannel::card_authenticate(
            &keys,
            &pending.host_challenge,
            &pending.response,
            cmd,
        ) {
            Ok(channel) => {
                // The counter value this session used is spent now, and only now.
                if pending.counter <= self.state.scp_counter
                    && !self
                        .regressions
                        .has(Regression::CounterSpentByInitializeUpdate)
                {
                    return Err(Status::ConditionsOfUseNotSatisfied);
                }
                let mut next = self.state.clone();
                next.scp_counter = pending.counter;
                next.clear_failures(&authority.name);
                let level = channel.security_level().bits();
                next.audit(
                    AuditEvent::AuthSuccess,
                    &authority.name,
                    self.volatile.session_id,
                    alloc::format!(
                        "SCP03 key version {:02X}, level {level:02X}",
                        pending.key_version
                    ),
                );
                self.commit(next)?;
                self.volatile.scp = Some(ScpSession {
                    authority: authority.name,
                    key_version: pending.key_version,
                    channel,
                });
                Ok(Vec::new())
            }
            Err(scp03::Scp03Error::BadSecurityLevel(_))
            | Err(scp03::Scp03Error::MalformedCommand) => Err(Status::IncorrectP1OrP2Parameter),
            Err(_) => {
                // Anyone can get here (INITIALIZE UPDATE needs no key):
                // aggregated, like every record of a caller without a session.
                self.record_failure(
                    &authority.name,
                    AuditEvent::AuthFailure,
                    "EXTERNAL AUTHENTICATE failed",
                    Record::Aggregated,
                )?;
                Err(Status::SecurityStatusNotSatisfied)
            }
        }
    }
}

/// Decodes the class byte as ISO/IEC 7816-4 §5.4.1 does, with GlobalPlatform's
/// use of the proprietary classes (`80`–`9F` coded like the first interindustry
/// classes, `C0`–`FE` like the further ones). Returns the refusal, if any:
///
/// - `00`–`1F` (first interindustry): bits `03` name logical channels 0–3. Any
///   channel but 0 gets `6881`. Bits `0C`: `00` none, `04` proprietary secure
///   messaging (SCP03 here); `08` and `0C` (ISO secure messaging) get `6882`.
/// - `20`–`3F`: reserved for future use, `6E00`.
/// - `40`–`7F` (further interindustry): logical channels 4–19, always `6881`.
/// - `80`–`9F` (GlobalPlatform): channel bits as for `00`–`1F` (`6881`); secure
///   messaging indications other than `04` are not defined, `6E00`.
/// - `A0`–`BF`: no class GlobalPlatform defines, `6E00`.
/// - `C0`–`FE` (GlobalPlatform further classes): logical channels 4–19, `6881`.
/// - `FF` never reaches here (`Command::decode` refuses it).
fn class_refusal(cla: u8) -> Option<Status> {
    match cla {
        0x00..=0x1F | 0x80..=0x9F if cla & 0x03 != 0 => Some(Status::LogicalChannelNotSupported),
        0x00..=0x1F if cla & 0x08 != 0 => Some(Status::SecureMessagingNotSupported),
        0x00..=0x1F | 0x80..=0x9F if cla & 0x08 == 0 => None,
        0x40..=0x7F | 0xC0..=0xFE => Some(Status::LogicalChannelNotSupported),
        _ => Some(Status::ClassNotSupported),
    }
}

/// `61xx`: `xx` bytes remain, `00` for 256 or more.
fn more_available(remaining: usize) -> u16 {
    0x6100
        | if remaining >= 256 {
            0
        } else {
            remaining as u16
        }
}

fn tries_status(left: u8) -> Status {
    if left == 0 {
        Status::OperationBlocked
    } else {
        Status::RemainingRetries(left.min(15))
    }
}

fn unknown_status(cmd: &Command) -> Status {
    if ins::REQUESTS.contains(&cmd.ins) {
        Status::IncorrectP1OrP2Parameter
    } else {
        Status::InstructionNotSupportedOrInvalid
    }
}

/// The ACL of an authority's key set: its creator and the authority itself
/// may read and rotate it; the creator may remove it.
fn authority_acl(creator: &Principal, name: &str) -> Acl {
    let own = Principal::Authority(name.to_string());
    let mut acl = Acl::empty();
    for right in [Right::Get, Right::Replace] {
        acl.grant(right, creator.clone());
        acl.grant(right, own.clone());
    }
    acl.grant(Right::Delete, creator.clone());
    acl
}

fn authority_info(a: &Authority) -> ObjectValue {
    let kcv = |k: &[u8]| scp03::key_check_value(k).unwrap_or([0; 3]);
    ObjectValue::Authority(AuthorityInfo {
        name: a.name.clone(),
        key_length: a.enc.len() as u8,
        key_check_values: [kcv(&a.enc), kcv(&a.mac), kcv(&a.dek)],
    })
}
