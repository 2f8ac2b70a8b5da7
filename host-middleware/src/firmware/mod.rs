//! Firmware / software approval by the card.
//!
//! The device streams a package through SHA-256 ([`hash_package`], bounded
//! memory: one [`HASH_CHUNK`] buffer whatever the size), reads the approvers'
//! signed statements ([`ApprovalFile`]), and asks the card whether the
//! package is approved ([`check_with_card`]: CHECK APPROVAL — every approver of
//! the card's rule, each signature, the anti-rollback floor of the device
//! class). After installing, [`CardCommands::confirm_installed`] moves the
//! floor. MCUboot images are checked on the way ([`crate::firmware::mcuboot`]).
//!
//! The authority side registers approvers ([`register_approver`]) and the
//! rule ([`set_rule`]); approvers sign statements ([`sign_statement`], or
//! `openssl dgst -sha256 -sign` over [`ApprovalStatement::to_signed_bytes`]).
//! docs/firmware-approval.md describes the whole flow.
//!
//! The device's decision from the card's verdict, the MCUboot check and the
//! consent policy is [`decide`].

pub mod mcuboot;

mod decide;
pub use decide::{decide, ConsentPolicy, Decision, Final, OnUnapproved, Outcome, Reason};

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use dmsc_card_model::commands::{Approval, ApprovalRule, ApprovalVerdict, ObjectValue, PackageId};
use dmsc_card_model::objects::{
    check_name, Acl, ApprovalStatement, ModelError, ObjectRef, Version, APPROVAL_STATEMENT_HEADER,
};
use p256::ecdsa::SigningKey;
use p256::PublicKey;
use sha2::{Digest, Sha256};

use crate::firmware::mcuboot::{McubootReport, McubootScanner};
use crate::p256_keys::{check_signature, sec1_point, sign_der, KeyError};
use crate::{CardCommands, HostError};

/// The buffer the package is read into: the only memory that grows with the
/// read size (64 KiB: it stays in the CPU cache between the read and the
/// hash; peak memory does not depend on the package size).
pub const HASH_CHUNK: usize = 64 * 1024;

/// How the approvals (or the expected version/class) name different packages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// Two approvals name different packages.
    #[error("{approver} approves {package}, {first} approves {first_package}")]
    Approvals {
        /// The approver whose statement differs.
        approver: String,
        /// The class and version it approves.
        package: String,
        /// The first approval's approver.
        first: String,
        /// The class and version the first approval names.
        first_package: String,
    },
    /// The approvals are for another version than the one expected.
    #[error("the approvals are for version {approved}, not {expected}")]
    Version {
        /// The version approved.
        approved: String,
        /// The version expected.
        expected: String,
    },
    /// The approvals are for another device class than the one expected.
    #[error("the approvals are for device class {approved}, not {expected}")]
    Class {
        /// The class approved.
        approved: String,
        /// The class expected.
        expected: String,
    },
}

/// Why an approval file does not parse; lines are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalFileError {
    /// The file is not UTF-8.
    #[error("not UTF-8 text (byte {at})")]
    NotUtf8 {
        /// The offset of the first invalid byte.
        at: usize,
    },
    /// The file is empty.
    #[error("empty file")]
    Empty,
    /// The last line has no newline.
    #[error("truncated: the last line does not end with a newline")]
    NoFinalNewline,
    /// The file ends before the statement's five lines.
    #[error("truncated: ends after line {lines}; line {line} must be {expected}")]
    Truncated {
        /// Lines in the file.
        lines: usize,
        /// The first missing line.
        line: usize,
        /// What that line must be.
        expected: &'static str,
    },
    /// A line does not begin as it must.
    #[error("line {line}: expected {expected}, found {found:?}")]
    Expected {
        /// The line number.
        line: usize,
        /// What the line must be.
        expected: &'static str,
        /// The line found.
        found: String,
    },
    /// A line begins right but its value is not acceptable.
    #[error("line {line}: {found:?} is not {expected}")]
    Invalid {
        /// The line number.
        line: usize,
        /// The line found.
        found: String,
        /// What the line must be.
        expected: &'static str,
    },
    /// Lines 1-5 are not a canonical statement.
    #[error("lines 1-5 are not a canonical approval statement: {0}")]
    Statement(ModelError),
    /// Text after the signature line.
    #[error("line 7: unexpected text after the signature ({lines} lines in all)")]
    TrailingText {
        /// Lines in the file.
        lines: usize,
    },
    /// The signature line's value is not hex.
    #[error("line 6: the signature is not hex")]
    SignatureNotHex,
    /// Neither a signature line nor a detached signature.
    #[error("no signature= line and no detached signature file (FILE.sig)")]
    NoSignature,
    /// The signature is not an ECDSA P-256 signature.
    #[error("{0}")]
    Signature(KeyError),
}

