//! Bootstrap MAC checks: MANAGE SECURITY ENVIRONMENT selects a bootstrap key,
//! PERFORM SECURITY OPERATION verifies a cryptographic checksum with it
//! (`docs/commands.md` §3.12, §3.13).

use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::{AuditEvent, ObjectValue};
use dmsc_card_model::objects::{ObjectRef, Right};
use rand_core::{CryptoRng, RngCore};

use super::{Card, Outcome, Regression};
use crate::crypto;
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// MANAGE SECURITY ENVIRONMENT: the bootstrap key the next checksum
    /// verification uses, until reset (`docs/commands.md` §3.12).
    pub(super) fn select_mac_key(&mut self, key_id: u8) -> Outcome {
        self.require(&ObjectRef::BootstrapKey(key_id), Right::Exec)?;
        self.volatile.mac_key = Some(key_id);
        Ok(Vec::new())
    }

    pub(super) fn verify_mac(&mut self, data: &[u8], mac: &[u8]) -> Outcome {
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
}
