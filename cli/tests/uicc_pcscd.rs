//! `dmsc uicc` through the private pcscd of `.ci/test` (feature `e2e`): a
//! simulated UICC attached with `dmsc uicc serve` is read with `--reader`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const PROFILE: &str = r#"{"iccid": "98103254769810325476", "t0": true,
 "lwm2m_bootstrap": {"objects": [
   {"id": 0, "instances": [{"id": 0, "resources": [
     {"id": 0, "value": {"type": "string", "value": "coaps://bs.example:5684"}},
     {"id": 1, "value": {"type": "boolean", "value": true}}]}]},
   {"id": 1, "instances": [{"id": 0, "resources": [
     {"id": 1, "value": {"type": "integer", "value": 86400}}]}]}]}}"#;

#[test]
fn lwm2m_bootstrap_of_a_served_uicc_through_pcscd() {
    let slot = 6usize;
    let port: u16 = env("DMSC_VPCD_PORT").parse().unwrap();
    let reader = env("DMSC_VPCD_READERS")
        .split(';')
        .nth(slot)
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("uicc.json"), PROFILE).unwrap();
    let port_text = (port + slot as u16).to_string();
    let mut serve = dmsc(d)
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
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready: simulated UICC attached"), "{line}");
    // pcscd may report the card a moment after vpcd attached it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = run(d, &["--reader", &reader, "--json", "uicc", "lwm2m"]);
        if out.code == 0 || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // `dmsc refresh` finds a UICC (its SELECT of the dmsc applet answers
    // 6A82) and applies its bootstrap.
    let refresh = run(
        d,
        &[
            "--reader", &reader, "--json", "refresh", "--device", "tree", "--init",
        ],
    );
    let again = run(d, &["--reader", &reader, "refresh", "--device", "tree"]);
    terminate(&mut serve);
    let r = refresh.expect(0).json();
    assert_eq!(r["kind"], "uicc", "{r}");
    assert_eq!(r["card_id"], "89012345678901234567");
    assert_eq!(r["added"], serde_json::json!(["./LwM2M"]), "{r}");
    assert_eq!(r["skipped"], serde_json::json!([]), "{r}");
    let lwm2m = std::fs::read_to_string(d.join("tree/current/mo/LwM2M.xml")).unwrap();
    assert!(lwm2m.contains("coaps://bs.example:5684"), "{lwm2m}");
    let again = again.expect(0);
    assert!(
        again
            .stdout
            .contains("UICC 89012345678901234567: bootstrap")
            && again.stdout.contains("unchanged"),
        "{again:?}"
    );
    let j = out.expect(0).json();
    assert_eq!(j["entries"][0]["path"], "/0/0/0");
    assert_eq!(j["entries"][0]["value"]["value"], "coaps://bs.example:5684");
    assert_eq!(j["entries"][2]["path"], "/1/0/1");
    assert_eq!(j["entries"][2]["value"]["value"], 86400);
}
