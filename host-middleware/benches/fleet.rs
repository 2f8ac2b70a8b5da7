//! Fleet benchmarks through pcscd + vpcd, with file-backed simulated cards
//! (every commit fsynced) on vpcd slots 0–7 of the private pcscd of
//! `.ci/pcsc-env` (`bash .ci/bench` sets it up):
//!
//! 1. `fleet provision` throughput with 8 readers against 1 reader, both
//!    measured in this run on equally fresh cards, twice: CPU-bound (the
//!    simulated card answers at once) and with a real card's per-APDU
//!    latency (`DMSC_BENCH_LATENCY_MS`, default 15; target: ≥ 7.5×);
//! 2. the cost of the provisioning records per card: `provision_recorded`
//!    (each card claimed and its attempt recorded, a new job per round) with
//!    SQLite and with a private PostgreSQL (test-support's
//!    `PrivatePostgres`) against the same `provision_recorded` with a store
//!    that keeps nothing (`NoRecords`: the same card work, so the difference
//!    is the store's), 8 readers with the card latency, each on equally fresh
//!    cards in this run (target: at most 10 % more time per card). The rate
//!    of plain `provision` (no claim, no record) is printed beside them;
//! 3. a bounded load run: 8 readers under continuous traffic, at most
//!    `DMSC_LOAD_APDUS` APDUs per reader and `DMSC_LOAD_SECS` seconds; prints
//!    APDUs per second, errors (target 0) and memory (target: flat — the
//!    resident size at the end against the size after warm-up).
//!
//! Prints figures and ratios; asserts nothing about time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/e2e/mod.rs"]
mod e2e;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmsc_host::card_model::commands::{MoRecord, ObjectValue, Request};
use dmsc_host::card_model::objects::{Acl, ObjectKind, ObjectRef};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::fleet::records::{
    self, provision_recorded, AttemptStart, CardOutcome, Claim, Job, Record, RecordError, Records,
    Status, UsedKeys,
};
use dmsc_host::fleet::{provision, FleetCard, Profile, ProfileObject};
use dmsc_host::{CardCommands, PcscCard};
use dmsc_sim_card::vpcd::WithLatency;
use e2e::*;
use support::*;

const READERS: usize = 8;

/// A record store that keeps nothing: every card is claimed (attempt 1) and
/// every attempt's end accepted. The baseline of the record store's cost.
#[derive(Debug)]
struct NoRecords;

