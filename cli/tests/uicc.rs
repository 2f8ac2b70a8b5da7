//! `dmsc uicc` against the simulated UICC (`--sim-uicc PROFILE.json`), no PC/SC.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{run, run_env};

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
fn the_standard_names_of_the_bootstrap_commands_are_aliases() {
    let dir = dir_with(PROFILE);
    let short = run(
        dir.path(),
        &["--json", "uicc", "--sim-uicc", "uicc.json", "lwm2m"],
    )
    .expect(0);
    let long = run(
        dir.path(),
        &[
            "--json",
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "lwm2m-bootstrap",
        ],
    )
    .expect(0);
    assert_eq!(short.stdout, long.stdout);
    assert!(long.stdout.contains("/0/0/0"), "{long:?}");
    let write = run(dir.path(), &["uicc", "write-lwm2m-bootstrap", "--help"]).expect(0);
    assert!(write.stdout.contains("ADM1"), "{write:?}");
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

/// The profile with the OMA DM bootstrap encoded by `xml2wbxml`
/// (test-vectors/syncml) and an ICCID of its own.
fn profile_with_dm(iccid: &str, lwm2m: bool) -> String {
    let wbxml = hex::encode_upper(include_bytes!(
        "../../test-vectors/syncml/dm-bootstrap.wbxml"
    ));
    let mut p: serde_json::Value = serde_json::from_str(PROFILE).unwrap();
    p["iccid"] = iccid.into();
    p["dm_bootstrap_hex"] = wbxml.into();
    if !lwm2m {
        p.as_object_mut().unwrap().remove("lwm2m_bootstrap");
    }
    p.to_string()
}

const FACTORY: &str = "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName>\
    <Path>.</Path><Node><NodeName>factory</NodeName><Node><NodeName>ServerID</NodeName>\
    <Value>factory.example.net</Value></Node></Node></Node></MgmtTree>";

#[test]
fn apply_writes_the_bootstrap_into_the_device_tree_and_a_new_card_replaces_it() {
    let dir = dir_with(&profile_with_dm("98103254769810325476", true));
    std::fs::write(dir.path().join("factory.xml"), FACTORY).unwrap();
    let apply = |profile: &str| {
        run(
            dir.path(),
            &[
                "--json",
                "uicc",
                "--sim-uicc",
                profile,
                "apply",
                "--device",
                "dev",
                "--init",
                "--factory-bootstrap",
                "factory.xml",
            ],
        )
        .expect(0)
        .json()
    };
    let j = apply("uicc.json");
    assert_eq!(j["kind"], "uicc");
    assert_eq!(j["card_id"], "89012345678901234567");
    assert_eq!(j["added"], serde_json::json!(["./DMAcc", "./LwM2M"]));
    assert_eq!(j["factory"], false);
    let digest = j["bootstrap_digest"].as_str().unwrap().to_string();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("dev/current/tree.json"))
            .or_else(|_| std::fs::read_to_string(dir.path().join("dev/tree.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(index["mos"]["./DMAcc"]["origin"]["source"], "uicc");
    assert_eq!(index["mos"]["./LwM2M"]["origin"]["digest"], digest.as_str());
    // The same card again changes nothing.
    assert_eq!(apply("uicc.json")["unchanged"], true);
    // A card without bootstrap: what the first provided goes, the factory
    // bootstrap comes.
    std::fs::write(
        dir.path().join("bare.json"),
        r#"{"iccid": "98103254769810325486"}"#,
    )
    .unwrap();
    let j = apply("bare.json");
    assert_eq!(j["factory"], true, "{j}");
    assert_eq!(j["removed"], serde_json::json!(["./DMAcc", "./LwM2M"]));
    assert_eq!(j["added"], serde_json::json!(["./DMAcc"]));
    // The device policy disables the smartcard bootstrap: the first card's
    // bootstrap is not applied.
    std::fs::create_dir_all(dir.path().join("dev/policy")).unwrap();
    std::fs::write(
        dir.path().join("dev/policy/resources.json"),
        r#"{"schema_version": 1, "policy": "sha256:00", "at": "2026-11-23T08:00:00Z",
            "resources": {"smartcard-bootstrap": "disabled"}}"#,
    )
    .unwrap();
    let j = apply("uicc.json");
    assert_eq!(j["smartcard_bootstrap_disabled"], true, "{j}");
    assert_eq!(j["factory"], true, "{j}");
    let text = run(
        dir.path(),
        &[
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "apply",
            "--device",
            "dev",
        ],
    )
    .expect(0);
    assert!(
        text.stdout
            .contains("smartcard bootstrap disabled by the device policy"),
        "{text:?}"
    );
}

#[test]
fn apply_refuses_a_malformed_bootstrap_and_changes_nothing() {
    let dir = dir_with(&profile_with_dm("98103254769810325476", false));
    run(
        dir.path(),
        &[
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "apply",
            "--device",
            "dev",
            "--init",
        ],
    )
    .expect(0);
    let before = std::fs::read_dir(dir.path().join("dev")).unwrap().count();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"iccid": "98103254769810325486", "dm_bootstrap_hex": "03016A00 45"}"#,
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["uicc", "--sim-uicc", "bad.json", "apply", "--device", "dev"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("OMA DM bootstrap"), "{out:?}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("dev")).unwrap().count(),
        before
    );
    let j = run(
        dir.path(),
        &[
            "--json",
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "apply",
            "--device",
            "dev",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(j["unchanged"], true, "{j}");
}

const PROTECTED: &str = r#"{"iccid": "98103254769810325476",
 "lwm2m_bootstrap": {"format": 1, "objects": [
   {"id": 0, "instances": [{"id": 0, "resources": [
     {"id": 0, "value": {"type": "string", "value": "coaps://bs.example:5684"}}]}]}]},
 "dm_bootstrap_hex": "03016A00",
 "pin1": {"value": "2468", "protect": ["lwm2m", "dm"]}}"#;

#[test]
fn a_pin_protected_profile_reads_with_dmsc_pin_or_pin_file_and_says_how_without() {
    let dir = dir_with(PROTECTED);
    let args = ["uicc", "--sim-uicc", "uicc.json", "lwm2m"];
    // No PIN, no terminal: the error names the object and how to give a PIN.
    let none = run(dir.path(), &args).expect(2);
    assert!(
        none.stderr
            .contains("data object 2.23.43.9.1 (file 6432) needs the user PIN")
            && none.stderr.contains("--pin-file FILE or DMSC_PIN"),
        "{none:?}"
    );
    assert!(!none.stderr.contains("--pin "), "{none:?}");
    let right = run_env(dir.path(), &args, &[("DMSC_PIN", "2468")]).expect(0);
    assert!(
        right
            .stdout
            .contains("/0/0/0 = \"coaps://bs.example:5684\""),
        "{right:?}"
    );
    let wrong = run_env(dir.path(), &args, &[("DMSC_PIN", "1357")]).expect(7);
    assert!(wrong.stderr.contains("2 tries left"), "{wrong:?}");
    assert!(!wrong.stdout.contains("coaps://"), "{wrong:?}");
    std::fs::write(dir.path().join("pin.txt"), "2468\n").unwrap();
    let dm = run(
        dir.path(),
        &[
            "--pin-file",
            "pin.txt",
            "uicc",
            "--sim-uicc",
            "uicc.json",
            "dm-bootstrap",
        ],
    )
    .expect(0);
    assert_eq!(dm.stdout.trim(), "03016A00", "{dm:?}");
    let info = run_env(
        dir.path(),
        &["--json", "uicc", "--sim-uicc", "uicc.json", "info"],
        &[("DMSC_PIN", "2468")],
    )
    .expect(0);
    let j = info.json();
    assert_eq!(j["pin_verified"], true);
    assert_eq!(j["pin_objects"][0]["reference"], 1);
    assert_eq!(j["data_objects"][0]["auth_id"], "01");
    for out in [&none, &right, &wrong, &dm, &info] {
        for secret in ["2468", "1357"] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{out:?}"
            );
        }
    }
}

