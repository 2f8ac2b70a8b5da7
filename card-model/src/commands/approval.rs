//! Firmware approval: packages, approvers' signatures and the card's verdict.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::field::{one_byte, utf8};
use super::{tag, DecodeError};
use crate::objects::{self, check_name, Version};
use crate::tlv::{self, TlvError};

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
    /// Whether the package is approved.
    pub approved: bool,
    /// Why not, when it is not (empty when approved).
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
    /// SHA-256 of the package.
    pub digest: [u8; 32],
    /// The package's firmware version.
    pub version: Version,
    /// The device class the package is for.
    pub device_class: String,
}

impl PackageId {
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        tlv::write(out, tag::DIGEST, &self.digest);
        tlv::write(out, tag::VERSION, self.version.to_string().as_bytes());
        tlv::write(out, tag::DEVICE_CLASS, self.device_class.as_bytes());
    }

    pub(super) fn read(f: &tlv::Fields<'_>) -> Result<PackageId, DecodeError> {
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
    /// The approver's name (an `approver:<name>` object).
    pub approver: String,
    /// ECDSA P-256 / SHA-256 over the approval statement.
    pub signature: Vec<u8>,
}
