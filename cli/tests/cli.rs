//! The `dmsc` binary against simulated cards (`--sim`), no PC/SC needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs;

use common::{demo_card, new_card, run, run_env, triple, OTHER_KEY, TEST_KEY};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

// ---- sim init ------------------------------------------------------------------

#[test]
fn sim_init_creates_refuses_existing_and_force_replaces() {
    let dir = tmp();
    let first = run(dir.path(), &["sim", "init", "card.state", "--json"]).expect(0);
    assert!(
        first.stderr.contains("well-known") && first.stderr.contains("test keys"),
        "{first:?}"
    );
    let first = first.json();
    assert_eq!(first["schema_version"], 2);
    assert_eq!(first["test_keys"], true);
    assert_eq!(first["key_version"], 0x30);
    assert_eq!(first["authority"], "admin");
    let before = fs::read(dir.path().join("card.state")).unwrap();

    let again = run(dir.path(), &["sim", "init", "card.state"]).expect(1);
    assert!(again.stderr.contains("already exists"), "{again:?}");
    assert_eq!(fs::read(dir.path().join("card.state")).unwrap(), before);

    let replaced = run(
        dir.path(),
        &["-q", "sim", "init", "card.state", "--force", "--json"],
    )
    .expect(0)
    .json();
    assert_ne!(replaced["card_id"], first["card_id"]);
    // No temporary files are left next to the card.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["card.state"]);
    let info = run(dir.path(), &["--sim", "card.state", "info", "--json"])
        .expect(0)
        .json();
    assert_eq!(info["card_id"], replaced["card_id"]);
}

#[test]
fn sim_init_rejects_bad_keys_without_showing_them() {
    let dir = tmp();
    let secret = "DEADBEEFDEADBEEFDEADBEEFDEADBEEF";
    for keys in [
        format!("{secret}:{secret}"),
        format!("{secret}:{secret}:ZZ"),
        format!("{secret}:{secret}:DEADBEEF"),
        format!("{secret}:{secret}:{secret}{}", &secret[..16]),
    ] {
        let out = run(dir.path(), &["sim", "init", "c.state", "--scp-keys", &keys]).expect(2);
        assert!(out.stderr.contains("ENC:MAC:DEK"), "{out:?}");
        assert!(!out.stderr.contains("DEADBEEF"), "key echoed: {out:?}");
        assert!(!dir.path().join("c.state").exists());
    }
    // The same through the environment and a key file.
    let out = run_env(
        dir.path(),
        &["sim", "init", "c.state"],
        &[("DMSC_SCP_KEYS", &format!("{secret}:xx:{secret}"))],
    )
    .expect(2);
    assert!(out.stderr.contains("DMSC_SCP_KEYS") && !out.stderr.contains("DEADBEEF"));
    fs::write(
        dir.path().join("k.json"),
        format!("{{\"enc\": \"{secret}\"}}"),
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["sim", "init", "c.state", "--scp-key-file", "k.json"],
    )
    .expect(2);
    assert!(!out.stderr.contains("DEADBEEF"), "{out:?}");
    let out = run(
        dir.path(),
        &["sim", "init", "c.state", "--scp-key-file", "missing"],
    )
    .expect(1);
    assert!(out.stderr.contains("missing"), "{out:?}");
    // Other bad personalisation values.
    run(dir.path(), &["sim", "init", "c.state", "--pin", "12"]).expect(2);
    run(
        dir.path(),
        &["sim", "init", "c.state", "--failure-limit", "3"],
    )
    .expect(2);
    run(
        dir.path(),
        &["sim", "init", "c.state", "--key-version", "0"],
    )
    .expect(2);
    run(
        dir.path(),
        &["sim", "init", "c.state", "--authority", "bad name"],
    )
    .expect(2);
    assert!(!dir.path().join("c.state").exists());
}

