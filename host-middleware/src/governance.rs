//! Access governance on one card: ACLs, authority key sets (GlobalPlatform PUT
//! KEY), the failure limit, and the audit log as filtered entries and as a
//! stream of events (alarms included).
//!
//! Everything here is built on [`CardCommands`], so it works on a [`Session`]
//! and inside a transaction alike; the rights are the card's: the card
//! refuses what the ACLs do not allow (`docs/commands.md` §2, §3.20).
//!
//! [`Session`]: crate::Session

use dmsc_card_model::commands::{
    AuditEntry, AuditEvent, CardConfig, ObjectValue, PutKey, PutKeyResponse, Request,
};
use dmsc_card_model::objects::{Acl, ObjectKind, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::StaticKeys;

use crate::error::{HostError, ProtocolFault};
use crate::session::scp::AuthorityKeySet;
use crate::session::CardCommands;

/// An authority key set as the card lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityEntry {
    /// Key version number.
    pub key_version: u8,
    /// The authority's name (its ACL identifier).
    pub name: String,
    /// AES key length in bytes.
    pub key_length: u8,
    /// Key check values of ENC, MAC and DEK.
    pub key_check_values: [[u8; 3]; 3],
    /// Who may read, rotate and remove the key set.
    pub acl: Acl,
}

/// Which audit entries to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only entries with this sequence number or later (asked of the card).
    pub from: Option<u32>,
    /// Only this event.
    pub event: Option<AuditEvent>,
    /// Only this principal (`*`, `user` or an authority name).
    pub principal: Option<String>,
}

impl AuditFilter {
    /// Whether `e` passes the event and principal filters (`from` is the card's).
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.from.is_none_or(|f| e.sequence >= f)
            && self.event.is_none_or(|ev| e.event == ev)
            && self.principal.as_ref().is_none_or(|p| e.principal == *p)
    }
}

fn decode_err(
    command: &'static str,
) -> impl Fn(dmsc_card_model::commands::DecodeError) -> HostError {
    move |source| HostError::Decode { command, source }
}

fn unexpected(command: &'static str, what: &'static str) -> HostError {
    HostError::Protocol {
        command,
        fault: ProtocolFault::UnexpectedAnswer { what },
    }
}

/// Governance operations on a card, for every [`CardCommands`].
pub trait Governance: CardCommands {
    /// The ACL of `object` (needs Get on it).
    fn acl(&mut self, object: &ObjectRef) -> Result<Acl, HostError> {
        Ok(self.read_object(object)?.acl)
    }

    /// Adds `principal` to the holders of `right` on `object`'s ACL (needs
    /// Replace on it). Returns the ACL before and after.
    fn grant(
        &mut self,
        object: &ObjectRef,
        right: Right,
        principal: &Principal,
    ) -> Result<(Acl, Acl), HostError> {
        let before = self.acl(object)?;
        let mut after = before.clone();
        after.grant(right, principal.clone());
        if after != before {
            self.set_acl(object, &after)?;
        }
        Ok((before, after))
    }

    /// Removes `principal` from the holders of `right` on `object`'s ACL.
    fn revoke(
        &mut self,
        object: &ObjectRef,
        right: Right,
        principal: &Principal,
    ) -> Result<(Acl, Acl), HostError> {
        let before = self.acl(object)?;
        let mut after = before.clone();
        after.revoke(right, principal);
        if after != before {
            self.set_acl(object, &after)?;
        }
        Ok((before, after))
    }

    /// Every authority key set the caller may read.
    fn authorities(&mut self) -> Result<Vec<AuthorityEntry>, HostError> {
        let mut out = Vec::new();
        for entry in self.list(ObjectKind::Authority)? {
            let ObjectRef::Authority(kvn) = entry.object else {
                return Err(unexpected(
                    "GET DATA",
                    "a non-authority entry in the key-set list",
                ));
            };
            let data = self.read_object(&entry.object)?;
            let ObjectValue::Authority(info) = data.value else {
                return Err(unexpected("GET DATA", "a non-authority value"));
            };
            out.push(AuthorityEntry {
                key_version: kvn,
                name: info.name,
                key_length: info.key_length,
                key_check_values: info.key_check_values,
                acl: data.acl,
            });
        }
        Ok(out)
    }

