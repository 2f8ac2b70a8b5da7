//! The card's object model: principals, OMA DM rights and ACLs, object
//! references, and the values the card stores.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::tlv::{self, Fields, TlvError};

/// Why a name, ACL, version or value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// An ACL string that does not follow `Right=id+id&Right=id`; `at` is the byte offset.
    InvalidAcl {
        /// Byte offset of the error in the ACL text.
        at: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A principal or object name outside the allowed characters or length.
    InvalidName(String),
    /// A version that is not dotted decimal numbers.
    InvalidVersion(String),
    /// A TLV value that does not decode.
    Tlv(TlvError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::InvalidAcl { at, reason } => {
                write!(f, "invalid ACL at byte {at}: {reason}")
            }
            ModelError::InvalidName(n) => {
                write!(f, "invalid name {n:?}: use 1-64 of A-Z a-z 0-9 . _ -")
            }
            ModelError::InvalidVersion(v) => {
                write!(
                    f,
                    "invalid version {v:?}: expected dotted decimal such as 1.4.2"
                )
            }
            ModelError::Tlv(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ModelError {}

impl From<TlvError> for ModelError {
    fn from(e: TlvError) -> Self {
        ModelError::Tlv(e)
    }
}

/// Longest authority, approver, device class or key name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest MO root URI.
pub const MAX_URI_LEN: usize = 255;

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks an authority/approver/device-class name: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), ModelError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(valid_name_char) {
        return Err(ModelError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Checks an MO root URI: printable ASCII without spaces, at most 255 bytes, no empty
/// segment (`//`) and no trailing `/`.
pub fn check_uri(uri: &str) -> Result<(), ModelError> {
    let ok = !uri.is_empty()
        && uri.len() <= MAX_URI_LEN
        && uri.chars().all(|c| c.is_ascii_graphic())
        && !uri.contains("//")
        && !uri.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(ModelError::InvalidName(uri.to_string()))
    }
}

/// Who is asking: the card derives this from the session, never from the command.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// Anyone, e.g. the device without further authentication (`*` in an ACL).
    Anyone,
    /// The user (subscriber) whose PIN was verified in this card session (`user`).
    User,
    /// A management authority authenticated over SCP03.
    Authority(String),
}

impl Principal {
    /// The ACL identifier of the principal.
    pub fn acl_name(&self) -> &str {
        match self {
            Principal::Anyone => "*",
            Principal::User => "user",
            Principal::Authority(n) => n,
        }
    }

    /// Parses `*`, `user` or an authority name.
    pub fn parse(s: &str) -> Result<Principal, ModelError> {
        match s {
            "*" => Ok(Principal::Anyone),
            "user" => Ok(Principal::User),
            _ => {
                check_name(s)?;
                Ok(Principal::Authority(s.to_string()))
            }
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.acl_name())
    }
}

/// One OMA DM access right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Right {
    /// Read the object.
    Get,
    /// Replace its value or its ACL.
    Replace,
    /// Add objects (on the card object: create new objects).
    Add,
    /// Delete the object.
    Delete,
    /// Use the object (verify with a key, check approval, confirm an install).
    Exec,
}

impl Right {
    /// Every right, in the order the ACL syntax prints them.
    pub const ALL: [Right; 5] = [
        Right::Add,
        Right::Delete,
        Right::Exec,
        Right::Get,
        Right::Replace,
    ];

    /// The name used in the ACL syntax.
    pub fn name(self) -> &'static str {
        match self {
            Right::Get => "Get",
            Right::Replace => "Replace",
            Right::Add => "Add",
            Right::Delete => "Delete",
            Right::Exec => "Exec",
        }
    }

    /// Parses a right by its ACL name (case-sensitive, as in OMA DM).
    pub fn parse(s: &str) -> Option<Right> {
        Right::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An access control list in the OMA DM syntax, e.g. `Get=*&Replace=ServerA+ServerB`.
///
/// Kept normalised: rights in [`Right::ALL`] order, principals sorted and unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    entries: Vec<(Right, Vec<Principal>)>,
}

impl Acl {
    /// An ACL granting nothing to anyone.
    pub fn empty() -> Acl {
        Acl::default()
    }

    /// Parses the OMA DM ACL syntax. An empty string is the empty ACL.
    pub fn parse(s: &str) -> Result<Acl, ModelError> {
        let mut acl = Acl::empty();
        if s.is_empty() {
            return Ok(acl);
        }
        let mut offset = 0;
        for part in s.split('&') {
            let (right, ids) = part.split_once('=').ok_or(ModelError::InvalidAcl {
                at: offset,
                reason: "expected Right=identifiers",
            })?;
            let right = Right::parse(right).ok_or(ModelError::InvalidAcl {
                at: offset,
                reason: "unknown right (use Add, Delete, Exec, Get, Replace)",
            })?;
            if acl.entries.iter().any(|(r, _)| *r == right) {
                return Err(ModelError::InvalidAcl {
                    at: offset,
                    reason: "right listed twice",
                });
            }
            let mut id_offset = offset + right.name().len() + 1;
            for id in ids.split('+') {
                let principal = Principal::parse(id).map_err(|_| ModelError::InvalidAcl {
                    at: id_offset,
                    reason: "invalid identifier",
                })?;
                acl.grant(right, principal);
                id_offset += id.len() + 1;
            }
            offset += part.len() + 1;
        }
        Ok(acl)
    }

    /// Adds `principal` to the holders of `right`.
    pub fn grant(&mut self, right: Right, principal: Principal) {
        let idx = match self.entries.iter().position(|(r, _)| *r == right) {
            Some(i) => i,
            None => {
                self.entries.push((right, Vec::new()));
                self.entries
                    .sort_by_key(|(r, _)| Right::ALL.iter().position(|x| x == r));
                self.entries
                    .iter()
                    .position(|(r, _)| *r == right)
                    .unwrap_or(0)
            }
        };
        let holders = &mut self.entries[idx].1;
        if let Err(pos) = holders.binary_search(&principal) {
            holders.insert(pos, principal);
        }
    }

    /// Removes `principal` from the holders of `right`.
    pub fn revoke(&mut self, right: Right, principal: &Principal) {
        for (r, holders) in &mut self.entries {
            if *r == right {
                holders.retain(|p| p != principal);
            }
        }
        self.entries.retain(|(_, h)| !h.is_empty());
    }

    /// The holders of `right`.
    pub fn holders(&self, right: Right) -> &[Principal] {
        self.entries
            .iter()
            .find(|(r, _)| *r == right)
            .map(|(_, h)| h.as_slice())
            .unwrap_or(&[])
    }

    /// Whether any of the caller's principals holds `right` (`*` grants everyone).
    pub fn allows(&self, caller: &[Principal], right: Right) -> bool {
        self.holders(right)
            .iter()
            .any(|h| *h == Principal::Anyone || caller.contains(h))
    }

    /// Whether the ACL names `principal` explicitly for `right`.
    pub fn names(&self, right: Right, principal: &Principal) -> bool {
        self.holders(right).contains(principal)
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (right, holders)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{right}=")?;
            for (j, p) in holders.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                f.write_str(p.acl_name())?;
            }
        }
        Ok(())
    }
}