#[test]
fn sim_init_with_own_keys_then_authenticates_with_them() {
    let dir = tmp();
    let keys = triple(OTHER_KEY);
    let init = run(
        dir.path(),
        &[
            "sim",
            "init",
            "c.state",
            "--scp-keys",
            &keys,
            "--key-version",
            "0x31",
            "--authority",
            "ops",
            "--json",
        ],
    )
    .expect(0);
    assert!(!init.stderr.contains("test keys"), "{init:?}");
    assert_eq!(init.json()["key_version"], 0x31);
    // Text key file with a comment; JSON key file; key version in decimal.
    fs::write(dir.path().join("k.txt"), format!("# ops\n{keys}\n")).unwrap();
    fs::write(
        dir.path().join("k.json"),
        format!("{{\"enc\":\"{OTHER_KEY}\",\"mac\":\"{OTHER_KEY}\",\"dek\":\"{OTHER_KEY}\"}}"),
    )
    .unwrap();
    for file in ["k.txt", "k.json"] {
        let out = run(
            dir.path(),
            &[
                "--sim",
                "c.state",
                "--scp-key-file",
                file,
                "--key-version",
                "49",
                "object",
                "list",
                "authority",
            ],
        )
        .expect(0);
        assert!(out.stdout.contains("authority:49"), "{out:?}");
    }
    // The test keys do not open this card.
    let out = run(
        dir.path(),
        &["--sim", "c.state", "--scp-keys", &triple(TEST_KEY), "audit"],
    )
    .expect(4);
    assert!(
        out.stderr.contains("authority authentication failed"),
        "{out:?}"
    );
    // Every security level works.
    for level in ["cmac", "cmac-cdec", "cmac-rmac", "cmac-cdec-rmac", "all"] {
        run(
            dir.path(),
            &[
                "--sim",
                "c.state",
                "--scp-keys",
                &keys,
                "--security-level",
                level,
                "audit",
            ],
        )
        .expect(0);
    }
}

// ---- info, readers, apdu ----------------------------------------------------------

#[test]
fn info_text_and_json() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let text = run(dir.path(), &["--sim", "c.state", "info"])
        .expect(0)
        .stdout;
    for field in [
        "card ID",
        "F0444D53430001",
        "applet version  1.0",
        "generation",
        "algorithms",
        "3 tries left",
    ] {
        assert!(text.contains(field), "{field} missing: {text}");
    }
    let json = run(dir.path(), &["--sim", "c.state", "info", "--json"])
        .expect(0)
        .json();
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["aid"], "F0444D53430001");
    assert_eq!(json["applet_version"], "1.0");
    assert_eq!(json["generation"], 1);
    assert_eq!(json["card_id"].as_str().unwrap().len(), 32);
    assert_eq!(json["pin"]["tries_left"], 3);
    assert_eq!(json["puk"]["tries_left"], 10);
    assert!(json["capabilities"]["algorithms"]
        .as_array()
        .unwrap()
        .contains(&"ecdsa-p256-sha256".into()));
    // The environment variable works like --sim.
    let env = run_env(dir.path(), &["info", "--json"], &[("DMSC_SIM", "c.state")])
        .expect(0)
        .json();
    assert_eq!(env["card_id"], json["card_id"]);
    let readers = run(dir.path(), &["--sim", "c.state", "readers", "--json"])
        .expect(0)
        .json();
    assert_eq!(readers["readers"][0]["card_present"], true);
}

#[test]
fn apdu_sends_several_and_reports_sw() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    // VERIFY without data (tries left), then GET DATA of the audit log (needs an authority).
    let out = run(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "apdu",
            "00200081",
            "00 CB 3F FF 02 88 00 00",
        ],
    )
    .expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[0].starts_with("63C3"), "{out:?}");
    assert!(lines[1].starts_with("6982"), "{out:?}");
    let json = run(
        dir.path(),
        &["--sim", "c.state", "--json", "apdu", "00200081"],
    )
    .expect(0)
    .json();
    assert_eq!(json["responses"][0]["sw"], "63C3");
    // In an authority session the audit log is readable.
    let out = run(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &triple(TEST_KEY),
            "apdu",
            "--secure",
            "00CB3FFF028800",
        ],
    )
    .expect(0);
    assert!(out.stdout.trim_end().ends_with("9000 (success)"), "{out:?}");
    // Nothing is sent when one argument is bad.
    let out = run(dir.path(), &["--sim", "c.state", "apdu", "00200081", "0G"]).expect(2);
    assert!(out.stderr.contains("APDU 2"), "{out:?}");
    run(dir.path(), &["--sim", "c.state", "apdu", "00"]).expect(2);
    run(dir.path(), &["--sim", "c.state", "apdu"]).expect(2);
}

