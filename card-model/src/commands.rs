//! The dmsc command set: one typed request per command, encoded to and decoded
//! from APDUs, and the typed responses, so host and card share one definition.
//! `docs/commands.md` describes every command in prose.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use crate::apdu::{Command, Status};
use crate::objects::{self, check_name, Acl, ModelError, ObjectKind, ObjectRef, Version};
use crate::tlv::{self, TlvError};

pub use crate::put_key::{KeyBlock, PutKey, PutKeyResponse, PUT_KEY_P2};

/// The applet's AID: proprietary, non-registered category `F` + "DMSC" + version 01.
pub const AID: [u8; 7] = [0xF0, 0x44, 0x4D, 0x53, 0x43, 0x00, 0x01];

/// Applet version reported by SELECT (major, minor).
pub const APPLET_VERSION: (u8, u8) = (1, 0);

/// Instruction bytes.
pub mod ins {
    pub const SELECT: u8 = 0xA4;
    pub const GET_DATA: u8 = 0xCB;
    pub const PUT_DATA: u8 = 0xDB;
    pub const DELETE: u8 = 0xE4;
    pub const VERIFY: u8 = 0x20;
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    pub const RESET_RETRY_COUNTER: u8 = 0x2C;
    pub const GET_CHALLENGE: u8 = 0x84;
    pub const INTERNAL_AUTHENTICATE: u8 = 0x88;
    pub const MANAGE_SECURITY_ENVIRONMENT: u8 = 0x22;
    pub const PERFORM_SECURITY_OPERATION: u8 = 0x2A;
    pub const CHECK_APPROVAL: u8 = 0xA0;
    pub const CONFIRM_INSTALLED: u8 = 0xA2;
    pub const INITIALIZE_UPDATE: u8 = 0x50;
    pub const EXTERNAL_AUTHENTICATE: u8 = 0x82;
    pub const GET_RESPONSE: u8 = 0xC0;
    pub const PUT_KEY: u8 = 0xD8;

    /// The instructions of the dmsc command set ([`super::Request`]); the
    /// GlobalPlatform INITIALIZE UPDATE and EXTERNAL AUTHENTICATE are handled by
    /// [`crate::scp03`]; PUT KEY is a request ([`super::PutKey`]).
    pub const REQUESTS: [u8; 15] = [
        SELECT,
        GET_DATA,
        PUT_DATA,
        DELETE,
        VERIFY,
        CHANGE_REFERENCE_DATA,
        RESET_RETRY_COUNTER,
        GET_CHALLENGE,
        INTERNAL_AUTHENTICATE,
        MANAGE_SECURITY_ENVIRONMENT,
        PERFORM_SECURITY_OPERATION,
        CHECK_APPROVAL,
        CONFIRM_INSTALLED,
        GET_RESPONSE,
        PUT_KEY,
    ];
}

/// Interindustry class byte.
pub const CLA_ISO: u8 = 0x00;
/// Proprietary class byte (GlobalPlatform and dmsc-specific commands).
pub const CLA_PROPRIETARY: u8 = 0x80;
/// The secure-messaging bit of the class byte (GlobalPlatform: C-MAC present).
pub const CLA_SECURE_MESSAGING: u8 = 0x04;

/// Key reference of the user PIN (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER).
pub const PIN_REF_USER: u8 = 0x81;
/// Key reference of the PUK (VERIFY only, to read its tries left).
pub const PIN_REF_PUK: u8 = 0x82;
/// PINs and PUKs travel padded with `FF` to this length.
pub const PIN_BLOCK_LEN: usize = 8;
/// Shortest PIN or PUK.
pub const PIN_MIN_LEN: usize = 4;
/// Smallest configurable failure limit.
pub const MIN_FAILURE_LIMIT: u8 = 4;
/// Default failure limit.
pub const DEFAULT_FAILURE_LIMIT: u8 = 4;

/// GET DATA / PUT DATA P1-P2: the object named in the data field.
const P1P2_OBJECT: (u8, u8) = (0x3F, 0xFF);
/// GET DATA P1-P2: list the objects of a kind.
const P1P2_LIST: (u8, u8) = (0x3F, 0xFE);
/// GET DATA P1-P2 reading every object of a kind (MOs only) in one response.
const P1P2_READ_ALL: (u8, u8) = (0x3F, 0xFD);
/// PERFORM SECURITY OPERATION P1-P2: VERIFY CRYPTOGRAPHIC CHECKSUM.
const PSO_VERIFY_CHECKSUM: (u8, u8) = (0x00, 0xA2);
/// PERFORM SECURITY OPERATION P1-P2: VERIFY DIGITAL SIGNATURE.
const PSO_VERIFY_SIGNATURE: (u8, u8) = (0x00, 0xA8);
/// MANAGE SECURITY ENVIRONMENT P1-P2: SET for verification, CRT for cryptographic checksum.
const MSE_SET_CCT: (u8, u8) = (0x81, 0xB4);
/// MSE P1 "SET for computation", accepted as well by the card.
const MSE_SET_COMPUTATION: u8 = 0x41;

/// Tags used in data fields (context-specific, see `docs/commands.md`).
pub mod tag {
    pub const VALUE: u32 = 0x53;
    pub const ACL: u32 = 0x8C;
    pub const FCI: u32 = 0x6F;
    pub const AID: u32 = 0x84;
    pub const PROPRIETARY: u32 = 0xA5;
    pub const CARD_ID: u32 = 0xC0;
    pub const APPLET_VERSION: u32 = 0xC1;
    pub const GENERATION: u32 = 0xC2;
    pub const MAX_COMMAND: u32 = 0xC3;
    pub const MAX_RESPONSE: u32 = 0xC4;
    pub const EXTENDED_LENGTH: u32 = 0xC5;
    pub const ALGORITHMS: u32 = 0xC6;
    pub const FREE_MEMORY: u32 = 0xC7;
    pub const TOTAL_MEMORY: u32 = 0xC8;
    pub const SCP_I: u32 = 0xC9;
    pub const MO_TYPE: u32 = 0xD0;
    pub const MO_VERSION: u32 = 0xD1;
    pub const MO_CONTENT: u32 = 0xD2;
    pub const ALGORITHM: u32 = 0xD3;
    pub const KEY: u32 = 0xD4;
    pub const PUBLIC_KEY: u32 = 0xD5;
    pub const APPROVER: u32 = 0xD6;
    pub const USER_CONSENT_PIN: u32 = 0xD7;
    pub const VERSION: u32 = 0xD8;
    pub const FAILURE_LIMIT: u32 = 0xD9;
    pub const USED_MEMORY: u32 = 0xDA;
    pub const AUTHORITY_NAME: u32 = 0xDB;
    pub const KEY_CHECK: u32 = 0xDC;
    pub const LIST_ENTRY: u32 = 0xE1;
    pub const SIZE: u32 = 0xDD;
    pub const PLAIN: u32 = 0x80;
    pub const CHECKSUM: u32 = 0x8E;
    pub const KEY_REF: u32 = 0x83;
    pub const DIGEST: u32 = 0x90;
    pub const DEVICE_CLASS: u32 = 0x92;
    pub const APPROVAL: u32 = 0xE2;
    pub const SIGNATURE: u32 = 0x9E;
    pub const VERDICT: u32 = 0x94;
    pub const REASON: u32 = 0xE3;
    pub const REASON_CODE: u32 = 0x95;
    pub const AUDIT_FROM: u32 = 0x96;
    pub const AUDIT_ENTRY: u32 = 0xE4;
    pub const SEQUENCE: u32 = 0x97;
    pub const EVENT: u32 = 0x98;
    pub const PRINCIPAL: u32 = 0x99;
    pub const DETAIL: u32 = 0x9A;
    pub const SESSION: u32 = 0x9B;
    pub const REPEAT_COUNT: u32 = 0x91;
    pub const FIRST_SEQUENCE: u32 = 0x93;
    pub const KEY_VERSION: u32 = 0x9C;
    pub const KEY_LENGTH: u32 = 0x9D;
}

