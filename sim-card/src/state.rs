//! The applet's persistent state, its record encoding, and the rules that
//! derive from it (memory use, default ACLs).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dmsc_card_model::commands::{
    AuditEntry, AuditEvent, ObjectValue, PackageId, Repeats, DEFAULT_FAILURE_LIMIT,
};
use dmsc_card_model::objects::{Acl, ObjectKind, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::StaticKeys;
use dmsc_card_model::tlv::{self, Fields};
use zeroize::Zeroizing;

use crate::store::{AppletRecord, Key, Records, StateDefect, StoreError};

/// How many audit records the ring keeps: [`EVIDENCE_CAPACITY`] + [`GENERAL_CAPACITY`].
pub const AUDIT_CAPACITY: usize = EVIDENCE_CAPACITY + GENERAL_CAPACITY;
/// Records kept of security evidence (see [`is_evidence`]). Only evidence
/// evicts evidence.
pub const EVIDENCE_CAPACITY: usize = 128;
/// Records kept of every other event.
pub const GENERAL_CAPACITY: usize = 128;

/// Security evidence: alarms, authentication failures, access denials and
/// rejected bootstrap MACs. They have their own region of the ring.
pub fn is_evidence(event: AuditEvent) -> bool {
    matches!(
        event,
        AuditEvent::Alarm
            | AuditEvent::AuthFailure
            | AuditEvent::AccessDenied
            | AuditEvent::BootstrapRejected
    )
}

/// How an audit record enters the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A record of its own (events of an authority's SCP03 session, changes).
    Single,
    /// Caused by a caller without an SCP03 session: counted into the one
    /// aggregated record of the same event and principal, if the log holds
    /// one, which then moves to the newest position with a new sequence number.
    Aggregated,
}
/// Default object storage, in bytes.
pub const DEFAULT_CAPACITY: u32 = 256 * 1024;
/// Record-format version of the applet state (inside the store's own format).
const STATE_VERSION: u8 = 1;

/// A PIN or PUK with its try counter.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The PIN or PUK.
    pub value: Zeroizing<Vec<u8>>,
    /// Tries left.
    pub tries_left: u8,
    /// Tries after a successful verification.
    pub max_tries: u8,
}

/// An authority's SCP03 key set.
#[derive(Clone, PartialEq, Eq)]
pub struct Authority {
    /// The authority's name.
    pub name: String,
    /// The static ENC key.
    pub enc: Zeroizing<Vec<u8>>,
    /// The static MAC key.
    pub mac: Zeroizing<Vec<u8>>,
    /// The static DEK.
    pub dek: Zeroizing<Vec<u8>>,
}

impl Authority {
    /// The key set as SCP03 static keys.
    pub fn static_keys(&self) -> Option<StaticKeys> {
        StaticKeys::new(&self.enc, &self.mac, &self.dek).ok()
    }
}

/// An object: its ACL and typed value (a bootstrap key's value includes the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The object's ACL.
    pub acl: Acl,
    /// The object's value.
    pub value: ObjectValue,
}

/// Everything the card keeps across power cycles.
#[derive(Clone, PartialEq, Eq)]
pub struct State {
    /// Random card identifier made at initialisation.
    pub card_id: [u8; 16],
    /// Object storage in bytes.
    pub capacity: u32,
    /// Grows with every committed change of objects, ACLs, authorities or configuration.
    pub generation: u64,
    /// Consecutive authorisation failures per principal before an alarm.
    pub failure_limit: u8,
    /// The sequence number of the next audit record.
    pub next_audit: u32,
    /// SCP03 sequence counter (24 bits used).
    pub scp_counter: u32,
    /// SCP03 i parameter.
    pub scp_i: u8,
    /// The identity key's private scalar (P-256).
    pub identity_secret: Zeroizing<[u8; 32]>,
    /// The user PIN.
    pub pin: Secret,
    /// The PUK.
    pub puk: Secret,
    /// Consecutive authorisation failures per principal (ACL name).
    pub failures: BTreeMap<String, u32>,
    /// Every object, by reference.
    pub objects: BTreeMap<ObjectRef, Stored>,
    /// Authority key sets, by key version.
    pub authorities: BTreeMap<u8, Authority>,
    /// The audit log, by sequence number.
    pub audit: BTreeMap<u32, AuditEntry>,
    /// The last package the card approved, which CONFIRM INSTALLED may record.
    pub approved: Option<PackageId>,
    /// Never persisted; set only through `Card::reintroduce` (feature
    /// `regressions`, for the attack tests' self-tests): one flat ring of
    /// [`AUDIT_CAPACITY`] records, nothing aggregated, as before the regions.
    pub flat_audit_ring: bool,
}

