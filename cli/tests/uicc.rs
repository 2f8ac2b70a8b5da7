//! `dmsc uicc` against the simulated UICC (`--sim-uicc PROFILE.json`), no PC/SC.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::run;

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

fn dir_with(profile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("uicc.json"), profile).expect("profile");
    dir
}

#[test]
fn info_lists_the_pkcs15_objects() {
    let dir = dir_with(PROFILE);
    let out = run(dir.path(), &["uicc", "--sim-uicc", "uicc.json", "info"]).expect(0);
    assert!(out.stdout.contains("A000000063504B43532D3135"), "{out:?}");
    assert!(
        out.stdout.contains("2.23.43.9.1") && out.stdout.contains("2.23.43.7.1"),
        "{out:?}"
    );
    let j = run(
        dir.path(),
        &["--json", "uicc", "--sim-uicc", "uicc.json", "info"],
    )
    .expect(0)
    .json();
    assert_eq!(j["pkcs15"], true);
    assert_eq!(j["data_objects"][0]["oid"], "2.23.43.9.1");
    assert_eq!(j["data_objects"][0]["size"], 512);
}

#[test]
fn lwm2m_text_tree_and_json_never_show_the_secret_key() {
    let dir = dir_with(PROFILE);
    let text = run(dir.path(), &["uicc", "--sim-uicc", "uicc.json", "lwm2m"]).expect(0);
    assert!(
        text.stdout
            .contains("/0/0/0 = \"coaps://bs.example:5684\"  (LwM2M Server URI)"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("/0/0/5 = (secret, not shown)"),
        "{text:?}"
    );
    let tree = run(
        dir.path(),
        &["uicc", "--sim-uicc", "uicc.json", "lwm2m", "--tree"],
    )
    .expect(0);
    assert!(tree.stdout.contains("/1/0/1 = 86400\n"), "{tree:?}");
    let json = run(
        dir.path(),
        &["--json", "uicc", "--sim-uicc", "uicc.json", "lwm2m"],
    )
    .expect(0);
    let j = json.json();
    assert_eq!(j["entries"][0]["path"], "/0/0/0");
    assert_eq!(j["redacted"][0], "/0/0/5");
    for out in [&text, &tree, &json] {
        assert!(!out.stdout.contains("A1B2C3D4E5F60718"), "{out:?}");
    }
}

#[test]
fn bad_profiles_and_missing_objects_are_clear_errors() {
    let dir = dir_with(r#"{"iccid": "98103254769810325476"}"#);
    let out = run(dir.path(), &["uicc", "--sim-uicc", "uicc.json", "lwm2m"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no data object with OID 2.23.43.9.1"),
        "{out:?}"
    );
    let dir = dir_with(r#"{"iccid": "98", "lwm2m_size": 0}"#);
    let out = run(dir.path(), &["uicc", "--sim-uicc", "uicc.json", "info"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("lwm2m_size"), "{out:?}");
}

#[test]
fn a_missing_modem_device_is_named() {
    let dir = dir_with(PROFILE);
    let out = run(
        dir.path(),
        &["uicc", "--modem", "/nonexistent/ttyUSB9", "info"],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/nonexistent/ttyUSB9"), "{out:?}");
}

#[test]
fn dm_bootstrap_is_read() {
    let dir = dir_with(PROFILE);
    let out = run(
        dir.path(),
        &["uicc", "--sim-uicc", "uicc.json", "dm-bootstrap"],
    )
    .expect(0);
    assert_eq!(out.stdout.trim(), "03016A00");
    run(
        dir.path(),
        &[
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "dm-bootstrap",
            "--out",
            "dm.wbxml",
        ],
    )
    .expect(0);
    assert_eq!(
        std::fs::read(dir.path().join("dm.wbxml")).unwrap(),
        vec![0x03, 0x01, 0x6A, 0x00]
    );
}

#[test]
fn write_lwm2m_needs_the_adm_key_from_a_file_and_checks_the_size() {
    let dir = dir_with(PROFILE);
    let new = r#"{"objects": [{"id": 1, "instances": [{"id": 0, "resources": [
        {"id": 1, "value": {"type": "integer", "value": 600}}]}]}]}"#;
    std::fs::write(dir.path().join("new.json"), new).unwrap();
    // No key: refused before the card is touched.
    let out = run(
        dir.path(),
        &["uicc", "--sim-uicc", "uicc.json", "write-lwm2m", "new.json"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--adm-key-file"), "{out:?}");
    // A wrong key: the card says so.
    std::fs::write(dir.path().join("wrong.key"), "3030303030303030\n").unwrap();
    let out = run(
        dir.path(),
        &[
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "write-lwm2m",
            "new.json",
            "--adm-key-file",
            "wrong.key",
        ],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("63C2"), "{out:?}");
    assert!(!out.stderr.contains("3030303030303030"), "{out:?}");
    // The profile's default ADM1 key (3838383838383838).
    std::fs::write(dir.path().join("adm.key"), "38 38 38 38 38 38 38 38\n").unwrap();
    run(
        dir.path(),
        &[
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "write-lwm2m",
            "new.json",
            "--adm-key-file",
            "adm.key",
        ],
    )
    .expect(0);
    // Too big for a 100-byte EF: refused with the sizes.
    let small = PROFILE.replace("\"t0\": true", "\"t0\": true, \"lwm2m_size\": 100");
    std::fs::write(dir.path().join("small.json"), small).unwrap();
    let long = format!(
        r#"{{"objects": [{{"id": 0, "instances": [{{"id": 0, "resources": [
        {{"id": 0, "value": {{"type": "string", "value": "{}"}}}}]}}]}}]}}"#,
        "x".repeat(200)
    );
    std::fs::write(dir.path().join("long.json"), long).unwrap();
    let out = run(
        dir.path(),
        &[
            "uicc",
            "--sim-uicc",
            "small.json",
            "write-lwm2m",
            "long.json",
            "--adm-key-file",
            "adm.key",
        ],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("do not fit the 100-byte file"),
        "{out:?}"
    );
}
