//! Firmware approval: approvers' signatures, CHECK APPROVAL and CONFIRM
//! INSTALLED, and the floors they move (`docs/commands.md` §3.14–§3.16, §8).

use alloc::string::String;
use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::{
    ApprovalVerdict, AuditEvent, ObjectValue, PackageId, RefusalReason,
};
use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
use rand_core::{CryptoRng, RngCore};

use super::{Card, Outcome, Regression};
use crate::crypto;
use crate::state::Stored;
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// PERFORM SECURITY OPERATION: VERIFY DIGITAL SIGNATURE with an approver's
    /// key (`docs/commands.md` §3.14).
    pub(super) fn verify_signature(
        &mut self,
        approver: String,
        data: &[u8],
        signature: &[u8],
    ) -> Outcome {
        let object = ObjectRef::Approver(approver);
        self.require(&object, Right::Exec)?;
        let key = match self.state.objects.get(&object).map(|o| &o.value) {
            Some(ObjectValue::Approver(k)) => k.clone(),
            _ => return Err(Status::KeyReferenceNotFound),
        };
        if crypto::verify_ecdsa(&key, data, signature) {
            Ok(Vec::new())
        } else {
            Err(Status::VerificationFailed)
        }
    }

    pub(super) fn check_approval(
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
    pub(super) fn floor_acl(&self) -> Acl {
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

    pub(super) fn confirm_installed(&mut self, package: PackageId) -> Outcome {
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
}
