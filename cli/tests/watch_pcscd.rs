//! `dmsc watch` through the private pcscd of `.ci/test` (feature `e2e`): a card
//! served with `dmsc sim serve` is refreshed into the device tree on insertion,
//! and its MOs leave the tree when the card is removed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn watch_refreshes_on_insertion_and_forgets_on_removal() {
    let slot = 3usize;
    let port: u16 = env("DMSC_VPCD_PORT").parse().unwrap();
    let reader = env("DMSC_VPCD_READERS")
        .split(';')
        .nth(slot)
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let keys = triple(TEST_KEY);
    let devinfo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-vectors/tnds/devinfo.json")
        .display()
        .to_string();
    run_env(
        d,
        &["--sim", "card", "mo", "put", &devinfo],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(0);

    let mut watch = dmsc(d)
        .args([
            "--reader",
            &reader,
            "--json",
            "watch",
            "--device",
            "tree",
            "--init",
            "--events",
            "2",
            "--interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // Usually lets the watcher take its first look at the empty reader, so the
    // card arrives as a reader event. The outcome does not depend on it: a
    // card already present at the first look is reported `inserted` as well.
    std::thread::sleep(Duration::from_millis(500));

    let mut serve = dmsc(d)
        .args([
            "sim",
            "serve",
            "--state",
            "card",
            "--port",
            &(port + slot as u16).to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready"), "{ready}");

    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["schema_version"], 2);
    assert_eq!(first["event"]["event"], "inserted", "{first}");
    assert_eq!(
        first["event"]["refresh"]["added"],
        serde_json::json!(["./DevInfo"])
    );
    assert!(d.join("tree/current/mo/DevInfo.xml").exists());

    terminate(&mut serve);
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["event"]["event"], "removed", "{second}");
    assert_eq!(second["event"]["removed"], serde_json::json!(["./DevInfo"]));
    let status = watch.wait().unwrap();
    assert!(status.success());
    assert!(!d.join("tree/current/mo/DevInfo.xml").exists());
}
