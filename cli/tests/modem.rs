//! `dmsc sim modem` (the modem emulator on a pseudo-terminal) with
//! `dmsc uicc --modem PTY` against it: the bootstrap read through AT+CSIM and
//! AT+CGLA, URCs, `+CME ERROR`, a silent modem, a state file kept up to date,
//! and a clean exit on SIGTERM.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{dmsc, run, terminate};

const PROFILE: &str = r#"{"iccid": "98103254769810325476", "t0": true,
 "lwm2m_bootstrap": {"format": 1, "objects": [
   {"id": 0, "instances": [{"id": 0, "resources": [
     {"id": 0, "value": {"type": "string", "value": "coaps://bs.example:5684"}},
     {"id": 1, "value": {"type": "boolean", "value": true}},
     {"id": 2, "value": {"type": "integer", "value": 0}},
     {"id": 5, "value": {"type": "opaque", "value": "A1B2C3D4E5F60718"}}]}]},
   {"id": 1, "instances": [{"id": 0, "resources": [
     {"id": 0, "value": {"type": "integer", "value": 101}},
     {"id": 1, "value": {"type": "integer", "value": 86400}}]}]}]},
 "dm_bootstrap_hex": "03016A00"}"#;

/// A directory with the profile as `uicc.json` and its state file `card.uicc`.
fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("uicc.json"), PROFILE).unwrap();
    run(
        dir.path(),
        &["-q", "sim", "init", "--uicc", "uicc.json", "card.uicc"],
    )
    .expect(0);
    dir
}

/// The running emulator and its pty.
struct Modem {
    child: Child,
    pty: String,
}

