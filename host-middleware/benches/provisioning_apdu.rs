//! APDU economy of provisioning: APDU counts and times of a full refresh and
//! of a refresh of an unchanged card, for 1, 10 and 100 MOs, in-process and
//! through pcscd. Times are reported against the unchanged refresh (one
//! SELECT) measured in the same run; nothing is asserted.
//!
//! Needs the private pcscd of `.ci/pcsc-env`; `bash .ci/bench` sets it up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dmsc_host::card_model::scp03::{SecurityLevel, StaticKeys};
use dmsc_host::device_tree::{DeviceTree, DirectoryTree, LastCard, TreeChange};
use dmsc_host::mo::{self, MgmtTree};
use dmsc_host::provisioning;
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::{
    open_secure_channel, AuthorityKeySet, CardCommands, PcscContext, Session, Transport,
};
use dmsc_sim_card::vpcd::{self, BridgeEvent, Endpoint, VirtualCard};
use dmsc_sim_card::{AuthorityKeys, InitParams};
use zeroize::Zeroizing;

#[path = "../tests/support/mod.rs"]
mod support;
use support::Counting;

const KEY: &[u8; 16] = &dmsc_test_support::TEST_KEY;
const DEVINFO: &str = include_str!("../../test-vectors/tnds/devinfo.json");

fn params() -> InitParams {
    let key = Zeroizing::new(KEY.to_vec());
    InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x30,
        name: "admin".into(),
        enc: key.clone(),
        mac: key.clone(),
        dek: key,
    }])
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set: run this benchmark through `bash .ci/bench`");
        std::process::exit(2)
    })
}

/// A card state file holding `n` MOs; returns the bytes of MO records.
fn card_with_mos(path: &std::path::Path, n: usize) -> usize {
    let mut s = Session::new(FileSimTransport::create(path, params()).expect("card"));
    let authority = AuthorityKeySet {
        key_version: 0x30,
        keys: StaticKeys::new(KEY, KEY, KEY).expect("keys"),
    };
    open_secure_channel(&mut s, &authority, SecurityLevel::new(0x03).expect("level"))
        .expect("authority");
    let tree = MgmtTree::from_json(DEVINFO).expect("vector");
    for i in 0..n {
        let one = mo::rooted_at(&tree, &format!("./Bench/M{i}")).expect("uri");
        mo::put_mo(&mut s, &one, None).expect("put");
    }
    s.select().expect("select");
    mo::list_mos(&mut s)
        .expect("list")
        .iter()
        .map(|(_, size)| *size as usize)
        .sum()
}

struct Figures {
    full_apdus: usize,
    full_us: f64,
    same_apdus: usize,
    same_us: f64,
}

/// Full refreshes (into a forgotten tree) and unchanged refreshes: APDUs and median µs.
fn measure<T: Transport>(
    s: &mut Session<Counting<T>>,
    count: &AtomicUsize,
    rounds: usize,
) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = DirectoryTree::open(dir.path()).expect("tree");
    let (mut full, mut same) = (Vec::new(), Vec::new());
    let (mut full_apdus, mut same_apdus) = (0, 0);
    for _ in 0..rounds {
        tree.apply(&TreeChange {
            last_card: LastCard::Clear,
            ..TreeChange::default()
        })
        .expect("forget");
        let before = count.load(Ordering::SeqCst);
        let t = Instant::now();
        provisioning::refresh(s, &mut tree).expect("refresh");
        full.push(t.elapsed().as_secs_f64() * 1e6);
        full_apdus = count.load(Ordering::SeqCst) - before;
        let before = count.load(Ordering::SeqCst);
        let t = Instant::now();
        let r = provisioning::refresh(s, &mut tree).expect("refresh");
        same.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(r.unchanged);
        same_apdus = count.load(Ordering::SeqCst) - before;
    }
    Figures {
        full_apdus,
        full_us: median(full),
        same_apdus,
        same_us: median(same),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(label: &str, n: usize, bytes: usize, f: &Figures) {
    let target = 2 + bytes.div_ceil(65536);
    println!(
        "  {label:<10} {n:>3} MOs {bytes:>6} B | full refresh {:>4} APDUs (target {target:>2}) {:>9.0} µs | \
         unchanged {} APDU {:>7.0} µs (baseline) | ratio {:>6.1}",
        f.full_apdus, f.full_us, f.same_apdus, f.same_us, f.full_us / f.same_us
    );
}

fn main() {
    let rounds: usize = std::env::var("DMSC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let port: u16 = env("DMSC_VPCD_PORT").parse().expect("port");
    let readers: Vec<String> = env("DMSC_VPCD_READERS")
        .split(';')
        .map(str::to_string)
        .collect();
    let slot = 7usize;
    println!("provisioning_apdu: refresh of 1, 10, 100 MOs ({rounds} rounds, medians)");
    for n in [1usize, 10, 100] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("card.state");
        let bytes = card_with_mos(&path, n);

        let count = Arc::new(AtomicUsize::new(0));
        let mut s = Session::new(Counting {
            inner: FileSimTransport::open(&path).expect("open"),
            count: count.clone(),
            pull_after: None,
        });
        report("in-process", n, bytes, &measure(&mut s, &count, rounds));
        drop(s);

        let shutdown = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let card: Box<dyn VirtualCard> = Box::new(dmsc_sim_card::sim::open(&path).expect("open"));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port + slot as u16));
        let flag = shutdown.clone();
        let bridge = std::thread::spawn(move || {
            vpcd::serve(vec![(card, Endpoint::Connect(addr))], flag, move |e| {
                drop(tx.send(e))
            })
        });
        loop {
            match rx
                .recv_timeout(Duration::from_secs(20))
                .expect("attached within 20 s")
            {
                BridgeEvent::Attached { .. } => break,
                BridgeEvent::CardStopped { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        let mut ctx = PcscContext::establish().expect("PC/SC");
        let deadline = Instant::now() + Duration::from_secs(20);
        let card = loop {
            match ctx.connect(&readers[slot]) {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{}: {e}", readers[slot]),
            }
        };
        let count = Arc::new(AtomicUsize::new(0));
        let mut s = Session::new(Counting {
            inner: card,
            count: count.clone(),
            pull_after: None,
        });
        report("pcscd", n, bytes, &measure(&mut s, &count, rounds));
        drop(s);
        shutdown.store(true, Ordering::SeqCst);
        let _ = bridge.join();
        // Let pcscd see the card gone before the next one uses the slot.
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let gone = ctx
                .list_readers()
                .map(|rs| {
                    rs.iter()
                        .any(|r| r.name == readers[slot] && !r.card_present)
                })
                .unwrap_or(false);
            if gone {
                break;
            }
            let _ = ctx.wait_for_change(Some(Duration::from_millis(200)));
        }
    }
    println!(
        "  target: unchanged card = 1 APDU; reading S bytes <= 2 + ceil(S / 65536) APDUs \
         (SELECT, GET DATA read-all, GET RESPONSE beyond 64 KiB)."
    );
}