    /// PUT KEY: sends `new_keys` encrypted with the DEK of `session` (the
    /// authority whose secure channel is open) and checks that the card
    /// answers the expected key version and key check values.
    fn put_key(
        &mut self,
        session: &AuthorityKeySet,
        replace_kvn: u8,
        new_kvn: u8,
        new_keys: &StaticKeys,
        name: Option<&str>,
    ) -> Result<PutKeyResponse, HostError> {
        let req = PutKey::new(
            replace_kvn,
            new_kvn,
            new_keys,
            session.keys.dek(),
            name.map(str::to_string),
        )
        .map_err(|e| HostError::Protocol {
            command: "PUT KEY",
            fault: ProtocolFault::Scp03(e),
        })?;
        let expected = PutKeyResponse {
            key_version: new_kvn,
            kcvs: req.kcvs(),
        };
        let data = self.request(&Request::PutKey(req))?;
        let got = PutKeyResponse::decode(&data).map_err(decode_err("PUT KEY"))?;
        if got != expected {
            return Err(unexpected(
                "PUT KEY",
                "other key check values than the keys sent (wrong DEK?)",
            ));
        }
        Ok(got)
    }

    /// Adds an authority's key set (needs Add on the card object).
    fn add_authority(
        &mut self,
        session: &AuthorityKeySet,
        name: &str,
        key_version: u8,
        keys: &StaticKeys,
    ) -> Result<PutKeyResponse, HostError> {
        self.put_key(session, 0, key_version, keys, Some(name))
    }

    /// Replaces the key set `key_version` by `keys` at `new_key_version`
    /// (which may be the same).
    fn rotate_authority(
        &mut self,
        session: &AuthorityKeySet,
        key_version: u8,
        new_key_version: u8,
        keys: &StaticKeys,
    ) -> Result<PutKeyResponse, HostError> {
        self.put_key(session, key_version, new_key_version, keys, None)
    }

    /// Removes a key set; the card refuses to remove its last one (`6985`).
    fn remove_authority(&mut self, key_version: u8) -> Result<(), HostError> {
        self.delete(&ObjectRef::Authority(key_version))
    }

    /// The card's consecutive-failure limit (needs Get on the card object).
    fn failure_limit(&mut self) -> Result<u8, HostError> {
        match self.read_object(&ObjectRef::Card)?.value {
            ObjectValue::Card(c) => Ok(c.failure_limit),
            _ => Err(unexpected(
                "GET DATA",
                "a non-card value for the card object",
            )),
        }
    }

    /// Sets the failure limit (at least 4; needs Replace on the card object).
    fn set_failure_limit(&mut self, limit: u8) -> Result<(), HostError> {
        let value = ObjectValue::Card(CardConfig {
            failure_limit: limit,
            used_memory: 0,
            total_memory: 0,
        });
        self.put_object(&ObjectRef::Card, &value, None)
    }

    /// The audit entries that pass `filter`.
    fn audit(&mut self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, HostError> {
        let data = self.read_audit_log(filter.from)?;
        let ObjectValue::AuditLog(entries) = data.value else {
            return Err(unexpected(
                "GET DATA",
                "a non-audit value for the audit log",
            ));
        };
        Ok(entries.into_iter().filter(|e| filter.matches(e)).collect())
    }
}

impl<T: CardCommands + ?Sized> Governance for T {}

/// The audit log as a stream of events: each [`AuditWatcher::poll`] returns
/// the entries recorded since the previous one, oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditWatcher {
    next: u32,
    filter: AuditFilter,
}

impl AuditWatcher {
    /// Watches every event from sequence number `from` on.
    pub fn new(from: u32) -> AuditWatcher {
        AuditWatcher {
            next: from,
            filter: AuditFilter::default(),
        }
    }

    /// Watches only alarms (a principal reached a multiple of the failure limit).
    pub fn alarms(from: u32) -> AuditWatcher {
        AuditWatcher {
            next: from,
            filter: AuditFilter {
                event: Some(AuditEvent::Alarm),
                ..AuditFilter::default()
            },
        }
    }

    /// The next sequence number the watcher asks for.
    pub fn position(&self) -> u32 {
        self.next
    }

