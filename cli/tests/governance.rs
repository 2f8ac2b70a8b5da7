//! `dmsc acl`, `authority`, `failure-limit`, `audit` filters and `fleet` against
//! simulated cards (`--sim`, `--sim-dir`), no PC/SC needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs;

use common::{new_card, run, run_env, triple, TEST_KEY};

const NEW_KEYS: &str = "11111111111111111111111111111111:22222222222222222222222222222222:33333333333333333333333333333333";

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn admin() -> (&'static str, String) {
    ("DMSC_SCP_KEYS", triple(TEST_KEY))
}

#[test]
fn acl_get_and_set_need_replace_and_confirmation_to_take_rights_away() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let (k, v) = admin();
    let env = [(k, v.as_str())];
    let get = run_env(
        dir.path(),
        &["--sim", "c.state", "acl", "get", "identity-key", "--json"],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(get["acl"], "Delete=admin&Exec=*&Get=*+admin&Replace=admin");
    // Adding a holder needs no confirmation.
    let set = run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Delete=admin&Exec=*&Get=*+admin&Replace=ServerB+admin",
            "--json",
        ],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(set["changed"], true);
    assert_eq!(
        set["before"],
        "Delete=admin&Exec=*&Get=*+admin&Replace=admin"
    );
    // Taking Exec away from * without --yes (stdin is not a terminal): refused, unchanged.
    let refused = run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Get=*+admin&Replace=admin",
        ],
        &env,
    )
    .expect(2);
    assert!(
        refused.stderr.contains("Exec=*") && refused.stderr.contains("--yes"),
        "{refused:?}"
    );
    let still = run_env(
        dir.path(),
        &["--sim", "c.state", "acl", "get", "identity-key", "--json"],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(
        still["acl"],
        "Delete=admin&Exec=*&Get=*+admin&Replace=ServerB+admin"
    );
    // A malformed ACL names the offset; nothing is sent.
    let bad = run_env(
        dir.path(),
        &["--sim", "c.state", "acl", "set", "policy", "Get=*&Fly=x"],
        &env,
    )
    .expect(2);
    assert!(
        bad.stderr.contains("offset") || bad.stderr.contains("at "),
        "{bad:?}"
    );
    // The device has no Replace on the identity key: the card refuses (exit 4).
    let device = run(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Get=*&Replace=admin",
            "--yes",
        ],
    )
    .expect(4);
    assert!(device.stderr.contains("6982"), "{device:?}");
}

/// `acl set OBJ 'Get=*' --yes` would leave no authority able to change the ACL
/// again: refused unless --allow-lockout (the policy warning: tests/policy.rs).
#[test]
fn acl_set_refuses_a_lockout() {
    let dir = tmp();
    let d = dir.path();
    new_card(d, "c.state");
    let (k, v) = admin();
    let env = [(k, v.as_str())];
    let acl = |object: &str| {
        run_env(
            d,
            &["--sim", "c.state", "acl", "get", object, "--json"],
            &env,
        )
        .expect(0)
        .json()["acl"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = acl("identity-key");
    let out = run_env(
        d,
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Get=*",
            "--yes",
        ],
        &env,
    )
    .expect(2);
    assert!(
        out.stderr.contains("--allow-lockout") && out.stderr.contains("no authority"),
        "{out:?}"
    );
    assert_eq!(acl("identity-key"), before, "nothing changed");
    // Replace for the user only is a lockout of the authorities too.
    run_env(
        d,
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Get=*&Replace=user",
            "--yes",
        ],
        &env,
    )
    .expect(2);
    // With --allow-lockout it is done.
    run_env(
        d,
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Get=*",
            "--yes",
            "--allow-lockout",
        ],
        &env,
    )
    .expect(0);
    assert_eq!(acl("identity-key"), "Get=*");
}

/// A declined confirmation exits 9, like the other declines.
#[test]
fn a_declined_confirmation_exits_9() {
    let dir = tmp();
    let d = dir.path();
    new_card(d, "c.state");
    let bin = env!("CARGO_BIN_EXE_dmsc");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'n\\n' | script -qec \"'{bin}' --sim c.state acl set identity-key \
             'Get=*+admin&Replace=admin'\" /dev/null"
        ))
        .current_dir(d)
        .env("DMSC_SCP_KEYS", triple(TEST_KEY))
        .env_remove("DMSC_SIM")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cancelled"), "{text}");
    assert_eq!(out.status.code(), Some(9), "{text}");
}