// ---- PINs --------------------------------------------------------------------------

fn tries_left(dir: &std::path::Path) -> serde_json::Value {
    run(dir, &["--sim", "c.state", "pin", "status", "--json"])
        .expect(0)
        .json()["pin"]["tries_left"]
        .clone()
}

#[test]
fn pin_verify_right_wrong_and_blocked() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let d = dir.path();
    run_env(
        d,
        &["--sim", "c.state", "pin", "verify"],
        &[("DMSC_PIN", "123456")],
    )
    .expect(0);
    fs::write(d.join("right.pin"), "123456\r\n").unwrap();
    fs::write(d.join("wrong.pin"), "999999\n").unwrap();
    run(
        d,
        &[
            "--sim",
            "c.state",
            "pin",
            "verify",
            "--pin-file",
            "right.pin",
        ],
    )
    .expect(0);

    let out = run_env(
        d,
        &["--sim", "c.state", "pin", "verify"],
        &[("DMSC_PIN", "000000")],
    )
    .expect(7);
    assert!(out.stderr.contains("wrong PIN, 2 tries left"), "{out:?}");
    assert_eq!(tries_left(d), 2);
    let out = run(
        d,
        &[
            "--sim",
            "c.state",
            "--json",
            "pin",
            "verify",
            "--pin-file",
            "wrong.pin",
        ],
    )
    .expect(7);
    assert!(out.stderr.contains("1 try left"), "{out:?}");
    let err = out.json();
    assert_eq!(err["error"]["exit_code"], 7);
    assert_eq!(err["error"]["kind"], "wrong-pin");
    // The card's status word is in the JSON error document.
    assert_eq!(err["error"]["sw"], "63C1");
    assert_eq!(tries_left(d), 1);
    let out = run(
        d,
        &[
            "--sim",
            "c.state",
            "pin",
            "verify",
            "--pin-file",
            "wrong.pin",
        ],
    )
    .expect(5);
    assert!(out.stderr.contains("blocked"), "{out:?}");
    // The message says what to do.
    assert!(out.stderr.contains("dmsc pin unblock"), "{out:?}");
    // Blocked: even the right PIN is refused, with its own code.
    run(
        d,
        &[
            "--sim",
            "c.state",
            "pin",
            "verify",
            "--pin-file",
            "right.pin",
        ],
    )
    .expect(5);
    let status = run(d, &["--sim", "c.state", "pin", "status", "--json"])
        .expect(0)
        .json();
    assert_eq!(status["pin"]["status"], "blocked");

    // Unblock with the PUK, then change the PIN.
    fs::write(d.join("puk"), "12345678\n").unwrap();
    fs::write(d.join("wrong.puk"), "87654321\n").unwrap();
    fs::write(d.join("new.pin"), "2468\n").unwrap();
    let out = run(
        d,
        &[
            "--sim",
            "c.state",
            "pin",
            "unblock",
            "--puk-file",
            "wrong.puk",
            "--new-pin-file",
            "new.pin",
        ],
    )
    .expect(7);
    assert!(out.stderr.contains("wrong PUK, 9 tries left"), "{out:?}");
    run(
        d,
        &[
            "--sim",
            "c.state",
            "pin",
            "unblock",
            "--puk-file",
            "puk",
            "--new-pin-file",
            "new.pin",
        ],
    )
    .expect(0);
    run(
        d,
        &["--sim", "c.state", "pin", "verify", "--pin-file", "new.pin"],
    )
    .expect(0);
    run_env(
        d,
        &["--sim", "c.state", "pin", "change", "--pin-file", "new.pin"],
        &[("DMSC_NEW_PIN", "13579")],
    )
    .expect(0);
    run_env(
        d,
        &["--sim", "c.state", "pin", "verify"],
        &[("DMSC_PIN", "13579")],
    )
    .expect(0);
}