    /// The new entries (that pass the watcher's filter) since the last poll;
    /// `on_event` is called for each, in order.
    pub fn poll(
        &mut self,
        card: &mut (impl CardCommands + ?Sized),
        mut on_event: impl FnMut(&AuditEntry),
    ) -> Result<Vec<AuditEntry>, HostError> {
        let all = card.audit(&AuditFilter {
            from: Some(self.next),
            ..AuditFilter::default()
        })?;
        if let Some(last) = all.last() {
            self.next = last.sequence.saturating_add(1);
        }
        let kept: Vec<AuditEntry> = all.into_iter().filter(|e| self.filter.matches(e)).collect();
        for e in &kept {
            on_event(e);
        }
        Ok(kept)
    }
}

/// What a change of an object's ACL does, before it is made
/// ([`review_acl_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclChangeReview {
    /// The rights the change takes away, as (right, holder).
    pub taken_away: Vec<(Right, Principal)>,
    /// After the change no authority can change the ACL again: Replace is
    /// held by no authority and not by `*` (only the user, or nobody). The
    /// card cannot undo this; refuse it unless the caller insists.
    pub lockout: bool,
    /// Holders the change gives Replace on the policy object to that cannot
    /// be trusted with it (`user`, `*`): devices refuse a policy the user or
    /// anyone can replace.
    pub untrusted_policy_writers: Vec<Principal>,
}

impl AclChangeReview {
    /// Whether the change needs the caller's confirmation.
    pub fn needs_confirmation(&self) -> bool {
        !self.taken_away.is_empty() || !self.untrusted_policy_writers.is_empty()
    }

    /// The rights taken away as `Right=id` strings.
    pub fn taken_away_names(&self) -> Vec<String> {
        self.taken_away
            .iter()
            .map(|(r, p)| format!("{r}={}", p.acl_name()))
            .collect()
    }
}

/// Reviews replacing `old` by `new` as the ACL of `object`.
pub fn review_acl_change(object: &ObjectRef, old: &Acl, new: &Acl) -> AclChangeReview {
    let mut taken_away = Vec::new();
    for right in Right::ALL {
        for p in old.holders(right) {
            if !new.names(right, p) {
                taken_away.push((right, p.clone()));
            }
        }
    }
    let lockout = !new
        .holders(Right::Replace)
        .iter()
        .any(|p| matches!(p, Principal::Anyone | Principal::Authority(_)));
    let untrusted_policy_writers = if *object == ObjectRef::Policy {
        new.holders(Right::Replace)
            .iter()
            .filter(|p| matches!(p, Principal::Anyone | Principal::User))
            .filter(|p| !old.names(Right::Replace, p))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    AclChangeReview {
        taken_away,
        lockout,
        untrusted_policy_writers,
    }
}

#[cfg(test)]
mod acl_review_tests {
    use super::*;

    fn acl(s: &str) -> Acl {
        Acl::parse(s).expect("ACL")
    }

    #[test]
    fn a_change_leaving_no_authority_with_replace_is_a_lockout() {
        let o = ObjectRef::Mo("./Vendor".into());
        let old = acl("Get=*&Replace=ServerA&Delete=ServerA");
        let r = review_acl_change(&o, &old, &acl("Get=*"));
        assert!(r.lockout);
        assert_eq!(r.taken_away_names(), ["Delete=ServerA", "Replace=ServerA"]);
        assert!(r.needs_confirmation());
        assert!(review_acl_change(&o, &old, &acl("Get=*&Replace=user")).lockout);
        assert!(review_acl_change(&o, &old, &acl("")).lockout);
        let r = review_acl_change(&o, &old, &acl("Get=*&Replace=ServerB"));
        assert!(!r.lockout);
        assert!(!review_acl_change(&o, &old, &acl("Replace=*")).lockout);
        let same = review_acl_change(&o, &old, &old);
        assert!(!same.lockout && !same.needs_confirmation());
    }

    #[test]
    fn granting_user_or_anyone_replace_on_the_policy_is_flagged() {
        let old = acl("Get=*&Replace=ServerA");
        let new = acl("Get=*&Replace=ServerA+user+*");
        let r = review_acl_change(&ObjectRef::Policy, &old, &new);
        assert_eq!(
            r.untrusted_policy_writers,
            [Principal::Anyone, Principal::User]
        );
        assert!(r.needs_confirmation() && !r.lockout);
        // Not on other objects.
        let r = review_acl_change(&ObjectRef::Mo("./Vendor".into()), &old, &new);
        assert!(r.untrusted_policy_writers.is_empty());
    }
}
