//! The fleet ACL grant end to end: five simulated cards on vpcd slots 5–9 of
//! the private pcscd of `.ci/test`, one pulled from its reader in the middle
//! of the apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;
mod support;

use dmsc_host::card_model::commands::ObjectValue;
use dmsc_host::card_model::objects::{Acl, ObjectRef, Principal, Right};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::fleet::{acl_grant, FleetCard, GrantOutcome, GrantRequest, Phase, Progress};
use dmsc_host::{open_secure_channel, CardCommands, Governance, PcscCard};
use e2e::*;
use support::*;

const SLOTS: std::ops::Range<usize> = 5..10;
const ACL: &str = "Get=*&Replace=ServerA";

fn level() -> SecurityLevel {
    SecurityLevel::new(0x33).unwrap()
}

fn prepare(reader: &str) -> FleetCard<PcscCard> {
    let mut s = session(reader);
    open_secure_channel(&mut s, &server_a(), level()).unwrap();
    s.put_object(
        &ObjectRef::Policy,
        &ObjectValue::Policy(b"no camera at work".to_vec()),
        Some(&Acl::parse(ACL).unwrap()),
    )
    .unwrap();
    s.select().unwrap();
    FleetCard::new(reader, s)
}

fn acl_of(card: &mut FleetCard<PcscCard>) -> String {
    open_secure_channel(&mut card.session, &server_a(), level()).unwrap();
    card.session.acl(&ObjectRef::Policy).unwrap().to_string()
}

#[test]
fn fleet_grant_through_pcscd_applies_then_rolls_back_a_lost_card() {
    let dir = tempfile::tempdir().unwrap();
    let mut served: Vec<Option<Served>> = SLOTS
        .map(|slot| Some(serve_new_card(dir.path(), slot, card_params(false)).0))
        .collect();
    let readers: Vec<String> = served
        .iter()
        .map(|s| s.as_ref().unwrap().reader.clone())
        .collect();
    let mut cards: Vec<FleetCard<PcscCard>> = readers.iter().map(|r| prepare(r)).collect();
    let keys = server_a();
    let req = GrantRequest {
        object: ObjectRef::Policy,
        right: Right::Replace,
        to: Principal::Authority("ServerB".into()),
        as_authority: "ServerA",
        keys: &keys,
        level: level(),
    };
    // Everything applies.
    let report = acl_grant(&mut cards, &req, |_| {});
    assert_eq!(report.outcome, GrantOutcome::Applied, "{:?}", report.failed);
    for c in &mut cards {
        assert_eq!(acl_of(c), "Get=*&Replace=ServerA+ServerB");
    }

    // Grant Get to ServerC; the card in slot 7 is pulled after two cards changed.
    let ids: Vec<String> = cards.iter().map(|c| c.card_id().unwrap()).collect();
    let req = GrantRequest {
        right: Right::Get,
        to: Principal::Authority("ServerC".into()),
        ..req
    };
    let mut applied = 0;
    let report = acl_grant(&mut cards, &req, |p| {
        let Progress::Card { phase, ok, .. } = p;
        if phase == Phase::Apply && ok {
            applied += 1;
            if applied == 2 {
                served[2].take().unwrap().pull();
            }
        }
    });
    // The pulled card stays out: its ACL is unknown, so the outcome is
    // inconsistent (not rolled back), naming it.
    assert_eq!(
        report.outcome,
        GrantOutcome::Inconsistent,
        "{:?}",
        report.failed
    );
    assert_eq!(report.failed[0].card_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(report.failed[0].phase, Phase::Apply);
    assert_eq!(report.rolled_back, [ids[0].clone(), ids[1].clone()]);
    assert_eq!(report.uncertain.len(), 1);
    assert_eq!(
        report.uncertain[0].card_id.as_deref(),
        Some(ids[2].as_str())
    );
    for i in [0, 1, 3, 4] {
        assert_eq!(
            acl_of(&mut cards[i]),
            "Get=*&Replace=ServerA+ServerB",
            "card {i}"
        );
    }
    // Close the PC/SC handles, then take every card out and wait until pcscd
    // sees the slots empty, so the next test binary finds them as it expects.
    drop(cards);
    for s in served.into_iter().flatten() {
        s.pull();
    }
}
