//! Access governance against simulated cards in-process: authority key sets
//! (PUT KEY), ACLs, the failure limit and alarms as events, and the fleet-wide
//! all-or-nothing ACL grant with its rollback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dmsc_host::card_model::commands::{AuditEvent, MoRecord, ObjectValue};
use dmsc_host::card_model::objects::{Acl, ObjectRef, Principal, Right};
use dmsc_host::card_model::scp03::{SecurityLevel, StaticKeys};
use dmsc_host::fleet::{acl_grant, FleetCard, GrantOutcome, GrantRequest, Phase, Progress};
use dmsc_host::transport::sim::SimTransport;
use dmsc_host::{
    open_secure_channel, AuditFilter, AuditWatcher, AuthorityKeySet, CardCommands, Governance,
    HostError, Session, Status, Transport, TransportError,
};
use support::*;

type MemSession = Session<SimTransport<dmsc_sim_card::MemoryStore>>;

fn card() -> MemSession {
    Session::new(SimTransport::in_memory(card_params(false)).unwrap())
}

fn level() -> SecurityLevel {
    SecurityLevel::new(0x33).unwrap()
}

#[test]
fn authorities_are_added_rotated_and_removed_but_never_the_last() {
    let mut s = card();
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    let c_keys = StaticKeys::new(&[0x51; 32], &[0x52; 32], &[0x53; 32]).unwrap();
    let rsp = s
        .add_authority(&server_a(), "ServerC", 0x32, &c_keys)
        .unwrap();
    assert_eq!(rsp.key_version, 0x32);
    let list = s.authorities().unwrap();
    let names: Vec<_> = list
        .iter()
        .map(|a| (a.key_version, a.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [(0x30, "ServerA"), (0x31, "ServerB"), (0x32, "ServerC")]
    );
    assert_eq!(list[2].key_length, 32);
    // ServerC authenticates with its keys and rotates them to key version 33.
    let server_c = AuthorityKeySet {
        key_version: 0x32,
        keys: c_keys,
    };
    open_secure_channel(&mut s, &server_c, level()).unwrap();
    let rotated = StaticKeys::new(&[0x61; 16], &[0x62; 16], &[0x63; 16]).unwrap();
    s.rotate_authority(&server_c, 0x32, 0x33, &rotated).unwrap();
    let old = open_secure_channel(&mut s, &server_c, level()).unwrap_err();
    assert!(
        matches!(
            old,
            HostError::Card {
                status: Status::NotFound | Status::KeyReferenceNotFound,
                ..
            }
        ),
        "{old}"
    );
    let server_c = AuthorityKeySet {
        key_version: 0x33,
        keys: rotated,
    };
    open_secure_channel(&mut s, &server_c, level()).unwrap();
    // ServerC may not remove ServerB; ServerA (the administrator) may.
    assert!(matches!(
        s.remove_authority(0x31),
        Err(HostError::Card {
            status: Status::SecurityStatusNotSatisfied,
            ..
        })
    ));
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    s.remove_authority(0x31).unwrap();
    s.remove_authority(0x33).unwrap();
    assert!(matches!(
        s.remove_authority(0x30),
        Err(HostError::Card {
            status: Status::ConditionsOfUseNotSatisfied,
            ..
        })
    ));
    assert_eq!(s.authorities().unwrap().len(), 1);
    // The audit log shows the key-set events, filtered by event.
    let rotated = s
        .audit(&AuditFilter {
            event: Some(AuditEvent::AuthorityRotated),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].principal, "ServerC");
    let removed = s
        .audit(&AuditFilter {
            event: Some(AuditEvent::AuthorityRemoved),
            principal: Some("ServerA".into()),
            from: None,
        })
        .unwrap();
    assert_eq!(removed.len(), 2);
}

#[test]
fn put_key_with_the_wrong_dek_is_refused() {
    let mut s = card();
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    let keys = StaticKeys::new(&[0x51; 16], &[0x52; 16], &[0x53; 16]).unwrap();
    // Encrypted with ServerB's DEK while ServerA's session is open: the key
    // check values do not match what the card decrypts.
    let e = s
        .add_authority(&server_b(), "ServerC", 0x32, &keys)
        .unwrap_err();
    assert!(
        matches!(
            e,
            HostError::Card {
                status: Status::IncorrectDataParameter,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(s.authorities().unwrap().len(), 2);
}

#[test]
fn acl_changes_need_replace_and_failure_limit_is_at_least_4() {
    let mut s = card();
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    let mo = ObjectRef::Mo("./DMAcc/Gw".into());
    let value = ObjectValue::Mo(MoRecord {
        mo_type: "urn:oma:mo:oma-dm-dmacc:1.0".into(),
        version: 0,
        content: vec![1, 2, 3],
    });
    s.put_object(
        &mo,
        &value,
        Some(&Acl::parse("Get=*&Replace=ServerA").unwrap()),
    )
    .unwrap();
    let (before, after) = s
        .grant(&mo, Right::Replace, &Principal::Authority("ServerB".into()))
        .unwrap();
    assert_eq!(before.to_string(), "Get=*&Replace=ServerA");
    assert_eq!(after.to_string(), "Get=*&Replace=ServerA+ServerB");
    assert_eq!(s.acl(&mo).unwrap(), after);
    // ServerB now holds Replace and takes ServerA's away; ServerA can no longer change it.
    open_secure_channel(&mut s, &server_b(), level()).unwrap();
    s.revoke(&mo, Right::Replace, &Principal::Authority("ServerA".into()))
        .unwrap();
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    assert!(matches!(
        s.set_acl(&mo, &Acl::parse("Get=*").unwrap()),
        Err(HostError::Card {
            status: Status::SecurityStatusNotSatisfied,
            ..
        })
    ));
    assert_eq!(s.failure_limit().unwrap(), 4);
    assert!(matches!(
        s.set_failure_limit(3),
        Err(HostError::Card {
            status: Status::IncorrectDataParameter,
            ..
        })
    ));
    s.set_failure_limit(5).unwrap();
    assert_eq!(s.failure_limit().unwrap(), 5);
}

#[test]
fn alarms_arrive_as_events() {
    let mut s = card();
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    let start = s.audit(&AuditFilter::default()).unwrap();
    let mut watcher = AuditWatcher::alarms(start.last().unwrap().sequence + 1);
    assert!(watcher.poll(&mut s, |_| {}).unwrap().is_empty());
    // The device probes a protected object four times: one alarm against `*`.
    s.select().unwrap();
    for _ in 0..4 {
        assert!(s.read_object(&ObjectRef::AuditLog).is_err());
    }
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    let mut seen = Vec::new();
    let alarms = watcher.poll(&mut s, |e| seen.push(e.clone())).unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].principal, "*");
    assert_eq!(seen, alarms);
    // Nothing new on the next poll.
    assert!(watcher.poll(&mut s, |_| {}).unwrap().is_empty());
}

/// A transport that loses its card once `lost` is set.
struct Losable {
    inner: SimTransport<dmsc_sim_card::MemoryStore>,
    lost: Arc<AtomicBool>,
    /// When set, the card is pulled right after it processed the next PUT
    /// DATA: the card holds the write, the host never sees the answer.
    pull_after_write: Arc<AtomicBool>,
}

impl Transport for Losable {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(TransportError::CardRemoved);
        }
        let answer = self.inner.transmit(apdu);
        if apdu.get(1) == Some(&0xDB) && self.pull_after_write.swap(false, Ordering::SeqCst) {
            self.lost.store(true, Ordering::SeqCst);
            return Err(TransportError::CardRemoved);
        }
        answer
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(TransportError::CardRemoved);
        }
        self.inner.reset()
    }
    fn reader_name(&self) -> &str {
        self.inner.reader_name()
    }
    fn supports_extended(&self) -> bool {
        true
    }
    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        body(self);
        Ok(())
    }
}