#[test]
fn pins_never_come_from_the_command_line() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let d = dir.path();
    // No PIN source and no terminal: a usage error, and no try is spent.
    let out = run(d, &["--sim", "c.state", "pin", "verify"]).expect(2);
    assert!(
        out.stderr.contains("DMSC_PIN") && out.stderr.contains("--pin-file"),
        "{out:?}"
    );
    run(d, &["--sim", "c.state", "pin", "verify", "--pin", "123456"]).expect(2);
    run_env(
        d,
        &["--sim", "c.state", "pin", "verify"],
        &[("DMSC_PIN", "12")],
    )
    .expect(2);
    run(
        d,
        &[
            "--sim",
            "c.state",
            "pin",
            "verify",
            "--pin-file",
            "nonexistent",
        ],
    )
    .expect(1);
    assert_eq!(tries_left(d), 3);
    // The trace shows the VERIFY but not the PIN.
    let out = run_env(
        d,
        &["--sim", "c.state", "--trace", "pin", "verify"],
        &[("DMSC_PIN", "123456")],
    )
    .expect(0);
    assert!(
        out.stderr.contains("> 00200081 08 <redacted 8 bytes>"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("313233343536"), "{out:?}");
}

// ---- objects and the audit log ----------------------------------------------------------

#[test]
fn objects_as_device_and_as_authority() {
    let dir = tmp();
    let d = dir.path();
    demo_card(d, "c.state");
    let keys = triple(TEST_KEY);

    // The device reads what anyone may read.
    let out = run(d, &["--sim", "c.state", "object", "list", "mo"]).expect(0);
    assert!(out.stdout.contains("mo:./DMAcc/DemoServer"), "{out:?}");
    let mo = run(
        d,
        &[
            "--sim",
            "c.state",
            "--json",
            "object",
            "get",
            "mo:./DMAcc/DemoServer",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(mo["kind"], "mo");
    assert_eq!(mo["value"]["mo_type"], "urn:oma:mo:oma-dm-dmacc:1.0");
    assert!(mo["value"]["content"]["text"]
        .as_str()
        .unwrap()
        .contains("<MgmtTree"));
    run(
        d,
        &[
            "--sim",
            "c.state",
            "object",
            "get",
            "mo:./DMAcc/DemoServer",
            "--out",
            "mo.xml",
        ],
    )
    .expect(0);
    // The raw record: the compact binary form `dmsc mo put` stores.
    let raw = dmsc_host::mo::MgmtTree::from_binary(&fs::read(d.join("mo.xml")).unwrap()).unwrap();
    assert!(raw.to_tnds().contains("<NodeName>DemoServer</NodeName>"));
    let rule = run(d, &["--sim", "c.state", "object", "get", "approval-rule"]).expect(0);
    assert!(rule.stdout.contains("maintainer, owner"), "{rule:?}");
    let key = run(d, &["--sim", "c.state", "object", "get", "bootstrap-key:1"]).expect(4);
    assert!(key.stderr.contains("6982"), "{key:?}");
    // Authorities' key sets are visible to authorities only.
    let out = run(d, &["--sim", "c.state", "object", "list", "authority"]).expect(0);
    assert!(!out.stdout.contains("authority:"), "{out:?}");
    let out = run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "object",
            "list",
            "authority",
        ],
    )
    .expect(0);
    assert!(out.stdout.contains("authority:48"), "{out:?}");
    let key = run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "--json",
            "object",
            "get",
            "bootstrap-key:1",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(
        key["value"],
        serde_json::json!({"algorithm": "hmac-sha256"})
    );

    // Delete: refused without confirmation, refused to the device, done by the authority.
    let out = run(d, &["--sim", "c.state", "object", "delete", "policy"]).expect(2);
    assert!(out.stderr.contains("--yes"), "{out:?}");
    run(
        d,
        &["--sim", "c.state", "object", "delete", "policy", "--yes"],
    )
    .expect(4);
    run(d, &["--sim", "c.state", "object", "get", "policy"]).expect(0);
    run_env(
        d,
        &["--sim", "c.state", "object", "delete", "policy", "--yes"],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(0);
    run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "object",
            "get",
            "policy",
        ],
    )
    .expect(8);

    // The user may replace the demo MO but not delete it.
    let out = run_env(
        d,
        &[
            "--sim",
            "c.state",
            "object",
            "delete",
            "mo:./DMAcc/DemoServer",
            "--yes",
            "--user",
        ],
        &[("DMSC_PIN", "123456")],
    )
    .expect(4);
    assert!(out.stderr.contains("user"), "{out:?}");

    // --user needs a PIN source; it is read before the card is touched.
    run(d, &["--sim", "c.state", "object", "list", "mo", "--user"]).expect(2);
    run_env(
        d,
        &["--sim", "c.state", "object", "list", "mo", "--user"],
        &[("DMSC_PIN", "123456")],
    )
    .expect(0);
    let out = run_env(
        d,
        &["--sim", "c.state", "object", "list", "mo", "--user"],
        &[("DMSC_PIN", "000000")],
    )
    .expect(7);
    assert!(
        out.stderr.contains("simulated card"),
        "names the card: {out:?}"
    );

    // Bad references and kinds are usage errors.
    run(d, &["--sim", "c.state", "object", "get", "nonsense:1"]).expect(2);
    run(d, &["--sim", "c.state", "object", "list", "policy"]).expect(2);
}

