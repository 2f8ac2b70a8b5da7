//! The cost of a full refresh of the device tree (docs/device-tree.md).
//!
//! For 1, 10, 100 and 1,000 MOs, prints per full refresh (every MO replaced
//! by another card's): the syncs (`fsync`, `syncfs`), the bytes written and
//! the time; and the same for a baseline measured in the same run, in the
//! same directory, interleaved with the refreshes: the same bytes (every TNDS
//! file and the index) written into a fresh directory, one `syncfs`, one
//! rename, the previous directory removed (and, for reference, the earlier
//! design: every file fsynced). Then the ratios and one PASS or
//! FAIL line against the targets: syncs <= 3, bytes <= 1.2x and time <= 1.5x
//! the baseline (times compared by their medians).
//!
//! Run: `cargo bench -p dmsc-host --bench device_tree`
//! (`DMSC_BENCH_ITERS`, default 15, refreshes per size; `DMSC_BENCH_DIR`, the
//! directory to work in, default the system's temporary directory: put it on
//! the file system to measure).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use dmsc_host::device_tree::{CardMark, DeviceTree, DirectoryTree, LastCard, Origin, TreeChange};
use dmsc_host::mo::MgmtTree;

fn mo(i: usize, card: &str) -> MgmtTree {
    MgmtTree::from_tnds(&format!(
        "<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>\
         <Node><NodeName>M{i}</NodeName><Path>./Vendor</Path>\
         <Node><NodeName>ServerID</NodeName><Value>dm{i}.example.com</Value></Node>\
         <Node><NodeName>Addr</NodeName><Value>https://dm{i}.example.com/{card}</Value></Node>\
         <Node><NodeName>Name</NodeName><Value>Account {i} of card {card}</Value></Node>\
         </Node></MgmtTree>"
    ))
    .expect("a valid TNDS document")
}

/// A full refresh from card `card`: `n` MOs, all replaced.
fn refresh(n: usize, card: &str) -> TreeChange {
    TreeChange {
        put: (0..n)
            .map(|i| {
                (
                    format!("./Vendor/M{i}"),
                    mo(i, card),
                    Origin::Card {
                        card_id: card.into(),
                        generation: 1,
                        version: 1,
                    },
                )
            })
            .collect(),
        remove: Vec::new(),
        last_card: LastCard::Set(CardMark {
            card_id: card.into(),
            generation: 1,
        }),
    }
}

/// The baseline: `files` written into a fresh directory, one syncfs, one
/// rename into place, the previous one removed.
fn baseline(dir: &Path, files: &[(String, Vec<u8>)], round: usize) -> u64 {
    let fresh = dir.join("fresh");
    fs::create_dir_all(fresh.join("mo")).unwrap();
    let mut bytes = 0;
    for (name, content) in files {
        fs::write(fresh.join(name), content).unwrap();
        bytes += content.len() as u64;
    }
    rustix::fs::syncfs(File::open(&fresh).unwrap()).unwrap();
    fs::rename(&fresh, dir.join(format!("gen{round}"))).unwrap();
    if round > 0 {
        fs::remove_dir_all(dir.join(format!("gen{}", round - 1))).unwrap();
    }
    bytes
}