#[test]
fn apply_reads_a_pin_protected_bootstrap_with_dmsc_pin_and_says_how_without() {
    let mut p: serde_json::Value =
        serde_json::from_str(&profile_with_dm("98103254769810325476", true)).unwrap();
    p["pin1"] = serde_json::json!({"value": "2468"});
    let dir = dir_with(&p.to_string());
    let args = [
        "--json",
        "uicc",
        "--sim-uicc",
        "uicc.json",
        "apply",
        "--device",
        "dev",
        "--init",
    ];
    let none = run(dir.path(), &args).expect(2);
    assert!(
        none.stderr.contains("needs the user PIN")
            && none.stderr.contains("--pin-file FILE or DMSC_PIN"),
        "{none:?}"
    );
    let wrong = run_env(dir.path(), &args, &[("DMSC_PIN", "1357")]).expect(7);
    assert!(wrong.stderr.contains("2 tries left"), "{wrong:?}");
    let right = run_env(dir.path(), &args, &[("DMSC_PIN", "2468")]).expect(0);
    let j = right.json();
    assert_eq!(
        j["bootstrap"],
        serde_json::json!(["dm", "lwm2m"]),
        "{right:?}"
    );
    for out in [&none, &wrong, &right] {
        assert!(
            !out.stdout.contains("2468") && !out.stderr.contains("2468"),
            "{out:?}"
        );
    }
}