#[test]
fn authorities_add_rotate_remove_and_the_last_one_stays() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let (k, v) = admin();
    let env = [(k, v.as_str()), ("DMSC_NEW_SCP_KEYS", NEW_KEYS)];
    let added = run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "authority",
            "add",
            "ops",
            "--new-key-version",
            "0x40",
            "--json",
        ],
        &env,
    )
    .expect(0);
    assert!(
        !added.stdout.contains("1111") && !added.stderr.contains("1111"),
        "keys never printed"
    );
    let added = added.json();
    assert_eq!(added["key_version"], 0x40);
    assert_eq!(added["key_check_values"].as_array().unwrap().len(), 3);
    let list = run_env(
        dir.path(),
        &["--sim", "c.state", "authority", "list", "--json"],
        &env,
    )
    .expect(0)
    .json();
    let names: Vec<&str> = list["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ops"]);
    // ops rotates its own keys to key version 41.
    let ops_env = [
        ("DMSC_SCP_KEYS", NEW_KEYS),
        ("DMSC_NEW_SCP_KEYS", "44444444444444444444444444444444:55555555555555555555555555555555:66666666666666666666666666666666"),
    ];
    run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "--key-version",
            "0x40",
            "authority",
            "rotate",
            "0x40",
            "--new-key-version",
            "0x41",
        ],
        &ops_env,
    )
    .expect(0);
    // Removing needs --yes off a terminal; admin removes ops…
    run_env(
        dir.path(),
        &["--sim", "c.state", "authority", "remove", "0x41"],
        &env,
    )
    .expect(2);
    run_env(
        dir.path(),
        &["--sim", "c.state", "authority", "remove", "0x41", "--yes"],
        &env,
    )
    .expect(0);
    // …but never the last key set.
    let last = run_env(
        dir.path(),
        &["--sim", "c.state", "authority", "remove", "0x30", "--yes"],
        &env,
    )
    .expect(4);
    assert!(last.stderr.contains("6985"), "{last:?}");
    // Missing new keys: a usage error before the card is touched.
    let none = run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "authority",
            "add",
            "x",
            "--new-key-version",
            "0x42",
        ],
        &[(k, v.as_str())],
    )
    .expect(2);
    assert!(none.stderr.contains("new keys"), "{none:?}");
    // The audit log shows the events, filtered by event.
    let audit = run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "audit",
            "--event",
            "authority-removed",
            "--json",
        ],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn failure_limit_is_configurable_and_alarms_show_in_the_audit() {
    let dir = tmp();
    new_card(dir.path(), "c.state");
    let (k, v) = admin();
    let env = [(k, v.as_str())];
    run_env(
        dir.path(),
        &["--sim", "c.state", "failure-limit", "3"],
        &env,
    )
    .expect(2);
    let set = run_env(
        dir.path(),
        &["--sim", "c.state", "failure-limit", "5", "--json"],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(set["failure_limit"], 5);
    // The device probes the audit log five times: one alarm against `*`.
    for _ in 0..5 {
        run(
            dir.path(),
            &["--sim", "c.state", "object", "get", "audit-log"],
        )
        .expect(4);
    }
    let alarms = run_env(
        dir.path(),
        &[
            "--sim",
            "c.state",
            "audit",
            "--event",
            "alarm",
            "--principal",
            "*",
            "--json",
        ],
        &env,
    )
    .expect(0)
    .json();
    let entries = alarms["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{alarms}");
    assert_eq!(entries[0]["detail"], "5 consecutive authorisation failures");
}

#[test]
fn fleet_lists_and_grants_all_or_nothing() {
    let dir = tmp();
    fs::create_dir(dir.path().join("fleet")).unwrap();
    for i in 0..3 {
        new_card(dir.path(), &format!("fleet/c{i}.state"));
    }
    let list = run(
        dir.path(),
        &["fleet", "list", "--sim-dir", "fleet", "--json"],
    )
    .expect(0)
    .json();
    let cards = list["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 3);
    let ids: Vec<String> = cards
        .iter()
        .map(|c| c["card_id"].as_str().unwrap().to_string())
        .collect();
    let (k, v) = admin();
    let env = [(k, v.as_str())];
    // Card 1's ACL stops admin holding Replace on the identity key: the grant is refused
    // everywhere and card 1 is reported.
    run_env(
        dir.path(),
        &[
            "--sim",
            "fleet/c1.state",
            "acl",
            "set",
            "identity-key",
            "Delete=admin&Exec=*&Get=*+admin&Replace=ServerC",
            "--yes",
        ],
        &env,
    )
    .expect(0);
    let grant = [
        "fleet",
        "acl-grant",
        "--sim-dir",
        "fleet",
        "--cards",
        "all",
        "--object",
        "identity-key",
        "--right",
        "Replace",
        "--to",
        "ServerB",
        "--as",
        "admin",
        "--json",
    ];
    let refused = run_env(dir.path(), &grant, &env).expect(4).json();
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["failed_card_ids"], serde_json::json!([ids[1]]));
    assert_eq!(refused["failed"][0]["phase"], "check");
    // Nothing changed on the other cards:
    for i in [0, 2] {
        let acl = run_env(
            dir.path(),
            &[
                "--sim",
                &format!("fleet/c{i}.state"),
                "acl",
                "get",
                "identity-key",
                "--json",
            ],
            &env,
        )
        .expect(0)
        .json();
        assert_eq!(acl["acl"], "Delete=admin&Exec=*&Get=*+admin&Replace=admin");
    }
    // Only cards 0 and 2: applied.
    let two = format!("{},{}", ids[0], ids[2].to_lowercase());
    let mut args = grant.to_vec();
    args[5] = &two;
    let applied = run_env(dir.path(), &args, &env).expect(0).json();
    assert_eq!(applied["outcome"], "applied");
    assert_eq!(applied["cards"].as_array().unwrap().len(), 2);
    assert_eq!(
        applied["cards"][0]["after"],
        "Delete=admin&Exec=*&Get=*+admin&Replace=ServerB+admin"
    );
    // An unknown card ID: nothing is done.
    args[5] = "00000000000000000000000000000000";
    run_env(dir.path(), &args, &env).expect(8);
    args[5] = "nothex";
    run_env(dir.path(), &args, &env).expect(2);
}

#[test]
fn fleet_provision_writes_the_profile_on_every_card() {
    let dir = tmp();
    fs::create_dir(dir.path().join("fleet")).unwrap();
    for i in 0..3 {
        new_card(dir.path(), &format!("fleet/c{i}.state"));
    }
    let prof = dir.path().join("prof");
    fs::create_dir(&prof).unwrap();
    fs::write(prof.join("dmacc.xml"), "<MgmtTree/>").unwrap();
    fs::write(prof.join("policy.bin"), "camera off").unwrap();
    fs::write(
        prof.join("profile.json"),
        r#"{"objects": [{"ref": "./DMAcc/Gw", "mo_type": "urn:oma:mo:oma-dm-dmacc:1.0", "file": "dmacc.xml", "acl": "Get=*&Replace=admin"}, {"ref": "policy", "file": "policy.bin"}], "failure_limit": 6}"#,
    )
    .unwrap();
    let (k, v) = admin();
    let env = [(k, v.as_str())];
    let out = run_env(
        dir.path(),
        &[
            "fleet",
            "provision",
            "--profile",
            "prof",
            "--cards",
            "all",
            "--sim-dir",
            "fleet",
            "--json",
        ],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(out["failed"], 0);
    assert_eq!(out["cards"].as_array().unwrap().len(), 3);
    assert!(out["cards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["written"] == 3));
    let acl = run_env(
        dir.path(),
        &[
            "--sim",
            "fleet/c2.state",
            "acl",
            "get",
            "./DMAcc/Gw",
            "--json",
        ],
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(acl["acl"], "Get=*&Replace=admin");
    // A profile naming a missing file: a usage error naming it, before any card is touched.
    fs::write(
        prof.join("profile.json"),
        r#"{"objects": [{"ref": "policy", "file": "missing.bin"}]}"#,
    )
    .unwrap();
    let bad = run_env(
        dir.path(),
        &[
            "fleet",
            "provision",
            "--profile",
            "prof",
            "--cards",
            "all",
            "--sim-dir",
            "fleet",
        ],
        &env,
    )
    .expect(2);
    assert!(
        bad.stderr.contains("missing.bin") && bad.stderr.contains("objects[0]"),
        "{bad:?}"
    );
}

/// `audit --event` accepts the authority events, and finds them.
#[test]
fn audit_filters_on_authority_events() {
    let dir = tmp();
    let d = dir.path();
    new_card(d, "c.state");
    let (k, v) = admin();
    let env = [(k, v.as_str()), ("DMSC_NEW_SCP_KEYS", NEW_KEYS)];
    let sim = ["--sim", "c.state"];
    let mut add = sim.to_vec();
    add.extend(["authority", "add", "ops", "--new-key-version", "0x40"]);
    run_env(d, &add, &env).expect(0);
    let mut remove = sim.to_vec();
    remove.extend(["authority", "remove", "0x40", "--yes"]);
    run_env(d, &remove, &env).expect(0);
    for (event, expected) in [
        ("authority-added", 1),
        ("authority-rotated", 0),
        ("authority-removed", 1),
    ] {
        let mut args = sim.to_vec();
        args.extend(["--json", "audit", "--event", event]);
        let out = run_env(d, &args, &env).expect(0);
        let n = out
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("\"{event}\"")))
            .count();
        assert_eq!(n, expected, "{event}: {out:?}");
    }
}

/// The card keeps object ACLs in one canonical form; `acl set` says so when
/// the text given differs, and the docs say the same.
#[test]
fn acl_set_says_when_the_acl_is_stored_in_canonical_form() {
    let dir = tmp();
    let d = dir.path();
    new_card(d, "c.state");
    let (k, v) = admin();
    let env = [(k, v.as_str())];
    let out = run_env(
        d,
        &[
            "--sim",
            "c.state",
            "acl",
            "set",
            "identity-key",
            "Replace=admin+user&Get=*+admin&Exec=*&Delete=admin",
        ],
        &env,
    )
    .expect(0);
    assert!(
        out.stderr.contains("canonical")
            && out
                .stderr
                .contains("'Delete=admin&Exec=*&Get=*+admin&Replace=user+admin'"),
        "{out:?}"
    );
    let docs = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/provisioning.md"),
    )
    .unwrap();
    assert!(docs.contains("one canonical form"));
}