const POLICY_ACL: &str = "Get=*&Replace=ServerA";

/// `n` cards, each with a policy whose ACL is `acl(i)`; card `lose` can be pulled.
fn fleet(
    n: usize,
    acl: impl Fn(usize) -> String,
) -> (Vec<FleetCard<Losable>>, Vec<Arc<AtomicBool>>) {
    let (cards, flags, _) = fleet_pullable(n, acl);
    (cards, flags)
}

/// [`fleet`], with the flags that pull each card right after its next write.
#[allow(clippy::type_complexity)]
fn fleet_pullable(
    n: usize,
    acl: impl Fn(usize) -> String,
) -> (
    Vec<FleetCard<Losable>>,
    Vec<Arc<AtomicBool>>,
    Vec<Arc<AtomicBool>>,
) {
    let mut cards = Vec::new();
    let mut flags = Vec::new();
    let mut pulls = Vec::new();
    for i in 0..n {
        let lost = Arc::new(AtomicBool::new(false));
        let pull = Arc::new(AtomicBool::new(false));
        pulls.push(pull.clone());
        let mut s = Session::new(Losable {
            inner: SimTransport::in_memory(card_params(false)).unwrap(),
            lost: lost.clone(),
            pull_after_write: pull,
        });
        open_secure_channel(&mut s, &server_a(), level()).unwrap();
        s.put_object(
            &ObjectRef::Policy,
            &ObjectValue::Policy(vec![i as u8; 10]),
            Some(&Acl::parse(&acl(i)).unwrap()),
        )
        .unwrap();
        s.select().unwrap();
        cards.push(FleetCard::new(format!("reader {i}"), s));
        flags.push(lost);
    }
    (cards, flags, pulls)
}