/// Why command data or response data does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Malformed TLV or value.
    Model(ModelError),
    /// The class/instruction/parameters do not name a dmsc command.
    UnknownCommand,
    /// The command data field has the wrong length.
    Length(&'static str),
    /// A value inside the data field has the wrong length or form.
    Field(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Model(e) => write!(f, "{e}"),
            DecodeError::UnknownCommand => f.write_str("not a dmsc command"),
            DecodeError::Length(what) => write!(f, "wrong length of {what}"),
            DecodeError::Field(what) => write!(f, "invalid {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

impl From<ModelError> for DecodeError {
    fn from(e: ModelError) -> Self {
        DecodeError::Model(e)
    }
}

impl From<TlvError> for DecodeError {
    fn from(e: TlvError) -> Self {
        DecodeError::Model(ModelError::Tlv(e))
    }
}

impl DecodeError {
    /// The status word a card answers when a command's data does not decode.
    pub fn status(&self) -> Status {
        match self {
            DecodeError::UnknownCommand => Status::IncorrectP1OrP2Parameter,
            DecodeError::Length(_) => Status::WrongLength,
            DecodeError::Model(_) | DecodeError::Field(_) => Status::IncorrectDataParameter,
        }
    }
}

/// A PIN or PUK: 4–8 bytes, none of them `FF`; zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    /// Checks and wraps a PIN.
    pub fn new(bytes: &[u8]) -> Result<Pin, DecodeError> {
        if bytes.len() < PIN_MIN_LEN || bytes.len() > PIN_BLOCK_LEN || bytes.contains(&0xFF) {
            return Err(DecodeError::Field("PIN (4 to 8 bytes)"));
        }
        Ok(Pin(Zeroizing::new(bytes.to_vec())))
    }

    /// The PIN's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The PIN padded with `FF` to [`PIN_BLOCK_LEN`].
    pub fn block(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(self.0.to_vec());
        b.resize(PIN_BLOCK_LEN, 0xFF);
        b
    }

    /// Unpads a PIN block.
    pub fn from_block(block: &[u8]) -> Result<Pin, DecodeError> {
        if block.len() != PIN_BLOCK_LEN {
            return Err(DecodeError::Length("PIN block (8 bytes)"));
        }
        let len = block
            .iter()
            .position(|b| *b == 0xFF)
            .unwrap_or(PIN_BLOCK_LEN);
        if block[len..].iter().any(|b| *b != 0xFF) {
            return Err(DecodeError::Field("PIN block padding"));
        }
        Pin::new(&block[..len])
    }
}

/// Card-wide configuration, the value of [`ObjectRef::Card`].
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
    pub required: Vec<String>,
    /// Whether the user must verify the PIN before deciding on an unapproved package.
    pub user_consent_needs_pin: bool,
}

/// An authority key set as the card describes it (keys are never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    pub name: String,
    /// AES key length in bytes (16, 24 or 32).
    pub key_length: u8,
    /// Key check values of ENC, MAC and DEK.
    pub key_check_values: [[u8; 3]; 3],
}

/// The value of an object, typed by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectValue {
    Card(CardConfig),
    Mo(MoRecord),
    Policy(Vec<u8>),
    BootstrapKey(BootstrapKeyValue),
    /// An uncompressed SEC1 P-256 point (65 bytes).
    Approver(Vec<u8>),
    ApprovalRule(ApprovalRule),
    Floor(Version),
    /// An uncompressed SEC1 P-256 point (65 bytes).
    IdentityKey(Vec<u8>),
    AuditLog(Vec<AuditEntry>),
    Authority(AuthorityInfo),
}

fn be_u32(bytes: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    let arr: [u8; 4] = bytes.try_into().map_err(|_| DecodeError::Field(what))?;
    Ok(u32::from_be_bytes(arr))
}

fn utf8(bytes: &[u8], tag: u32) -> Result<String, DecodeError> {
    core::str::from_utf8(bytes)
        .map(|s| s.to_string())
        .map_err(|_| DecodeError::from(TlvError::InvalidValue { tag }))
}

fn one_byte(bytes: &[u8], what: &'static str) -> Result<u8, DecodeError> {
    match bytes {
        [b] => Ok(*b),
        _ => Err(DecodeError::Field(what)),
    }
}

fn point(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(DecodeError::Field("uncompressed P-256 point (65 bytes)"));
    }
    Ok(bytes.to_vec())
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

/// Security events the card records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    AuthSuccess,
    AuthFailure,
    Alarm,
    ObjectCreated,
    ObjectChanged,
    ObjectDeleted,
    AccessDenied,
    AclChanged,
    ApprovalGranted,
    ApprovalRefused,
    BootstrapVerified,
    BootstrapRejected,
    PinChanged,
    PinUnblocked,
    FloorMoved,
    Initialised,
    ConfigChanged,
    AuthorityAdded,
    AuthorityRotated,
    AuthorityRemoved,
    /// An SCP03 INITIALIZE UPDATE was answered (aggregated, see [`AuditEntry::repeats`]).
    InitializeUpdate,
}

impl AuditEvent {
    /// Every event.
    pub const ALL: [AuditEvent; 21] = [
        AuditEvent::AuthSuccess,
        AuditEvent::AuthFailure,
        AuditEvent::Alarm,
        AuditEvent::ObjectCreated,
        AuditEvent::ObjectChanged,
        AuditEvent::ObjectDeleted,
        AuditEvent::AccessDenied,
        AuditEvent::AclChanged,
        AuditEvent::ApprovalGranted,
        AuditEvent::ApprovalRefused,
        AuditEvent::BootstrapVerified,
        AuditEvent::BootstrapRejected,
        AuditEvent::PinChanged,
        AuditEvent::PinUnblocked,
        AuditEvent::FloorMoved,
        AuditEvent::Initialised,
        AuditEvent::ConfigChanged,
        AuditEvent::AuthorityAdded,
        AuditEvent::AuthorityRotated,
        AuditEvent::AuthorityRemoved,
        AuditEvent::InitializeUpdate,
    ];

    /// Wire code.
    pub fn code(self) -> u8 {
        AuditEvent::ALL.iter().position(|e| *e == self).unwrap_or(0) as u8 + 1
    }

    /// Event for a wire code.
    pub fn from_code(code: u8) -> Option<AuditEvent> {
        AuditEvent::ALL
            .get((code as usize).checked_sub(1)?)
            .copied()
    }