impl Drop for Modem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dmsc sim modem --state FILE EXTRA…`, once it printed its path and readiness line.
fn modem(dir: &Path, state: &str, extra: &[&str]) -> Modem {
    let mut child = dmsc(dir)
        .args(["sim", "modem", "--state", state])
        .args(extra)
        .env_remove("DMSC_MODEM")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut pty = String::new();
    out.read_line(&mut pty).unwrap();
    let pty = pty.trim().to_string();
    assert!(
        pty.starts_with("/dev/"),
        "the first line is the pty: {pty:?}"
    );
    let mut ready = String::new();
    out.read_line(&mut ready).unwrap();
    assert_eq!(
        ready.trim_end(),
        format!("ready: modem emulator on {pty} (simulated UICC {state})")
    );
    Modem { child, pty }
}

fn uicc(dir: &Path, m: &Modem, args: &[&str]) -> common::Out {
    let mut all = vec!["--json", "uicc", "--modem", &m.pty, "--modem-timeout", "5"];
    all.extend_from_slice(args);
    run(dir, &all)
}

#[test]
fn lwm2m_and_info_through_the_emulator_and_a_clean_exit_on_sigterm() {
    let dir = dir();
    let mut m = modem(dir.path(), "card.uicc", &[]);
    let j = uicc(dir.path(), &m, &["lwm2m"]).expect(0).json();
    assert_eq!(j["entries"][0]["path"], "/0/0/0");
    assert_eq!(j["entries"][0]["value"]["value"], "coaps://bs.example:5684");
    assert_eq!(j["redacted"][0], "/0/0/5");
    let lifetime = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/1/0/1")
        .unwrap();
    assert_eq!(lifetime["value"]["value"], 86400);
    // A second client on the same pty, through logical channels (AT+CCHO…).
    let info = uicc(dir.path(), &m, &["--modem-cgla", "info"])
        .expect(0)
        .json();
    assert_eq!(info["pkcs15"], true);
    assert_eq!(info["data_objects"][0]["oid"], "2.23.43.9.1");
    assert_eq!(info["data_objects"][0]["size"], 512);
    assert_eq!(terminate(&mut m.child), 0);
}

#[test]
fn json_readiness_line() {
    let dir = dir();
    let mut child = dmsc(dir.path())
        .args(["--json", "sim", "modem", "--state", "uicc.json"])
        .args(["--cme-error-after", "3", "--cme-error-code", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(j["ready"], true);
    assert_eq!(j["state"], "uicc.json");
    assert_eq!(j["cme_error_after"], 3);
    assert_eq!(j["cme_error_code"], 10);
    assert!(j["pty"].as_str().unwrap().starts_with("/dev/"), "{j}");
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn a_cme_error_is_a_clear_error_and_a_failure() {
    let dir = dir();
    let mut m = modem(
        dir.path(),
        "card.uicc",
        &["--cme-error-after", "1", "--cme-error-code", "10"],
    );
    let out = uicc(dir.path(), &m, &["lwm2m"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("AT+CSIM=10,… answered +CME ERROR: 10"),
        "{out:?}"
    );
    // With --json the error is the JSON document, and nothing else.
    let j = out.json();
    assert!(j.get("entries").is_none(), "{j}");
    assert_eq!(j["error"]["exit_code"], 1);
    assert_eq!(terminate(&mut m.child), 0);
}

#[test]
fn a_silent_modem_times_out() {
    let dir = dir();
    let mut m = modem(dir.path(), "card.uicc", &["--silent-after", "2"]);
    let out = run(
        dir.path(),
        &["uicc", "--modem", &m.pty, "--modem-timeout", "1", "lwm2m"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("timed out"), "{out:?}");
    // The command that got no answer is named, without its APDU's data.
    assert!(
        out.stderr.contains("no answer to AT+CSIM=") && out.stderr.contains(",…"),
        "{out:?}"
    );
    assert_eq!(terminate(&mut m.child), 0);
}

#[test]
fn urcs_before_every_answer_do_not_disturb() {
    let dir = dir();
    let mut m = modem(dir.path(), "card.uicc", &["--urc-every", "1"]);
    let j = uicc(dir.path(), &m, &["lwm2m"]).expect(0).json();
    assert_eq!(j["entries"][0]["value"]["value"], "coaps://bs.example:5684");
    assert_eq!(terminate(&mut m.child), 0);
}

#[test]
fn an_update_through_the_modem_is_saved_in_the_state_file() {
    let dir = dir();
    let mut m = modem(dir.path(), "card.uicc", &[]);
    std::fs::write(
        dir.path().join("new.json"),
        r#"{"objects": [{"id": 1, "instances": [{"id": 0, "resources": [
        {"id": 1, "value": {"type": "integer", "value": 600}}]}]}]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("adm.key"), "3838383838383838\n").unwrap();
    uicc(
        dir.path(),
        &m,
        &["write-lwm2m", "new.json", "--adm-key-file", "adm.key"],
    )
    .expect(0);
    assert_eq!(terminate(&mut m.child), 0);
    let tree = run(
        dir.path(),
        &["uicc", "--sim-uicc", "card.uicc", "lwm2m", "--tree"],
    )
    .expect(0);
    assert_eq!(tree.stdout, "/1/0/1 = 600\n", "{tree:?}");
}

#[test]
fn a_bad_state_file_is_named_and_nothing_served() {
    let dir = dir();
    std::fs::write(
        dir.path().join("bad.uicc"),
        "{\"format\": \"dmsc-uicc-state\"",
    )
    .unwrap();
    let out = run(dir.path(), &["sim", "modem", "--state", "bad.uicc"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("bad.uicc"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn refresh_through_the_modem_applies_the_sims_bootstrap() {
    // The global --modem: `dmsc refresh` reaches the SIM behind the modem,
    // finds no dmsc applet (one SELECT failure) and applies its LwM2M
    // bootstrap; a second refresh sees the same card and content.
    let dir = tempfile::tempdir().unwrap();
    let profile = PROFILE.replace(",\n \"dm_bootstrap_hex\": \"03016A00\"", "");
    assert_ne!(profile, PROFILE, "the profile without its DM bootstrap");
    std::fs::write(dir.path().join("lwm2m-only.json"), profile).unwrap();
    let d = dir.path();
    run(
        d,
        &[
            "-q",
            "sim",
            "init",
            "--uicc",
            "lwm2m-only.json",
            "card.uicc",
        ],
    )
    .expect(0);
    let mut m = modem(d, "card.uicc", &[]);
    let modem_args = ["--modem", m.pty.as_str(), "--modem-timeout", "5"];
    let mut first = modem_args.to_vec();
    first.extend(["--json", "refresh", "--device", "tree", "--init"]);
    let r = run(d, &first).expect(0).json();
    assert_eq!(r["kind"], "uicc", "{r}");
    // EF(ICCID) 98103254769810325476: BCD with swapped nibbles.
    assert_eq!(r["card_id"], "89012345678901234567", "{r}");
    assert_eq!(r["added"], serde_json::json!(["./LwM2M"]), "{r}");
    let lwm2m = std::fs::read_to_string(d.join("tree/current/mo/LwM2M.xml")).unwrap();
    assert!(lwm2m.contains("coaps://bs.example:5684"), "{lwm2m}");
    let mut again = modem_args.to_vec();
    again.extend(["--json", "refresh", "--device", "tree"]);
    let r = run(d, &again).expect(0).json();
    assert_eq!(r["unchanged"], true, "{r}");
    assert_eq!(terminate(&mut m.child), 0);
}
