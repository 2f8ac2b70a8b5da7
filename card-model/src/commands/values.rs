//! Object values, typed by object kind, and their TLV encoding.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use super::field::{be_u32, one_byte, point, utf8};
use super::{tag, AuditEntry, DecodeError};
use crate::objects::{self, check_name, ObjectKind, Version};
use crate::tlv::{self, TlvError};

/// Card-wide configuration, the value of [`ObjectRef::Card`](crate::objects::ObjectRef::Card).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardConfig {
    /// Consecutive authorisation failures per principal before an alarm (≥ 4).
    pub failure_limit: u8,
    /// Bytes of object storage in use (read only).
    pub used_memory: u32,
    /// Bytes of object storage in all (read only; set at initialisation).
    pub total_memory: u32,
}

/// A bootstrap MAC key: the algorithm, and the key itself only when written.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapKeyValue {
    /// The MAC algorithm the key is for.
    pub algorithm: objects::MacAlgorithm,
    /// Present in PUT DATA; never returned by the card.
    pub key: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for BootstrapKeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapKeyValue")
            .field("algorithm", &self.algorithm)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An MO record as stored on the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoRecord {
    /// The MO type (DDF name or MIME type), e.g. `urn:oma:mo:oma-dm-dmacc:1.0`.
    pub mo_type: String,
    /// Incremented by the card on every replace; 1 when created. Ignored in PUT DATA.
    pub version: u32,
    /// The compact binary form of the TNDS subtree (opaque to the card).
    pub content: Vec<u8>,
}

/// The approval rule: every named approver must sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// The approvers who must all sign.
    pub required: Vec<String>,
    /// Whether the user must verify the PIN before deciding on an unapproved package.
    pub user_consent_needs_pin: bool,
}

/// An authority key set as the card describes it (keys are never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    /// The authority's name (its principal `authority:<name>`).
    pub name: String,
    /// AES key length in bytes (16, 24 or 32).
    pub key_length: u8,
    /// Key check values of ENC, MAC and DEK.
    pub key_check_values: [[u8; 3]; 3],
}

/// The value of an object, typed by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectValue {
    /// [`ObjectRef::Card`](crate::objects::ObjectRef::Card): card-wide configuration.
    Card(CardConfig),
    /// An MO record.
    Mo(MoRecord),
    /// A policy document (opaque to the card).
    Policy(Vec<u8>),
    /// A bootstrap MAC key.
    BootstrapKey(BootstrapKeyValue),
    /// An uncompressed SEC1 P-256 point (65 bytes).
    Approver(Vec<u8>),
    /// The approval rule.
    ApprovalRule(ApprovalRule),
    /// A device class's firmware floor: the lowest version it may install.
    Floor(Version),
    /// An uncompressed SEC1 P-256 point (65 bytes).
    IdentityKey(Vec<u8>),
    /// The audit log's records.
    AuditLog(Vec<AuditEntry>),
    /// An authority's key set, described without its keys.
    Authority(AuthorityInfo),
}

impl ObjectValue {
    /// The kind of object this value belongs to.
    pub fn kind(&self) -> ObjectKind {
        match self {
            ObjectValue::Card(_) => ObjectKind::Card,
            ObjectValue::Mo(_) => ObjectKind::Mo,
            ObjectValue::Policy(_) => ObjectKind::Policy,
            ObjectValue::BootstrapKey(_) => ObjectKind::BootstrapKey,
            ObjectValue::Approver(_) => ObjectKind::Approver,
            ObjectValue::ApprovalRule(_) => ObjectKind::ApprovalRule,
            ObjectValue::Floor(_) => ObjectKind::Floor,
            ObjectValue::IdentityKey(_) => ObjectKind::IdentityKey,
            ObjectValue::AuditLog(_) => ObjectKind::AuditLog,
            ObjectValue::Authority(_) => ObjectKind::Authority,
        }
    }

