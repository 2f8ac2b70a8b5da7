//! MO formats, MOs on the card, the device tree, refresh, copy/diff and OTA
//! scripts, against the simulated card in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dmsc_host::card_model::scp03::{SecurityLevel, StaticKeys};
use dmsc_host::device_tree::{CrashPoint, DeviceTree, DirectoryTree, LastCard, Origin, TreeChange};
use dmsc_host::mo::{self, MgmtTree, MoError};
use dmsc_host::ota::{self, OtaError, OtaOperation};
use dmsc_host::provisioning::{self, DeviceCopy, MoComparison, ProvisioningError};
use dmsc_host::transport::sim::SimTransport;
use dmsc_host::{open_secure_channel, CardCommands, HostError, Session, Status, Transport};
use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
use support::*;
use zeroize::Zeroizing;

const DMACC: &str = include_str!("../../test-vectors/tnds/dmacc.xml");
const DEVINFO: &str = include_str!("../../test-vectors/tnds/devinfo.json");

type Sim = SimTransport<MemoryStore>;

fn new_card() -> Session<Sim> {
    Session::new(SimTransport::in_memory(card_params(false)).unwrap())
}

fn counting(card: Sim) -> (Session<Counting<Sim>>, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let t = Counting {
        inner: card,
        count: count.clone(),
        pull_after: None,
    };
    (Session::new(t), count)
}