#[test]
fn audit_log_as_an_authority() {
    let dir = tmp();
    let d = dir.path();
    demo_card(d, "c.state");
    let keys = triple(TEST_KEY);
    let out = run(d, &["--sim", "c.state", "--scp-keys", &keys, "audit"]).expect(0);
    assert!(out.stdout.contains("initialised"), "{out:?}");
    assert!(out.stdout.contains("alarm"), "{out:?}");
    let alarms = run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "--json",
            "audit",
            "--event",
            "alarm",
        ],
    )
    .expect(0)
    .json();
    let entries = alarms["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{alarms}");
    assert_eq!(entries[0]["principal"], "user");
    let from = entries[0]["sequence"].as_u64().unwrap();
    let later = run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "--json",
            "audit",
            "--from",
            &from.to_string(),
            "--principal",
            "user",
        ],
    )
    .expect(0)
    .json();
    for e in later["entries"].as_array().unwrap() {
        assert!(e["sequence"].as_u64().unwrap() >= from);
        assert_eq!(e["principal"], "user");
    }
    run(d, &["--sim", "c.state", "audit"]).expect(2);
    run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "audit",
            "--event",
            "party",
        ],
    )
    .expect(2);
    run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &triple(OTHER_KEY),
            "audit",
        ],
    )
    .expect(4);
    run(
        d,
        &[
            "--sim",
            "c.state",
            "--scp-keys",
            &keys,
            "--key-version",
            "0x31",
            "audit",
        ],
    )
    .expect(8);
}

// ---- completions, man, demo --------------------------------------------------------------

#[test]
fn completions_and_man_pages() {
    let dir = tmp();
    let d = dir.path();
    let bash = run(d, &["completions", "bash"]).expect(0).stdout;
    assert!(
        bash.contains("_dmsc()") && bash.contains("complete "),
        "{bash}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(!run(d, &["completions", shell]).expect(0).stdout.is_empty());
    }
    run(d, &["completions", "tcsh"]).expect(2);
    let man = run(d, &["man"]).expect(0).stdout;
    assert!(man.contains(".TH dmsc"), "{}", &man[..200.min(man.len())]);
    run(d, &["man", "--out", "pages"]).expect(0);
    for page in [
        "dmsc.1",
        "dmsc-info.1",
        "dmsc-sim-init.1",
        "dmsc-object-get.1",
        "dmsc-demo.1",
    ] {
        assert!(d.join("pages").join(page).exists(), "{page} missing");
    }
}