    /// Kebab-case name used in output and filters.
    pub fn name(self) -> &'static str {
        match self {
            AuditEvent::AuthSuccess => "auth-success",
            AuditEvent::AuthFailure => "auth-failure",
            AuditEvent::Alarm => "alarm",
            AuditEvent::ObjectCreated => "object-created",
            AuditEvent::ObjectChanged => "object-changed",
            AuditEvent::ObjectDeleted => "object-deleted",
            AuditEvent::AccessDenied => "access-denied",
            AuditEvent::AclChanged => "acl-changed",
            AuditEvent::ApprovalGranted => "approval-granted",
            AuditEvent::ApprovalRefused => "approval-refused",
            AuditEvent::BootstrapVerified => "bootstrap-verified",
            AuditEvent::BootstrapRejected => "bootstrap-rejected",
            AuditEvent::PinChanged => "pin-changed",
            AuditEvent::PinUnblocked => "pin-unblocked",
            AuditEvent::FloorMoved => "floor-moved",
            AuditEvent::Initialised => "initialised",
            AuditEvent::ConfigChanged => "config-changed",
            AuditEvent::AuthorityAdded => "authority-added",
            AuditEvent::AuthorityRotated => "authority-rotated",
            AuditEvent::AuthorityRemoved => "authority-removed",
            AuditEvent::InitializeUpdate => "initialize-update",
        }
    }

    /// Parses the kebab-case name.
    pub fn parse(s: &str) -> Option<AuditEvent> {
        AuditEvent::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Monotonic sequence number, never reused.
    pub sequence: u32,
    pub event: AuditEvent,
    /// The principal concerned, in ACL form (`*`, `user`, an authority name).
    pub principal: String,
    /// The card session (power-up or SELECT) the event happened in.
    pub session: u32,
    /// What was concerned (object reference, reason), short text. For an
    /// aggregated record: that of the latest occurrence.
    pub detail: String,
    /// Set on an aggregated record: events of one kind for one principal
    /// from callers without an SCP03 session, counted in one record. Its
    /// `sequence`, `session` and `detail` are those of the latest occurrence.
    pub repeats: Option<Repeats>,
}

/// How often an aggregated audit record's event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats {
    /// Occurrences counted in the record (at least 1, saturating).
    pub count: u32,
    /// The sequence number the first of them got.
    pub first_sequence: u32,
}

impl AuditEntry {
    /// The entry's fields as TLV.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        tlv::write(&mut out, tag::SEQUENCE, &self.sequence.to_be_bytes());
        tlv::write(&mut out, tag::EVENT, &[self.event.code()]);
        tlv::write(&mut out, tag::PRINCIPAL, self.principal.as_bytes());
        tlv::write(&mut out, tag::SESSION, &self.session.to_be_bytes());
        tlv::write(&mut out, tag::DETAIL, self.detail.as_bytes());
        if let Some(r) = self.repeats {
            tlv::write(&mut out, tag::REPEAT_COUNT, &r.count.to_be_bytes());
            tlv::write(
                &mut out,
                tag::FIRST_SEQUENCE,
                &r.first_sequence.to_be_bytes(),
            );
        }
        out
    }

    /// Decodes an entry.
    pub fn decode(bytes: &[u8]) -> Result<AuditEntry, DecodeError> {
        let f = objects::fields(bytes)?;
        f.only(
            &[
                tag::SEQUENCE,
                tag::EVENT,
                tag::PRINCIPAL,
                tag::SESSION,
                tag::DETAIL,
                tag::REPEAT_COUNT,
                tag::FIRST_SEQUENCE,
            ],
            &[],
        )?;
        let repeats = match (f.get(tag::REPEAT_COUNT), f.get(tag::FIRST_SEQUENCE)) {
            (None, None) => None,
            (Some(count), Some(first)) => Some(Repeats {
                count: be_u32(count, "repeat count")?,
                first_sequence: be_u32(first, "first sequence")?,
            }),
            _ => {
                return Err(TlvError::InvalidValue {
                    tag: tag::REPEAT_COUNT,
                }
                .into())
            }
        };
        Ok(AuditEntry {
            sequence: be_u32(f.require(tag::SEQUENCE)?, "sequence")?,
            event: AuditEvent::from_code(one_byte(f.require(tag::EVENT)?, "event")?).ok_or(
                DecodeError::from(TlvError::InvalidValue { tag: tag::EVENT }),
            )?,
            principal: utf8(f.require(tag::PRINCIPAL)?, tag::PRINCIPAL)?,
            session: be_u32(f.require(tag::SESSION)?, "session")?,
            detail: utf8(f.require(tag::DETAIL)?, tag::DETAIL)?,
            repeats,
        })
    }
}

/// What SELECT returns: identity, generation and capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectInfo {
    /// Random card identifier made at initialisation.
    pub card_id: [u8; 16],
    pub applet_version: (u8, u8),
    /// Grows on every committed change of the card's objects.
    pub generation: u64,
    /// Largest command data field the card accepts in one APDU (Nc).
    pub max_command: u32,
    /// Largest response data field the card returns in one APDU (Ne).
    pub max_response: u32,
    /// Whether the card accepts extended-length APDUs.
    pub extended_length: bool,
    /// Bit map of supported algorithms: see [`algorithms`].
    pub algorithms: u16,
    pub free_memory: u32,
    pub total_memory: u32,
    /// The SCP03 "i" parameter the card uses.
    pub scp_i: u8,
}

/// Bits of [`SelectInfo::algorithms`].
pub mod algorithms {
    pub const AES_CMAC: u16 = 0x0001;
    pub const HMAC_SHA256: u16 = 0x0002;
    pub const HMAC_SHA1: u16 = 0x0004;
    pub const ECDSA_P256_SHA256: u16 = 0x0008;
    pub const SCP03_AES128: u16 = 0x0010;
    pub const SCP03_AES192: u16 = 0x0020;
    pub const SCP03_AES256: u16 = 0x0040;
    pub const SCP03_S16: u16 = 0x0080;
}

impl SelectInfo {
    /// The FCI template (tag `6F`).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        tlv::write(&mut p, tag::CARD_ID, &self.card_id);
        tlv::write(
            &mut p,
            tag::APPLET_VERSION,
            &[self.applet_version.0, self.applet_version.1],
        );
        tlv::write(&mut p, tag::GENERATION, &self.generation.to_be_bytes());
        tlv::write(&mut p, tag::MAX_COMMAND, &self.max_command.to_be_bytes());
        tlv::write(&mut p, tag::MAX_RESPONSE, &self.max_response.to_be_bytes());
        tlv::write(&mut p, tag::EXTENDED_LENGTH, &[self.extended_length as u8]);
        tlv::write(&mut p, tag::ALGORITHMS, &self.algorithms.to_be_bytes());
        tlv::write(&mut p, tag::FREE_MEMORY, &self.free_memory.to_be_bytes());
        tlv::write(&mut p, tag::TOTAL_MEMORY, &self.total_memory.to_be_bytes());
        tlv::write(&mut p, tag::SCP_I, &[self.scp_i]);
        let mut inner = tlv::encode(tag::AID, &AID);
        tlv::write(&mut inner, tag::PROPRIETARY, &p);
        tlv::encode(tag::FCI, &inner)
    }

    /// Decodes the FCI template.
    pub fn decode(bytes: &[u8]) -> Result<SelectInfo, DecodeError> {
        let (fci, rest) = tlv::parse_one(bytes)?;
        if fci.tag != tag::FCI || !rest.is_empty() {
            return Err(TlvError::Unexpected {
                tag: fci.tag,
                at: 0,
            }
            .into());
        }
        let outer = objects::fields(fci.value)?;
        let f = objects::fields(outer.require(tag::PROPRIETARY)?)?;
        let card_id: [u8; 16] = f
            .require(tag::CARD_ID)?
            .try_into()
            .map_err(|_| DecodeError::Field("card ID (16 bytes)"))?;
        let version = f.require(tag::APPLET_VERSION)?;
        let generation: [u8; 8] = f
            .require(tag::GENERATION)?
            .try_into()
            .map_err(|_| DecodeError::Field("generation (8 bytes)"))?;
        let algs: [u8; 2] = f
            .require(tag::ALGORITHMS)?
            .try_into()
            .map_err(|_| DecodeError::Field("algorithms (2 bytes)"))?;
        if version.len() != 2 {
            return Err(DecodeError::Field("applet version (2 bytes)"));
        }
        Ok(SelectInfo {
            card_id,
            applet_version: (version[0], version[1]),
            generation: u64::from_be_bytes(generation),
            max_command: be_u32(f.require(tag::MAX_COMMAND)?, "max command")?,
            max_response: be_u32(f.require(tag::MAX_RESPONSE)?, "max response")?,
            extended_length: one_byte(f.require(tag::EXTENDED_LENGTH)?, "flag")? != 0,
            algorithms: u16::from_be_bytes(algs),
            free_memory: be_u32(f.require(tag::FREE_MEMORY)?, "free memory")?,
            total_memory: be_u32(f.require(tag::TOTAL_MEMORY)?, "total memory")?,
            scp_i: one_byte(f.require(tag::SCP_I)?, "SCP i")?,
        })
    }
}