    /// The value's content (the inside of tag `53`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ObjectValue::Card(c) => {
                tlv::write(&mut out, tag::FAILURE_LIMIT, &[c.failure_limit]);
                tlv::write(&mut out, tag::USED_MEMORY, &c.used_memory.to_be_bytes());
                tlv::write(&mut out, tag::TOTAL_MEMORY, &c.total_memory.to_be_bytes());
            }
            ObjectValue::Mo(m) => {
                tlv::write(&mut out, tag::MO_TYPE, m.mo_type.as_bytes());
                tlv::write(&mut out, tag::MO_VERSION, &m.version.to_be_bytes());
                tlv::write(&mut out, tag::MO_CONTENT, &m.content);
            }
            ObjectValue::Policy(p) => out.extend_from_slice(p),
            ObjectValue::BootstrapKey(k) => {
                tlv::write(&mut out, tag::ALGORITHM, &[k.algorithm.code()]);
                if let Some(key) = &k.key {
                    tlv::write(&mut out, tag::KEY, key);
                }
            }
            ObjectValue::Approver(p) | ObjectValue::IdentityKey(p) => {
                tlv::write(&mut out, tag::PUBLIC_KEY, p)
            }
            ObjectValue::ApprovalRule(r) => {
                for name in &r.required {
                    tlv::write(&mut out, tag::APPROVER, name.as_bytes());
                }
                tlv::write(
                    &mut out,
                    tag::USER_CONSENT_PIN,
                    &[r.user_consent_needs_pin as u8],
                );
            }
            ObjectValue::Floor(v) => tlv::write(&mut out, tag::VERSION, v.to_string().as_bytes()),
            ObjectValue::AuditLog(entries) => {
                for e in entries {
                    tlv::write(&mut out, tag::AUDIT_ENTRY, &e.encode());
                }
            }
            ObjectValue::Authority(a) => {
                tlv::write(&mut out, tag::AUTHORITY_NAME, a.name.as_bytes());
                tlv::write(&mut out, tag::KEY_LENGTH, &[a.key_length]);
                tlv::write(&mut out, tag::KEY_CHECK, &a.key_check_values.concat());
            }
        }
        out
    }

    /// Decodes the content of tag `53` for an object of `kind`.
    pub fn decode(kind: ObjectKind, bytes: &[u8]) -> Result<ObjectValue, DecodeError> {
        if kind == ObjectKind::Policy {
            return Ok(ObjectValue::Policy(bytes.to_vec()));
        }
        let f = objects::fields(bytes)?;
        Ok(match kind {
            ObjectKind::Card => {
                f.only(
                    &[tag::FAILURE_LIMIT, tag::USED_MEMORY, tag::TOTAL_MEMORY],
                    &[],
                )?;
                ObjectValue::Card(CardConfig {
                    failure_limit: one_byte(f.require(tag::FAILURE_LIMIT)?, "failure limit")?,
                    used_memory: f
                        .get(tag::USED_MEMORY)
                        .map(|b| be_u32(b, "used memory"))
                        .transpose()?
                        .unwrap_or(0),
                    total_memory: f
                        .get(tag::TOTAL_MEMORY)
                        .map(|b| be_u32(b, "total memory"))
                        .transpose()?
                        .unwrap_or(0),
                })
            }
            ObjectKind::Mo => {
                f.only(&[tag::MO_TYPE, tag::MO_VERSION, tag::MO_CONTENT], &[])?;
                ObjectValue::Mo(MoRecord {
                    mo_type: utf8(f.require(tag::MO_TYPE)?, tag::MO_TYPE)?,
                    version: f
                        .get(tag::MO_VERSION)
                        .map(|b| be_u32(b, "MO version"))
                        .transpose()?
                        .unwrap_or(0),
                    content: f.require(tag::MO_CONTENT)?.to_vec(),
                })
            }
            ObjectKind::Policy => ObjectValue::Policy(bytes.to_vec()),
            ObjectKind::BootstrapKey => {
                f.only(&[tag::ALGORITHM, tag::KEY], &[])?;
                let code = one_byte(f.require(tag::ALGORITHM)?, "algorithm")?;
                let algorithm = objects::MacAlgorithm::from_code(code).ok_or(DecodeError::from(
                    TlvError::InvalidValue {
                        tag: tag::ALGORITHM,
                    },
                ))?;
                let key = f.get(tag::KEY).map(|k| Zeroizing::new(k.to_vec()));
                if key.as_ref().is_some_and(|k| !algorithm.key_len_ok(k.len())) {
                    return Err(DecodeError::Field("key for this algorithm"));
                }
                ObjectValue::BootstrapKey(BootstrapKeyValue { algorithm, key })
            }
            ObjectKind::Approver | ObjectKind::IdentityKey => {
                f.only(&[tag::PUBLIC_KEY], &[])?;
                let p = point(f.require(tag::PUBLIC_KEY)?)?;
                if kind == ObjectKind::Approver {
                    ObjectValue::Approver(p)
                } else {
                    ObjectValue::IdentityKey(p)
                }
            }
            ObjectKind::ApprovalRule => {
                f.only(&[tag::APPROVER, tag::USER_CONSENT_PIN], &[tag::APPROVER])?;
                let mut required = Vec::new();
                for n in f.all(tag::APPROVER) {
                    let name = utf8(n, tag::APPROVER)?;
                    check_name(&name)?;
                    if required.contains(&name) {
                        return Err(TlvError::InvalidValue { tag: tag::APPROVER }.into());
                    }
                    required.push(name);
                }
                let pin = f
                    .get(tag::USER_CONSENT_PIN)
                    .map(|b| one_byte(b, "flag"))
                    .transpose()?;
                ObjectValue::ApprovalRule(ApprovalRule {
                    required,
                    user_consent_needs_pin: pin.unwrap_or(0) != 0,
                })
            }
            ObjectKind::Floor => {
                f.only(&[tag::VERSION], &[])?;
                let v = utf8(f.require(tag::VERSION)?, tag::VERSION)?;
                ObjectValue::Floor(Version::parse(&v)?)
            }
            ObjectKind::AuditLog => {
                f.only(&[tag::AUDIT_ENTRY], &[tag::AUDIT_ENTRY])?;
                let entries: Result<Vec<_>, _> =
                    f.all(tag::AUDIT_ENTRY).map(AuditEntry::decode).collect();
                ObjectValue::AuditLog(entries?)
            }
            ObjectKind::Authority => {
                f.only(&[tag::AUTHORITY_NAME, tag::KEY_LENGTH, tag::KEY_CHECK], &[])?;
                let name = utf8(f.require(tag::AUTHORITY_NAME)?, tag::AUTHORITY_NAME)?;
                check_name(&name)?;
                let kcv = f.require(tag::KEY_CHECK)?;
                if kcv.len() != 9 {
                    return Err(DecodeError::Field("key check values (9 bytes)"));
                }
                let mut key_check_values = [[0u8; 3]; 3];
                for (i, k) in key_check_values.iter_mut().enumerate() {
                    k.copy_from_slice(&kcv[3 * i..3 * i + 3]);
                }
                ObjectValue::Authority(AuthorityInfo {
                    name,
                    key_length: one_byte(f.require(tag::KEY_LENGTH)?, "key length")?,
                    key_check_values,
                })
            }
        })
    }
}