/// Errors of the firmware-approval operations. Messages name the file and line.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The package could not be read.
    #[error("reading the package {what}: {source}")]
    Read {
        /// The file name, or `standard input`.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An approval file is malformed.
    #[error("approval file {file}: {source}")]
    ApprovalFile {
        /// The file.
        file: String,
        /// What is wrong, with the line number when it is about a line.
        #[source]
        source: ApprovalFileError,
    },
    /// An approval file (or its detached signature) could not be read.
    #[error("approval file {file}: cannot read {what}: {source}")]
    ApprovalFileRead {
        /// The approval file.
        file: String,
        /// `it` (the file itself) or the detached signature's path.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The approvals (or the expected version/class) name different packages.
    #[error("the approvals do not describe one package: {0}")]
    Inconsistent(#[source] Inconsistency),
    /// No approval was given.
    #[error("no approval given (give at least one approval file)")]
    NoApproval,
    /// A key or signature was not accepted.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The card failed or refused.
    #[error("{0}")]
    Card(#[from] HostError),
    /// The rule names approvers the card does not know: it could never be met.
    #[error(
        "the rule names approver(s) not registered on the card: {}; the rule could never be \
         met (register them first, or allow it explicitly)",
        .0.join(", ")
    )]
    UnregisteredApprovers(Vec<String>),
}

/// What streaming a package gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageHash {
    /// SHA-256 of the whole package.
    pub digest: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
    /// The MCUboot checks, when the package is an MCUboot image.
    pub mcuboot: Option<McubootReport>,
}

/// Streams `reader` through SHA-256 in [`HASH_CHUNK`] pieces, calling
/// `progress` with the bytes read so far. When the package starts with the
/// MCUboot header magic, its TLVs are checked too (with `mcuboot_key` for the
/// signature, if given).
pub fn hash_package(
    mut reader: impl Read,
    what: &str,
    mcuboot_key: Option<&PublicKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<PackageHash, FirmwareError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut size = 0u64;
    let mut mcuboot = McubootScanner::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(FirmwareError::Read {
                    what: what.to_string(),
                    source,
                })
            }
        };
        hasher.update(&buf[..n]);
        mcuboot.update(&buf[..n]);
        size += n as u64;
        progress(size);
    }
    Ok(PackageHash {
        digest: hasher.finalize().into(),
        size,
        mcuboot: mcuboot.finish(mcuboot_key),
    })
}

/// One approver's signed statement, as kept in an approval file.
///
/// The file is the statement's exact signed bytes (docs/commands.md §8)
/// followed by one line `signature=<hex>` (DER or raw `r ‖ s`). Without that
/// line the signature is read from `FILE.sig` (binary, as `openssl dgst
/// -sha256 -sign KEY -out FILE.sig FILE` writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalFile {
    /// The statement.
    pub statement: ApprovalStatement,
    /// The signature over [`ApprovalStatement::to_signed_bytes`].
    pub signature: Vec<u8>,
}

const SIGNATURE_PREFIX: &str = "signature=";