/// What GET DATA returns for one object: its value and its ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectData {
    pub value: ObjectValue,
    pub acl: Acl,
}

impl ObjectData {
    /// `53` value, `8C` ACL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = tlv::encode(tag::VALUE, &self.value.encode());
        tlv::write(&mut out, tag::ACL, self.acl.to_string().as_bytes());
        out
    }

    /// Decodes the response for an object of `kind`.
    pub fn decode(kind: ObjectKind, bytes: &[u8]) -> Result<ObjectData, DecodeError> {
        let f = objects::fields(bytes)?;
        f.only(&[tag::VALUE, tag::ACL], &[])?;
        Ok(ObjectData {
            value: ObjectValue::decode(kind, f.require(tag::VALUE)?)?,
            acl: Acl::parse(&utf8(f.require(tag::ACL)?, tag::ACL)?)?,
        })
    }
}

/// One object of a GET DATA "read all" answer: reference, value and ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub object: ObjectRef,
    pub data: ObjectData,
}

/// Encodes a "read all" answer: one `E1` entry per object, holding the
/// reference TLV, then `53` value and `8C` ACL as in a single GET DATA.
pub fn encode_records(records: &[ObjectRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let mut inner = r.object.encode();
        inner.extend_from_slice(&r.data.encode());
        tlv::write(&mut out, tag::LIST_ENTRY, &inner);
    }
    out
}

/// Decodes a "read all" answer for objects of `kind`.
pub fn decode_records(kind: ObjectKind, bytes: &[u8]) -> Result<Vec<ObjectRecord>, DecodeError> {
    let f = objects::fields(bytes)?;
    f.only(&[tag::LIST_ENTRY], &[tag::LIST_ENTRY])?;
    f.all(tag::LIST_ENTRY)
        .map(|entry| {
            let (first, rest) = tlv::parse_one(entry)?;
            let object = ObjectRef::from_tlv(first.tag, first.value)?;
            if object.kind() != kind {
                return Err(DecodeError::from(TlvError::Unexpected {
                    tag: first.tag,
                    at: first.offset,
                }));
            }
            Ok(ObjectRecord {
                object,
                data: ObjectData::decode(kind, rest)?,
            })
        })
        .collect()
}

/// One entry of a listing: the object and the size of its stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub object: ObjectRef,
    pub size: u32,
}

/// Encodes a listing.
pub fn encode_list(entries: &[ListEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut inner = e.object.encode();
        tlv::write(&mut inner, tag::SIZE, &e.size.to_be_bytes());
        tlv::write(&mut out, tag::LIST_ENTRY, &inner);
    }
    out
}

/// Decodes a listing.
pub fn decode_list(bytes: &[u8]) -> Result<Vec<ListEntry>, DecodeError> {
    let f = objects::fields(bytes)?;
    f.only(&[tag::LIST_ENTRY], &[tag::LIST_ENTRY])?;
    f.all(tag::LIST_ENTRY)
        .map(|entry| {
            let items = tlv::parse_all(entry)?;
            match items.as_slice() {
                [obj, size] if size.tag == tag::SIZE => Ok(ListEntry {
                    object: ObjectRef::from_tlv(obj.tag, obj.value)?,
                    size: be_u32(size.value, "size")?,
                }),
                _ => Err(DecodeError::from(TlvError::Missing { tag: tag::SIZE })),
            }
        })
        .collect()
}

/// Why a package is not approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// A required approver sent no approval.
    MissingApprover(String),
    /// The approval of this approver does not verify.
    BadSignature(String),
    /// An approval names an approver the card does not know.
    UnknownApprover(String),
    /// The version is below the device class's anti-rollback floor.
    BelowFloor(Version),
    /// The card has no approval rule, or the rule names no approver.
    NoRule,
}

impl RefusalReason {
    fn code(&self) -> u8 {
        match self {
            RefusalReason::MissingApprover(_) => 1,
            RefusalReason::BadSignature(_) => 2,
            RefusalReason::UnknownApprover(_) => 3,
            RefusalReason::BelowFloor(_) => 4,
            RefusalReason::NoRule => 5,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::MissingApprover(n) => write!(f, "approval of {n} missing"),
            RefusalReason::BadSignature(n) => write!(f, "signature of {n} does not verify"),
            RefusalReason::UnknownApprover(n) => {
                write!(f, "approver {n} is not registered on the card")
            }
            RefusalReason::BelowFloor(v) => write!(f, "version below the anti-rollback floor {v}"),
            RefusalReason::NoRule => f.write_str("the card has no approval rule"),
        }
    }
}

/// The card's answer to CHECK APPROVAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalVerdict {
    pub approved: bool,
    pub reasons: Vec<RefusalReason>,
    /// Whether the user must verify the PIN before overriding a refusal.
    pub user_consent_needs_pin: bool,
}

impl ApprovalVerdict {
    /// `94` verdict, `E3` reasons, `D7` flag.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = tlv::encode(tag::VERDICT, &[if self.approved { 0 } else { 1 }]);
        for r in &self.reasons {
            let mut inner = tlv::encode(tag::REASON_CODE, &[r.code()]);
            match r {
                RefusalReason::MissingApprover(n)
                | RefusalReason::BadSignature(n)
                | RefusalReason::UnknownApprover(n) => {
                    tlv::write(&mut inner, tag::APPROVER, n.as_bytes())
                }
                RefusalReason::BelowFloor(v) => {
                    tlv::write(&mut inner, tag::VERSION, v.to_string().as_bytes())
                }
                RefusalReason::NoRule => {}
            }
            tlv::write(&mut out, tag::REASON, &inner);
        }
        tlv::write(
            &mut out,
            tag::USER_CONSENT_PIN,
            &[self.user_consent_needs_pin as u8],
        );
        out
    }

    /// Decodes the verdict.
    pub fn decode(bytes: &[u8]) -> Result<ApprovalVerdict, DecodeError> {
        let f = objects::fields(bytes)?;
        f.only(
            &[tag::VERDICT, tag::REASON, tag::USER_CONSENT_PIN],
            &[tag::REASON],
        )?;
        let approved = one_byte(f.require(tag::VERDICT)?, "verdict")? == 0;
        let mut reasons = Vec::new();
        for r in f.all(tag::REASON) {
            let rf = objects::fields(r)?;
            let code = one_byte(rf.require(tag::REASON_CODE)?, "reason code")?;
            let name = || -> Result<String, DecodeError> {
                utf8(rf.require(tag::APPROVER)?, tag::APPROVER)
            };
            reasons.push(match code {
                1 => RefusalReason::MissingApprover(name()?),
                2 => RefusalReason::BadSignature(name()?),
                3 => RefusalReason::UnknownApprover(name()?),
                4 => RefusalReason::BelowFloor(Version::parse(&utf8(
                    rf.require(tag::VERSION)?,
                    tag::VERSION,
                )?)?),
                5 => RefusalReason::NoRule,
                _ => {
                    return Err(TlvError::InvalidValue {
                        tag: tag::REASON_CODE,
                    }
                    .into())
                }
            });
        }
        let pin = f
            .get(tag::USER_CONSENT_PIN)
            .map(|b| one_byte(b, "flag"))
            .transpose()?;
        Ok(ApprovalVerdict {
            approved,
            reasons,
            user_consent_needs_pin: pin.unwrap_or(0) != 0,
        })
    }
}