/// A dotted-decimal version (`1.4.2`), compared component by component;
/// missing components count as zero (`1.4` == `1.4.0`).
#[derive(Debug, Clone, Eq)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// Parses `N(.N)*` with at most 8 components.
    pub fn parse(s: &str) -> Result<Version, ModelError> {
        let parts: Result<Vec<u32>, _> = s
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(())
                } else {
                    p.parse::<u32>().map_err(|_| ())
                }
            })
            .collect();
        match parts {
            Ok(v) if !v.is_empty() && v.len() <= 8 => Ok(Version(v)),
            _ => Err(ModelError::InvalidVersion(s.to_string())),
        }
    }

    fn component(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == core::cmp::Ordering::Equal
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.component(i).cmp(&other.component(i)))
            .find(|o| o.is_ne())
            .unwrap_or(core::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The kinds of object the card stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The card itself: its ACL governs creating objects and its configuration.
    Card,
    /// An MO record, named by its root URI.
    Mo,
    /// The enterprise policy (one per card).
    Policy,
    /// A bootstrap MAC key, named by its key id.
    BootstrapKey,
    /// A firmware approver's public key, named by the approver.
    Approver,
    /// The approval rule (one per card).
    ApprovalRule,
    /// The anti-rollback floor of a device class.
    Floor,
    /// The card's own identity key pair (public half readable).
    IdentityKey,
    /// The audit log.
    AuditLog,
    /// An authority's SCP03 key set, named by key version number.
    Authority,
}