impl State {
    /// Whether a change from `self` to `next` is visible to a device (bumps the generation).
    pub fn content_differs(&self, next: &State) -> bool {
        self.objects != next.objects
            || self.authorities != next.authorities
            || self.failure_limit != next.failure_limit
    }

    /// Bytes of object storage in use: every object's encoded value, audit log excluded.
    pub fn used_memory(&self) -> u32 {
        let used: usize = self
            .objects
            .iter()
            .filter(|(r, _)| r.kind() != ObjectKind::AuditLog)
            .map(|(r, o)| r.encode().len() + o.value.encode().len() + o.acl.to_string().len())
            .sum();
        used.min(u32::MAX as usize) as u32
    }

    /// Appends a record of its own ([`Record::Single`]).
    pub fn audit(
        &mut self,
        event: AuditEvent,
        principal: &str,
        session: u32,
        detail: impl Into<String>,
    ) {
        self.audit_as(Record::Single, event, principal, session, detail);
    }

    /// Appends an audit record, or counts it into the aggregated record of the
    /// same event and principal ([`Record::Aggregated`]). Then drops the oldest
    /// records of the new record's region (evidence or the rest) beyond that
    /// region's capacity: a record never evicts one of the other region.
    pub fn audit_as(
        &mut self,
        how: Record,
        event: AuditEvent,
        principal: &str,
        session: u32,
        detail: impl Into<String>,
    ) {
        let sequence = self.next_audit;
        self.next_audit = self.next_audit.wrapping_add(1);
        let mut detail: String = detail.into();
        truncate_utf8(&mut detail, 200);
        let how = if self.flat_audit_ring {
            Record::Single
        } else {
            how
        };
        let repeats = match how {
            Record::Single => None,
            Record::Aggregated => {
                let earlier = self
                    .audit
                    .iter()
                    .find(|(_, e)| {
                        e.repeats.is_some() && e.event == event && e.principal == principal
                    })
                    .map(|(seq, e)| (*seq, e.repeats));
                Some(match earlier {
                    Some((seq, Some(r))) => {
                        self.audit.remove(&seq);
                        Repeats {
                            count: r.count.saturating_add(1),
                            first_sequence: r.first_sequence,
                        }
                    }
                    _ => Repeats {
                        count: 1,
                        first_sequence: sequence,
                    },
                })
            }
        };
        self.audit.insert(
            sequence,
            AuditEntry {
                sequence,
                event,
                principal: principal.to_string(),
                session,
                detail,
                repeats,
            },
        );
        let evidence = is_evidence(event);
        let flat = self.flat_audit_ring;
        let capacity = match (flat, evidence) {
            (true, _) => AUDIT_CAPACITY,
            (false, true) => EVIDENCE_CAPACITY,
            (false, false) => GENERAL_CAPACITY,
        };
        loop {
            let mut region = self
                .audit
                .iter()
                .filter(|(_, e)| flat || is_evidence(e.event) == evidence)
                .map(|(seq, _)| *seq);
            let oldest = region.next();
            if region.count() < capacity {
                break;
            }
            match oldest {
                Some(seq) => {
                    self.audit.remove(&seq);
                }
                None => break,
            }
        }
    }

