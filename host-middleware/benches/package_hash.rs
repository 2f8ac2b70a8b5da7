//! Streaming a firmware package through SHA-256 (`dmsc_host::firmware::hash_package`,
//! the approve path's hashing) against `openssl dgst -sha256` on the same file,
//! measured in the same run; and the peak memory of the hashing process.
//!
//! Target: throughput ≥ 0.9 × openssl's; peak resident memory ≤ 32 MiB
//! whatever the package size. Prints the figures and the ratio; asserts nothing.
//!
//!     cargo bench -p dmsc-host --bench package_hash
//!     DMSC_BENCH_PACKAGE_MIB=4096 cargo bench -p dmsc-host --bench package_hash
//!
//! The hashing runs in a child process (this program, re-executed) so that its
//! peak resident set (`VmHWM`) is that of hashing alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "DMSC_BENCH_HASH_CHILD";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn child(path: &str) {
    let f = std::fs::File::open(path).expect("package");
    let h = dmsc_host::firmware::hash_package(f, path, None, &mut |_| {}).expect("hash");
    println!("{} {} {}", hex::encode(h.digest), h.size, peak_rss_kib());
}

fn make_package(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for i in 0..mib {
        block[0] = i as u8;
        block[1] = (i >> 8) as u8;
        f.write_all(&block).expect("write");
    }
    f.flush().expect("flush");
}

fn time(mut cmd: Command) -> (Duration, String) {
    let start = Instant::now();
    let out = cmd.output().expect("run");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path);
        return;
    }
    let mib: usize = std::env::var("DMSC_BENCH_PACKAGE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let rounds = 3;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("package.bin");
    make_package(&path, mib);
    let bytes = (mib as f64) * 1024.0 * 1024.0;
    let me = std::env::current_exe().expect("current exe");

    let openssl = || {
        let mut c = Command::new("openssl");
        c.args(["dgst", "-sha256", "-r"]).arg(&path);
        c
    };
    let ours = || {
        let mut c = Command::new(&me);
        c.env(CHILD, &path);
        c
    };
    // Warm the page cache, then alternate so both see the same conditions.
    let _ = time(openssl());
    let (mut best_openssl, mut best_ours) = (Duration::MAX, Duration::MAX);
    let (mut digest_openssl, mut out_ours) = (String::new(), String::new());
    for _ in 0..rounds {
        let (t, o) = time(openssl());
        best_openssl = best_openssl.min(t);
        digest_openssl = o.split_whitespace().next().unwrap_or_default().to_string();
        let (t, o) = time(ours());
        best_ours = best_ours.min(t);
        out_ours = o;
    }
    let mut fields = out_ours.split_whitespace();
    let digest_ours = fields.next().unwrap_or_default();
    let _size = fields.next();
    let peak_kib: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mbps = |d: Duration| bytes / d.as_secs_f64() / 1e6;
    println!("package_hash: {mib} MiB file, best of {rounds}");
    println!(
        "  openssl dgst -sha256   {:8.1} MB/s  ({:.3} s)",
        mbps(best_openssl),
        best_openssl.as_secs_f64()
    );
    println!(
        "  dmsc hash_package      {:8.1} MB/s  ({:.3} s)",
        mbps(best_ours),
        best_ours.as_secs_f64()
    );
    println!(
        "  throughput ratio dmsc/openssl: {:.3} (target >= 0.9)",
        best_openssl.as_secs_f64() / best_ours.as_secs_f64()
    );
    println!(
        "  peak resident memory of the hashing process: {:.1} MiB (target <= 32 MiB)",
        peak_kib as f64 / 1024.0
    );
    println!(
        "  digests {}",
        if digest_ours == digest_openssl {
            "agree"
        } else {
            "DIFFER"
        }
    );
}