/// The earlier design, for reference: every file written and fsynced, the
/// directories fsynced, the rename, the parent fsynced.
fn per_file_fsync(dir: &Path, files: &[(String, Vec<u8>)], round: usize) -> u64 {
    let sync = |p: &Path| File::open(p).unwrap().sync_all().unwrap();
    let fresh = dir.join("fresh");
    fs::create_dir_all(fresh.join("mo")).unwrap();
    let mut syncs = 0;
    for (name, content) in files {
        let mut f = File::create(fresh.join(name)).unwrap();
        f.write_all(content).unwrap();
        f.sync_all().unwrap();
        syncs += 1;
    }
    sync(&fresh.join("mo"));
    sync(&fresh);
    fs::rename(&fresh, dir.join(format!("gen{round}"))).unwrap();
    sync(dir);
    if round > 0 {
        fs::remove_dir_all(dir.join(format!("gen{}", round - 1))).unwrap();
    }
    syncs + 3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let iters: usize = std::env::var("DMSC_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(15);
    let work = std::env::var_os("DMSC_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&work).expect("a temporary directory");
    println!(
        "device_tree: full refresh, {iters} per size, in {}",
        tmp.path().display()
    );
    println!(
        "  {:>5} | {:>6} {:>10} {:>9} | {:>6} {:>10} {:>9} | {:>6} {:>6}",
        "MOs", "syncs", "bytes", "ms", "base", "base bytes", "base ms", "bytes", "time"
    );
    let mut pass = true;
    let mut reference = Vec::new();
    for n in [1usize, 10, 100, 1000] {
        let tree_dir = tmp.path().join(format!("tree{n}"));
        let base_dir = tmp.path().join(format!("base{n}"));
        let old_dir = tmp.path().join(format!("old{n}"));
        fs::create_dir_all(&base_dir).unwrap();
        fs::create_dir_all(&old_dir).unwrap();
        let mut tree = DirectoryTree::open(&tree_dir).unwrap();
        tree.apply(&refresh(n, "B")).unwrap();
        let (mut ours, mut theirs, mut earlier) = (Vec::new(), Vec::new(), Vec::new());
        let mut earlier_syncs = 0;
        let (mut syncs, mut bytes, mut base_bytes) = (0u64, 0u64, 0u64);
        for round in 0..iters {
            let card = if round % 2 == 0 { "A" } else { "B" };
            let change = refresh(n, card);
            let before = tree.io_stats();
            let start = Instant::now();
            tree.apply(&change).unwrap();
            ours.push(start.elapsed());
            let cost = tree.io_stats() - before;
            syncs = syncs.max(cost.syncs);
            bytes += cost.bytes_written;

            // The same bytes: every TNDS file and the index as written.
            let current = tree.current_dir().unwrap().unwrap();
            let mut files: Vec<(String, Vec<u8>)> = tree
                .index()
                .unwrap()
                .mos
                .values()
                .map(|e| (e.file.clone(), fs::read(current.join(&e.file)).unwrap()))
                .collect();
            files.push((
                "tree.json".into(),
                fs::read(current.join("tree.json")).unwrap(),
            ));
            let start = Instant::now();
            base_bytes += baseline(&base_dir, &files, round);
            theirs.push(start.elapsed());
            let start = Instant::now();
            earlier_syncs = per_file_fsync(&old_dir, &files, round);
            earlier.push(start.elapsed());
        }
        let (t, b, e) = (median(ours), median(theirs), median(earlier));
        reference.push((n, earlier_syncs, e, t));
        let bytes_ratio = bytes as f64 / base_bytes as f64;
        let time_ratio = t.as_secs_f64() / b.as_secs_f64();
        let ok = syncs <= 3 && bytes_ratio <= 1.2 && time_ratio <= 1.5;
        pass &= ok;
        println!(
            "  {n:>5} | {syncs:>6} {:>10} {:>9.2} | {:>6} {:>10} {:>9.2} | {bytes_ratio:>5.2}x {time_ratio:>5.2}x{}",
            bytes / iters as u64,
            ms(t),
            1,
            base_bytes / iters as u64,
            ms(b),
            if ok { "" } else { "  <- over target" }
        );
    }
    println!("  for reference, the earlier design (every file fsynced), same bytes, same run:");
    for (n, syncs, e, t) in reference {
        println!(
            "  {n:>5} | {syncs:>6} syncs {:>9.2} ms (this design: {:.2} ms)",
            ms(e),
            ms(t)
        );
    }
    println!(
        "device_tree: {} (targets: syncs <= 3, bytes <= 1.2x, time <= 1.5x the baseline)",
        if pass { "PASS" } else { "FAIL" }
    );
}
