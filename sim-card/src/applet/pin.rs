//! The user PIN and the PUK: VERIFY, CHANGE REFERENCE DATA and RESET RETRY
//! COUNTER (`docs/commands.md` §3.7–§3.9). The try counter is decremented and
//! committed before the comparison, so a power cut never gives a try back.

use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::{AuditEvent, Pin, PIN_REF_PUK, PIN_REF_USER};
use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Card, Outcome};
use crate::state::State;
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    pub(super) fn verify(&mut self, reference: u8, pin: Option<Pin>) -> Outcome {
        let secret = if reference == PIN_REF_PUK {
            &self.state.puk
        } else {
            &self.state.pin
        };
        let Some(pin) = pin else {
            // Tries left, or 9000 when already verified in this session.
            if reference == PIN_REF_USER && self.volatile.pin_verified {
                return Ok(Vec::new());
            }
            return Err(tries_status(secret.tries_left));
        };
        if reference != PIN_REF_USER {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        self.volatile.pin_verified = false;
        let next = self.consume_try_and_compare(false, &pin)?;
        self.commit(next)?;
        self.volatile.pin_verified = true;
        Ok(Vec::new())
    }

    /// Decrements and commits the try counter, then compares in constant time.
    /// On a match returns the next state, not yet committed: counter restored,
    /// failures cleared, success audited; the caller adds what the command
    /// changes and commits it all in the command's second (and last)
    /// transaction. On a mismatch the failure is counted, audited and committed.
    pub(super) fn consume_try_and_compare(
        &mut self,
        puk: bool,
        given: &Pin,
    ) -> Result<State, Status> {
        let secret = if puk {
            &self.state.puk
        } else {
            &self.state.pin
        };
        if secret.tries_left == 0 {
            return Err(Status::OperationBlocked);
        }
        let mut next = self.state.clone();
        let counter = if puk { &mut next.puk } else { &mut next.pin };
        counter.tries_left -= 1;
        self.commit(next)?;
        let secret = if puk {
            &self.state.puk
        } else {
            &self.state.pin
        };
        let stored_block = Pin::new(&secret.value).map(|p| p.block());
        let matches =
            stored_block.is_ok_and(|b| bool::from(b.as_slice().ct_eq(given.block().as_slice())));
        let session = self.volatile.session_id;
        let how = self.record_kind();
        let mut next = self.state.clone();
        let label = if puk { "PUK" } else { "PIN" };
        if matches {
            let counter = if puk { &mut next.puk } else { &mut next.pin };
            counter.tries_left = counter.max_tries;
            next.clear_failures("user");
            next.audit_as(
                how,
                AuditEvent::AuthSuccess,
                "user",
                session,
                alloc::format!("{label} verified"),
            );
            Ok(next)
        } else {
            let left = if puk {
                next.puk.tries_left
            } else {
                next.pin.tries_left
            };
            next.audit_as(
                how,
                AuditEvent::AuthFailure,
                "user",
                session,
                alloc::format!("wrong {label}, {left} tries left"),
            );
            next.count_failure("user", session, how);
            self.commit(next)?;
            Err(tries_status(left))
        }
    }

    pub(super) fn change_pin(&mut self, check: Pin, new: Pin, with_puk: bool) -> Outcome {
        self.volatile.pin_verified = false;
        let mut next = self.consume_try_and_compare(with_puk, &check)?;
        next.pin.value = Zeroizing::new(new.as_bytes().to_vec());
        next.pin.tries_left = next.pin.max_tries;
        let event = if with_puk {
            AuditEvent::PinUnblocked
        } else {
            AuditEvent::PinChanged
        };
        next.audit(event, "user", self.volatile.session_id, "user PIN");
        self.commit(next)?;
        self.volatile.pin_verified = true;
        Ok(Vec::new())
    }
}

pub(super) fn tries_status(left: u8) -> Status {
    if left == 0 {
        Status::OperationBlocked
    } else {
        Status::RemainingRetries(left.min(15))
    }
}