fn as_authority<T: Transport>(s: &mut Session<T>) {
    open_secure_channel(s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
}

#[test]
fn tnds_xml_json_binary_round_trip() {
    let tree = MgmtTree::from_tnds(DMACC).unwrap();
    assert_eq!(tree.nodes.len(), 1);
    assert_eq!(tree.nodes[0].root_uri(), "./DMAcc");
    let name = tree.nodes[0].find("ServerA/Name").unwrap();
    assert_eq!(name.value.as_deref(), Some("  Example  DM <server> "));
    let empty = tree.nodes[0].find("ServerA/Empty").unwrap();
    assert_eq!(empty.value.as_deref(), Some(""));
    // XML → XML, XML → JSON → tree, tree → binary → tree.
    assert_eq!(MgmtTree::from_tnds(&tree.to_tnds()).unwrap(), tree);
    assert_eq!(MgmtTree::from_json(&tree.to_json()).unwrap(), tree);
    assert_eq!(MgmtTree::from_binary(&tree.to_binary()).unwrap(), tree);
    let acl = tree.nodes[0].properties.as_ref().unwrap().acl.as_deref();
    assert_eq!(acl, Some("Get=*&Replace=ServerA+ServerB"));
    let json = MgmtTree::from_json(DEVINFO).unwrap();
    assert_eq!(MgmtTree::from_tnds(&json.to_tnds()).unwrap(), json);
}

#[test]
fn malformed_documents_name_line_and_column() {
    let cases: [(&str, usize, usize); 4] = [
        (
            "<MgmtTree>\n  <VerDTD>1.2</VerDTD>\n  <Node></Nod>\n</MgmtTree>",
            3,
            9,
        ),
        (
            "<MgmtTree>\n <VerDTD>1.2</VerDTD>\n <Bogus/>\n</MgmtTree>",
            3,
            2,
        ),
        ("<MgmtTree>\n<VerDTD>1.2</VerDTD>\n<Node>\n", 4, 1),
        (
            "<MgmtTree>\n<VerDTD>1.2</VerDTD>\n<Node><Value>x</Value></Node></MgmtTree>",
            3,
            1,
        ),
    ];
    for (text, line, column) in cases {
        match MgmtTree::from_tnds(text) {
            Err(MoError::Syntax {
                line: l, column: c, ..
            }) => assert_eq!((l, c), (line, column), "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    match MgmtTree::from_json("{\n  \"ver_dtd\": \"1.2\",\n  \"nodes\": [ { \"nam\": 1 } ]\n}") {
        Err(MoError::Syntax { line, format, .. }) => assert_eq!((format, line), ("JSON", 3)),
        other => panic!("{other:?}"),
    }
    let bad_acl = DMACC.replace("Get=*&amp;Replace", "Get=*&amp;Fetch");
    assert!(matches!(
        MgmtTree::from_tnds(&bad_acl),
        Err(MoError::Invalid { .. })
    ));
    let bad_ns = DMACC.replace("syncml:dmddf1.2", "urn:other");
    assert!(matches!(
        MgmtTree::from_tnds(&bad_ns),
        Err(MoError::Syntax { line: 3, .. })
    ));
    // Corrupt binary content.
    let mut bin = MgmtTree::from_tnds(DMACC).unwrap().to_binary();
    bin.truncate(bin.len() - 3);
    assert!(matches!(
        MgmtTree::from_binary(&bin),
        Err(MoError::Binary(_))
    ));
}

#[test]
fn put_get_list_delete_round_trip_on_the_card() {
    let mut s = new_card();
    let tree = MgmtTree::from_tnds(DMACC).unwrap();
    // The device alone may not add MOs.
    s.select().unwrap();
    assert!(matches!(
        mo::put_mo(&mut s, &tree, None),
        Err(mo::MoCardError::Card {
            source: HostError::Card {
                status: Status::SecurityStatusNotSatisfied,
                ..
            },
            ..
        })
    ));
    as_authority(&mut s);
    assert_eq!(mo::put_mo(&mut s, &tree, None).unwrap(), vec!["./DMAcc"]);
    // The device reads it back: the same tree, the same TNDS text.
    s.select().unwrap();
    let got = mo::get_mo(&mut s, "./DMAcc").unwrap();
    assert_eq!(got.tree, tree);
    assert_eq!(got.tree.to_tnds(), tree.to_tnds());
    assert_eq!(got.mo_type, "urn:oma:mo:oma-dm-dmacc:1.0");
    assert_eq!(got.version, 1);
    let list = mo::list_mos(&mut s).unwrap();
    assert_eq!(list.len(), 1);
    // Placed at another URI.
    as_authority(&mut s);
    let moved = mo::rooted_at(&tree, "./Vendor/Acc").unwrap();
    mo::put_mo(&mut s, &moved, None).unwrap();
    mo::delete_mo(&mut s, "./DMAcc").unwrap();
    s.select().unwrap();
    let list: Vec<String> = mo::list_mos(&mut s)
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(list, vec!["./Vendor/Acc"]);
}

#[test]
fn a_full_card_refuses_the_mo_and_keeps_its_content() {
    let mut params = card_params(false);
    params.capacity = 2048;
    let mut s = Session::new(SimTransport::in_memory(params).unwrap());
    as_authority(&mut s);
    let small = MgmtTree::from_json(DEVINFO).unwrap();
    mo::put_mo(&mut s, &small, None).unwrap();
    let generation = s.select().unwrap().generation;
    as_authority(&mut s);
    let mut big = MgmtTree::from_tnds(DMACC).unwrap();
    big.nodes[0].children[0].children[0].value = Some("x".repeat(4000));
    // The host checks the free memory first; the card would answer 6A84.
    match mo::put_mo(&mut s, &big, None) {
        Err(mo::MoCardError::NoSpace { count: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.select().unwrap().generation, generation);
    let list: Vec<String> = mo::list_mos(&mut s)
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(list, vec!["./DevInfo"]);
}

fn provision(s: &mut Session<impl Transport>, trees: &[&str]) {
    as_authority(s);
    for t in trees {
        mo::put_mo(s, &MgmtTree::parse_any(t).unwrap(), None).unwrap();
    }
    s.select().unwrap();
}

#[test]
fn refresh_applies_changes_and_costs_one_apdu_when_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    let (mut s, count) = counting(SimTransport::in_memory(card_params(false)).unwrap());
    provision(&mut s, &[DMACC, DEVINFO]);

    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert!(!r.unchanged);
    assert_eq!(r.added, vec!["./DMAcc", "./DevInfo"]);
    assert_eq!(
        tree.read_mo("./DMAcc").unwrap().unwrap(),
        MgmtTree::from_tnds(DMACC).unwrap()
    );
    let tnds_file = dir.path().join("current/mo/DMAcc.xml");
    assert!(tnds_file.exists(), "{}", tnds_file.display());

    // Unchanged card: exactly one APDU (SELECT), nothing written.
    let before = count.load(Ordering::SeqCst);
    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert!(r.unchanged);
    assert_eq!(count.load(Ordering::SeqCst) - before, 1);

    // A change on the card: one MO replaced, one deleted.
    as_authority(&mut s);
    let mut t = MgmtTree::from_tnds(DMACC).unwrap();
    t.nodes[0].children[0].children[0].value = Some("com.example.other".into());
    mo::put_mo(&mut s, &t, None).unwrap();
    mo::delete_mo(&mut s, "./DevInfo").unwrap();
    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert_eq!(r.updated, vec!["./DMAcc"]);
    assert_eq!(r.removed, vec!["./DevInfo"]);
    assert_eq!(tree.read_mo("./DMAcc").unwrap().unwrap(), t);
    assert!(tree.read_mo("./DevInfo").unwrap().is_none());
}

#[test]
fn a_card_removed_mid_refresh_leaves_the_old_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    let mut s = new_card();
    provision(&mut s, &[DMACC]);
    provisioning::refresh(&mut s, &mut tree).unwrap();
    let before = tree.index().unwrap();
    as_authority(&mut s);
    mo::put_mo(&mut s, &MgmtTree::from_json(DEVINFO).unwrap(), None).unwrap();
    // Big MOs: reading them all takes GET DATA and two GET RESPONSEs.
    for i in 0..3 {
        let mut big = MgmtTree::from_tnds(DMACC).unwrap();
        big.nodes[0].children[0].children[0].value = Some("x".repeat(50_000));
        mo::put_mo(
            &mut s,
            &mo::rooted_at(&big, &format!("./Big{i}")).unwrap(),
            None,
        )
        .unwrap();
    }
    let card = s.into_transport();
    {
        let count = Arc::new(AtomicUsize::new(0));
        let mut s = Session::new(Counting {
            inner: card_clone_hack(&card),
            count: count.clone(),
            pull_after: None,
        });
        s.select().unwrap();
        let before = count.load(Ordering::SeqCst);
        assert_eq!(mo::read_all_mos(&mut s).unwrap().len(), 5);
        // 150 KB of MOs: 1 + 2 GET RESPONSE = ceil(S / 65536) APDUs.
        assert_eq!(count.load(Ordering::SeqCst) - before, 3);
    }
    // Pulled after SELECT: while the MOs are read.
    for pull_after in [1, 2, 3] {
        let count = Arc::new(AtomicUsize::new(0));
        let transport = Counting {
            inner: card_clone_hack(&card),
            count,
            pull_after: Some(pull_after),
        };
        let mut s = Session::new(transport);
        match provisioning::refresh(&mut s, &mut tree) {
            Err(ProvisioningError::Card(_)) | Err(ProvisioningError::Mo(_)) => {}
            other => panic!("pulled after {pull_after}: {other:?}"),
        }
        assert_eq!(tree.index().unwrap(), before);
        assert!(tree.read_mo("./DevInfo").unwrap().is_none());
    }
}

/// The simulated card's state, in a second card object (same card ID).
fn card_clone_hack(card: &Sim) -> Sim {
    let state = card.card().store().clone();
    SimTransport::from_card(
        dmsc_sim_card::Card::power_up(state, dmsc_sim_card::sim::os_rng().unwrap()).unwrap(),
        "clone".into(),
    )
}

#[test]
fn a_crash_at_any_step_of_a_tree_change_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    let dmacc = MgmtTree::from_tnds(DMACC).unwrap();
    let devinfo = MgmtTree::from_json(DEVINFO).unwrap();
    tree.apply(&TreeChange {
        put: vec![("./DMAcc".into(), dmacc.clone(), Origin::Device)],
        ..Default::default()
    })
    .unwrap();
    let old = tree.index().unwrap();
    let change = TreeChange {
        put: vec![
            ("./DevInfo".into(), devinfo.clone(), Origin::Device),
            ("./Other".into(), devinfo.clone(), Origin::Device),
        ],
        remove: vec!["./DMAcc".into()],
        last_card: LastCard::Keep,
    };
    for crash in [CrashPoint::MidStaging, CrashPoint::BeforeSwitch] {
        assert!(tree.apply_crashing_at(&change, Some(crash)).is_err());
        // "Restart": open again.
        let reopened = DirectoryTree::open(dir.path()).unwrap();
        assert_eq!(reopened.index().unwrap(), old, "{crash:?}");
        assert_eq!(reopened.read_mo("./DMAcc").unwrap(), Some(dmacc.clone()));
        let trees = std::fs::read_dir(dir.path().join("trees")).unwrap().count();
        assert_eq!(trees, 1, "{crash:?}: leftovers collected");
    }
    assert!(tree
        .apply_crashing_at(&change, Some(CrashPoint::AfterSwitch))
        .is_err());
    let reopened = DirectoryTree::open(dir.path()).unwrap();
    assert!(reopened.read_mo("./DMAcc").unwrap().is_none());
    assert_eq!(reopened.read_mo("./DevInfo").unwrap(), Some(devinfo));
    assert_eq!(
        std::fs::read_dir(dir.path().join("trees")).unwrap().count(),
        1
    );
}

#[test]
fn a_corrupt_index_is_reported_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    tree.apply(&TreeChange {
        put: vec![(
            "./DevInfo".into(),
            MgmtTree::from_json(DEVINFO).unwrap(),
            Origin::Device,
        )],
        ..Default::default()
    })
    .unwrap();
    std::fs::write(
        dir.path().join("current/tree.json"),
        "{\n  \"schema_version\": 1,\n  oops\n}",
    )
    .unwrap();
    match tree.index() {
        Err(dmsc_host::device_tree::TreeError::CorruptIndex { line, column, .. }) => {
            assert_eq!((line, column), (3, 3))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mos_from_a_removed_or_replaced_card_leave_the_device_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    tree.apply(&TreeChange {
        put: vec![(
            "./Own".into(),
            MgmtTree::from_json(DEVINFO).unwrap(),
            Origin::Device,
        )],
        ..Default::default()
    })
    .unwrap();
    let mut a = new_card();
    provision(&mut a, &[DMACC]);
    provisioning::refresh(&mut a, &mut tree).unwrap();
    // Another card replaces it: its MOs come, card A's go; the device's own stay.
    let mut b = new_card();
    provision(&mut b, &[DEVINFO]);
    let r = provisioning::refresh(&mut b, &mut tree).unwrap();
    assert_eq!(r.added, vec!["./DevInfo"]);
    assert_eq!(r.removed, vec!["./DMAcc"]);
    // Card B removed.
    let id = provisioning::card_mark(&b.select().unwrap().card_id, 0).card_id;
    let gone = provisioning::forget_card(&mut tree, Some(&id)).unwrap();
    assert_eq!(gone, vec!["./DevInfo"]);
    let idx = tree.index().unwrap();
    assert_eq!(idx.mos.keys().collect::<Vec<_>>(), vec!["./Own"]);
    assert!(idx.last_card.is_none());
}

#[test]
fn copy_device_mo_or_subtree_to_the_card_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    let dmacc = MgmtTree::from_tnds(DMACC).unwrap();
    tree.apply(&TreeChange {
        put: vec![("./DMAcc".into(), dmacc.clone(), Origin::Device)],
        ..Default::default()
    })
    .unwrap();
    let mut s = new_card();
    s.select().unwrap();
    let d = provisioning::diff(&mut s, &tree).unwrap();
    assert_eq!(d["./DMAcc"], MoComparison::DeviceOnly);

    as_authority(&mut s);
    let uri =
        provisioning::copy_to_card(&mut s, &mut tree, "./DMAcc", None, None, DeviceCopy::Keep)
            .unwrap();
    assert_eq!(uri, "./DMAcc");
    s.select().unwrap();
    assert_eq!(
        provisioning::diff(&mut s, &tree).unwrap()["./DMAcc"],
        MoComparison::Same
    );

    // A subtree, then the device copy of it erased. The card's ./DMAcc
    // holds that node: the copy goes into it, no second record is made.
    let mut changed = tree.read_mo("./DMAcc").unwrap().unwrap();
    let port = changed.nodes[0].children[0]
        .children
        .iter_mut()
        .find(|c| c.name == "AppAddr");
    port.unwrap().children[0].children.iter_mut().for_each(|c| {
        if c.name == "Port" {
            c.value = Some("8443".into())
        }
    });
    tree.apply(&TreeChange {
        put: vec![("./DMAcc".into(), changed, Origin::Device)],
        ..Default::default()
    })
    .unwrap();
    as_authority(&mut s);
    let uri = provisioning::copy_to_card(
        &mut s,
        &mut tree,
        "./DMAcc",
        Some("ServerA/AppAddr"),
        None,
        DeviceCopy::Erase,
    )
    .unwrap();
    assert_eq!(uri, "./DMAcc");
    s.select().unwrap();
    assert_eq!(mo::list_mos(&mut s).unwrap().len(), 1);
    let (part, record) = mo::get_node(&mut s, "./DMAcc/ServerA/AppAddr").unwrap();
    assert_eq!(record, "./DMAcc");
    assert_eq!(
        part.tree.nodes[0].find("1/Port").unwrap().value.as_deref(),
        Some("8443")
    );
    // Copying a node by its path inside the device MO is the same.
    as_authority(&mut s);
    assert_eq!(
        provisioning::copy_to_card(
            &mut s,
            &mut tree,
            "./DMAcc/ServerA/Name",
            None,
            None,
            DeviceCopy::Keep
        )
        .unwrap(),
        "./DMAcc"
    );
    let device = tree.read_mo("./DMAcc").unwrap().unwrap();
    assert!(device.nodes[0].find("ServerA/AppAddr").is_none());
    match &provisioning::diff(&mut s, &tree).unwrap()["./DMAcc"] {
        MoComparison::Differ { nodes } => {
            assert!(nodes.contains(&"./DMAcc/ServerA/AppAddr/1/Addr".to_string()))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        provisioning::copy_to_card(&mut s, &mut tree, "./Nope", None, None, DeviceCopy::Keep),
        Err(ProvisioningError::NotInDevice(_))
    ));
}

/// A card whose ServerA keys are its own (per-card keys).
fn card_with_keys(key: [u8; 16]) -> Session<Sim> {
    let p = InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x30,
        name: "ServerA".into(),
        enc: Zeroizing::new(key.to_vec()),
        mac: Zeroizing::new(key.to_vec()),
        dek: Zeroizing::new(key.to_vec()),
    }]);
    Session::new(SimTransport::in_memory(p).unwrap())
}

