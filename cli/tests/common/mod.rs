//! Running the real `dmsc` binary against simulated cards in temporary directories.
#![allow(dead_code, unused_imports)]
// Test helpers: a failed unwrap is a failed test (as `allow-unwrap-in-tests`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The GlobalPlatform test key, in hex.
pub use dmsc_test_support::TEST_KEY_HEX as TEST_KEY;
/// Another AES-128 key.
pub const OTHER_KEY: &str = "00112233445566778899AABBCCDDEEFF";

/// `K:K:K`.
pub fn triple(key: &str) -> String {
    format!("{key}:{key}:{key}")
}

/// What a run of `dmsc` gave.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing everything when it differs.
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// A `dmsc` command with no DMSC_* variables from the caller's environment,
/// stdin closed (never a terminal) and `dir` as the working directory.
pub fn dmsc(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmsc"));
    for var in [
        "DMSC_READER",
        "DMSC_SIM",
        "DMSC_SCP_KEYS",
        "DMSC_PIN",
        "DMSC_NEW_PIN",
        "DMSC_PUK",
        "DMSC_VPCD_PORT",
        "DMSC_NOW",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir).stdin(Stdio::null());
    cmd
}

/// Runs `dmsc ARGS` with extra environment variables.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = dmsc(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run dmsc");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `dmsc ARGS`.
pub fn run(dir: &Path, args: &[&str]) -> Out {
    run_env(dir, args, &[])
}

/// A new card with the test keys at `dir/name`.
pub fn new_card(dir: &Path, name: &str) -> PathBuf {
    run(dir, &["-q", "sim", "init", name]).expect(0);
    dir.join(name)
}

/// A card on which `dmsc demo` stored its objects (MO, policy, keys, approvers, an alarm).
pub fn demo_card(dir: &Path, name: &str) -> PathBuf {
    run(dir, &["demo", "--sim", name]).expect(0);
    dir.join(name)
}

/// A variable set by `.ci/test` for the end-to-end tests (private pcscd + vpcd).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through `bash .ci/test` (private pcscd + vpcd)")
    })
}

/// Sends SIGTERM to a child and waits for it (10 s hang guard); its exit code,
/// -1 if a signal ended it.
pub fn terminate(child: &mut std::process::Child) -> i32 {
    use std::time::{Duration, Instant};
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "the child did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Master keys ENC:MAC:DEK (00…0F, 10…1F, 20…2F) for key version 0x30, as
/// `--master-key-file` content.
pub const MASTER: &str = "000102030405060708090A0B0C0D0E0F:\
                          101112131415161718191A1B1C1D1E1F:\
                          202122232425262728292A2B2C2D2E2F";

/// The same master keys, for deriving the cards' keys in the test.
pub fn master() -> dmsc_host::fleet::diversify::SoftMasterKeys {
    let k = |b: u8| -> Vec<u8> { (0..16).map(|i| b + i).collect() };
    dmsc_host::fleet::diversify::SoftMasterKeys::new(
        0x30,
        dmsc_host::card_model::scp03::StaticKeys::new(&k(0x00), &k(0x10), &k(0x20)).expect("keys"),
    )
}
