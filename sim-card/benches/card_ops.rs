//! In-process card round trips on the crash-safe file store.
//!
//! Prints, for a 256-byte read and a committed 1 KiB write: the time per
//! command, the fsyncs per committed command (target ≤ 2), and the ratio of the
//! committed write to a baseline measured in the same run: the bare atomic
//! replace of a file of the same size (write new + fsync + rename + fsync dir).
//!
//! Run: `cargo bench -p dmsc-sim-card --bench card_ops` (`DMSC_BENCH_ITERS` to scale).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::{MoRecord, ObjectValue, Request, AID};
use dmsc_card_model::objects::ObjectRef;
use dmsc_card_model::scp03::{
    self, InitializeUpdateResponse, SecureChannel, SecurityLevel, StaticKeys,
};
use dmsc_sim_card::sim::FileCard;
use dmsc_sim_card::{sim, AuthorityKeys, InitParams};
use zeroize::Zeroizing;

const KEY: [u8; 16] = *b"@ABCDEFGHIJKLMNO";

fn send(card: &mut FileCard, cmd: &Command) -> Response {
    let bytes = card.process(&cmd.to_bytes().expect("encodable"));
    Response::from_bytes(&bytes).expect("the card answers")
}

fn per_op(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

fn atomic_replace(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join("baseline.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .expect("tmp");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    fs::rename(&tmp, dir.join("baseline")).expect("rename");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

fn main() {
    let iters: u32 = std::env::var("DMSC_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("card.state");
    let params = InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x30,
        name: "ServerA".into(),
        enc: Zeroizing::new(KEY.to_vec()),
        mac: Zeroizing::new(KEY.to_vec()),
        dek: Zeroizing::new(KEY.to_vec()),
    }]);
    let mut card = sim::create(&path, params).expect("new card");
    assert!(send(
        &mut card,
        &Request::Select { aid: AID.to_vec() }.to_command()
    )
    .is_ok());

    // An authority session at C-MAC for the writes.
    let keys = StaticKeys::new(&KEY, &KEY, &KEY).expect("keys");
    let host_challenge = [7u8; 8];
    let iu = send(
        &mut card,
        &scp03::initialize_update(0x30, &host_challenge).expect("command"),
    );
    let iu = InitializeUpdateResponse::decode(&iu.data).expect("INITIALIZE UPDATE response");
    let level = SecurityLevel::new(SecurityLevel::C_MAC).expect("level");
    let (mut channel, ext) =
        SecureChannel::host_authenticate(&keys, &host_challenge, &iu, level).expect("auth");
    assert!(send(&mut card, &ext).is_ok());

    let put = |n: u8| Request::PutObject {
        object: ObjectRef::Mo("./Bench".into()),
        value: ObjectValue::Mo(MoRecord {
            mo_type: "urn:x-dmsc:bench".into(),
            version: 0,
            content: vec![n; 1024],
        }),
        acl: None,
    };
    let wrapped = channel.wrap_command(&put(0).to_command()).expect("wrap");
    assert!(send(&mut card, &wrapped).is_ok());

    // Committed 1 KiB writes.
    let fsyncs_before = card.store().fsyncs();
    let commits_before = card.store().commits();
    let start = Instant::now();
    for i in 0..iters {
        let wrapped = channel
            .wrap_command(&put(i as u8).to_command())
            .expect("wrap");
        let rsp = send(&mut card, &wrapped);
        assert!(rsp.is_ok(), "write {i}: {rsp:?}");
    }
    let write_time = start.elapsed();
    let fsyncs = card.store().fsyncs() - fsyncs_before;
    let commits = card.store().commits() - commits_before;

    // 256-byte reads (no commit).
    let mut reader = sim::open(&path).err();
    drop(reader.take());
    let read = Request::ReadObject {
        object: ObjectRef::IdentityKey,
        audit_from: None,
    }
    .to_command()
    .with_le(256);
    assert!(send(
        &mut card,
        &Request::Select { aid: AID.to_vec() }.to_command()
    )
    .is_ok());
    let start = Instant::now();
    for _ in 0..iters * 10 {
        let rsp = send(&mut card, &read);
        assert!(rsp.is_ok());
    }
    let read_time = start.elapsed();

    // Baseline: atomic replace of a file as large as the card's state.
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as usize;
    let image = vec![0xA5u8; size];
    let start = Instant::now();
    for _ in 0..iters {
        atomic_replace(dir.path(), &image);
    }
    let baseline = start.elapsed();

    let write_us = per_op(write_time, iters);
    let base_us = per_op(baseline, iters);
    println!("card_ops: state file {size} bytes, {iters} iterations");
    println!(
        "  read 256 B (in-process)        {:>10.1} µs/command",
        per_op(read_time, iters * 10)
    );
    println!("  committed write 1 KiB          {write_us:>10.1} µs/command");
    println!("  baseline atomic file replace   {base_us:>10.1} µs/op");
    println!(
        "  ratio write / baseline         {:>10.2}",
        write_us / base_us
    );
    println!(
        "  fsyncs per committed command   {:>10.2} (target <= 2; {commits} commits)",
        fsyncs as f64 / iters as f64
    );
}
