//! One MO record per node, held by the card against every caller
//! (`docs/commands.md` §3.4, `docs/security.md` §3.4): creating an MO record
//! whose root lies inside or above another record's is refused, whoever asks
//! and whatever they may read; an equal root replaces the record; a sibling
//! whose name only starts the same is no overlap.
//!
//! The refusal is `6A89` when the caller may read one of the records the new
//! root overlaps. When it may read none of them, the answer is the counted
//! `6982` that a PUT DATA of an existing record the caller may not replace
//! gets: the card says no more about a record the caller may not read than
//! that answer already does.
//!
//! The self-test switches the card back to storing overlaps
//! (`Card::reintroduce`, feature `regressions`) and shows that the check then
//! fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use dmsc_card_model::commands::*;
use dmsc_card_model::objects::*;
#[cfg(feature = "regressions")]
use dmsc_sim_card::Regression;

const SERVER_A: u8 = 0x30;
const SERVER_B: u8 = 0x31;

fn mo(uri: &str, content: u8, acl: Option<&str>) -> Request {
    Request::PutObject {
        object: ObjectRef::Mo(uri.into()),
        value: ObjectValue::Mo(MoRecord {
            mo_type: "urn:dmsc:test:vendor".into(),
            version: 0,
            content: vec![content; 4],
        }),
        acl: acl.map(|a| Acl::parse(a).unwrap()),
    }
}

/// Sends `req` in a fresh session of the authority `kvn`, then ends it.
fn as_authority(card: &mut MemCard, kvn: u8, req: &Request) -> u16 {
    assert_eq!(select(card).sw, 0x9000);
    let mut host = Host::open(card, kvn, 0x33).unwrap();
    let sw = host.request(card, req).sw;
    assert_eq!(select(card).sw, 0x9000);
    sw
}

/// Every MO record on the card (read in ServerA's session, ServerA being
/// the card's administrator; ServerB's records grant Get to anyone).
fn records(card: &mut MemCard) -> Vec<(String, u32)> {
    assert_eq!(select(card).sw, 0x9000);
    let rsp = request(
        card,
        &Request::ListObjects {
            kind: ObjectKind::Mo,
        },
    );
    assert_eq!(rsp.sw, 0x9000);
    let mut anyone: Vec<String> = decode_list(&rsp.data)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.object {
            ObjectRef::Mo(uri) => Some(uri),
            _ => None,
        })
        .collect();
    let mut host = Host::open(card, SERVER_A, 0x33).unwrap();
    let rsp = host.request(
        card,
        &Request::ReadAllObjects {
            kind: ObjectKind::Mo,
        },
    );
    assert_eq!(rsp.sw, 0x9000);
    assert_eq!(select(card).sw, 0x9000);
    let mut out: Vec<(String, u32)> = decode_records(ObjectKind::Mo, &rsp.data)
        .unwrap()
        .into_iter()
        .filter_map(|r| match (r.object, r.data.value) {
            (ObjectRef::Mo(uri), ObjectValue::Mo(m)) => Some((uri, m.version)),
            _ => None,
        })
        .collect();
    anyone.retain(|u| !out.iter().any(|(o, _)| o == u));
    assert!(anyone.is_empty(), "records ServerA cannot read: {anyone:?}");
    out.sort();
    out
}

fn denials(card: &mut MemCard, principal: &str) -> Vec<String> {
    assert_eq!(select(card).sw, 0x9000);
    let mut host = Host::open(card, SERVER_A, 0x33).unwrap();
    let rsp = host.request(
        card,
        &Request::ReadObject {
            object: ObjectRef::AuditLog,
            audit_from: None,
        },
    );
    assert_eq!(rsp.sw, 0x9000);
    assert_eq!(select(card).sw, 0x9000);
    match ObjectData::decode(ObjectKind::AuditLog, &rsp.data)
        .unwrap()
        .value
    {
        ObjectValue::AuditLog(entries) => entries
            .into_iter()
            .filter(|e| e.event == AuditEvent::AccessDenied && e.principal == principal)
            .map(|e| e.detail)
            .collect(),
        other => panic!("not an audit log: {other:?}"),
    }
}

fn expect(what: &str, got: u16, want: u16) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got:04X}, expected {want:04X}"))
    }
}