impl ObjectKind {
    /// Every kind.
    pub const ALL: [ObjectKind; 10] = [
        ObjectKind::Card,
        ObjectKind::Mo,
        ObjectKind::Policy,
        ObjectKind::BootstrapKey,
        ObjectKind::Approver,
        ObjectKind::ApprovalRule,
        ObjectKind::Floor,
        ObjectKind::IdentityKey,
        ObjectKind::AuditLog,
        ObjectKind::Authority,
    ];

    /// The context-specific tag of an object reference of this kind.
    pub fn tag(self) -> u8 {
        match self {
            ObjectKind::Card => 0x80,
            ObjectKind::Mo => 0x81,
            ObjectKind::Policy => 0x82,
            ObjectKind::BootstrapKey => 0x83,
            ObjectKind::Approver => 0x84,
            ObjectKind::ApprovalRule => 0x85,
            ObjectKind::Floor => 0x86,
            ObjectKind::IdentityKey => 0x87,
            ObjectKind::AuditLog => 0x88,
            ObjectKind::Authority => 0x89,
        }
    }

    /// The kind for a reference tag.
    pub fn from_tag(tag: u32) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.tag() as u32 == tag)
    }

    /// Whether objects of this kind carry a name (several per card).
    pub fn is_named(self) -> bool {
        matches!(
            self,
            ObjectKind::Mo
                | ObjectKind::BootstrapKey
                | ObjectKind::Approver
                | ObjectKind::Floor
                | ObjectKind::Authority
        )
    }

    /// The lower-case word used in the CLI and docs.
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::Card => "card",
            ObjectKind::Mo => "mo",
            ObjectKind::Policy => "policy",
            ObjectKind::BootstrapKey => "bootstrap-key",
            ObjectKind::Approver => "approver",
            ObjectKind::ApprovalRule => "approval-rule",
            ObjectKind::Floor => "floor",
            ObjectKind::IdentityKey => "identity-key",
            ObjectKind::AuditLog => "audit-log",
            ObjectKind::Authority => "authority",
        }
    }
}

/// A reference to one object: its kind and, for named kinds, its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectRef {
    /// The card object: card-wide configuration; its ACL names the card's administrators.
    Card,
    /// An MO, by its path.
    Mo(String),
    /// The policy.
    Policy,
    /// A bootstrap MAC key, by key ID.
    BootstrapKey(u8),
    /// An approver's public key, by name.
    Approver(String),
    /// The approval rule.
    ApprovalRule,
    /// A device class's firmware floor, by device class.
    Floor(String),
    /// The card's identity key (public part).
    IdentityKey,
    /// The audit log.
    AuditLog,
    /// An authority's SCP03 key set, by key version.
    Authority(u8),
}