/// The package a CHECK APPROVAL or CONFIRM INSTALLED is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageId {
    pub digest: [u8; 32],
    pub version: Version,
    pub device_class: String,
}

impl PackageId {
    fn write(&self, out: &mut Vec<u8>) {
        tlv::write(out, tag::DIGEST, &self.digest);
        tlv::write(out, tag::VERSION, self.version.to_string().as_bytes());
        tlv::write(out, tag::DEVICE_CLASS, self.device_class.as_bytes());
    }

    fn read(f: &tlv::Fields<'_>) -> Result<PackageId, DecodeError> {
        let digest: [u8; 32] = f
            .require(tag::DIGEST)?
            .try_into()
            .map_err(|_| DecodeError::Field("SHA-256 digest (32 bytes)"))?;
        let version = Version::parse(&utf8(f.require(tag::VERSION)?, tag::VERSION)?)?;
        let device_class = utf8(f.require(tag::DEVICE_CLASS)?, tag::DEVICE_CLASS)?;
        check_name(&device_class)?;
        Ok(PackageId {
            digest,
            version,
            device_class,
        })
    }

    /// The statement `approver` signs for this package.
    pub fn statement(&self, approver: &str) -> objects::ApprovalStatement {
        objects::ApprovalStatement {
            digest: self.digest,
            version: self.version.clone(),
            device_class: self.device_class.clone(),
            approver: approver.to_string(),
        }
    }
}

/// One approver's signature: DER, or raw `r || s` (64 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub approver: String,
    pub signature: Vec<u8>,
}

/// Every dmsc command as the card receives it (after secure messaging is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// SELECT by AID.
    Select { aid: Vec<u8> },
    /// GET DATA for one object: value and ACL. `audit_from` applies to the audit log.
    ReadObject {
        object: ObjectRef,
        audit_from: Option<u32>,
    },
    /// GET DATA: list objects of a named kind.
    ListObjects { kind: ObjectKind },
    /// PUT DATA: create (Add right) or replace (Replace right) an object's value,
    /// optionally with an ACL (creating defaults the ACL when absent).
    PutObject {
        object: ObjectRef,
        value: ObjectValue,
        acl: Option<Acl>,
    },
    /// PUT DATA with only an ACL: change the ACL (Replace right).
    SetAcl { object: ObjectRef, acl: Acl },
    /// DELETE an object (Delete right).
    DeleteObject { object: ObjectRef },
    /// VERIFY; no PIN asks for the tries left.
    Verify { reference: u8, pin: Option<Pin> },
    /// CHANGE REFERENCE DATA of the user PIN.
    ChangePin { old: Pin, new: Pin },
    /// RESET RETRY COUNTER of the user PIN with the PUK.
    ResetRetryCounter { puk: Pin, new: Pin },
    /// GET CHALLENGE of `len` random bytes.
    GetChallenge { len: usize },
    /// INTERNAL AUTHENTICATE: sign a host challenge with the card's identity key.
    InternalAuthenticate { challenge: Vec<u8> },
    /// MANAGE SECURITY ENVIRONMENT: select the bootstrap key for the next checksum verification.
    SelectMacKey { key_id: u8 },
    /// PERFORM SECURITY OPERATION: VERIFY CRYPTOGRAPHIC CHECKSUM.
    VerifyMac { data: Vec<u8>, mac: Vec<u8> },
    /// PERFORM SECURITY OPERATION: VERIFY DIGITAL SIGNATURE with an approver's key
    /// (ECDSA P-256 / SHA-256 over `data`; DER or raw signature).
    VerifySignature {
        approver: String,
        data: Vec<u8>,
        signature: Vec<u8>,
    },
    /// CHECK APPROVAL of a package.
    CheckApproval {
        package: PackageId,
        approvals: Vec<Approval>,
    },
    /// CONFIRM INSTALLED: move the device class's floor to an approved package's version.
    ConfirmInstalled { package: PackageId },
    /// GET RESPONSE.
    GetResponse { le: usize },
    /// GET DATA: every object of a kind the caller may read, with value and
    /// ACL, in one response (MOs only).
    ReadAllObjects { kind: ObjectKind },
    /// GlobalPlatform PUT KEY of a whole SCP03 key set (ENC, MAC, DEK), the keys
    /// encrypted with the session authority's DEK: see [`PutKey`].
    PutKey(PutKey),
}

fn fields_of(data: &[u8]) -> Result<tlv::Fields<'_>, DecodeError> {
    Ok(objects::fields(data)?)
}

fn single_object(data: &[u8]) -> Result<ObjectRef, DecodeError> {
    Ok(ObjectRef::decode(data)?)
}