    /// Records an authorisation failure of `principal`; at every multiple of the
    /// limit an alarm goes into the audit log (aggregated like the failure when
    /// `how` says so). Returns whether an alarm was raised.
    pub fn count_failure(&mut self, principal: &str, session: u32, how: Record) -> bool {
        let count = self.failures.entry(principal.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let count = *count;
        let limit = u32::from(self.failure_limit.max(1));
        if count >= limit && count.is_multiple_of(limit) {
            self.audit_as(
                how,
                AuditEvent::Alarm,
                principal,
                session,
                alloc::format!("{count} consecutive authorisation failures"),
            );
            return true;
        }
        false
    }

    /// Clears the failure count of `principal` after it authenticated (the
    /// user's PIN or PUK, an authority's EXTERNAL AUTHENTICATE). Nothing
    /// authenticates `*`: its count is never cleared.
    pub fn clear_failures(&mut self, principal: &str) {
        if principal != "*" {
            self.failures.remove(principal);
        }
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// The ACL an object gets when created without one: the creating authority may
/// read, replace and delete it; the public rights depend on the kind.
pub fn default_acl(kind: ObjectKind, creator: &Principal) -> Acl {
    let mut acl = Acl::empty();
    for right in [Right::Get, Right::Replace, Right::Delete] {
        acl.grant(right, creator.clone());
    }
    let public: &[Right] = match kind {
        ObjectKind::Mo | ObjectKind::Policy => &[Right::Get],
        ObjectKind::Approver | ObjectKind::IdentityKey => &[Right::Get, Right::Exec],
        ObjectKind::BootstrapKey => &[Right::Exec],
        ObjectKind::ApprovalRule | ObjectKind::Floor => &[Right::Get, Right::Exec],
        _ => &[],
    };
    for right in public {
        acl.grant(*right, Principal::Anyone);
    }
    acl
}

// ---- record encoding -------------------------------------------------------

const T_CARD_ID: u32 = 0xC0;
const T_CAPACITY: u32 = 0xC1;
const T_GENERATION: u32 = 0xC2;
const T_LIMIT: u32 = 0xC3;
const T_NEXT_AUDIT: u32 = 0xC4;
const T_SCP_COUNTER: u32 = 0xC5;
const T_SCP_I: u32 = 0xC6;
const T_IDENTITY: u32 = 0xC7;
const T_VERSION: u32 = 0xC8;
const T_VALUE: u32 = 0xD0;
const T_TRIES: u32 = 0xD1;
const T_MAX: u32 = 0xD2;
const T_ACL: u32 = 0x8C;
const T_NAME: u32 = 0xD3;
const T_ENC: u32 = 0xD4;
const T_MAC: u32 = 0xD5;
const T_DEK: u32 = 0xD6;

const K_META: &[u8] = b"meta";
const K_PIN: &[u8] = b"pin";
const K_PUK: &[u8] = b"puk";
const K_APPROVED: &[u8] = b"approved";
const P_FAIL: &[u8] = b"fail/";
const P_OBJ: &[u8] = b"obj/";
const P_AUTH: &[u8] = b"auth/";
const P_AUDIT: &[u8] = b"audit/";

fn key(prefix: &[u8], rest: &[u8]) -> Key {
    [prefix, rest].concat()
}

fn encode_secret(s: &Secret) -> Vec<u8> {
    let mut out = tlv::encode(T_VALUE, &s.value);
    tlv::write(&mut out, T_TRIES, &[s.tries_left]);
    tlv::write(&mut out, T_MAX, &[s.max_tries]);
    out
}

impl State {
    /// Every record of the state.
    pub fn to_records(&self) -> Records {
        let mut r = Records::new();
        let mut meta = tlv::encode(T_VERSION, &[STATE_VERSION]);
        tlv::write(&mut meta, T_CARD_ID, &self.card_id);
        tlv::write(&mut meta, T_CAPACITY, &self.capacity.to_be_bytes());
        tlv::write(&mut meta, T_GENERATION, &self.generation.to_be_bytes());
        tlv::write(&mut meta, T_LIMIT, &[self.failure_limit]);
        tlv::write(&mut meta, T_NEXT_AUDIT, &self.next_audit.to_be_bytes());
        tlv::write(&mut meta, T_SCP_COUNTER, &self.scp_counter.to_be_bytes());
        tlv::write(&mut meta, T_SCP_I, &[self.scp_i]);
        tlv::write(&mut meta, T_IDENTITY, self.identity_secret.as_slice());
        r.insert(K_META.to_vec(), meta);
        r.insert(K_PIN.to_vec(), encode_secret(&self.pin));
        r.insert(K_PUK.to_vec(), encode_secret(&self.puk));
        for (name, count) in &self.failures {
            r.insert(key(P_FAIL, name.as_bytes()), count.to_be_bytes().to_vec());
        }
        for (obj, stored) in &self.objects {
            let mut v = tlv::encode(T_ACL, stored.acl.to_string().as_bytes());
            tlv::write(&mut v, T_VALUE, &stored.value.encode());
            r.insert(key(P_OBJ, &obj.encode()), v);
        }
        for (kvn, a) in &self.authorities {
            let mut v = tlv::encode(T_NAME, a.name.as_bytes());
            tlv::write(&mut v, T_ENC, &a.enc);
            tlv::write(&mut v, T_MAC, &a.mac);
            tlv::write(&mut v, T_DEK, &a.dek);
            r.insert(key(P_AUTH, &[*kvn]), v);
        }
        for (seq, e) in &self.audit {
            r.insert(key(P_AUDIT, &seq.to_be_bytes()), e.encode());
        }
        if let Some(p) = &self.approved {
            let req = dmsc_card_model::commands::Request::ConfirmInstalled { package: p.clone() };
            r.insert(K_APPROVED.to_vec(), req.to_command().data);
        }
        r
    }

    /// Rebuilds the state from its records; any defect is reported, never repaired.
    pub fn from_records(records: &Records) -> Result<State, StoreError> {
        use AppletRecord as R;
        let corrupt = |what: AppletRecord| StoreError::from(StateDefect::MalformedRecord(what));
        let get = |k: &[u8], what: AppletRecord| {
            records
                .get(k)
                .ok_or_else(|| StoreError::from(StateDefect::MissingRecord(what)))
        };
        let meta_bytes = get(K_META, R::Meta)?;
        let meta = Fields::parse(meta_bytes).map_err(|_| corrupt(R::Meta))?;
        let field = |tag: u32| meta.get(tag).ok_or_else(|| corrupt(R::Meta));
        if field(T_VERSION)? != [STATE_VERSION] {
            return Err(StateDefect::AppletVersion {
                found: field(T_VERSION)?.to_vec(),
            }
            .into());
        }
        let arr = |tag: u32| -> Result<Vec<u8>, StoreError> { Ok(field(tag)?.to_vec()) };
        let u32_of = |tag: u32| -> Result<u32, StoreError> {
            let b: [u8; 4] = field(tag)?.try_into().map_err(|_| corrupt(R::Meta))?;
            Ok(u32::from_be_bytes(b))
        };
        let card_id: [u8; 16] = arr(T_CARD_ID)?.try_into().map_err(|_| corrupt(R::Meta))?;
        let generation: [u8; 8] = arr(T_GENERATION)?
            .try_into()
            .map_err(|_| corrupt(R::Meta))?;
        let identity: [u8; 32] = arr(T_IDENTITY)?.try_into().map_err(|_| corrupt(R::Meta))?;
        let one = |tag: u32| -> Result<u8, StoreError> {
            match field(tag)? {
                [b] => Ok(*b),
                _ => Err(corrupt(R::Meta)),
            }
        };
        let secret = |k: &[u8], what: AppletRecord| -> Result<Secret, StoreError> {
            let f = Fields::parse(get(k, what)?).map_err(|_| corrupt(what))?;
            let byte = |tag| match f.get(tag) {
                Some([b]) => Ok(*b),
                _ => Err(corrupt(what)),
            };
            Ok(Secret {
                value: Zeroizing::new(f.get(T_VALUE).ok_or_else(|| corrupt(what))?.to_vec()),
                tries_left: byte(T_TRIES)?,
                max_tries: byte(T_MAX)?,
            })
        };
        let mut state = State {
            card_id,
            capacity: u32_of(T_CAPACITY)?,
            generation: u64::from_be_bytes(generation),
            failure_limit: one(T_LIMIT)?,
            next_audit: u32_of(T_NEXT_AUDIT)?,
            scp_counter: u32_of(T_SCP_COUNTER)?,
            scp_i: one(T_SCP_I)?,
            identity_secret: Zeroizing::new(identity),
            pin: secret(K_PIN, R::Pin)?,
            puk: secret(K_PUK, R::Puk)?,
            failures: BTreeMap::new(),
            objects: BTreeMap::new(),
            authorities: BTreeMap::new(),
            audit: BTreeMap::new(),
            approved: None,
            flat_audit_ring: false,
        };
        for (k, v) in records {
            if let Some(name) = k.strip_prefix(P_FAIL) {
                let name = core::str::from_utf8(name).map_err(|_| corrupt(R::Fail))?;
                let count: [u8; 4] = v.as_slice().try_into().map_err(|_| corrupt(R::Fail))?;
                state
                    .failures
                    .insert(name.to_string(), u32::from_be_bytes(count));
            } else if let Some(r) = k.strip_prefix(P_OBJ) {
                let obj = ObjectRef::decode(r).map_err(|_| corrupt(R::Obj))?;
                let f = Fields::parse(v).map_err(|_| corrupt(R::Obj))?;
                let acl_text = f.get(T_ACL).ok_or_else(|| corrupt(R::Obj))?;
                let acl = core::str::from_utf8(acl_text)
                    .ok()
                    .and_then(|s| Acl::parse(s).ok())
                    .ok_or_else(|| corrupt(R::Obj))?;
                let value =
                    ObjectValue::decode(obj.kind(), f.get(T_VALUE).ok_or_else(|| corrupt(R::Obj))?)
                        .map_err(|_| corrupt(R::Obj))?;
                state.objects.insert(obj, Stored { acl, value });
            } else if let Some(kvn) = k.strip_prefix(P_AUTH) {
                let [kvn] = kvn else {
                    return Err(corrupt(R::Auth));
                };
                let f = Fields::parse(v).map_err(|_| corrupt(R::Auth))?;
                let part = |tag| {
                    f.get(tag)
                        .map(|b| Zeroizing::new(b.to_vec()))
                        .ok_or_else(|| corrupt(R::Auth))
                };
                let name = f
                    .get(T_NAME)
                    .and_then(|n| core::str::from_utf8(n).ok())
                    .ok_or_else(|| corrupt(R::Auth))?
                    .to_string();
                state.authorities.insert(
                    *kvn,
                    Authority {
                        name,
                        enc: part(T_ENC)?,
                        mac: part(T_MAC)?,
                        dek: part(T_DEK)?,
                    },
                );
            } else if k.starts_with(P_AUDIT) {
                let e = AuditEntry::decode(v).map_err(|_| corrupt(R::Audit))?;
                state.audit.insert(e.sequence, e);
            } else if k.as_slice() == K_APPROVED {
                let cmd = dmsc_card_model::Command::new(
                    0x80,
                    dmsc_card_model::commands::ins::CONFIRM_INSTALLED,
                    0,
                    0,
                )
                .with_data(v.clone());
                match dmsc_card_model::commands::Request::from_command(&cmd) {
                    Ok(dmsc_card_model::commands::Request::ConfirmInstalled { package }) => {
                        state.approved = Some(package)
                    }
                    _ => return Err(corrupt(R::Approved)),
                }
            } else if ![K_META, K_PIN, K_PUK].contains(&k.as_slice()) {
                return Err(StateDefect::UnknownRecord { key: k.clone() }.into());
            }
        }
        if state.failure_limit
            < DEFAULT_FAILURE_LIMIT.min(dmsc_card_model::commands::MIN_FAILURE_LIMIT)
        {
            return Err(corrupt(R::Meta));
        }
        Ok(state)
    }
}