#[test]
fn demo_walks_every_use_case() {
    let dir = tmp();
    let out = run(dir.path(), &["demo"]).expect(0);
    for (n, words) in [
        (1, "SELECT"),
        (2, "PIN"),
        (3, "SCP03"),
        (4, "refresh"),
        (5, "provisioning"),
        (6, "Over the air"),
        (7, "bootstrap"),
        (8, "Smartcard bootstrap"),
        (9, "Firmware approval"),
        (10, "Enterprise policy"),
        (11, "Access control"),
        (12, "Access governance"),
        (13, "audit"),
    ] {
        let heading = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{n}. ")))
            .unwrap_or_else(|| panic!("step {n} missing: {}", out.stdout));
        assert!(heading.contains(words), "{heading}");
    }
    for result in [
        "2 tries left",
        "approval of owner missing",
        "below the anti-rollback floor",
        "SW 6982",
        "4 consecutive authorisation failures",
        "added ./DMAcc ./LwM2M",
        "checks passed",
    ] {
        assert!(
            out.stdout.contains(result),
            "{result} missing: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("FAILED"));
    let json = run(dir.path(), &["demo", "--json"]).expect(0).json();
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["ok"], true);
    assert_eq!(json["failed"], 0);
    assert_eq!(json["kept"], false);
    assert_eq!(json["steps"].as_array().unwrap().len(), 13);
    assert!(!std::path::Path::new(json["card"].as_str().unwrap()).exists());
    // --keep leaves the temporary card, which the other commands can use.
    let kept = run(dir.path(), &["demo", "--keep", "--json"])
        .expect(0)
        .json();
    let card = kept["card"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&card).exists());
    run(
        dir.path(),
        &["--sim", &card, "object", "get", "floor:gateway"],
    )
    .expect(0);
    fs::remove_dir_all(std::path::Path::new(&card).parent().unwrap()).unwrap();
    // An existing --sim file is refused, DMSC_SIM is ignored.
    new_card(dir.path(), "c.state");
    run(dir.path(), &["demo", "--sim", "c.state"]).expect(1);
    run_env(dir.path(), &["demo", "-q"], &[("DMSC_SIM", "c.state")]).expect(0);
}

// ---- errors and exit codes ---------------------------------------------------------------

#[test]
fn exit_codes_for_bad_input_and_missing_cards() {
    let dir = tmp();
    let d = dir.path();
    run(d, &["--no-such-option"]).expect(2);
    run(d, &["info", "extra"]).expect(2);
    run(d, &["--help"]).expect(0);
    let out = run(d, &["--sim", "missing.state", "info"]).expect(1);
    assert!(out.stderr.contains("missing.state"), "{out:?}");
    assert!(
        !d.join("missing.state.lock").exists(),
        "a mistyped path leaves no lock file"
    );
    fs::write(d.join("corrupt.state"), b"DMSCCARD\x01\x00garbage").unwrap();
    let out = run(d, &["--sim", "corrupt.state", "info"]).expect(1);
    assert!(out.stderr.contains("corrupt"), "{out:?}");
    assert!(
        !d.join("corrupt.state.lock").exists(),
        "a corrupt state leaves no lock file"
    );
    run(d, &["--sim", "x.state", "--reader", "r", "info"]).expect(2);
    // Without a reachable PC/SC service (or without PC/SC support): code 3.
    let out = run_env(
        d,
        &["readers"],
        &[(
            "PCSCLITE_CSOCK_NAME",
            d.join("no-pcscd.sock").to_str().unwrap(),
        )],
    )
    .expect(3);
    assert!(out.stderr.contains("PC/SC"), "{out:?}");
    // Key versions and security levels are checked by the parser.
    run(d, &["--key-version", "0x1FF", "info"]).expect(2);
    run(d, &["--security-level", "none", "info"]).expect(2);
}

