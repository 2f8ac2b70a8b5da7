//! Principals and rights: who the caller is, what it holds, and how a
//! refusal is answered and counted (`docs/commands.md` §2, "Rights and the
//! existence rule"; §7).

use alloc::string::String;
use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::AuditEvent;
use dmsc_card_model::objects::{ObjectRef, Principal, Right};
use rand_core::{CryptoRng, RngCore};

use super::{Card, Outcome};
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    pub(super) fn caller(&self) -> Vec<Principal> {
        let mut p = alloc::vec![Principal::Anyone];
        if self.volatile.pin_verified {
            p.push(Principal::User);
        }
        if let Some(scp) = &self.volatile.scp {
            p.push(Principal::Authority(scp.authority.clone()));
        }
        p
    }

    /// The principal failures are counted against: the authority, else the user, else `*`.
    pub(super) fn acting(&self) -> String {
        if let Some(scp) = &self.volatile.scp {
            return scp.authority.clone();
        }
        if self.volatile.pin_verified {
            "user".into()
        } else {
            "*".into()
        }
    }

    pub(super) fn holds(&self, object: &ObjectRef, right: Right) -> bool {
        self.state
            .objects
            .get(object)
            .is_some_and(|o| o.acl.allows(&self.caller(), right))
    }

    /// Counts a rights failure (persisted) and answers 6982.
    pub(super) fn deny(&mut self, object: &ObjectRef, right: Right) -> Outcome {
        let who = self.acting();
        let detail = alloc::format!("{right} on {object}");
        let how = self.record_kind();
        self.record_failure(&who, AuditEvent::AccessDenied, &detail, how)?;
        Err(Status::SecurityStatusNotSatisfied)
    }

    /// Checks that the caller may use `right` on `object`; for a missing object,
    /// answers "not found" only to callers who may read the card's directory, so
    /// an unauthorised caller cannot tell a protected object from a missing one.
    pub(super) fn require(&mut self, object: &ObjectRef, right: Right) -> Result<(), Status> {
        if self.state.objects.contains_key(object) {
            if self.holds(object, right) {
                return Ok(());
            }
            return self.deny(object, right).map(|_| ());
        }
        if self.holds(&ObjectRef::Card, Right::Get) {
            return Err(Status::KeyReferenceNotFound);
        }
        self.deny(object, right).map(|_| ())
    }

    /// Rights on an authority's key set: the right on its object, the same
    /// right on the card object (the card's administrators), or — for Replace —
    /// being that authority (an authority may rotate its own keys).
    pub(super) fn require_authority_right(&mut self, kvn: u8, right: Right) -> Result<(), Status> {
        let object = ObjectRef::Authority(kvn);
        let own = right == Right::Replace
            && self.volatile.scp.as_ref().is_some_and(|s| {
                self.state
                    .authorities
                    .get(&kvn)
                    .is_some_and(|a| a.name == s.authority)
            });
        if self.state.objects.contains_key(&object) && (own || self.holds(&ObjectRef::Card, right))
        {
            return Ok(());
        }
        self.require(&object, right)
    }
}