impl Request {
    /// Encodes the request as one command APDU (before chaining or secure messaging).
    pub fn to_command(&self) -> Command {
        let iso = |ins, p1, p2| Command::new(CLA_ISO, ins, p1, p2);
        let prop = |ins, p1, p2| Command::new(CLA_PROPRIETARY, ins, p1, p2);
        match self {
            Request::Select { aid } => iso(ins::SELECT, 0x04, 0x00)
                .with_data(aid.clone())
                .with_le(256),
            Request::ReadObject { object, audit_from } => {
                let mut data = object.encode();
                if let Some(from) = audit_from {
                    tlv::write(&mut data, tag::AUDIT_FROM, &from.to_be_bytes());
                }
                iso(ins::GET_DATA, P1P2_OBJECT.0, P1P2_OBJECT.1)
                    .with_data(data)
                    .with_le(65_536)
            }
            Request::ListObjects { kind } => iso(ins::GET_DATA, P1P2_LIST.0, P1P2_LIST.1)
                .with_data(tlv::encode(kind.tag() as u32, &[]))
                .with_le(65_536),
            Request::ReadAllObjects { kind } => {
                iso(ins::GET_DATA, P1P2_READ_ALL.0, P1P2_READ_ALL.1)
                    .with_data(tlv::encode(kind.tag() as u32, &[]))
                    .with_le(65_536)
            }
            Request::PutObject { object, value, acl } => {
                let mut data = object.encode();
                if let Some(acl) = acl {
                    tlv::write(&mut data, tag::ACL, acl.to_string().as_bytes());
                }
                tlv::write(&mut data, tag::VALUE, &value.encode());
                iso(ins::PUT_DATA, P1P2_OBJECT.0, P1P2_OBJECT.1).with_data(data)
            }
            Request::SetAcl { object, acl } => {
                let mut data = object.encode();
                tlv::write(&mut data, tag::ACL, acl.to_string().as_bytes());
                iso(ins::PUT_DATA, P1P2_OBJECT.0, P1P2_OBJECT.1).with_data(data)
            }
            Request::DeleteObject { object } => {
                prop(ins::DELETE, 0x00, 0x00).with_data(object.encode())
            }
            Request::Verify { reference, pin } => {
                let c = iso(ins::VERIFY, 0x00, *reference);
                match pin {
                    Some(p) => c.with_data(p.block().to_vec()),
                    None => c,
                }
            }
            Request::ChangePin { old, new } => iso(ins::CHANGE_REFERENCE_DATA, 0x00, PIN_REF_USER)
                .with_data([old.block().as_slice(), new.block().as_slice()].concat()),
            Request::ResetRetryCounter { puk, new } => {
                iso(ins::RESET_RETRY_COUNTER, 0x00, PIN_REF_USER)
                    .with_data([puk.block().as_slice(), new.block().as_slice()].concat())
            }
            Request::GetChallenge { len } => iso(ins::GET_CHALLENGE, 0, 0).with_le(*len),
            Request::InternalAuthenticate { challenge } => iso(ins::INTERNAL_AUTHENTICATE, 0, 0)
                .with_data(challenge.clone())
                .with_le(256),
            Request::SelectMacKey { key_id } => iso(
                ins::MANAGE_SECURITY_ENVIRONMENT,
                MSE_SET_CCT.0,
                MSE_SET_CCT.1,
            )
            .with_data(tlv::encode(tag::KEY_REF, &[*key_id])),
            Request::VerifyMac { data, mac } => {
                let mut body = tlv::encode(tag::PLAIN, data);
                tlv::write(&mut body, tag::CHECKSUM, mac);
                iso(
                    ins::PERFORM_SECURITY_OPERATION,
                    PSO_VERIFY_CHECKSUM.0,
                    PSO_VERIFY_CHECKSUM.1,
                )
                .with_data(body)
            }
            Request::VerifySignature {
                approver,
                data,
                signature,
            } => {
                let mut body = tlv::encode(tag::APPROVER, approver.as_bytes());
                tlv::write(&mut body, tag::PLAIN, data);
                tlv::write(&mut body, tag::SIGNATURE, signature);
                iso(
                    ins::PERFORM_SECURITY_OPERATION,
                    PSO_VERIFY_SIGNATURE.0,
                    PSO_VERIFY_SIGNATURE.1,
                )
                .with_data(body)
            }
            Request::CheckApproval { package, approvals } => {
                let mut data = Vec::new();
                package.write(&mut data);
                for a in approvals {
                    let mut inner = tlv::encode(tag::APPROVER, a.approver.as_bytes());
                    tlv::write(&mut inner, tag::SIGNATURE, &a.signature);
                    tlv::write(&mut data, tag::APPROVAL, &inner);
                }
                prop(ins::CHECK_APPROVAL, 0, 0).with_data(data).with_le(256)
            }
            Request::ConfirmInstalled { package } => {
                let mut data = Vec::new();
                package.write(&mut data);
                prop(ins::CONFIRM_INSTALLED, 0, 0).with_data(data)
            }
            Request::GetResponse { le } => iso(ins::GET_RESPONSE, 0, 0).with_le(*le),
            Request::PutKey(p) => prop(ins::PUT_KEY, p.replace_kvn, PUT_KEY_P2)
                .with_data(p.encode())
                .with_le(256),
        }
    }