impl ObjectRef {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            ObjectRef::Card => ObjectKind::Card,
            ObjectRef::Mo(_) => ObjectKind::Mo,
            ObjectRef::Policy => ObjectKind::Policy,
            ObjectRef::BootstrapKey(_) => ObjectKind::BootstrapKey,
            ObjectRef::Approver(_) => ObjectKind::Approver,
            ObjectRef::ApprovalRule => ObjectKind::ApprovalRule,
            ObjectRef::Floor(_) => ObjectKind::Floor,
            ObjectRef::IdentityKey => ObjectKind::IdentityKey,
            ObjectRef::AuditLog => ObjectKind::AuditLog,
            ObjectRef::Authority(_) => ObjectKind::Authority,
        }
    }

    /// The reference's name bytes (empty for singletons).
    fn name_bytes(&self) -> Vec<u8> {
        match self {
            ObjectRef::Mo(s) | ObjectRef::Approver(s) | ObjectRef::Floor(s) => {
                s.as_bytes().to_vec()
            }
            ObjectRef::BootstrapKey(id) | ObjectRef::Authority(id) => alloc::vec![*id],
            _ => Vec::new(),
        }
    }

    /// The reference as one TLV: kind tag, name as value.
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode(self.kind().tag() as u32, &self.name_bytes())
    }

    /// Builds a reference from a kind tag and its value, validating the name.
    pub fn from_tlv(tag: u32, value: &[u8]) -> Result<ObjectRef, ModelError> {
        let kind = ObjectKind::from_tag(tag).ok_or(TlvError::Unexpected { tag, at: 0 })?;
        let text = || -> Result<String, ModelError> {
            core::str::from_utf8(value)
                .map(|s| s.to_string())
                .map_err(|_| ModelError::Tlv(TlvError::InvalidValue { tag }))
        };
        let byte = || -> Result<u8, ModelError> {
            match value {
                [b] => Ok(*b),
                _ => Err(ModelError::Tlv(TlvError::InvalidValue { tag })),
            }
        };
        let singleton = |r: ObjectRef| {
            if value.is_empty() {
                Ok(r)
            } else {
                Err(ModelError::Tlv(TlvError::InvalidValue { tag }))
            }
        };
        match kind {
            ObjectKind::Card => singleton(ObjectRef::Card),
            ObjectKind::Policy => singleton(ObjectRef::Policy),
            ObjectKind::ApprovalRule => singleton(ObjectRef::ApprovalRule),
            ObjectKind::IdentityKey => singleton(ObjectRef::IdentityKey),
            ObjectKind::AuditLog => singleton(ObjectRef::AuditLog),
            ObjectKind::Mo => {
                let uri = text()?;
                check_uri(&uri)?;
                Ok(ObjectRef::Mo(uri))
            }
            ObjectKind::Approver => {
                let n = text()?;
                check_name(&n)?;
                Ok(ObjectRef::Approver(n))
            }
            ObjectKind::Floor => {
                let n = text()?;
                check_name(&n)?;
                Ok(ObjectRef::Floor(n))
            }
            ObjectKind::BootstrapKey => Ok(ObjectRef::BootstrapKey(byte()?)),
            ObjectKind::Authority => Ok(ObjectRef::Authority(byte()?)),
        }
    }

    /// Decodes exactly one reference TLV.
    pub fn decode(bytes: &[u8]) -> Result<ObjectRef, ModelError> {
        let (t, rest) = tlv::parse_one(bytes)?;
        if !rest.is_empty() {
            return Err(ModelError::Tlv(TlvError::Unexpected {
                tag: 0,
                at: bytes.len() - rest.len(),
            }));
        }
        ObjectRef::from_tlv(t.tag, t.value)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.kind().word();
        match self {
            ObjectRef::Mo(s) | ObjectRef::Approver(s) | ObjectRef::Floor(s) => {
                write!(f, "{word}:{s}")
            }
            ObjectRef::BootstrapKey(id) | ObjectRef::Authority(id) => write!(f, "{word}:{id}"),
            _ => f.write_str(word),
        }
    }
}

impl core::str::FromStr for ObjectRef {
    type Err = ModelError;

    /// Parses the display form, e.g. `mo:./DevInfo`, `approver:owner`, `policy`, `bootstrap-key:1`.
    fn from_str(s: &str) -> Result<ObjectRef, ModelError> {
        let (word, name) = match s.split_once(':') {
            Some((w, n)) => (w, Some(n)),
            None => (s, None),
        };
        let kind = ObjectKind::ALL
            .into_iter()
            .find(|k| k.word() == word)
            .ok_or_else(|| ModelError::InvalidName(s.to_string()))?;
        let value: Vec<u8> = match (kind, name) {
            (ObjectKind::BootstrapKey | ObjectKind::Authority, Some(n)) => {
                let id = parse_u8(n).ok_or_else(|| ModelError::InvalidName(s.to_string()))?;
                alloc::vec![id]
            }
            (k, Some(n)) if k.is_named() => n.as_bytes().to_vec(),
            (k, None) if !k.is_named() => Vec::new(),
            _ => return Err(ModelError::InvalidName(s.to_string())),
        };
        ObjectRef::from_tlv(kind.tag() as u32, &value)
    }
}