fn snapshot<T: Transport>(s: &mut Session<T>) -> (u64, Vec<(String, u32)>) {
    let g = s.select().unwrap().generation;
    (g, mo::list_mos(s).unwrap())
}

#[test]
fn ota_script_is_applied_once_by_its_card_only() {
    let key_a = [0x5A; 16];
    let keys = StaticKeys::new(&key_a, &key_a, &key_a).unwrap();
    let mut card = card_with_keys(key_a);
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    provisioning::refresh(&mut card, &mut tree).unwrap();

    let request = ota::read_request(&mut card, 0x30).unwrap();
    let level = SecurityLevel::new(0x03).unwrap();
    let ops = [OtaOperation::PutMo(
        MgmtTree::from_tnds(DMACC).unwrap(),
        None,
    )];
    let script = ota::build_script(&keys, &request, level, &ops).unwrap();
    // The MO's text travels encrypted.
    assert!(!script
        .apdus
        .iter()
        .any(|a| a.contains(&hex::encode_upper("com.example.dm"))));

    // Altered bytes: in the host challenge, the cryptogram, the wrapped data, its MAC.
    let before = snapshot(&mut card);
    for (apdu, pos) in [(0usize, 6usize), (1, 6), (2, 12), (2, usize::MAX)] {
        let mut bad = script.clone();
        let mut bytes = hex::decode(&bad.apdus[apdu]).unwrap();
        let i = if pos == usize::MAX {
            bytes.len() - 1
        } else {
            pos
        };
        bytes[i] ^= 0x01;
        bad.apdus[apdu] = hex::encode_upper(bytes);
        match ota::apply_script(&mut card, &bad) {
            Err(OtaError::Refused { .. }) => {}
            other => panic!("altered APDU {apdu} byte {i}: {other:?}"),
        }
        assert_eq!(snapshot(&mut card), before, "altered APDU {apdu}");
    }
    // Each refused attempt moved the counter: the script is now stale. A fresh one works.
    let request = ota::read_request(&mut card, 0x30).unwrap();
    let script = ota::build_script(&keys, &request, level, &ops).unwrap();

    // Another card (its own keys): the device refuses; relayed anyway, the card refuses.
    let mut other = card_with_keys([0xA5; 16]);
    let other_before = snapshot(&mut other);
    assert!(matches!(
        ota::apply_script(&mut other, &script),
        Err(OtaError::OtherCard { .. })
    ));
    assert!(matches!(
        ota::relay(&mut other, &script),
        Err(OtaError::Refused { index: 1 | 2, .. })
    ));
    assert_eq!(snapshot(&mut other), other_before);

    let outcome = ota::apply_script(&mut card, &script).unwrap();
    assert_eq!(outcome.operations, vec!["put mo:./DMAcc"]);
    let after = snapshot(&mut card);
    assert_eq!(after.1.len(), 1);

    // Replayed: refused, unchanged.
    assert!(matches!(
        ota::apply_script(&mut card, &script),
        Err(OtaError::Refused { index: 2, .. })
    ));
    assert_eq!(snapshot(&mut card), after);

    // The following refresh picks up the change.
    let r = provisioning::refresh(&mut card, &mut tree).unwrap();
    assert_eq!(r.added, vec!["./DMAcc"]);
    assert_eq!(
        tree.read_mo("./DMAcc").unwrap().unwrap(),
        MgmtTree::from_tnds(DMACC).unwrap()
    );
}

