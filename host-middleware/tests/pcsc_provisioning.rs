//! Provisioning end to end through the private pcscd of `.ci/test`: MOs,
//! refresh (one APDU when unchanged), a card pulled mid-refresh, OTA scripts,
//! and `watch` following insertion, content change, removal and replacement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;
mod support;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::device_tree::{DeviceTree, DirectoryTree};
use dmsc_host::mo::{self, MgmtTree};
use dmsc_host::ota::{self, OtaError, OtaOperation};
use dmsc_host::provisioning;
use dmsc_host::provisioning::watch::{self, WatchEvent};
use dmsc_host::{open_secure_channel, CardCommands, PcscContext, Session, Transport};
use dmsc_sim_card::vpcd::{Power, VirtualCard};
use e2e::*;
use support::*;

const DMACC: &str = include_str!("../../test-vectors/tnds/dmacc.xml");
const DEVINFO: &str = include_str!("../../test-vectors/tnds/devinfo.json");

fn put(s: &mut Session<impl Transport>, doc: &str) {
    open_secure_channel(s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
    mo::put_mo(s, &MgmtTree::parse_any(doc).unwrap(), None).unwrap();
    s.select().unwrap();
}

#[test]
fn mo_refresh_and_ota_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 0, card_params(false));
    let mut s = session(&served.reader);
    put(&mut s, DMACC);
    let got = mo::get_mo(&mut s, "./DMAcc").unwrap();
    assert_eq!(got.tree, MgmtTree::from_tnds(DMACC).unwrap());

    let mut tree = DirectoryTree::open(&dir.path().join("tree")).unwrap();
    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert_eq!(r.added, vec!["./DMAcc"]);
    assert!(provisioning::refresh(&mut s, &mut tree).unwrap().unchanged);

    // OTA: built offline for this card, relayed through pcscd.
    let request = ota::read_request(&mut s, 0x30).unwrap();
    let ops = [OtaOperation::PutMo(
        MgmtTree::from_json(DEVINFO).unwrap(),
        None,
    )];
    let script = ota::build_script(
        &server_a().keys,
        &request,
        SecurityLevel::new(0x03).unwrap(),
        &ops,
    )
    .unwrap();
    let mut altered = script.clone();
    let last = altered.apdus.len() - 1;
    altered.apdus[last].replace_range(20..22, "00");
    assert!(matches!(
        ota::apply_script(&mut s, &altered),
        Err(OtaError::Refused { .. })
    ));
    assert_eq!(mo::list_mos(&mut s).unwrap().len(), 1);
    let request = ota::read_request(&mut s, 0x30).unwrap();
    let script = ota::build_script(
        &server_a().keys,
        &request,
        SecurityLevel::new(0x03).unwrap(),
        &ops,
    )
    .unwrap();
    ota::apply_script(&mut s, &script).unwrap();
    assert!(matches!(
        ota::apply_script(&mut s, &script),
        Err(OtaError::Refused { index: 2, .. })
    ));
    let r = provisioning::refresh(&mut s, &mut tree).unwrap();
    assert_eq!(r.added, vec!["./DevInfo"]);
}

/// Pulls the card (sets the bridge's shutdown flag) at its `n`-th APDU.
struct PulledAt<C> {
    card: C,
    n: usize,
    seen: usize,
    pull: Arc<AtomicBool>,
}

impl<C: VirtualCard> VirtualCard for PulledAt<C> {
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn power(&mut self, event: Power) {
        self.card.power(event)
    }
    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        self.seen += 1;
        if self.seen >= self.n {
            self.pull.store(true, Ordering::SeqCst);
        }
        self.card.transmit(apdu)
    }
}