/// A reader that closes standard output early (`dmsc … | head -c 16`) ends
/// the command quietly: no panic, no message, exit status 141 (as after
/// SIGPIPE). The outputs are larger than a pipe's buffer, so the write after
/// the close is certain.
#[test]
fn closed_stdout_ends_the_command_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    for args in [&["completions", "bash"][..], &["completions", "zsh"]] {
        let mut child = common::dmsc(dir.path())
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        // The read end is closed here; the child's next writes fail.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
    }
}

/// -vv prints more than -v: every APDU (redacted) in the debug log.
#[test]
fn more_v_prints_more() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let stderr = |v: &str| {
        let out = common::dmsc(dir.path())
            .args(["--sim", "c.state", v, "pin", "status"])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let one = stderr("-v");
    let two = stderr("-vv");
    assert!(two.len() > one.len(), "-v: {one:?}\n-vv: {two:?}");
    assert!(two.contains("00A40400"), "{two}");
    assert!(!one.contains("00A40400"), "{one}");
}

/// A JSON error document carries the card's status word when a card refused,
/// and null otherwise.
#[test]
fn json_errors_carry_the_status_word() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let out = run(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "--json",
            "acl",
            "set",
            "identity-key",
            "Get=*&Replace=admin",
            "--yes",
        ],
    )
    .expect(4);
    assert_eq!(out.json()["error"]["sw"], "6982", "{out:?}");
    let out = run(dir.path(), &["--sim", "nothing.state", "--json", "info"]);
    assert_ne!(out.code, 0);
    assert!(out.json()["error"]["sw"].is_null(), "{out:?}");
}

/// The global options are listed once, in `dmsc --help`; a subcommand's help
/// points there instead of repeating them (they are still accepted there).
#[test]
fn global_options_are_shown_once() {
    let dir = tmp();
    let top = run(dir.path(), &["--help"]).expect(0);
    assert!(top.stdout.contains("--scp-key-file"), "{top:?}");
    let sub = run(dir.path(), &["pin", "verify", "--help"]).expect(0);
    assert!(!sub.stdout.contains("--scp-key-file <"), "{sub:?}");
    assert!(sub.stdout.contains("see `dmsc --help`"), "{sub:?}");
    assert!(sub.stdout.lines().count() < 20, "{sub:?}");
    // Still accepted after the subcommand.
    new_card(dir.path(), "c.state");
    let out = run(dir.path(), &["pin", "status", "--sim", "c.state", "--json"]).expect(0);
    assert_eq!(out.json()["pin"]["status"], "not-verified");
}

