//! `dmsc watch` through the private pcscd of `.ci/test` (feature `e2e`): a card
//! served with `dmsc sim serve` is refreshed into the device tree on insertion,
//! and its MOs leave the tree when the card is removed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

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

/// A UICC with the OMA DM bootstrap encoded by `xml2wbxml` and a LwM2M
/// bootstrap (docs/standard-cards.md).
fn uicc_profile() -> String {
    let wbxml = hex::encode_upper(include_bytes!(
        "../../test-vectors/syncml/dm-bootstrap.wbxml"
    ));
    format!(
        r#"{{"iccid": "98103254769810325476", "t0": true, "dm_bootstrap_hex": "{wbxml}",
 "lwm2m_bootstrap": {{"objects": [
   {{"id": 0, "instances": [{{"id": 0, "resources": [
     {{"id": 0, "value": {{"type": "string", "value": "coaps://bs.example:5684"}}}}]}}]}}]}}}}"#
    )
}

const FACTORY: &str = "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName>\
    <Path>.</Path><Node><NodeName>factory</NodeName><Node><NodeName>ServerID</NodeName>\
    <Value>factory.example.net</Value></Node></Node></Node></MgmtTree>";

fn next_event(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> serde_json::Value {
    let line = lines.next().unwrap().unwrap();
    serde_json::from_str::<serde_json::Value>(&line).unwrap()["event"].clone()
}

fn ready(child: &mut std::process::Child) {
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready"), "{ready}");
}

/// A UICC and a dmsc card in turn in the same reader: each one's content is
/// applied on insertion and leaves on removal, the factory bootstrap is in
/// force in between.
#[test]
fn watch_follows_a_uicc_and_a_dmsc_card_in_turn_in_one_reader() {
    let slot = 4usize;
    let port: u16 = env("DMSC_VPCD_PORT").parse().unwrap();
    let port_text = (port + slot as u16).to_string();
    let reader = env("DMSC_VPCD_READERS")
        .split(';')
        .nth(slot)
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("uicc.json"), uicc_profile()).unwrap();
    std::fs::write(d.join("factory.xml"), FACTORY).unwrap();
    new_card(d, "card");
    let devinfo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-vectors/tnds/devinfo.json")
        .display()
        .to_string();
    run_env(
        d,
        &["--sim", "card", "mo", "put", &devinfo],
        &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
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
            "--factory-bootstrap",
            "factory.xml",
            "--events",
            "4",
            "--interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    std::thread::sleep(Duration::from_millis(500));

    let mut uicc = dmsc(d)
        .args([
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "serve",
            "--port",
            &port_text,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(&mut uicc);
    let e = next_event(&mut lines);
    assert_eq!(e["event"], "inserted", "{e}");
    assert_eq!(e["refresh"]["kind"], "uicc", "{e}");
    assert_eq!(e["refresh"]["card_id"], "89012345678901234567");
    assert_eq!(
        e["refresh"]["bootstrap"],
        serde_json::json!(["dm", "lwm2m"])
    );
    assert_eq!(e["refresh"]["factory"], false, "{e}");
    let dmacc = std::fs::read_to_string(d.join("tree/current/mo/DMAcc.xml")).unwrap();
    assert!(
        dmacc.contains("dm.example.net") && !dmacc.contains("factory"),
        "{dmacc}"
    );
    assert!(d.join("tree/current/mo/LwM2M.xml").exists());

    terminate(&mut uicc);
    let e = next_event(&mut lines);
    assert_eq!(e["event"], "removed", "{e}");
    assert_eq!(
        e["removed"],
        serde_json::json!(["./DMAcc", "./LwM2M"]),
        "{e}"
    );
    assert_eq!(e["factory"], serde_json::json!(["./DMAcc"]), "{e}");
    let dmacc = std::fs::read_to_string(d.join("tree/current/mo/DMAcc.xml")).unwrap();
    assert!(dmacc.contains("factory.example.net"), "{dmacc}");
    assert!(!d.join("tree/current/mo/LwM2M.xml").exists());

    let mut card = dmsc(d)
        .args(["sim", "serve", "--state", "card", "--port", &port_text])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(&mut card);
    let e = next_event(&mut lines);
    assert_eq!(e["event"], "inserted", "{e}");
    assert_eq!(e["refresh"]["kind"], "dmsc", "{e}");
    assert_eq!(e["refresh"]["added"], serde_json::json!(["./DevInfo"]));
    assert_eq!(
        e["refresh"]["removed"],
        serde_json::json!(["./DMAcc"]),
        "{e}"
    );
    assert!(!d.join("tree/current/mo/DMAcc.xml").exists());

    terminate(&mut card);
    let e = next_event(&mut lines);
    assert_eq!(e["event"], "removed", "{e}");
    assert_eq!(e["removed"], serde_json::json!(["./DevInfo"]), "{e}");
    assert!(watch.wait().unwrap().success());
    let dmacc = std::fs::read_to_string(d.join("tree/current/mo/DMAcc.xml")).unwrap();
    assert!(dmacc.contains("factory.example.net"), "{dmacc}");
}