/// The attack: store two records for one node, as the administrator (who
/// reads everything) and as a second authority that may create records but
/// not read the administrator's. `Err` when the card lets it happen.
fn one_record_per_node(card: &mut MemCard) -> Result<(), String> {
    let hidden = "Delete=ServerA&Get=ServerA&Replace=ServerA";
    expect(
        "./Vendor",
        as_authority(card, SERVER_A, &mo("./Vendor", 1, Some(hidden))),
        0x9000,
    )?;
    // Inside and above a record the administrator may read: 6A89.
    for uri in ["./Vendor/Acme/Email", "./Vendor/Acme", "."] {
        expect(uri, as_authority(card, SERVER_A, &mo(uri, 2, None)), 0x6A89)?;
    }
    // A sibling whose name only starts the same, and an equal root.
    for uri in ["./VendorX", "./Vendo", "./Vendor"] {
        expect(uri, as_authority(card, SERVER_A, &mo(uri, 3, None)), 0x9000)?;
    }
    // ServerB may create records but not read ./Vendor.
    let card_acl = "Add=ServerA+ServerB&Delete=ServerA&Get=ServerA&Replace=ServerA";
    let set_card_acl = Request::SetAcl {
        object: ObjectRef::Card,
        acl: Acl::parse(card_acl).unwrap(),
    };
    expect(
        "card ACL",
        as_authority(card, SERVER_A, &set_card_acl),
        0x9000,
    )?;
    let existing = as_authority(card, SERVER_B, &mo("./Vendor", 4, None));
    expect("ServerB replacing ./Vendor", existing, 0x6982)?;
    let inside = as_authority(card, SERVER_B, &mo("./Vendor/Acme/Email", 4, None));
    expect(
        "ServerB inside ./Vendor (the answer to an existing record)",
        inside,
        existing,
    )?;
    let denied = denials(card, "ServerB");
    if denied
        != [
            "Replace on mo:./Vendor",
            "Add on mo:./Vendor/Acme/Email (overlaps a record)",
        ]
    {
        return Err(format!("ServerB's denials are not counted: {denied:?}"));
    }
    // Above ./Vendor (hidden) and ./VendorX (readable by anyone): 6A89.
    expect(
        "ServerB above ./VendorX",
        as_authority(card, SERVER_B, &mo(".", 4, None)),
        0x6A89,
    )?;
    let now = records(card);
    let want = [("./Vendo", 1), ("./Vendor", 2), ("./VendorX", 1)];
    if now
        .iter()
        .map(|(u, v)| (u.as_str(), *v))
        .collect::<Vec<_>>()
        != want
    {
        return Err(format!("records on the card: {now:?}"));
    }
    Ok(())
}

#[test]
fn the_card_holds_one_mo_record_per_node() {
    let mut card = new_card();
    one_record_per_node(&mut card).unwrap();
}

#[test]
fn a_refused_overlap_changes_nothing_but_the_failure_record() {
    let mut card = new_card();
    let hidden = "Delete=ServerA&Get=ServerA&Replace=ServerA";
    assert_eq!(
        as_authority(&mut card, SERVER_A, &mo("./Vendor", 1, Some(hidden))),
        0x9000
    );
    // Within one session (opening one writes audit records).
    assert_eq!(select(&mut card).sw, 0x9000);
    let mut host = Host::open(&mut card, SERVER_A, 0x33).unwrap();
    let before = card.records().clone();
    let generation = card.generation();
    let rsp = host.request(&mut card, &mo("./Vendor/Acme", 2, None));
    assert_eq!(rsp.sw, 0x6A89);
    assert_eq!(&before, card.records(), "6A89 wrote something");
    let card_acl = "Add=ServerA+ServerB&Delete=ServerA&Get=ServerA&Replace=ServerA";
    let set = Request::SetAcl {
        object: ObjectRef::Card,
        acl: Acl::parse(card_acl).unwrap(),
    };
    assert_eq!(as_authority(&mut card, SERVER_A, &set), 0x9000);
    let generation_after_acl = card.generation();
    assert!(generation_after_acl > generation);
    assert_eq!(
        as_authority(&mut card, SERVER_B, &mo("./Vendor/Acme", 2, None)),
        0x6982
    );
    assert_eq!(
        card.generation(),
        generation_after_acl,
        "visible content moved"
    );
    assert_eq!(records(&mut card), vec![("./Vendor".to_string(), 1)]);
}

/// Self-test: a card that stores overlapping records fails the check.
#[cfg(feature = "regressions")]
#[test]
fn self_test_a_card_that_stores_overlaps_fails_the_check() {
    let mut card = new_card();
    card.reintroduce(Regression::MoOverlapAccepted);
    let err = one_record_per_node(&mut card).unwrap_err();
    assert!(err.contains("./Vendor/Acme/Email"), "{err}");
}