    /// Decodes a (complete, unwrapped, unchained) command. GlobalPlatform commands
    /// (INITIALIZE UPDATE, EXTERNAL AUTHENTICATE) are handled by
    /// [`crate::scp03`] and decode as [`DecodeError::UnknownCommand`] here.
    pub fn from_command(cmd: &Command) -> Result<Request, DecodeError> {
        let cla = cmd.cla & !(CLA_SECURE_MESSAGING | crate::apdu::CLA_CHAINING);
        let p1p2 = (cmd.p1, cmd.p2);
        let data = cmd.data.as_slice();
        match (cla, cmd.ins) {
            (CLA_ISO, ins::SELECT) if p1p2 == (0x04, 0x00) => {
                Ok(Request::Select { aid: data.to_vec() })
            }
            (CLA_ISO, ins::GET_DATA) if p1p2 == P1P2_OBJECT => {
                let f = fields_of(data)?;
                let (first, rest) = f
                    .items
                    .split_first()
                    .ok_or(TlvError::Missing { tag: 0x80 })?;
                let object = ObjectRef::from_tlv(first.tag, first.value)?;
                let audit_from = match rest {
                    [] => None,
                    [t] if t.tag == tag::AUDIT_FROM && object == ObjectRef::AuditLog => {
                        Some(be_u32(t.value, "audit sequence")?)
                    }
                    [t, ..] => {
                        return Err(TlvError::Unexpected {
                            tag: t.tag,
                            at: t.offset,
                        }
                        .into())
                    }
                };
                Ok(Request::ReadObject { object, audit_from })
            }
            (CLA_ISO, ins::GET_DATA) if p1p2 == P1P2_LIST => {
                let f = fields_of(data)?;
                match f.items.as_slice() {
                    [t] if t.value.is_empty() => {
                        let kind = ObjectKind::from_tag(t.tag).filter(|k| k.is_named()).ok_or(
                            TlvError::Unexpected {
                                tag: t.tag,
                                at: t.offset,
                            },
                        )?;
                        Ok(Request::ListObjects { kind })
                    }
                    _ => Err(TlvError::InvalidValue { tag: 0 }.into()),
                }
            }
            (CLA_ISO, ins::GET_DATA) if p1p2 == P1P2_READ_ALL => {
                let f = fields_of(data)?;
                match f.items.as_slice() {
                    [t] if t.value.is_empty()
                        && ObjectKind::from_tag(t.tag) == Some(ObjectKind::Mo) =>
                    {
                        Ok(Request::ReadAllObjects {
                            kind: ObjectKind::Mo,
                        })
                    }
                    _ => Err(TlvError::InvalidValue { tag: 0 }.into()),
                }
            }
            (CLA_ISO, ins::PUT_DATA) if p1p2 == P1P2_OBJECT => {
                let f = fields_of(data)?;
                let (first, rest) = f
                    .items
                    .split_first()
                    .ok_or(TlvError::Missing { tag: 0x80 })?;
                let object = ObjectRef::from_tlv(first.tag, first.value)?;
                let rest = tlv::Fields {
                    items: rest.to_vec(),
                };
                rest.only(&[tag::ACL, tag::VALUE], &[])?;
                let acl = rest
                    .get(tag::ACL)
                    .map(|a| utf8(a, tag::ACL).and_then(|s| Ok(Acl::parse(&s)?)))
                    .transpose()?;
                match (rest.get(tag::VALUE), acl) {
                    (Some(v), acl) => Ok(Request::PutObject {
                        value: ObjectValue::decode(object.kind(), v)?,
                        object,
                        acl,
                    }),
                    (None, Some(acl)) => Ok(Request::SetAcl { object, acl }),
                    (None, None) => Err(TlvError::Missing { tag: tag::VALUE }.into()),
                }
            }
            (CLA_PROPRIETARY, ins::DELETE) if p1p2 == (0, 0) => Ok(Request::DeleteObject {
                object: single_object(data)?,
            }),
            (CLA_ISO, ins::VERIFY)
                if cmd.p1 == 0 && matches!(cmd.p2, PIN_REF_USER | PIN_REF_PUK) =>
            {
                let pin = if data.is_empty() {
                    None
                } else {
                    Some(Pin::from_block(data)?)
                };
                Ok(Request::Verify {
                    reference: cmd.p2,
                    pin,
                })
            }
            (CLA_ISO, ins::CHANGE_REFERENCE_DATA) if p1p2 == (0, PIN_REF_USER) => {
                let (old, new) = pin_pair(data)?;
                Ok(Request::ChangePin { old, new })
            }
            (CLA_ISO, ins::RESET_RETRY_COUNTER) if p1p2 == (0, PIN_REF_USER) => {
                let (puk, new) = pin_pair(data)?;
                Ok(Request::ResetRetryCounter { puk, new })
            }
            (CLA_ISO, ins::GET_CHALLENGE) if p1p2 == (0, 0) && data.is_empty() => {
                let len = cmd.le.ok_or(DecodeError::Length("challenge (Le)"))?;
                Ok(Request::GetChallenge { len })
            }
            (CLA_ISO, ins::INTERNAL_AUTHENTICATE) if p1p2 == (0, 0) => {
                if data.is_empty() || data.len() > 255 {
                    return Err(DecodeError::Length("challenge (1 to 255 bytes)"));
                }
                Ok(Request::InternalAuthenticate {
                    challenge: data.to_vec(),
                })
            }
            (CLA_ISO, ins::MANAGE_SECURITY_ENVIRONMENT)
                if p1p2 == MSE_SET_CCT || p1p2 == (MSE_SET_COMPUTATION, MSE_SET_CCT.1) =>
            {
                let f = fields_of(data)?;
                f.only(&[tag::KEY_REF], &[])?;
                Ok(Request::SelectMacKey {
                    key_id: one_byte(f.require(tag::KEY_REF)?, "key reference")?,
                })
            }
            (CLA_ISO, ins::PERFORM_SECURITY_OPERATION) if p1p2 == PSO_VERIFY_CHECKSUM => {
                let f = fields_of(data)?;
                f.only(&[tag::PLAIN, tag::CHECKSUM], &[])?;
                Ok(Request::VerifyMac {
                    data: f.require(tag::PLAIN)?.to_vec(),
                    mac: f.require(tag::CHECKSUM)?.to_vec(),
                })
            }
            (CLA_ISO, ins::PERFORM_SECURITY_OPERATION) if p1p2 == PSO_VERIFY_SIGNATURE => {
                let f = fields_of(data)?;
                f.only(&[tag::APPROVER, tag::PLAIN, tag::SIGNATURE], &[])?;
                let approver = utf8(f.require(tag::APPROVER)?, tag::APPROVER)?;
                check_name(&approver)?;
                Ok(Request::VerifySignature {
                    approver,
                    data: f.require(tag::PLAIN)?.to_vec(),
                    signature: f.require(tag::SIGNATURE)?.to_vec(),
                })
            }
            (CLA_PROPRIETARY, ins::CHECK_APPROVAL) if p1p2 == (0, 0) => {
                let f = fields_of(data)?;
                f.only(
                    &[tag::DIGEST, tag::VERSION, tag::DEVICE_CLASS, tag::APPROVAL],
                    &[tag::APPROVAL],
                )?;
                let package = PackageId::read(&f)?;
                let mut approvals = Vec::new();
                for a in f.all(tag::APPROVAL) {
                    let af = fields_of(a)?;
                    af.only(&[tag::APPROVER, tag::SIGNATURE], &[])?;
                    let approver = utf8(af.require(tag::APPROVER)?, tag::APPROVER)?;
                    check_name(&approver)?;
                    approvals.push(Approval {
                        approver,
                        signature: af.require(tag::SIGNATURE)?.to_vec(),
                    });
                }
                Ok(Request::CheckApproval { package, approvals })
            }
            (CLA_PROPRIETARY, ins::CONFIRM_INSTALLED) if p1p2 == (0, 0) => {
                let f = fields_of(data)?;
                f.only(&[tag::DIGEST, tag::VERSION, tag::DEVICE_CLASS], &[])?;
                Ok(Request::ConfirmInstalled {
                    package: PackageId::read(&f)?,
                })
            }
            (CLA_PROPRIETARY, ins::PUT_KEY) if cmd.p2 == PUT_KEY_P2 && cmd.p1 != 0xFF => {
                Ok(Request::PutKey(PutKey::decode(cmd.p1, data)?))
            }
            (CLA_ISO, ins::GET_RESPONSE) if p1p2 == (0, 0) && data.is_empty() => {
                Ok(Request::GetResponse {
                    le: cmd.le.unwrap_or(256),
                })
            }
            _ => Err(DecodeError::UnknownCommand),
        }
    }

    /// Whether an APDU trace must hide this command's data (PINs, keys).
    pub fn carries_secret(&self) -> bool {
        matches!(
            self,
            Request::Verify { pin: Some(_), .. }
                | Request::ChangePin { .. }
                | Request::ResetRetryCounter { .. }
                | Request::PutObject {
                    value: ObjectValue::BootstrapKey(_),
                    ..
                }
                | Request::PutKey(_)
        )
    }
}

fn pin_pair(data: &[u8]) -> Result<(Pin, Pin), DecodeError> {
    if data.len() != 2 * PIN_BLOCK_LEN {
        return Err(DecodeError::Length("two PIN blocks (16 bytes)"));
    }
    Ok((
        Pin::from_block(&data[..PIN_BLOCK_LEN])?,
        Pin::from_block(&data[PIN_BLOCK_LEN..])?,
    ))
}