fn parse_u8(s: &str) -> Option<u8> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Algorithms of a bootstrap MAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// AES-CMAC with a 128- or 256-bit key (RFC 4493).
    AesCmac,
    /// HMAC-SHA256.
    HmacSha256,
    /// HMAC-SHA1 (OMA DM 1.2 interoperability).
    HmacSha1,
}

impl MacAlgorithm {
    /// Every algorithm.
    pub const ALL: [MacAlgorithm; 3] = [
        MacAlgorithm::AesCmac,
        MacAlgorithm::HmacSha256,
        MacAlgorithm::HmacSha1,
    ];

    /// The byte that stands for the algorithm on the wire.
    pub fn code(self) -> u8 {
        match self {
            MacAlgorithm::AesCmac => 0x01,
            MacAlgorithm::HmacSha256 => 0x02,
            MacAlgorithm::HmacSha1 => 0x03,
        }
    }

    /// The algorithm for a wire byte.
    pub fn from_code(code: u8) -> Option<MacAlgorithm> {
        MacAlgorithm::ALL.into_iter().find(|a| a.code() == code)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MacAlgorithm::AesCmac => "aes-cmac",
            MacAlgorithm::HmacSha256 => "hmac-sha256",
            MacAlgorithm::HmacSha1 => "hmac-sha1",
        }
    }

    /// Parses the command-line name.
    pub fn parse(s: &str) -> Option<MacAlgorithm> {
        MacAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }

    /// Whether a key of `len` bytes is acceptable.
    pub fn key_len_ok(self, len: usize) -> bool {
        match self {
            MacAlgorithm::AesCmac => len == 16 || len == 32,
            MacAlgorithm::HmacSha256 | MacAlgorithm::HmacSha1 => (16..=64).contains(&len),
        }
    }

    /// The MAC's full length in bytes.
    pub fn mac_len(self) -> usize {
        match self {
            MacAlgorithm::AesCmac => 16,
            MacAlgorithm::HmacSha256 => 32,
            MacAlgorithm::HmacSha1 => 20,
        }
    }
}

/// The statement an approver signs for a firmware or software package.
///
/// Its signed form is the UTF-8 text returned by [`ApprovalStatement::to_signed_bytes`], so
/// `openssl dgst -sha256 -sign key.pem` over those bytes gives a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalStatement {
    /// SHA-256 of the package.
    pub digest: [u8; 32],
    /// The package version.
    pub version: Version,
    /// The device class the package is for.
    pub device_class: String,
    /// The approver's registered name.
    pub approver: String,
}

/// First line of every approval statement.
pub const APPROVAL_STATEMENT_HEADER: &str = "dmsc-approval-statement/1";

impl ApprovalStatement {
    /// The exact bytes that are signed (ECDSA P-256 with SHA-256).
    pub fn to_signed_bytes(&self) -> Vec<u8> {
        let mut hex = String::with_capacity(64);
        for b in self.digest {
            let _ = fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
        }
        alloc::format!(
            "{APPROVAL_STATEMENT_HEADER}\ndigest=sha256:{hex}\nversion={}\nclass={}\napprover={}\n",
            self.version,
            self.device_class,
            self.approver
        )
        .into_bytes()
    }

    /// Parses the signed text form; every line must be present, in order, and nothing else.
    pub fn from_signed_bytes(bytes: &[u8]) -> Result<ApprovalStatement, ModelError> {
        let bad = || ModelError::InvalidName("approval statement".to_string());
        let text = core::str::from_utf8(bytes).map_err(|_| bad())?;
        let mut lines = text.strip_suffix('\n').ok_or_else(bad)?.split('\n');
        let mut field = |key: &str| -> Result<&str, ModelError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .ok_or_else(bad)
        };
        if !field(APPROVAL_STATEMENT_HEADER)?.is_empty() {
            return Err(bad());
        }
        let hex = field("digest=sha256:")?;
        let version = field("version=")?;
        let class = field("class=")?;
        let approver = field("approver=")?;
        if lines.next().is_some() || hex.len() != 64 {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        for (i, out) in digest.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        check_name(class)?;
        check_name(approver)?;
        let statement = ApprovalStatement {
            digest,
            version: Version::parse(version)?,
            device_class: class.to_string(),
            approver: approver.to_string(),
        };
        // Only the canonical form is accepted, so one statement has one byte string.
        if statement.to_signed_bytes() != bytes {
            return Err(bad());
        }
        Ok(statement)
    }
}

