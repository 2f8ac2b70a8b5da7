//! Object commands: GET DATA (read, list, read all), PUT DATA (value or ACL)
//! and DELETE (`docs/commands.md` §3.2–§3.6).

use alloc::string::ToString;
use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::{
    AuditEvent, CardConfig, ListEntry, ObjectData, ObjectValue, MIN_FAILURE_LIMIT,
};
use dmsc_card_model::objects::{Acl, ObjectKind, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::{self};
use rand_core::{CryptoRng, RngCore};

use super::keys::authority_info;
use super::{Card, Outcome, Regression};
use crate::state::{default_acl, Stored};
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    pub(super) fn read_object(&mut self, object: ObjectRef, audit_from: Option<u32>) -> Outcome {
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
                ObjectValue::AuditLog(self.audit_window(audit_from.unwrap_or(0)))
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

    pub(super) fn list(&mut self, kind: ObjectKind) -> Outcome {
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
    pub(super) fn read_all(&mut self, kind: ObjectKind) -> Outcome {
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

    pub(super) fn put_object(
        &mut self,
        object: ObjectRef,
        value: ObjectValue,
        acl: Option<Acl>,
    ) -> Outcome {
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
            (ObjectRef::Mo(uri), ObjectValue::Mo(mut m)) => {
                if !exists && !self.regressions.has(Regression::MoOverlapAccepted) {
                    self.refuse_mo_overlap(&object, uri)?;
                }
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

    /// One record per node (`docs/commands.md` §3.4): a new MO record whose
    /// root lies inside or above another record's is refused. `6A89` when the
    /// caller may read one of the records it overlaps; otherwise the refusal
    /// is a counted rights failure (`6982`), the answer a PUT DATA of an
    /// existing record the caller may not replace gets, so it tells nothing
    /// about which protected record is there (`docs/security.md` §3.4).
    fn refuse_mo_overlap(&mut self, object: &ObjectRef, uri: &str) -> Result<(), Status> {
        let caller = self.caller();
        let mut overlaps = self.state.objects.iter().filter(|(r, _)| match r {
            ObjectRef::Mo(other) => other != uri && (within(uri, other) || within(other, uri)),
            _ => false,
        });
        let Some(first) = overlaps.next() else {
            return Ok(());
        };
        if core::iter::once(first)
            .chain(overlaps)
            .any(|(_, o)| o.acl.allows(&caller, Right::Get))
        {
            return Err(Status::FileAlreadyExists);
        }
        let who = self.acting();
        let detail = alloc::format!("{} on {object} (overlaps a record)", Right::Add);
        let how = self.record_kind();
        self.record_failure(&who, AuditEvent::AccessDenied, &detail, how)?;
        Err(Status::SecurityStatusNotSatisfied)
    }

    pub(super) fn set_acl(&mut self, object: ObjectRef, acl: Acl) -> Outcome {
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

    pub(super) fn delete(&mut self, object: ObjectRef) -> Outcome {
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
}

/// Whether node `path` lies strictly below `root`, at a node boundary
/// (`./Vendor/Acme` is below `./Vendor`; `./VendorX` is not).
fn within(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('/'))
}