/// Whether a raw command APDU's data must be redacted in traces: PIN commands,
/// PUT DATA of a bootstrap key, SCP03 PUT KEY. Decides from the header and the
/// first object reference only, so it also works on malformed commands.
pub fn command_carries_secret(cmd: &Command) -> bool {
    let cla = cmd.cla & !(CLA_SECURE_MESSAGING | crate::apdu::CLA_CHAINING);
    match (cla, cmd.ins) {
        (CLA_ISO, ins::VERIFY | ins::CHANGE_REFERENCE_DATA | ins::RESET_RETRY_COUNTER) => {
            !cmd.data.is_empty()
        }
        (CLA_PROPRIETARY, ins::PUT_KEY) => true,
        (CLA_ISO, ins::PUT_DATA) => {
            // Secure messaging hides the content anyway; without it, check the object kind.
            cmd.cla & CLA_SECURE_MESSAGING != 0
                || cmd.data.first() == Some(&ObjectKind::BootstrapKey.tag())
                || cmd.is_chained()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn pin(s: &str) -> Pin {
        Pin::new(s.as_bytes()).unwrap()
    }

    fn package() -> PackageId {
        PackageId {
            digest: [7; 32],
            version: Version::parse("2.1").unwrap(),
            device_class: "gateway".into(),
        }
    }

    #[test]
    fn every_request_round_trips() {
        let requests = vec![
            Request::Select { aid: AID.to_vec() },
            Request::ReadObject {
                object: ObjectRef::Mo("./DMAcc".into()),
                audit_from: None,
            },
            Request::ReadObject {
                object: ObjectRef::AuditLog,
                audit_from: Some(17),
            },
            Request::ListObjects {
                kind: ObjectKind::Mo,
            },
            Request::ReadAllObjects {
                kind: ObjectKind::Mo,
            },
            Request::PutObject {
                object: ObjectRef::Mo("./DMAcc".into()),
                value: ObjectValue::Mo(MoRecord {
                    mo_type: "urn:oma:mo:oma-dm-dmacc:1.0".into(),
                    version: 0,
                    content: vec![1, 2, 3],
                }),
                acl: Some(Acl::parse("Get=*&Replace=ServerA").unwrap()),
            },
            Request::PutObject {
                object: ObjectRef::BootstrapKey(1),
                value: ObjectValue::BootstrapKey(BootstrapKeyValue {
                    algorithm: objects::MacAlgorithm::AesCmac,
                    key: Some(Zeroizing::new(vec![0x11; 16])),
                }),
                acl: None,
            },
            Request::PutObject {
                object: ObjectRef::ApprovalRule,
                value: ObjectValue::ApprovalRule(ApprovalRule {
                    required: vec!["maintainer".into(), "owner".into()],
                    user_consent_needs_pin: true,
                }),
                acl: None,
            },
            Request::PutObject {
                object: ObjectRef::Policy,
                value: ObjectValue::Policy(vec![9; 100]),
                acl: None,
            },
            Request::PutObject {
                object: ObjectRef::Floor("gateway".into()),
                value: ObjectValue::Floor(Version::parse("3.0").unwrap()),
                acl: None,
            },
            Request::PutObject {
                object: ObjectRef::Card,
                value: ObjectValue::Card(CardConfig {
                    failure_limit: 6,
                    used_memory: 0,
                    total_memory: 0,
                }),
                acl: None,
            },
            Request::SetAcl {
                object: ObjectRef::Policy,
                acl: Acl::parse("Get=*").unwrap(),
            },
            Request::DeleteObject {
                object: ObjectRef::Approver("owner".into()),
            },
            Request::Verify {
                reference: PIN_REF_USER,
                pin: None,
            },
            Request::Verify {
                reference: PIN_REF_USER,
                pin: Some(pin("123456")),
            },
            Request::ChangePin {
                old: pin("1234"),
                new: pin("87654321"),
            },
            Request::ResetRetryCounter {
                puk: pin("12345678"),
                new: pin("4321"),
            },
            Request::GetChallenge { len: 8 },
            Request::InternalAuthenticate {
                challenge: vec![5; 32],
            },
            Request::SelectMacKey { key_id: 2 },
            Request::VerifyMac {
                data: vec![3; 70_000],
                mac: vec![4; 16],
            },
            Request::CheckApproval {
                package: package(),
                approvals: vec![Approval {
                    approver: "owner".into(),
                    signature: vec![0x30; 70],
                }],
            },
            Request::ConfirmInstalled { package: package() },
            Request::VerifySignature {
                approver: "owner".into(),
                data: vec![1; 300],
                signature: vec![2; 64],
            },
            Request::GetResponse { le: 256 },
        ];
        for r in requests {
            let cmd = r.to_command();
            assert_eq!(Request::from_command(&cmd).unwrap(), r, "{cmd:?}");
            // Through bytes as well, when the data fits one APDU.
            if let Ok(bytes) = cmd.to_bytes() {
                let again = Command::decode(&bytes).unwrap();
                assert_eq!(Request::from_command(&again).unwrap(), r);
            }
        }
    }

    #[test]
    fn unknown_and_malformed_commands() {
        assert_eq!(
            Request::from_command(&Command::new(0, 0x01, 0, 0)),
            Err(DecodeError::UnknownCommand)
        );
        assert_eq!(
            Request::from_command(&Command::new(0, ins::SELECT, 0x00, 0x0C)),
            Err(DecodeError::UnknownCommand)
        );
        let bad_tlv = Command::new(0, ins::GET_DATA, 0x3F, 0xFF).with_data(vec![0x81, 0x05, 1]);
        assert_eq!(
            Request::from_command(&bad_tlv).unwrap_err().status(),
            Status::IncorrectDataParameter
        );
        let bad_pin = Command::new(0, ins::VERIFY, 0, PIN_REF_USER).with_data(vec![0x31; 5]);
        assert_eq!(
            Request::from_command(&bad_pin).unwrap_err().status(),
            Status::WrongLength
        );
        let list_singleton = Command::new(0, ins::GET_DATA, 0x3F, 0xFE).with_data(vec![0x82, 0x00]);
        assert!(Request::from_command(&list_singleton).is_err());
    }

    #[test]
    fn responses_round_trip() {
        let info = SelectInfo {
            card_id: [0xA5; 16],
            applet_version: APPLET_VERSION,
            generation: 42,
            max_command: 65_535,
            max_response: 65_536,
            extended_length: true,
            algorithms: algorithms::AES_CMAC | algorithms::SCP03_AES128,
            free_memory: 1000,
            total_memory: 262_144,
            scp_i: 0x70,
        };
        assert_eq!(SelectInfo::decode(&info.encode()).unwrap(), info);

        let verdict = ApprovalVerdict {
            approved: false,
            reasons: vec![
                RefusalReason::MissingApprover("owner".into()),
                RefusalReason::BadSignature("maintainer".into()),
                RefusalReason::UnknownApprover("eve".into()),
                RefusalReason::BelowFloor(Version::parse("3.1").unwrap()),
                RefusalReason::NoRule,
            ],
            user_consent_needs_pin: true,
        };
        assert_eq!(ApprovalVerdict::decode(&verdict.encode()).unwrap(), verdict);

        let list = vec![
            ListEntry {
                object: ObjectRef::Mo("./A".into()),
                size: 10,
            },
            ListEntry {
                object: ObjectRef::BootstrapKey(1),
                size: 0,
            },
        ];
        assert_eq!(decode_list(&encode_list(&list)).unwrap(), list);

        let log = ObjectData {
            value: ObjectValue::AuditLog(vec![
                AuditEntry {
                    sequence: 9,
                    event: AuditEvent::Alarm,
                    principal: "ServerA".into(),
                    session: 3,
                    detail: "4 consecutive failures".into(),
                    repeats: None,
                },
                AuditEntry {
                    sequence: 12,
                    event: AuditEvent::InitializeUpdate,
                    principal: "ServerA".into(),
                    session: 4,
                    detail: "key version 30".into(),
                    repeats: Some(Repeats {
                        count: 1000,
                        first_sequence: 10,
                    }),
                },
            ]),
            acl: Acl::parse("Get=ServerA").unwrap(),
        };
        assert_eq!(
            ObjectData::decode(ObjectKind::AuditLog, &log.encode()).unwrap(),
            log
        );
    }

    #[test]
    fn secrets_are_flagged() {
        let verify = Request::Verify {
            reference: PIN_REF_USER,
            pin: Some(pin("1234")),
        };
        assert!(verify.carries_secret());
        assert!(command_carries_secret(&verify.to_command()));
        let read = Request::ReadObject {
            object: ObjectRef::Policy,
            audit_from: None,
        };
        assert!(!command_carries_secret(&read.to_command()));
        assert!(!command_carries_secret(
            &Request::Verify {
                reference: PIN_REF_USER,
                pin: None
            }
            .to_command()
        ));
        assert!(format!("{:?}", pin("1234")).contains("redacted"));
    }
}