/// `object get` and `acl get` take the same object syntax (`./URI` or
/// `mo:./URI`), and an MO stored in its binary form is shown as TNDS text.
#[test]
fn object_get_takes_the_acl_syntax_and_shows_mo_text() {
    let dir = tmp();
    let d = dir.path();
    new_card(d, "c.state");
    let tnds = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-vectors/tnds/dmacc.xml")
        .display()
        .to_string();
    let keys = triple(TEST_KEY);
    run_env(
        d,
        &["--sim", "c.state", "mo", "put", &tnds],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(0);
    let uri = run(d, &["--sim", "c.state", "--json", "mo", "list"])
        .expect(0)
        .json()["mos"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let short = run(d, &["--sim", "c.state", "object", "get", &uri]).expect(0);
    let long = run(
        d,
        &["--sim", "c.state", "object", "get", &format!("mo:{uri}")],
    )
    .expect(0);
    assert_eq!(short.stdout, long.stdout);
    assert!(short.stdout.contains("<MgmtTree"), "{short:?}");
    run(d, &["--sim", "c.state", "acl", "get", &uri]).expect(0);
    run(d, &["--sim", "c.state", "acl", "get", &format!("mo:{uri}")]).expect(0);
    let json = run(d, &["--sim", "c.state", "--json", "object", "get", &uri])
        .expect(0)
        .json();
    assert!(json["value"]["content"]["text"]
        .as_str()
        .unwrap_or("")
        .contains("<MgmtTree"));
}

/// One SCP key (gp style: ENC = MAC = DEK) is accepted; the test keys given
/// explicitly, in either form, keep the test-key warning.
#[test]
fn one_scp_key_and_explicit_test_keys_keep_the_warning() {
    let dir = tmp();
    let d = dir.path();
    for (file, keys) in [
        ("a.state", TEST_KEY.to_string()),
        ("b.state", triple(TEST_KEY)),
    ] {
        let out = run(d, &["sim", "init", file, "--scp-keys", &keys, "--json"]).expect(0);
        assert!(
            out.stderr.contains("warning") && out.stderr.contains("test keys"),
            "{out:?}"
        );
        assert_eq!(out.json()["test_keys"], true);
    }
    // -q silences the warning.
    let quiet = run(d, &["sim", "init", "q.state", "-q"]).expect(0);
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
    // Another single key: no warning, and it authenticates.
    let out = run(d, &["sim", "init", "c.state", "--scp-keys", OTHER_KEY]).expect(0);
    assert!(!out.stderr.contains("warning"), "{out:?}");
    run_env(
        d,
        &["--sim", "c.state", "authority", "list"],
        &[("DMSC_SCP_KEYS", OTHER_KEY)],
    )
    .expect(0);
}

/// Deleting the audit log is refused with 6982 (nobody holds Delete on it:
/// rights are checked first), the card and the identity key with 6985, as
/// docs/cli.md says.
#[test]
fn undeletable_objects_answer_as_documented() {
    let dir = tmp();
    let d = dir.path();
    new_card(d, "c.state");
    let keys = triple(TEST_KEY);
    let del = |object: &str| {
        run_env(
            d,
            &["--sim", "c.state", "object", "delete", object, "--yes"],
            &[("DMSC_SCP_KEYS", &keys)],
        )
        .expect(4)
        .stderr
    };
    assert!(del("audit-log").contains("6982"));
    assert!(del("card").contains("6985"));
    assert!(del("identity-key").contains("6985"));
    let docs =
        fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md"))
            .unwrap();
    assert!(docs.contains("audit log's ACL (`Get=admin`) gives nobody Delete"));
}

/// Key versions: one notation. Printed `0x30`; `0x30` and decimal `48` accepted;
/// a bare `30` refused with a hint; JSON numbers with one field name.
#[test]
fn key_versions_have_one_notation() {
    let dir = tmp();
    let d = dir.path();
    let init = run(d, &["sim", "init", "c.state"]).expect(0);
    assert!(init.stdout.contains("key version 0x30"), "{init:?}");
    let keys = triple(TEST_KEY);
    let env = [("DMSC_SCP_KEYS", keys.as_str())];
    for ok in ["0x30", "48"] {
        run_env(
            d,
            &["--sim", "c.state", "--key-version", ok, "authority", "list"],
            &env,
        )
        .expect(0);
    }
    let bare = run_env(
        d,
        &[
            "--sim",
            "c.state",
            "--key-version",
            "30",
            "authority",
            "list",
        ],
        &env,
    )
    .expect(2);
    assert!(
        bare.stderr.contains("ambiguous") && bare.stderr.contains("0x30"),
        "{bare:?}"
    );
    let list = run_env(d, &["--sim", "c.state", "authority", "list"], &env).expect(0);
    assert!(list.stdout.contains("0x30 "), "{list:?}");
    let json = run_env(
        d,
        &["--sim", "c.state", "--json", "authority", "list"],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(json["authorities"][0]["key_version"], 48);
    let info = run(d, &["--sim", "c.state", "--json", "info"])
        .expect(0)
        .json();
    let ota = run(d, &["--sim", "c.state", "ota", "request"])
        .expect(0)
        .json();
    assert_eq!(info["capabilities"]["scp_i"], ota["scp_i"]);
    assert!(info["capabilities"]["scp_i"].is_number());
    assert!(info["capabilities"].get("scp03_i").is_none());
    let text = run(d, &["--sim", "c.state", "info"]).expect(0);
    assert!(text.stdout.contains("i=0x70"), "{text:?}");
}