// ---- one record per node; inner nodes; all-or-nothing put -----------------

/// `./Vendor` holding `Acme/Email/Port` = `port`.
fn vendor(root: &str, port: &str) -> MgmtTree {
    let mut port_node = mo::Node::named("Port");
    port_node.value = Some(port.into());
    let mut email = mo::Node::named("Email");
    email.children.push(port_node);
    let mut acme = mo::Node::named("Acme");
    acme.children.push(email);
    let mut top = mo::Node::named("Vendor");
    top.children.push(acme);
    mo::rooted_at(&MgmtTree::single(top), root).unwrap()
}

fn email(port: &str) -> MgmtTree {
    let whole = vendor("./Vendor", port);
    whole.subtree("Acme/Email").unwrap()
}

fn card_uris<T: Transport>(s: &mut Session<T>) -> Vec<String> {
    mo::list_mos(s).unwrap().into_iter().map(|e| e.0).collect()
}

#[test]
fn an_mo_inside_or_above_a_record_is_refused_naming_the_record() {
    let mut s = new_card();
    as_authority(&mut s);
    mo::put_mo(&mut s, &vendor("./Vendor", "995"), None).unwrap();
    let inner = email("25");
    assert_eq!(inner.nodes[0].root_uri(), "./Vendor/Acme/Email");
    match mo::put_mo(&mut s, &inner, None) {
        Err(e @ mo::MoCardError::Overlap { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("lies inside the MO record ./Vendor"),
                "{text}"
            );
            assert!(text.contains("dmsc mo get ./Vendor"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // Above: a record below the new root.
    mo::put_mo(&mut s, &vendor("./Other/Deep/Vendor", "1"), None).unwrap();
    match mo::put_mo(&mut s, &vendor("./Other", "2"), None) {
        Err(mo::MoCardError::Overlap {
            existing, relation, ..
        }) => {
            assert_eq!(existing, "./Other/Deep/Vendor");
            assert_eq!(relation, mo::Overlap::Above);
        }
        other => panic!("{other:?}"),
    }
    // Two overlapping top-level nodes in one document.
    let mut both = vendor("./Two", "1");
    both.nodes.push(email("2").nodes[0].clone());
    both.nodes[1].path = Some("./Two/Acme".into());
    assert!(matches!(
        mo::put_mo(&mut s, &both, None),
        Err(mo::MoCardError::Overlap { .. })
    ));
    // A sibling whose name only starts the same is no overlap.
    mo::put_mo(&mut s, &vendor("./VendorX", "3"), None).unwrap();
    assert_eq!(
        card_uris(&mut s),
        vec!["./Other/Deep/Vendor", "./Vendor", "./VendorX"]
    );
    // The value stays one: 995.
    s.select().unwrap();
    let (node, record) = mo::get_node(&mut s, "./Vendor/Acme/Email").unwrap();
    assert_eq!(record, "./Vendor");
    assert_eq!(
        node.tree.nodes[0].find("Port").unwrap().value.as_deref(),
        Some("995")
    );
}

fn audit_denials_and_failures(s: &Session<Sim>) -> (usize, u32) {
    let state = dmsc_sim_card::state::State::from_records(s.transport().card().records()).unwrap();
    let denied = state
        .audit
        .values()
        .filter(|e| e.event == dmsc_host::card_model::commands::AuditEvent::AccessDenied)
        .count();
    (denied, state.failures.values().sum())
}

#[test]
fn an_inner_node_is_read_from_its_record_without_a_refused_command() {
    let mut s = new_card();
    as_authority(&mut s);
    mo::put_mo(&mut s, &vendor("./Vendor", "995"), None).unwrap();
    let hidden = dmsc_host::card_model::objects::Acl::parse("Get=ServerA&Replace=ServerA").unwrap();
    mo::put_mo(&mut s, &vendor("./Hidden", "7"), Some(&hidden)).unwrap();
    s.select().unwrap();
    let before = audit_denials_and_failures(&s);

    // As `*`: an inner node of a readable record.
    let (node, record) = mo::get_node(&mut s, "./Vendor/Acme/Email").unwrap();
    assert_eq!(record, "./Vendor");
    assert_eq!(node.uri, "./Vendor/Acme/Email");
    assert_eq!(node.tree.nodes[0].root_uri(), "./Vendor/Acme/Email");
    assert_eq!(
        node.tree.nodes[0].find("Port").unwrap().value.as_deref(),
        Some("995")
    );
    // The record itself, as before.
    assert_eq!(
        mo::get_node(&mut s, "./Vendor").unwrap().0.tree,
        vendor("./Vendor", "995")
    );
    // A node the readable record does not have.
    assert!(matches!(
        mo::get_node(&mut s, "./Vendor/Acme/Fax"),
        Err(mo::MoCardError::NoSuchNode { .. })
    ));
    // Inside a record `*` may not read, and nowhere at all: the same answer.
    for path in ["./Hidden/Acme/Email", "./Hidden", "./Nowhere/At/All"] {
        match mo::get_node(&mut s, path) {
            Err(e @ mo::MoCardError::NotFoundOrNotPermitted { .. }) => {
                assert!(e.to_string().contains("not found or not permitted"), "{e}")
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // No access denied audited, no failure counted.
    assert_eq!(audit_denials_and_failures(&s), before);
}

/// A card session whose `fail_at`-th PUT DATA (from 1) fails with 6A84
/// without reaching the card.
struct FailingPut<'a> {
    inner: &'a mut Session<Sim>,
    puts: usize,
    fail_at: usize,
}

impl CardCommands for FailingPut<'_> {
    fn select(&mut self) -> Result<dmsc_host::card_model::commands::SelectInfo, HostError> {
        self.inner.select()
    }
    fn select_info(&self) -> Option<&dmsc_host::card_model::commands::SelectInfo> {
        self.inner.select_info()
    }
    fn transmit(
        &mut self,
        cmd: &dmsc_host::card_model::apdu::Command,
    ) -> Result<dmsc_host::card_model::apdu::Response, HostError> {
        self.inner.transmit(cmd)
    }
    fn request(
        &mut self,
        req: &dmsc_host::card_model::commands::Request,
    ) -> Result<Vec<u8>, HostError> {
        if matches!(
            req,
            dmsc_host::card_model::commands::Request::PutObject { .. }
        ) {
            self.puts += 1;
            if self.puts == self.fail_at {
                return Err(HostError::Card {
                    command: "PUT DATA",
                    status: Status::NotEnoughMemory,
                });
            }
        }
        self.inner.request(req)
    }
}

fn many_mos(n: usize) -> MgmtTree {
    let one = MgmtTree::from_json(DEVINFO).unwrap();
    let mut all = one.clone();
    all.nodes = (0..n)
        .map(|i| {
            mo::rooted_at(&one, &format!("./Many/M{i}"))
                .unwrap()
                .nodes
                .remove(0)
        })
        .collect();
    all
}

/// The card's MOs with their content and ACL.
fn card_content(s: &mut Session<Sim>) -> Vec<(String, mo::CardMo)> {
    s.select().unwrap();
    let out = mo::read_all_mos(s)
        .unwrap()
        .into_iter()
        .map(|m| {
            let m = m.unwrap();
            (m.uri.clone(), m)
        })
        .collect();
    as_authority(s);
    out
}

/// Checks that the card holds what it held, ignoring record versions.
fn assert_card_unchanged(before: &[(String, mo::CardMo)], after: &[(String, mo::CardMo)]) {
    let strip = |l: &[(String, mo::CardMo)]| -> Vec<(String, MgmtTree, String)> {
        l.iter()
            .map(|(u, m)| (u.clone(), m.tree.clone(), m.acl.to_string()))
            .collect()
    };
    assert_eq!(strip(before), strip(after), "the card changed");
}

#[test]
fn a_put_that_does_not_fit_stores_nothing_and_says_so() {
    let mut params = card_params(false);
    params.capacity = 6000;
    let mut s = Session::new(SimTransport::in_memory(params).unwrap());
    as_authority(&mut s);
    let generation = s.select_info().unwrap().generation;
    as_authority(&mut s);
    match mo::put_mo(&mut s, &many_mos(100), None) {
        Err(e @ mo::MoCardError::NoSpace { .. }) => {
            let text = e.to_string();
            assert!(text.contains("100 MO(s)"), "{text}");
            assert!(text.contains("nothing was stored"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(card_uris(&mut s).is_empty());
    assert_eq!(s.select().unwrap().generation, generation);
    // What fits is stored.
    as_authority(&mut s);
    assert_eq!(mo::put_mo(&mut s, &many_mos(3), None).unwrap().len(), 3);
}

#[test]
fn a_store_failing_midway_is_rolled_back() {
    let mut s = new_card();
    as_authority(&mut s);
    // Two of the ten exist already (one with its own ACL): they are put back.
    let all = many_mos(10);
    let mut pre = all.clone();
    pre.nodes.truncate(2);
    pre.nodes[0].children.clear();
    mo::put_mo(&mut s, &pre, None).unwrap();
    let own =
        dmsc_host::card_model::objects::Acl::parse("Get=*&Replace=ServerA&Delete=ServerA").unwrap();
    s.set_acl(
        &dmsc_host::card_model::objects::ObjectRef::Mo("./Many/M1".into()),
        &own,
    )
    .unwrap();
    let before = card_content(&mut s);
    assert_eq!(before.len(), 2);

    let mut failing = FailingPut {
        inner: &mut s,
        puts: 0,
        fail_at: 6,
    };
    match mo::put_mo(&mut failing, &all, None) {
        Err(e @ mo::MoCardError::RolledBack { .. }) => {
            let text = e.to_string();
            assert!(text.contains("./Many/M5"), "{text}");
            assert!(text.contains("the 5 MO(s) stored before it"), "{text}");
            assert!(text.contains("nothing was stored"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let after = card_content(&mut s);
    assert_card_unchanged(&before, &after);

    // A record the authority may replace but not read: it may have existed
    // before, so the rollback does not delete it; it names it instead.
    let blind =
        dmsc_host::card_model::objects::Acl::parse("Get=user&Replace=ServerA&Delete=ServerA")
            .unwrap();
    let mut m5 = all.clone();
    m5.nodes = vec![all.nodes[5].clone()];
    m5.nodes[0].children.clear();
    mo::put_mo(&mut s, &m5, Some(&blind)).unwrap();
    let mut failing = FailingPut {
        inner: &mut s,
        puts: 0,
        fail_at: 10,
    };
    match mo::put_mo(&mut failing, &all, None) {
        Err(e @ mo::MoCardError::PartlyStored { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("./Many/M5: not readable by this caller"),
                "{text}"
            );
            assert!(text.contains("from this run: ./Many/M5."), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // Everything else is as before, and M5 is still there (replaced, not deleted).
    let after = card_content(&mut s);
    assert_card_unchanged(&before, &after);
    let generation = s.select().unwrap().generation;
    as_authority(&mut s);
    mo::delete_mo(&mut s, "./Many/M5").unwrap();
    assert!(
        s.select().unwrap().generation > generation,
        "M5 was on the card"
    );
    as_authority(&mut s);
    // Rerunning a complete put is idempotent.
    mo::put_mo(&mut s, &all, None).unwrap();
    mo::put_mo(&mut s, &all, None).unwrap();
    assert_eq!(card_uris(&mut s).len(), 10);
}

/// Self-test of the atomicity check: storing one MO at a time with no
/// rollback (the behaviour before) leaves a prefix that the check catches.
#[test]
fn self_test_a_put_without_rollback_is_caught() {
    let mut s = new_card();
    as_authority(&mut s);
    let before = card_content(&mut s);
    let all = many_mos(10);
    let mut failing = FailingPut {
        inner: &mut s,
        puts: 0,
        fail_at: 6,
    };
    for (_, one) in all.split() {
        // The naive loop: one record after the other, stop at the first error.
        if mo::put_mo(&mut failing, &one, None).is_err() {
            break;
        }
    }
    let after = card_content(&mut s);
    let caught = std::panic::catch_unwind(|| assert_card_unchanged(&before, &after));
    assert!(caught.is_err(), "the check did not see the stored prefix");
}

/// The card of `s` with the MO record `t` written straight into its store
/// (default ACL, ServerA as creator) and powered up again: the state of a card
/// written before the one-record-per-node rule, which its commands can no
/// longer make.
fn written_before_the_rule(s: Session<Sim>, t: MgmtTree) -> Session<Sim> {
    use dmsc_host::card_model::commands::ObjectValue;
    use dmsc_host::card_model::objects::{ObjectKind, ObjectRef, Principal};
    use dmsc_sim_card::state::{default_acl, State, Stored};
    let (uri, one) = t.split().remove(0);
    let store = s.into_transport().into_card().into_store();
    let mut state = State::from_records(store.records()).unwrap();
    let creator = Principal::Authority("ServerA".into());
    state.objects.insert(
        ObjectRef::Mo(uri),
        Stored {
            acl: default_acl(ObjectKind::Mo, &creator),
            value: ObjectValue::Mo(mo::card::record_for(&one)),
        },
    );
    state.generation += 1;
    let store = MemoryStore::with_records(state.to_records());
    let card = dmsc_sim_card::Card::power_up(store, dmsc_sim_card::sim::os_rng().unwrap()).unwrap();
    Session::new(SimTransport::from_card(
        card,
        "simulated card (memory)".into(),
    ))
}

#[test]
fn refresh_leaves_out_a_card_mo_that_overlaps_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    // The device's own ./Own, and a card written before the rule: ./Vendor
    // and ./Vendor/Acme/Email as two records, and ./Own/Part.
    tree.apply(&TreeChange {
        put: vec![("./Own".into(), vendor("./Own", "1"), Origin::Device)],
        ..Default::default()
    })
    .unwrap();
    let mut s = new_card();
    as_authority(&mut s);
    let put = |s: &mut Session<Sim>, t: MgmtTree| {
        let (uri, one) = t.split().remove(0);
        s.put_object(
            &dmsc_host::card_model::objects::ObjectRef::Mo(uri),
            &dmsc_host::card_model::commands::ObjectValue::Mo(mo::card::record_for(&one)),
            None,
        )
    };
    put(&mut s, vendor("./Vendor", "995")).unwrap();
    put(&mut s, vendor("./Own/Part", "2")).unwrap();
    // The card itself refuses a record inside another (docs/commands.md
    // §3.4), so the card written before the rule is made in its store.
    let refused = put(&mut s, email("25")).unwrap_err();
    assert_eq!(refused.sw(), Some(0x6A89), "{refused}");
    let mut s = written_before_the_rule(s, email("25"));
    s.select().unwrap();
    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert_eq!(r.added, vec!["./Vendor"]);
    let skipped: Vec<&str> = r.skipped.iter().map(|k| k.uri.as_str()).collect();
    assert_eq!(skipped, vec!["./Own/Part", "./Vendor/Acme/Email"]);
    assert!(matches!(
        &r.skipped[0].reason,
        provisioning::SkipReason::CardOverlap {
            owner: provisioning::MoOwner::Device,
            other,
            ..
        } if other == "./Own"
    ));
    assert!(r.skipped[0]
        .reason
        .to_string()
        .contains("the device's own MO ./Own"));
    assert!(r.skipped[1]
        .reason
        .to_string()
        .contains("the card's MO record ./Vendor"));
    let index = tree.index().unwrap();
    assert_eq!(
        index.mos.keys().collect::<Vec<_>>(),
        vec!["./Own", "./Vendor"]
    );
    // diff compares each with the node the other side holds.
    let d = provisioning::diff(&mut s, &tree).unwrap();
    assert_eq!(d["./Vendor"], MoComparison::Same);
    assert!(matches!(
        d["./Vendor/Acme/Email"],
        MoComparison::Differ { .. }
    ));
    assert_eq!(d["./Own/Part"], MoComparison::CardOnly);
    assert_eq!(
        provisioning::diff_node(&mut s, &tree, "./Vendor/Acme").unwrap(),
        MoComparison::Same
    );
}

// ---- the device folder -----------------------------------------------------

#[test]
fn a_folder_that_is_not_a_device_tree_is_refused_unless_init() {
    use dmsc_host::device_tree::{TreeError, MARKER_FILE};
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("tere");
    assert!(matches!(
        DirectoryTree::open_existing(&typo),
        Err(TreeError::NotATree { .. })
    ));
    assert!(!typo.exists(), "nothing created");
    // A folder of something else: refused, even for init; left as it was.
    let other = dir.path().join("docs");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    for r in [
        DirectoryTree::open_existing(&other),
        DirectoryTree::init(&other),
    ] {
        match r {
            Err(e @ TreeError::NotATree { .. }) => {
                assert!(e.to_string().contains("docs"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    // init: a new or empty folder becomes a tree, with its marker.
    let new = dir.path().join("dev");
    DirectoryTree::check_init(&new).unwrap();
    assert!(!new.exists(), "check_init creates nothing");
    DirectoryTree::init(&new).unwrap();
    assert!(new.join(MARKER_FILE).exists());
    DirectoryTree::open_existing(&new).unwrap();
    DirectoryTree::init(&new).unwrap();
    // A tree made before the marker (trees/ and current): recognized, marked.
    let old = dir.path().join("old");
    {
        let mut t = DirectoryTree::open(&old).unwrap();
        t.apply(&TreeChange {
            put: vec![(
                "./DMAcc".into(),
                MgmtTree::from_tnds(DMACC).unwrap(),
                Origin::Device,
            )],
            ..Default::default()
        })
        .unwrap();
    }
    std::fs::remove_file(old.join(MARKER_FILE)).unwrap();
    let t = DirectoryTree::open_existing(&old).unwrap();
    assert!(old.join(MARKER_FILE).exists());
    assert!(t.read_mo("./DMAcc").unwrap().is_some());
}

#[test]
fn mo_file_names_are_visible_reversible_and_old_names_migrate() {
    use dmsc_host::device_tree::{file_name_for, uri_for_file_name};
    for (uri, name) in [
        ("./DMAcc", "DMAcc.xml"),
        ("./Vendor/Acme", "Vendor%2FAcme.xml"),
        ("./.hidden", "%2Ehidden.xml"),
        ("./a%2Fb", "a%252Fb.xml"),
        ("./Vendor/Acme/Email", "Vendor%2FAcme%2FEmail.xml"),
        ("Bare", "%2FBare.xml"),
        ("./Bare", "Bare.xml"),
        ("./x y", "x%20y.xml"),
    ] {
        assert_eq!(file_name_for(uri), name, "{uri}");
        assert_eq!(uri_for_file_name(name).as_deref(), Some(uri), "{name}");
        assert!(!name.starts_with('.'));
    }
    // Names of the earlier scheme read back too.
    assert_eq!(
        uri_for_file_name(".%2FVendor%2FInfo.xml").as_deref(),
        Some("./Vendor/Info")
    );

    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    let dmacc = MgmtTree::from_tnds(DMACC).unwrap();
    let devinfo = MgmtTree::from_json(DEVINFO).unwrap();
    tree.apply(&TreeChange {
        put: vec![
            ("./DMAcc".into(), dmacc.clone(), Origin::Device),
            ("./DevInfo".into(), devinfo.clone(), Origin::Device),
        ],
        ..Default::default()
    })
    .unwrap();
    let ls = |tree: &DirectoryTree| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(tree.root().join("current/mo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(ls(&tree), vec!["DMAcc.xml", "DevInfo.xml"]);

    // A tree written with the earlier names: still read; the next change
    // rewrites every name.
    let current = tree.current_dir().unwrap().unwrap();
    let index_path = current.join("tree.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    for (uri, old) in [
        ("./DMAcc", ".%2FDMAcc.xml"),
        ("./DevInfo", ".%2FDevInfo.xml"),
    ] {
        std::fs::rename(
            current.join("mo").join(file_name_for(uri)),
            current.join("mo").join(old),
        )
        .unwrap();
        index["mos"][uri]["file"] = format!("mo/{old}").into();
    }
    std::fs::write(&index_path, index.to_string()).unwrap();
    let mut tree = DirectoryTree::open_existing(dir.path()).unwrap();
    assert_eq!(ls(&tree), vec![".%2FDMAcc.xml", ".%2FDevInfo.xml"]);
    assert_eq!(tree.read_mo("./DMAcc").unwrap(), Some(dmacc.clone()));
    let mut changed = devinfo.clone();
    changed.model = Some("other".into());
    tree.apply(&TreeChange {
        put: vec![("./DevInfo".into(), changed.clone(), Origin::Device)],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ls(&tree), vec!["DMAcc.xml", "DevInfo.xml"]);
    assert_eq!(tree.read_mo("./DMAcc").unwrap(), Some(dmacc));
    assert_eq!(tree.read_mo("./DevInfo").unwrap(), Some(changed));
    assert_eq!(tree.index().unwrap().mos["./DMAcc"].file, "mo/DMAcc.xml");
}

#[test]
fn the_reported_mo_path_survives_the_next_change() {
    let dir = tempfile::tempdir().unwrap();
    let written = dmsc_host::bootstrap::write_bootstrap_content(dir.path(), DMACC).unwrap();
    assert_eq!(written, dir.path().join("current/mo/DMAcc.xml"));
    let mut tree = DirectoryTree::open_existing(dir.path()).unwrap();
    tree.apply(&TreeChange {
        put: vec![(
            "./DevInfo".into(),
            MgmtTree::from_json(DEVINFO).unwrap(),
            Origin::Device,
        )],
        ..Default::default()
    })
    .unwrap();
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(text.contains("<NodeName>DMAcc</NodeName>"));
    assert_eq!(tree.mo_path("./DMAcc").unwrap(), Some(written));
}

#[test]
fn an_unchanged_refresh_renames_earlier_hidden_mo_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    let (mut s, count) = counting(SimTransport::in_memory(card_params(false)).unwrap());
    provision(&mut s, &[DMACC]);
    provisioning::refresh(&mut s, &mut tree).unwrap();
    // Make it a tree of the earlier layout.
    let current = tree.current_dir().unwrap().unwrap();
    std::fs::rename(
        current.join("mo/DMAcc.xml"),
        current.join("mo/.%2FDMAcc.xml"),
    )
    .unwrap();
    let index_path = current.join("tree.json");
    let text = std::fs::read_to_string(&index_path)
        .unwrap()
        .replace("mo/DMAcc.xml", "mo/.%2FDMAcc.xml");
    std::fs::write(&index_path, text).unwrap();
    let mut tree = DirectoryTree::open_existing(dir.path()).unwrap();
    let before = count.load(Ordering::SeqCst);
    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert!(r.unchanged);
    assert_eq!(count.load(Ordering::SeqCst) - before, 1, "one SELECT");
    assert!(dir.path().join("current/mo/DMAcc.xml").exists());
    assert!(!dir.path().join("current/mo/.%2FDMAcc.xml").exists());
    assert_eq!(
        tree.read_mo("./DMAcc").unwrap(),
        Some(MgmtTree::from_tnds(DMACC).unwrap())
    );
}
