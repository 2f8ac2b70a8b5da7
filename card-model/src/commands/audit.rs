//! The audit log: security events and records as GET DATA returns them.

use alloc::string::String;
use alloc::vec::Vec;

use super::field::{be_u32, one_byte, utf8};
use super::{tag, DecodeError};
use crate::objects::{self};
use crate::tlv::{self, TlvError};

/// Security events the card records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// A PIN, PUK or authority authenticated.
    AuthSuccess,
    /// A wrong PIN or PUK, a failed EXTERNAL AUTHENTICATE or secure-messaging check.
    AuthFailure,
    /// A principal reached the failure limit.
    Alarm,
    /// An object was created.
    ObjectCreated,
    /// An object's value was replaced.
    ObjectChanged,
    /// An object was deleted.
    ObjectDeleted,
    /// A command was refused for lack of a right.
    AccessDenied,
    /// An object's ACL was changed.
    AclChanged,
    /// CHECK APPROVAL approved a package.
    ApprovalGranted,
    /// CHECK APPROVAL refused a package.
    ApprovalRefused,
    /// A bootstrap MAC verified.
    BootstrapVerified,
    /// A bootstrap MAC did not verify.
    BootstrapRejected,
    /// The user PIN was changed.
    PinChanged,
    /// The user PIN was reset with the PUK.
    PinUnblocked,
    /// CONFIRM INSTALLED moved a floor.
    FloorMoved,
    /// The card was personalised.
    Initialised,
    /// The card-wide configuration changed.
    ConfigChanged,
    /// An authority key set was added (PUT KEY).
    AuthorityAdded,
    /// An authority key set was rotated (PUT KEY).
    AuthorityRotated,
    /// An authority key set was deleted.
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
    /// What happened.
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