impl ApprovalFile {
    /// The file's bytes: the statement, then the `signature=` line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.statement.to_signed_bytes();
        out.extend_from_slice(SIGNATURE_PREFIX.as_bytes());
        out.extend_from_slice(hex::encode(&self.signature).as_bytes());
        out.push(b'\n');
        out
    }

    /// The approval as CHECK APPROVAL carries it.
    pub fn approval(&self) -> Approval {
        Approval {
            approver: self.statement.approver.clone(),
            signature: self.signature.clone(),
        }
    }

    /// Parses an approval file; `detached` is the content of `FILE.sig`, used
    /// when the file has no `signature=` line. The error text gives the line.
    pub fn parse(bytes: &[u8], detached: Option<&[u8]>) -> Result<ApprovalFile, ApprovalFileError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ApprovalFileError::NotUtf8 {
            at: e.valid_up_to(),
        })?;
        let Some(body) = text.strip_suffix('\n') else {
            return Err(if text.is_empty() {
                ApprovalFileError::Empty
            } else {
                ApprovalFileError::NoFinalNewline
            });
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let expected = [
            (APPROVAL_STATEMENT_HEADER, "the header"),
            ("digest=sha256:", "digest=sha256:<64 lower-case hex digits>"),
            ("version=", "version=<dotted decimal version>"),
            ("class=", "class=<device class>"),
            ("approver=", "approver=<approver name>"),
        ];
        for (i, (prefix, what)) in expected.iter().enumerate() {
            let n = i + 1;
            let Some(line) = lines.get(i) else {
                return Err(ApprovalFileError::Truncated {
                    lines: lines.len(),
                    line: n,
                    expected: what,
                });
            };
            let Some(value) = line.strip_prefix(prefix) else {
                return Err(ApprovalFileError::Expected {
                    line: n,
                    expected: what,
                    found: line.to_string(),
                });
            };
            let ok = match i {
                0 => value.is_empty(),
                1 => {
                    value.len() == 64
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                }
                2 => Version::parse(value).is_ok_and(|v| v.to_string() == value),
                _ => check_name(value).is_ok(),
            };
            if !ok {
                return Err(ApprovalFileError::Invalid {
                    line: n,
                    found: line.to_string(),
                    expected: what,
                });
            }
        }
        let statement_len: usize = lines[..5].iter().map(|l| l.len() + 1).sum();
        let statement = ApprovalStatement::from_signed_bytes(&bytes[..statement_len])
            .map_err(ApprovalFileError::Statement)?;
        let signature = match lines.get(5) {
            Some(line) => {
                let Some(h) = line.strip_prefix(SIGNATURE_PREFIX) else {
                    return Err(ApprovalFileError::Expected {
                        line: 6,
                        expected: "signature=<hex>",
                        found: line.to_string(),
                    });
                };
                if lines.len() > 6 {
                    return Err(ApprovalFileError::TrailingText { lines: lines.len() });
                }
                hex::decode(h.trim_end_matches('\r'))
                    .map_err(|_| ApprovalFileError::SignatureNotHex)?
            }
            None => detached.ok_or(ApprovalFileError::NoSignature)?.to_vec(),
        };
        check_signature(&signature).map_err(ApprovalFileError::Signature)?;
        Ok(ApprovalFile {
            statement,
            signature,
        })
    }

    /// Reads an approval file (and `FILE.sig` when it has no signature line).
    pub fn read(path: &Path) -> Result<ApprovalFile, FirmwareError> {
        let file = path.display().to_string();
        let read_err = |what: String, source| FirmwareError::ApprovalFileRead {
            file: file.clone(),
            what,
            source,
        };
        let bytes = std::fs::read(path).map_err(|e| read_err("it".into(), e))?;
        let has_sig_line = std::str::from_utf8(&bytes)
            .map(|t| t.contains(&format!("\n{SIGNATURE_PREFIX}")))
            .unwrap_or(false);
        let detached = if has_sig_line {
            None
        } else {
            let sig = detached_signature_path(path);
            match std::fs::read(&sig) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(read_err(sig.display().to_string(), e)),
            }
        };
        ApprovalFile::parse(&bytes, detached.as_deref())
            .map_err(|source| FirmwareError::ApprovalFile { file, source })
    }
}

/// `FILE.sig`, where a detached signature of `FILE` is looked for.
pub fn detached_signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs the statement with an approver's key: the approval file's content.
pub fn sign_statement(statement: &ApprovalStatement, key: &SigningKey) -> ApprovalFile {
    ApprovalFile {
        statement: statement.clone(),
        signature: sign_der(key, &statement.to_signed_bytes()),
    }
}

/// The package the approvals are about: `digest` (what the device computed)
/// with the version and device class the statements name. All statements must
/// name the same version (written the same way) and class, and match
/// `version`/`class` when those are given.
pub fn package_id(
    digest: [u8; 32],
    approvals: &[ApprovalFile],
    version: Option<&Version>,
    class: Option<&str>,
) -> Result<PackageId, FirmwareError> {
    let first = approvals.first().ok_or(FirmwareError::NoApproval)?;
    let v = first.statement.version.to_string();
    let c = first.statement.device_class.clone();
    for a in approvals {
        let (av, ac) = (a.statement.version.to_string(), &a.statement.device_class);
        if av != v || *ac != c {
            return Err(FirmwareError::Inconsistent(Inconsistency::Approvals {
                approver: a.statement.approver.clone(),
                package: format!("{ac} {av}"),
                first: first.statement.approver.clone(),
                first_package: format!("{c} {v}"),
            }));
        }
    }
    if let Some(expected) = version {
        if expected.to_string() != v {
            return Err(FirmwareError::Inconsistent(Inconsistency::Version {
                approved: v,
                expected: expected.to_string(),
            }));
        }
    }
    if let Some(expected) = class {
        if expected != c {
            return Err(FirmwareError::Inconsistent(Inconsistency::Class {
                approved: c,
                expected: expected.to_string(),
            }));
        }
    }
    Ok(PackageId {
        digest,
        version: first.statement.version.clone(),
        device_class: c,
    })
}