/// Read a [`Fields`] view of a value, mapping TLV errors.
pub(crate) fn fields(bytes: &[u8]) -> Result<Fields<'_>, ModelError> {
    Ok(Fields::parse(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn acl_parse_format_and_check() {
        let acl = Acl::parse("Replace=ServerB+ServerA&Get=*").unwrap();
        assert_eq!(acl.to_string(), "Get=*&Replace=ServerA+ServerB");
        let a = Principal::Authority("ServerA".into());
        assert!(acl.allows(&[], Right::Get));
        assert!(acl.allows(&[Principal::Anyone, a.clone()], Right::Replace));
        assert!(!acl.allows(&[Principal::Anyone, Principal::User], Right::Replace));
        assert!(!acl.allows(&[a], Right::Delete));
        assert_eq!(Acl::parse("").unwrap(), Acl::empty());
    }

    #[test]
    fn acl_errors_name_position() {
        assert_eq!(
            Acl::parse("Get=*&Fly=A"),
            Err(ModelError::InvalidAcl {
                at: 6,
                reason: "unknown right (use Add, Delete, Exec, Get, Replace)"
            })
        );
        assert!(matches!(
            Acl::parse("Get=*&Get=A"),
            Err(ModelError::InvalidAcl { at: 6, .. })
        ));
        assert!(matches!(
            Acl::parse("Get=A+b c"),
            Err(ModelError::InvalidAcl { at: 6, .. })
        ));
        assert!(matches!(
            Acl::parse("Get"),
            Err(ModelError::InvalidAcl { at: 0, .. })
        ));
        assert!(Acl::parse("Get=").is_err());
    }

    #[test]
    fn versions_order() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10") > v("1.9"));
        assert_eq!(v("1.4"), v("1.4.0"));
        assert!(v("2") > v("1.99.99"));
        for bad in ["", "1.", ".1", "1.a", "-1", "1..2", "99999999999"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_refs_round_trip() {
        for r in [
            ObjectRef::Card,
            ObjectRef::Mo("./DevDetail".into()),
            ObjectRef::Policy,
            ObjectRef::BootstrapKey(3),
            ObjectRef::Approver("owner".into()),
            ObjectRef::ApprovalRule,
            ObjectRef::Floor("sensor-v2".into()),
            ObjectRef::IdentityKey,
            ObjectRef::AuditLog,
            ObjectRef::Authority(0x30),
        ] {
            assert_eq!(ObjectRef::decode(&r.encode()).unwrap(), r);
            assert_eq!(r.to_string().parse::<ObjectRef>().unwrap(), r);
        }
        assert!(ObjectRef::decode(&[0x82, 0x01, 0x00]).is_err());
        assert!(ObjectRef::decode(&[0x84, 0x01, b' ']).is_err());
        assert!(ObjectRef::decode(&[0x8F, 0x00]).is_err());
        assert!("mo".parse::<ObjectRef>().is_err());
    }

    #[test]
    fn statement_is_canonical() {
        let s = ApprovalStatement {
            digest: [0xAB; 32],
            version: Version(vec![1, 2, 3]),
            device_class: "gateway".into(),
            approver: "owner".into(),
        };
        let bytes = s.to_signed_bytes();
        assert!(bytes.starts_with(b"dmsc-approval-statement/1\ndigest=sha256:abab"));
        assert_eq!(ApprovalStatement::from_signed_bytes(&bytes).unwrap(), s);
        let mut altered = bytes.clone();
        altered.push(b'\n');
        assert!(ApprovalStatement::from_signed_bytes(&altered).is_err());
        let upper = String::from_utf8(bytes).unwrap().replace("abab", "ABAB");
        assert!(ApprovalStatement::from_signed_bytes(upper.as_bytes()).is_err());
    }
}