#[test]
fn a_card_pulled_mid_refresh_leaves_the_tree_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.state");
    let mut tree = DirectoryTree::open(&dir.path().join("tree")).unwrap();
    {
        // Provisioned and refreshed once, in-process.
        let mut s = Session::new(
            dmsc_host::transport::sim::FileSimTransport::create(&path, card_params(false)).unwrap(),
        );
        put(&mut s, DMACC);
        provisioning::refresh(&mut s, &mut tree).unwrap();
        open_secure_channel(&mut s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
        // 150 KB of MOs: SELECT, GET DATA read-all, two GET RESPONSEs.
        for i in 0..3 {
            let mut big = MgmtTree::from_tnds(DMACC).unwrap();
            big.nodes[0].children[0].children[0].value = Some("x".repeat(50_000));
            let t = mo::rooted_at(&big, &format!("./Bulk/M{i}")).unwrap();
            mo::put_mo(&mut s, &t, None).unwrap();
        }
    }
    let before = tree.index().unwrap();
    // Served again; pulled after its 2nd APDU (the read-all), before the GET RESPONSEs.
    let pull = Arc::new(AtomicBool::new(false));
    let card = PulledAt {
        card: dmsc_sim_card::sim::open(&path).unwrap(),
        n: 2,
        seen: 0,
        pull: pull.clone(),
    };
    let served = Served::start_with(1, Box::new(card), pull);
    let mut s = session(&served.reader);
    let result = provisioning::refresh(&mut s, &mut tree);
    assert!(result.is_err(), "the card was pulled: {result:?}");
    assert_eq!(tree.index().unwrap(), before);
    assert!(tree.read_mo("./Bulk/M0").unwrap().is_none());
    served.pull();
}

#[test]
fn watch_follows_insertion_change_and_removal_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let tree_dir = dir.path().join("tree");
    let env = env();
    let reader = env.readers[2].clone();
    let (tx, rx) = mpsc::channel::<WatchEvent>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let watcher = {
        let tree_dir = tree_dir.clone();
        let reader = reader.clone();
        std::thread::spawn(move || {
            let mut ctx = PcscContext::establish().unwrap();
            let mut tree = DirectoryTree::open(&tree_dir).unwrap();
            watch::watch(
                &mut ctx,
                &mut tree,
                &reader,
                Duration::from_millis(200),
                |e| {
                    if let Some(e) = e {
                        let _ = tx.send(e.clone());
                    }
                    if stop_rx.try_recv().is_ok() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .unwrap();
        })
    };
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a watch event")
    };

    // Insert card A (with an MO).
    let a_dir = tempfile::tempdir().unwrap();
    let a_path = a_dir.path().join("a.state");
    {
        let mut s = Session::new(
            dmsc_host::transport::sim::FileSimTransport::create(&a_path, card_params(false))
                .unwrap(),
        );
        put(&mut s, DMACC);
    }
    let served = Served::start(2, Box::new(dmsc_sim_card::sim::open(&a_path).unwrap()));
    match next() {
        WatchEvent::Inserted { refresh, .. } => assert_eq!(refresh.added, vec!["./DMAcc"]),
        other => panic!("{other:?}"),
    }
    // A change of content while inserted: picked up by polling the generation.
    {
        let mut s = session(&served.reader);
        put(&mut s, DEVINFO);
    }
    match next() {
        WatchEvent::Changed { refresh, .. } => assert_eq!(refresh.added, vec!["./DevInfo"]),
        other => panic!("{other:?}"),
    }
    // Removed: its MOs leave the device tree.
    served.pull();
    match next() {
        WatchEvent::Removed { removed, .. } => assert_eq!(removed, vec!["./DMAcc", "./DevInfo"]),
        other => panic!("{other:?}"),
    }
    let tree = DirectoryTree::open(&tree_dir).unwrap();
    assert!(tree.index().unwrap().mos.is_empty());

    // Another card in its place.
    let b_dir = tempfile::tempdir().unwrap();
    let (served_b, b_path) = serve_new_card(b_dir.path(), 2, card_params(false));
    match next() {
        WatchEvent::Inserted { refresh, .. } => assert!(refresh.added.is_empty()),
        other => panic!("{other:?}"),
    }
    let _ = b_path;
    stop_tx.send(()).unwrap();
    served_b.pull();
    let _ = rx.recv_timeout(Duration::from_secs(20));
    watcher.join().unwrap();
}