/// Approvals whose statement names another digest than the package's: the
/// package was altered, or the approval is for another package. The card
/// refuses them (bad signature); this says why.
pub fn digest_mismatches(digest: &[u8; 32], approvals: &[ApprovalFile]) -> Vec<String> {
    approvals
        .iter()
        .filter(|a| &a.statement.digest != digest)
        .map(|a| {
            format!(
                "the approval of {} is for a package with SHA-256 {}, this package's is {}",
                a.statement.approver,
                hex::encode(a.statement.digest),
                hex::encode(digest)
            )
        })
        .collect()
}

/// CHECK APPROVAL: the card checks every approval against its registered
/// approvers, its rule and the device class's anti-rollback floor.
pub fn check_with_card<C: CardCommands + ?Sized>(
    card: &mut C,
    package: &PackageId,
    approvals: &[ApprovalFile],
) -> Result<ApprovalVerdict, HostError> {
    let list: Vec<Approval> = approvals.iter().map(ApprovalFile::approval).collect();
    card.check_approval(package, &list)
}

/// Registers (or replaces) an approver's public key on the card (an authority).
pub fn register_approver<C: CardCommands + ?Sized>(
    card: &mut C,
    name: &str,
    key: &PublicKey,
    acl: Option<&Acl>,
) -> Result<(), HostError> {
    card.put_object(
        &ObjectRef::Approver(name.to_string()),
        &ObjectValue::Approver(sec1_point(key)),
        acl,
    )
}

/// Sets the approval rule: every named approver must approve.
pub fn set_rule<C: CardCommands + ?Sized>(
    card: &mut C,
    required: &[String],
    user_consent_needs_pin: bool,
) -> Result<(), HostError> {
    card.put_object(
        &ObjectRef::ApprovalRule,
        &ObjectValue::ApprovalRule(ApprovalRule {
            required: required.to_vec(),
            user_consent_needs_pin,
        }),
        None,
    )
}

/// [`set_rule`], after checking that every named approver is registered on
/// the card (unless `allow_unregistered`): a rule naming an unknown approver
/// can never be met. Nothing is written when the check fails.
pub fn set_rule_checked<C: CardCommands + ?Sized>(
    card: &mut C,
    required: &[String],
    user_consent_needs_pin: bool,
    allow_unregistered: bool,
) -> Result<(), FirmwareError> {
    if !allow_unregistered {
        let registered: Vec<String> = card
            .list(dmsc_card_model::objects::ObjectKind::Approver)?
            .into_iter()
            .filter_map(|e| match e.object {
                ObjectRef::Approver(name) => Some(name),
                _ => None,
            })
            .collect();
        let missing = unregistered(required, &registered);
        if !missing.is_empty() {
            return Err(FirmwareError::UnregisteredApprovers(missing));
        }
    }
    Ok(set_rule(card, required, user_consent_needs_pin)?)
}

/// The names of `required` that are not in `registered`, in order.
pub fn unregistered(required: &[String], registered: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|n| !registered.contains(n))
        .cloned()
        .collect()
}

/// The approvers the caller may read: name and 65-byte public point.
pub fn list_approvers<C: CardCommands + ?Sized>(
    card: &mut C,
) -> Result<Vec<(String, Vec<u8>)>, HostError> {
    let mut out = Vec::new();
    for entry in card.list(dmsc_card_model::objects::ObjectKind::Approver)? {
        if let ObjectRef::Approver(name) = &entry.object {
            if let ObjectValue::Approver(point) = card.read_object(&entry.object)?.value {
                out.push((name.clone(), point));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(approver: &str, version: &str, class: &str) -> ApprovalFile {
        ApprovalFile {
            statement: ApprovalStatement {
                digest: [7; 32],
                version: Version::parse(version).unwrap(),
                device_class: class.into(),
                approver: approver.into(),
            },
            signature: vec![0; 64],
        }
    }

    #[test]
    fn inconsistent_approvals_say_which_and_how() {
        let a = [
            approval("vendor", "2.1.0", "gateway"),
            approval("owner", "2.1.1", "gateway"),
        ];
        let e = package_id([7; 32], &a, None, None).unwrap_err();
        assert!(
            matches!(
                &e,
                FirmwareError::Inconsistent(Inconsistency::Approvals { approver, first, .. })
                    if approver == "owner" && first == "vendor"
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the approvals do not describe one package: owner approves gateway 2.1.1, \
             vendor approves gateway 2.1.0"
        );
        let e = package_id([7; 32], &a[..1], None, Some("router")).unwrap_err();
        assert!(
            matches!(
                &e,
                FirmwareError::Inconsistent(Inconsistency::Class { approved, expected })
                    if approved == "gateway" && expected == "router"
            ),
            "{e:?}"
        );
    }
}