impl Records for NoRecords {
    fn location(&self) -> &str {
        "nowhere"
    }
    fn claim(&self, _: &AttemptStart<'_>) -> Result<Claim, RecordError> {
        Ok(Claim::Claimed {
            attempt: 1,
            recovered: None,
        })
    }
    fn finish(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: Result<Option<UsedKeys>, String>,
        _: jiff::Timestamp,
    ) -> Result<(), RecordError> {
        Ok(())
    }
    fn records(&self, _: Option<&str>) -> Result<Vec<Record>, RecordError> {
        Ok(Vec::new())
    }
    fn claim_status(&self, _: &str, _: &str) -> Result<Option<Status>, RecordError> {
        Ok(None)
    }
    fn check_writable(&self) -> Result<(), RecordError> {
        Ok(())
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn profile() -> Profile {
    Profile {
        objects: vec![
            ProfileObject {
                object: ObjectRef::Mo("./DMAcc/Gw".into()),
                value: ObjectValue::Mo(MoRecord {
                    mo_type: "urn:oma:mo:oma-dm-dmacc:1.0".into(),
                    version: 0,
                    content: vec![b'x'; 2048],
                }),
                acl: Some(Acl::parse("Get=*&Replace=ServerA").unwrap()),
            },
            ProfileObject {
                object: ObjectRef::Policy,
                value: ObjectValue::Policy(vec![b'p'; 512]),
                acl: None,
            },
        ],
        failure_limit: Some(6),
    }
}

/// `rounds` provisions of every card; returns cards provisioned per second.
fn provision_rate(cards: &mut [FleetCard<PcscCard>], rounds: u64) -> f64 {
    let profile = profile();
    let keys = server_a();
    let level = SecurityLevel::new(0x33).unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        for r in provision(cards, &profile, &keys, level, &|_| {}) {
            assert!(r.result.is_ok(), "{}: {:?}", r.reader, r.result);
        }
    }
    (rounds as f64 * cards.len() as f64) / start.elapsed().as_secs_f64()
}

/// `rounds` recorded provisions of every card (a new job each round, named
/// `{jobs}-{round}`, so that every card is claimed and provisioned again);
/// returns cards per second.
fn recorded_rate(
    cards: &mut [FleetCard<PcscCard>],
    rounds: u64,
    store: &dyn Records,
    jobs: &str,
) -> f64 {
    let profile = profile();
    let keys = server_a();
    let level = SecurityLevel::new(0x33).unwrap();
    let now = || jiff::Timestamp::UNIX_EPOCH;
    let start = Instant::now();
    for round in 0..rounds {
        let name = format!("{jobs}-{round}");
        let job = Job {
            name: &name,
            station: "bench",
            profile: &profile,
            keys: &keys,
            installer: None,
            level,
            now: &now,
        };
        for r in provision_recorded(cards, &job, store, &|_| {}) {
            assert!(
                matches!(r.outcome, CardOutcome::Provisioned { .. }),
                "{}: {:?}",
                r.reader,
                r.outcome
            );
        }
    }
    (rounds as f64 * cards.len() as f64) / start.elapsed().as_secs_f64()
}

/// Resident and peak resident memory of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `READERS` fresh file-backed cards in slots 0–7, each answering every APDU
/// no sooner than `latency` after it arrived.
fn fresh_fleet(latency: Duration) -> (tempfile::TempDir, Vec<Served>, Vec<FleetCard<PcscCard>>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let served: Vec<Served> = (0..READERS)
        .map(|slot| {
            let path = dir.path().join(format!("card{slot}.state"));
            let card = dmsc_sim_card::sim::create(&path, card_params(false)).expect("new card");
            Served::start(slot, Box::new(WithLatency::new(card, latency)))
        })
        .collect();
    let cards = served
        .iter()
        .map(|s| FleetCard::new(s.reader.clone(), session(&s.reader)))
        .collect();
    (dir, served, cards)
}

/// Runs `measure` on a fleet of fresh cards, after one warm-up provision of
/// each card, and returns its cards per second.
fn on_fresh_fleet(
    latency: Duration,
    measure: impl FnOnce(&mut [FleetCard<PcscCard>]) -> f64,
) -> f64 {
    let (_dir, served, mut cards) = fresh_fleet(latency);
    for card in cards.chunks_mut(1) {
        provision_rate(card, 1);
    }
    let rate = measure(&mut cards);
    drop(cards);
    for s in served {
        s.pull();
    }
    rate
}

/// Throughput of `rounds` provisions of each of 8 fresh cards, first one
/// reader at a time (card after card), then all 8 readers at once on 8 other
/// fresh cards: the same work on cards in the same state, only the
/// concurrency differs. Returns (1 reader, 8 readers) in cards per second.
fn provision_ratio(rounds: u64, latency: Duration) -> (f64, f64) {
    let one = on_fresh_fleet(latency, |cards| {
        let start = Instant::now();
        for card in cards.chunks_mut(1) {
            provision_rate(card, rounds);
        }
        (rounds * cards.len() as u64) as f64 / start.elapsed().as_secs_f64()
    });
    let eight = on_fresh_fleet(latency, |cards| provision_rate(cards, rounds));
    (one, eight)
}

fn main() {
    // 1. Provisioning throughput, CPU-bound and with a real card's latency.
    let rounds = env_or("DMSC_BENCH_ROUNDS", 8);
    let latency = Duration::from_millis(env_or("DMSC_BENCH_LATENCY_MS", 15));
    for latency in [Duration::ZERO, latency] {
        let (one, eight) = provision_ratio(rounds, latency);
        let label = if latency.is_zero() {
            "CPU-bound".to_string()
        } else {
            format!("{} ms card latency", latency.as_millis())
        };
        println!(
            "fleet provision ({label}), 1 reader:  {one:8.1} cards/s = {:8.1} cards/min per station",
            one * 60.0
        );
        println!(
            "fleet provision ({label}), {READERS} readers: {eight:8.1} cards/s = {:8.1} cards/min per station",
            eight * 60.0
        );
        let target = if latency.is_zero() {
            "bounded by the host's cores"
        } else {
            "target >= 7.5x"
        };
        println!(
            "fleet provision ratio ({label}) {READERS} readers / 1 reader: {:.2}x ({target})",
            eight / one
        );
    }

    // 2. The record store's cost per card, 8 readers, with the card latency:
    // the same recorded provisioning with a store that keeps nothing, with
    // SQLite and with PostgreSQL, taken in turn `repeats` times (each on
    // fresh cards); the medians are compared.
    let record_rounds = env_or("DMSC_BENCH_RECORD_ROUNDS", 24);
    let repeats = env_or("DMSC_BENCH_RECORD_REPEATS", 3).max(1);
    let plain = on_fresh_fleet(latency, |cards| provision_rate(cards, record_rounds));
    let db_dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = records::open(&db_dir.path().join("bench.sqlite"), true).expect("SQLite");
    let pg = dmsc_test_support::pg::PrivatePostgres::start();
    pg.create_db("bench");
    let postgres = records::open(std::path::Path::new(&pg.conninfo("bench", "dmsc")), true)
        .expect("PostgreSQL");
    let stores: [(&str, &dyn Records); 3] = [
        ("nothing", &NoRecords),
        ("SQLite", sqlite.as_ref()),
        ("PostgreSQL", postgres.as_ref()),
    ];
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for repeat in 0..repeats {
        for ((name, store), rates) in stores.iter().zip(rates.iter_mut()) {
            let jobs = format!("bench-{name}-{repeat}");
            rates.push(on_fresh_fleet(latency, |cards| {
                recorded_rate(cards, record_rounds, *store, &jobs)
            }));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [none, with_sqlite, with_pg] = rates.map(|mut v| median(&mut v));
    println!(
        "records ({} ms card latency, {READERS} readers, {record_rounds} rounds, median of \
         {repeats} taken in turn): provision without claims {:.1} cards/min; recorded: store \
         keeping nothing {:.1} cards/min, SQLite {:.1} cards/min, PostgreSQL {:.1} cards/min",
        latency.as_millis(),
        plain * 60.0,
        none * 60.0,
        with_sqlite * 60.0,
        with_pg * 60.0
    );
    for (name, rate) in [("SQLite", with_sqlite), ("PostgreSQL", with_pg)] {
        println!(
            "records overhead ({name}): {:+.1} % time per card ({:.1} ms per card; target <= 10 %)",
            (none / rate - 1.0) * 100.0,
            (1.0 / rate - 1.0 / none) * 1000.0
        );
    }
    drop(postgres);
    drop(pg);

    let (_dir, served, mut cards) = fresh_fleet(Duration::ZERO);
    provision_rate(&mut cards, 1);

    // 3. Bounded load run.
    let max_apdus = env_or("DMSC_LOAD_APDUS", 20_000);
    let max_time = Duration::from_secs(env_or("DMSC_LOAD_SECS", 20));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut samples = Vec::new();
    std::thread::scope(|scope| {
        for card in cards.iter_mut() {
            let (sent, errors, stop) = (sent.clone(), errors.clone(), stop.clone());
            scope.spawn(move || {
                let reads = [
                    Request::ReadObject {
                        object: ObjectRef::IdentityKey,
                        audit_from: None,
                    },
                    Request::ListObjects {
                        kind: ObjectKind::Mo,
                    },
                    Request::ReadObject {
                        object: ObjectRef::Mo("./DMAcc/Gw".into()),
                        audit_from: None,
                    },
                ];
                let s = &mut card.session;
                for i in 0..max_apdus {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if s.request(&reads[i as usize % reads.len()]).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let total = max_apdus * READERS as u64;
        while start.elapsed() < max_time && sent.load(Ordering::Relaxed) < total {
            std::thread::sleep(Duration::from_millis(200));
            samples.push((start.elapsed(), memory_kib().0));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let n = sent.load(Ordering::Relaxed);
    let (rss_end, peak) = memory_kib();
    // After warm-up: the first sample past 10 % of the run.
    let warm = samples
        .iter()
        .find(|(t, _)| t.as_secs_f64() > elapsed * 0.1)
        .or(samples.first())
        .map(|(_, r)| *r)
        .unwrap_or(rss_end);
    println!(
        "load run: {READERS} readers, {n} APDUs in {elapsed:.1} s = {:.0} APDU/s, errors {}",
        n as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    println!(
        "load run memory: resident {warm} KiB after warm-up, {rss_end} KiB at the end \
         (ratio {:.3}, target flat), peak {peak} KiB",
        rss_end as f64 / warm.max(1) as f64
    );
    drop(cards);
    for s in served {
        s.pull();
    }
}