fn grant_b(keys: &AuthorityKeySet) -> GrantRequest<'_> {
    GrantRequest {
        object: ObjectRef::Policy,
        right: Right::Replace,
        to: Principal::Authority("ServerB".into()),
        as_authority: "ServerA",
        keys,
        level: level(),
    }
}

fn acls(cards: &mut [FleetCard<Losable>]) -> Vec<String> {
    cards
        .iter_mut()
        .map(|c| {
            open_secure_channel(&mut c.session, &server_a(), level()).unwrap();
            c.session.acl(&ObjectRef::Policy).unwrap().to_string()
        })
        .collect()
}

#[test]
fn fleet_grant_applies_to_every_card() {
    let (mut cards, _) = fleet(4, |_| POLICY_ACL.into());
    let keys = server_a();
    let report = acl_grant(&mut cards, &grant_b(&keys), |_| {});
    assert_eq!(report.outcome, GrantOutcome::Applied, "{:?}", report.failed);
    assert!(report.failed.is_empty());
    assert!(acls(&mut cards)
        .iter()
        .all(|a| a == "Get=*&Replace=ServerA+ServerB"));
}

#[test]
fn fleet_grant_changes_nothing_when_a_card_fails_the_check() {
    // Cards 1 and 3 do not give ServerA Replace on the policy.
    let (mut cards, _) = fleet(4, |i| {
        if i % 2 == 1 {
            "Get=*+ServerA&Replace=ServerB".into()
        } else {
            POLICY_ACL.into()
        }
    });
    let ids: Vec<String> = cards.iter().map(|c| c.card_id().unwrap()).collect();
    let before = acls(&mut cards);
    let keys = server_a();
    let report = acl_grant(&mut cards, &grant_b(&keys), |_| {});
    assert_eq!(report.outcome, GrantOutcome::Refused);
    let failed: Vec<String> = report
        .failed
        .iter()
        .map(|f| f.card_id.clone().unwrap())
        .collect();
    assert_eq!(failed, [ids[1].clone(), ids[3].clone()]);
    assert!(report.failed.iter().all(|f| f.phase == Phase::Check));
    assert!(report.failed[0]
        .reason
        .to_string()
        .contains("does not hold Replace"));
    assert_eq!(acls(&mut cards), before, "no card changed");
}

