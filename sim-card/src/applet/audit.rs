//! The audit log: how a command's records enter it (single or aggregated,
//! `docs/security.md` §3.11), failures counted against a principal
//! (`docs/commands.md` §6.5), and the window of records GET DATA returns
//! (§3.2).

use alloc::vec::Vec;

use dmsc_card_model::apdu::Status;
use dmsc_card_model::commands::{AuditEntry, AuditEvent};
use rand_core::{CryptoRng, RngCore};

use super::Card;
use crate::state::Record;
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// The audit records from sequence number `from` on, the newest that fit
    /// one extended response (`docs/commands.md` §3.2).
    pub(super) fn audit_window(&self, from: u32) -> Vec<AuditEntry> {
        let mut entries: Vec<_> = self
            .state
            .audit
            .range(from..)
            .map(|(_, e)| e.clone())
            .collect();
        let mut size: usize = entries.iter().map(|e| e.encode().len() + 4).sum();
        while size > 60_000 && !entries.is_empty() {
            size -= entries[0].encode().len() + 4;
            entries.remove(0);
        }
        entries
    }

    /// How the current command's records enter the audit log: aggregated
    /// when no SCP03 session is open (see `State::audit_as`).
    pub(super) fn record_kind(&self) -> Record {
        if self.volatile.scp.is_some() {
            Record::Single
        } else {
            Record::Aggregated
        }
    }

    /// Persists an authorisation failure of `who`, its audit record and any alarm.
    pub(super) fn record_failure(
        &mut self,
        who: &str,
        event: AuditEvent,
        detail: &str,
        how: Record,
    ) -> Result<(), Status> {
        let mut next = self.state.clone();
        let session = self.volatile.session_id;
        next.audit_as(how, event, who, session, detail);
        next.count_failure(who, session, how);
        self.commit(next)
    }
}