/// `dmsc sim init --uicc PROFILE FILE` in the test's directory.
fn init_state(dir: &std::path::Path, profile: &str) {
    std::fs::write(dir.join("profile.json"), profile).unwrap();
    run(dir, &["sim", "init", "--uicc", "profile.json", "card.uicc"]).expect(0);
}

fn state_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("card.uicc")).unwrap()).unwrap()
}

fn write_new_lifetime(dir: &std::path::Path, card: &str, key: &str) -> common::Out {
    std::fs::write(
        dir.join("new.json"),
        r#"{"objects": [{"id": 1, "instances": [{"id": 0, "resources": [
        {"id": 1, "value": {"type": "integer", "value": 600}}]}]}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("adm.key"), key).unwrap();
    run(
        dir,
        &[
            "uicc",
            "--sim-uicc",
            card,
            "write-lwm2m",
            "new.json",
            "--adm-key-file",
            "adm.key",
        ],
    )
}

#[test]
fn sim_init_uicc_writes_an_owner_only_state_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    init_state(dir.path(), PROTECTED);
    let j = state_json(dir.path());
    assert_eq!(j["format"], "dmsc-uicc-state");
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["iccid"], "98103254769810325476");
    assert_eq!(j["pin1"]["tries_left"], 3);
    assert_eq!(j["adm1"]["tries_left"], 3);
    assert_eq!(j["files"]["fid"], "3F00");
    assert_eq!(j["files"]["children"][0]["fid"], "2FE2");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("card.uicc"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = std::fs::read(dir.path().join("card.uicc")).unwrap();
    let again = run(
        dir.path(),
        &["sim", "init", "--uicc", "profile.json", "card.uicc"],
    );
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("--force"), "{again:?}");
    assert_eq!(std::fs::read(dir.path().join("card.uicc")).unwrap(), before);
    let j = run(
        dir.path(),
        &[
            "--json",
            "sim",
            "init",
            "--uicc",
            "profile.json",
            "card.uicc",
            "--force",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(j["replaced"], true);
    assert_eq!(j["format"], "dmsc-uicc-state");
    // The applet's options do not go with --uicc.
    let out = run(
        dir.path(),
        &[
            "sim",
            "init",
            "--uicc",
            "profile.json",
            "x",
            "--pin",
            "1234",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn an_update_stays_in_the_state_file_and_a_bare_profile_forgets_it() {
    let dir = dir_with(PROFILE);
    init_state(dir.path(), PROFILE);
    write_new_lifetime(dir.path(), "card.uicc", "3838383838383838\n").expect(0);
    let tree = run(
        dir.path(),
        &["uicc", "--sim-uicc", "card.uicc", "lwm2m", "--tree"],
    )
    .expect(0);
    assert_eq!(tree.stdout, "/1/0/1 = 600\n", "{tree:?}");
    // A bare profile keeps its changes in memory only.
    write_new_lifetime(dir.path(), "uicc.json", "3838383838383838\n").expect(0);
    let tree = run(
        dir.path(),
        &["uicc", "--sim-uicc", "uicc.json", "lwm2m", "--tree"],
    )
    .expect(0);
    assert!(tree.stdout.contains("/1/0/1 = 86400\n"), "{tree:?}");
}

#[test]
fn wrong_pins_across_runs_block_pin1_for_good() {
    let dir = tempfile::tempdir().unwrap();
    init_state(dir.path(), PROTECTED);
    let args = ["uicc", "--sim-uicc", "card.uicc", "lwm2m"];
    let first = run_env(dir.path(), &args, &[("DMSC_PIN", "1357")]).expect(7);
    assert!(first.stderr.contains("2 tries left"), "{first:?}");
    // The lower counter is in the file once the command has answered.
    assert_eq!(state_json(dir.path())["pin1"]["tries_left"], 2);
    let second = run_env(dir.path(), &args, &[("DMSC_PIN", "1357")]).expect(7);
    assert!(second.stderr.contains("1 tries left"), "{second:?}");
    let third = run_env(dir.path(), &args, &[("DMSC_PIN", "1357")]).expect(5);
    assert!(third.stderr.contains("is blocked"), "{third:?}");
    let right = run_env(dir.path(), &args, &[("DMSC_PIN", "2468")]).expect(5);
    assert!(right.stderr.contains("is blocked"), "{right:?}");
    assert!(!right.stdout.contains("coaps://"), "{right:?}");
    assert_eq!(state_json(dir.path())["pin1"]["tries_left"], 0);
}

#[test]
fn wrong_adm_keys_across_runs_block_adm1_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    init_state(dir.path(), PROFILE);
    for left in ["63C2", "63C1", "63C0"] {
        let out = write_new_lifetime(dir.path(), "card.uicc", "3030303030303030\n");
        assert_ne!(out.code, 0);
        assert!(out.stderr.contains(left), "{out:?}");
    }
    assert_eq!(state_json(dir.path())["adm1"]["tries_left"], 0);
    let out = write_new_lifetime(dir.path(), "card.uicc", "3838383838383838\n");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("6983"), "{out:?}");
    let tree = run(
        dir.path(),
        &["uicc", "--sim-uicc", "card.uicc", "lwm2m", "--tree"],
    )
    .expect(0);
    assert!(tree.stdout.contains("/1/0/1 = 86400\n"), "{tree:?}");
}

#[test]
fn a_bad_state_file_is_named_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    init_state(dir.path(), PROFILE);
    let good = std::fs::read_to_string(dir.path().join("card.uicc")).unwrap();
    let cases = [
        (good[..good.len() / 2].to_string(), "truncated"),
        (
            good.replacen("dmsc-uicc-state", "dmsc-card-state", 1),
            "format 'dmsc-card-state' is not a UICC state file",
        ),
        (
            good.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1),
            "schema_version 2 is newer than this dmsc reads (1)",
        ),
        (
            good.replacen("\"size\": 10,", "\"size\": 12,", 1),
            "3F00/2FE2: data_hex has 10 bytes, size says 12",
        ),
        (
            good.replacen("\"tries_left\": 3", "\"tries_left\": 9", 1),
            "adm1.tries_left: 9 is more than the limit 3",
        ),
    ];
    for (text, problem) in cases {
        std::fs::write(dir.path().join("bad.uicc"), &text).unwrap();
        for args in [
            &["uicc", "--sim-uicc", "bad.uicc", "info"][..],
            &["uicc", "--sim-uicc", "bad.uicc", "lwm2m"][..],
        ] {
            let out = run(dir.path(), args);
            assert_ne!(out.code, 0, "{out:?}");
            assert!(
                out.stderr.contains("UICC state file bad.uicc") && out.stderr.contains(problem),
                "{problem}: {out:?}"
            );
        }
        let out = write_new_lifetime(dir.path(), "bad.uicc", "3838383838383838\n");
        assert_ne!(out.code, 0, "{out:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("bad.uicc")).unwrap(),
            text
        );
    }
    // An applet card state is not a UICC.
    run(dir.path(), &["sim", "init", "applet.state"]).expect(0);
    let out = run(dir.path(), &["uicc", "--sim-uicc", "applet.state", "info"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("applet card state"), "{out:?}");
}