#[test]
fn fleet_grant_rolls_back_when_a_card_is_lost_during_the_apply() {
    let (mut cards, flags) = fleet(4, |_| POLICY_ACL.into());
    let ids: Vec<String> = cards.iter().map(|c| c.card_id().unwrap()).collect();
    let keys = server_a();
    // Card 2 is pulled from its reader once the apply has changed cards 0 and 1,
    // and is back in its reader when the rollback starts.
    let lose = flags[2].clone();
    let mut applied = 0;
    let report = acl_grant(&mut cards, &grant_b(&keys), |p| {
        let Progress::Card { phase, ok, .. } = p;
        if phase == Phase::Apply && ok {
            applied += 1;
            if applied == 2 {
                lose.store(true, Ordering::SeqCst);
            }
        }
        if phase == Phase::Rollback {
            lose.store(false, Ordering::SeqCst);
        }
    });
    assert_eq!(
        report.outcome,
        GrantOutcome::RolledBack,
        "{:?}",
        report.failed
    );
    assert_eq!(report.failed[0].card_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(report.failed[0].phase, Phase::Apply);
    assert_eq!(report.rolled_back, [ids[0].clone(), ids[1].clone()]);
    assert!(report.uncertain.is_empty());
    // Every card holds its previous ACL.
    assert!(acls(&mut cards).iter().all(|a| a == POLICY_ACL));
}

/// Card 2 is pulled right after the card took its write (the host never sees
/// the answer) and is still out at the rollback: the outcome is not
/// "rolled back" but inconsistent, naming the card, its last known ACL and
/// what to do.
#[test]
fn fleet_grant_is_inconsistent_when_the_lost_card_stays_unreachable() {
    let (mut cards, _, pulls) = fleet_pullable(4, |_| POLICY_ACL.into());
    let ids: Vec<String> = cards.iter().map(|c| c.card_id().unwrap()).collect();
    let keys = server_a();
    pulls[2].store(true, Ordering::SeqCst);
    let report = acl_grant(&mut cards, &grant_b(&keys), |_| {});
    assert_eq!(
        report.outcome,
        GrantOutcome::Inconsistent,
        "{:?}",
        report.failed
    );
    assert_eq!(report.rolled_back, [ids[0].clone(), ids[1].clone()]);
    assert_eq!(report.uncertain.len(), 1, "{:?}", report.uncertain);
    let u = &report.uncertain[0];
    assert_eq!(u.card_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(u.last_known.to_string(), POLICY_ACL);
    assert_eq!(u.maybe.to_string(), "Get=*&Replace=ServerA+ServerB");
    assert_eq!(u.restore_to.to_string(), POLICY_ACL);
    assert!(u.to_string().contains("acl set"), "{u}");
    assert!(report
        .failed
        .iter()
        .any(|f| f.phase == Phase::Rollback && f.card_id.as_deref() == Some(ids[2].as_str())));
}

#[test]
fn session_manager_ends_idle_sessions_and_limits_concurrency() {
    use dmsc_host::session::manager::{SessionError, SessionLimits, SessionManager};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    let now = Arc::new(Mutex::new(Instant::now()));
    let clock_now = now.clone();
    let mut m = SessionManager::with_clock(
        SessionLimits {
            idle_timeout: Duration::from_secs(60 * 60),
            max_sessions: 2,
        },
        Arc::new(move || *clock_now.lock().unwrap()),
    );
    let new = || SimTransport::in_memory(card_params(false)).unwrap();
    let a = m.open(new(), "ServerA", &server_a(), level()).unwrap();
    let b = m.open(new(), "ServerB", &server_b(), level()).unwrap();
    assert!(matches!(
        m.open(new(), "ServerA", &server_a(), level()),
        Err(SessionError::TooMany { limit: 2, .. })
    ));
    // Audit entries written in session a carry its card session number.
    let card_session = m.card_session(a).expect("ServerA may read the audit log");
    let entries = m
        .with(a, |s| {
            s.set_failure_limit(6)?;
            s.audit(&AuditFilter {
                event: Some(AuditEvent::ConfigChanged),
                ..AuditFilter::default()
            })
        })
        .unwrap();
    assert_eq!(entries[0].session, card_session);
    // 59 minutes idle: still open; 61 minutes: ended, and its slot is free again.
    *now.lock().unwrap() += Duration::from_secs(59 * 60);
    m.with(a, |s| s.failure_limit()).unwrap();
    *now.lock().unwrap() += Duration::from_secs(61 * 60);
    assert!(matches!(
        m.with(a, |s| s.failure_limit()),
        Err(SessionError::Expired { .. })
    ));
    assert!(matches!(
        m.with(a, |s| s.failure_limit()),
        Err(SessionError::Unknown(_))
    ));
    // b was idle as long: ended when the next session opens.
    let c = m.open(new(), "ServerA", &server_a(), level()).unwrap();
    assert_eq!(m.len(), 1);
    assert!(matches!(
        m.with(b, |s| s.failure_limit()),
        Err(SessionError::Unknown(_))
    ));
    // Ending a session ends the secure channel on the card.
    let transport = m.end(c).unwrap();
    let mut plain = Session::new(transport);
    assert!(matches!(
        plain.read_audit_log(None),
        Err(HostError::Card {
            status: Status::SecurityStatusNotSatisfied,
            ..
        })
    ));
}

#[test]
fn fleet_provision_runs_every_card_in_parallel_with_a_result_each() {
    use dmsc_host::card_model::commands::MoRecord;
    use dmsc_host::fleet::{provision, Profile, ProfileObject};
    use std::sync::Mutex;

    let (mut cards, flags) = fleet(4, |_| POLICY_ACL.into());
    // Card 3 is gone before provisioning starts.
    flags[3].store(true, Ordering::SeqCst);
    let profile = Profile {
        objects: vec![
            ProfileObject {
                object: ObjectRef::Mo("./DMAcc/Gw".into()),
                value: ObjectValue::Mo(MoRecord {
                    mo_type: "urn:oma:mo:oma-dm-dmacc:1.0".into(),
                    version: 0,
                    content: b"<MgmtTree/>".to_vec(),
                }),
                acl: Some(Acl::parse("Get=*&Replace=ServerA").unwrap()),
            },
            ProfileObject {
                object: ObjectRef::Policy,
                value: ObjectValue::Policy(b"camera off".to_vec()),
                acl: None,
            },
        ],
        failure_limit: Some(6),
    };
    let seen = Mutex::new(0);
    let results = provision(&mut cards, &profile, &server_a(), level(), &|_| {
        *seen.lock().unwrap() += 1;
    });
    assert_eq!(*seen.lock().unwrap(), 4);
    for r in &results[..3] {
        assert_eq!(r.result, Ok(3), "{r:?}");
    }
    assert!(results[3].result.is_err());
    for c in &mut cards[..3] {
        open_secure_channel(&mut c.session, &server_a(), level()).unwrap();
        assert_eq!(c.session.failure_limit().unwrap(), 6);
        assert_eq!(
            c.session
                .acl(&ObjectRef::Mo("./DMAcc/Gw".into()))
                .unwrap()
                .to_string(),
            "Get=*&Replace=ServerA"
        );
        // The profile's policy kept the card's ACL (replace without an ACL).
        assert_eq!(
            c.session.acl(&ObjectRef::Policy).unwrap().to_string(),
            POLICY_ACL
        );
    }
}
