//! `dmsc policy …` end to end: openssl keys, a simulated card, a device folder.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs;
use std::path::Path;

use common::{new_card, triple, Out, TEST_KEY};
use dmsc_test_support::openssl;

/// The instant every command of these tests runs at (`DMSC_NOW`): Monday
/// 2026-11-23, 10:00 in Paris, inside the policy's working hours. Nothing
/// here reads the wall clock, so the outcome is the same at any hour.
const MONDAY_10_PARIS: &str = "2026-11-23T09:00:00Z";

/// Runs `dmsc ARGS` at [`MONDAY_10_PARIS`].
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut env = env.to_vec();
    env.push(("DMSC_NOW", MONDAY_10_PARIS));
    common::run_env(dir, args, &env)
}

/// Runs `dmsc ARGS` at [`MONDAY_10_PARIS`].
fn run(dir: &Path, args: &[&str]) -> Out {
    run_env(dir, args, &[])
}

/// The policy of these tests: the one sample.
const POLICY: &str = dmsc_test_support::SAMPLE_POLICY;

/// A card with the policy put by the authority, signed with an openssl PKCS#8 key.
fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let card = new_card(dir.path(), "card.state").display().to_string();
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ent.pem",
        ],
    );
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "other.pem",
        ],
    );
    fs::write(dir.path().join("acme.toml"), POLICY).unwrap();
    let keys = triple(TEST_KEY);
    let out = run_env(
        dir.path(),
        &[
            "--sim",
            &card,
            "--json",
            "policy",
            "put",
            "acme.toml",
            "--sign-key",
            "ent.pem",
        ],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(0);
    assert_eq!(out.json()["key_written"], true);
    (dir, card)
}

#[test]
fn put_show_eval_timeline() {
    let (dir, card) = setup();
    let d = dir.path();
    let show = run(d, &["--sim", &card, "--json", "policy", "show"])
        .expect(0)
        .json();
    assert_eq!(show["schema_version"], 2);
    assert_eq!(show["name"], "ACME");
    assert_eq!(
        show["verified"]["policy_acl"],
        "Delete=admin&Get=*+admin&Replace=admin"
    );

    // Monday 2026-11-23 09:00 in Paris, inside the lab polygon (on its edge).
    let eval = run(
        d,
        &[
            "--sim",
            &card,
            "--json",
            "policy",
            "eval",
            "--at",
            "2026-11-23T09:00",
            "--location",
            "48.70,2.18",
        ],
    )
    .expect(0)
    .json();
    let states: Vec<(String, String)> = eval["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["resource"].as_str().unwrap().to_string(),
                d["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("bluetooth", "disabled"),
            ("camera", "disabled"),
            ("torch", "disabled"),
            ("usb", "disabled")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(eval["next_change"], "2026-11-23T17:00:00Z");
    let next = run(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "next-change",
            "--at",
            "2026-11-27T18:30",
        ],
    )
    .expect(0);
    assert!(
        next.stdout
            .contains("next change 2026-11-30T08:00:00+01:00"),
        "{next:?}"
    );

    let grid = run(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "timeline",
            "--from",
            "2026-11-23",
            "--days",
            "7",
        ],
    )
    .expect(0);
    let lines: Vec<&str> = grid.stdout.lines().collect();
    assert!(
        lines[3].starts_with("Mon 2026-11-23 00    03"),
        "{}",
        grid.stdout
    );
    let camera = lines.iter().find(|l| l.starts_with("camera")).unwrap();
    assert!(
        camera.ends_with(&format!(
            "{}{}{}",
            "·".repeat(16),
            "█".repeat(20),
            "·".repeat(12)
        )),
        "{camera}"
    );
    assert_eq!(grid.stdout.matches("\nSat 2026-11-28").count(), 1);
}

#[test]
fn bad_policy_is_refused_with_position_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let card = new_card(d, "card.state").display().to_string();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ent.pem",
        ],
    );
    fs::write(
        d.join("bad.toml"),
        POLICY.replace("\"usb\"", "\"flashlight\""),
    )
    .unwrap();
    let keys = triple(TEST_KEY);
    let out = run_env(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "put",
            "bad.toml",
            "--sign-key",
            "ent.pem",
        ],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(2);
    assert!(
        out.stderr.contains(
            "bad.toml: line 16, column 24 (rule work-hours): unknown resource 'flashlight'"
        ),
        "{out:?}"
    );
    // Nothing on the card: the device finds no policy.
    run(d, &["--sim", &card, "policy", "enforce", "--device", "dev"]).expect(8);
    assert!(!d.join("dev/policy/resources.json").exists());
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("dev/policy/report.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "refused");
}

#[test]
fn enforce_commands_and_watch() {
    let (dir, card) = setup();
    let d = dir.path();
    let out = run(
        d,
        &[
            "--sim",
            &card,
            "--json",
            "policy",
            "enforce",
            "--device",
            "dev",
            "--at",
            "2026-11-23T09:00",
        ],
    )
    .expect(0);
    assert_eq!(out.json()["status"], "applied");
    let res: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("dev/policy/resources.json")).unwrap()).unwrap();
    assert_eq!(res["resources"]["camera"], "disabled");

    // A command signed by another key is refused (exit 6); by the enterprise key accepted.
    run(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "command",
            "enable",
            "camera",
            "--sign-key",
            "other.pem",
            "--out",
            "rogue.json",
        ],
    )
    .expect(0);
    run(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "accept",
            "rogue.json",
            "--device",
            "dev",
        ],
    )
    .expect(6);
    run(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "command",
            "disable",
            "camera",
            "--sign-key",
            "ent.pem",
            "--until",
            "+3s",
            "--counter",
            "10",
            "--out",
            "c10.json",
        ],
    )
    .expect(0);
    let out = run(
        d,
        &[
            "--sim", &card, "--json", "policy", "accept", "c10.json", "--device", "dev",
        ],
    )
    .expect(0);
    assert_eq!(out.json()["applied"][1]["decided_by"]["by"], "command");
    // Replay: refused (exit 4).
    let out = run(
        d,
        &[
            "--sim", &card, "policy", "accept", "c10.json", "--device", "dev",
        ],
    )
    .expect(4);
    assert!(out.stderr.contains("replay"), "{out:?}");

    // --watch applies now (the command in force), then again when it expires.
    let out = run(
        d,
        &[
            "--sim",
            &card,
            "--json",
            "policy",
            "enforce",
            "--device",
            "dev",
            "--watch",
            "--poll",
            "1",
            "--max-runs",
            "2",
        ],
    )
    .expect(0);
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    // The command expires 3 s after the chosen instant, while the
    // work-hours rule disables the camera too: the state stays, what decides
    // it changes, and the watch re-applies then (not at 18:00).
    assert_eq!(docs.len(), 2, "{out:?}");
    assert_eq!(docs[0]["applied"][1]["resource"], "camera");
    assert_eq!(docs[0]["applied"][1]["decided_by"]["by"], "command");
    assert_eq!(docs[0]["next_reevaluation"], "2026-11-23T09:00:03Z");
    assert_eq!(docs[0]["next_change"], "2026-11-23T17:00:00Z");
    assert_eq!(docs[1]["applied"][1]["state"], "disabled");
    assert_eq!(docs[1]["applied"][1]["decided_by"]["by"], "rule");
    assert_eq!(docs[1]["applied"][1]["decided_by"]["id"], "work-hours");

    // The authority replaces the policy (as an over-the-air update would):
    // the next enforce applies it, and the commands for the old one are dropped.
    fs::write(
        d.join("v2.toml"),
        POLICY.replace("\"camera\", \"usb\"", "\"usb\""),
    )
    .unwrap();
    let keys = triple(TEST_KEY);
    run_env(
        d,
        &[
            "--sim",
            &card,
            "policy",
            "put",
            "v2.toml",
            "--sign-key",
            "ent.pem",
        ],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(0);
    let out = run(
        d,
        &[
            "--sim",
            &card,
            "--json",
            "policy",
            "enforce",
            "--device",
            "dev",
            "--at",
            "2026-11-23T09:00",
        ],
    )
    .expect(0);
    let report = out.json();
    let names: Vec<&str> = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["resource"].as_str().unwrap())
        .collect();
    // The camera is no longer managed: it is no longer listed.
    assert_eq!(names, ["bluetooth", "torch", "usb"]);
    assert_eq!(report["applied"][2]["decided_by"]["id"], "work-hours");
    let res: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("dev/policy/resources.json")).unwrap()).unwrap();
    assert!(res["resources"].get("camera").is_none());

    // The policy is replaced by someone who keeps the old signature: refused, nothing applied.
    let before = fs::read(d.join("dev/policy/resources.json")).unwrap();
    let envelope = run(
        d,
        &[
            "--sim", &card, "object", "get", "policy", "--out", "env.bin",
        ],
    );
    envelope.expect(0);
    let env = fs::read(d.join("env.bin")).unwrap();
    let forged: Vec<u8> = String::from_utf8(env)
        .unwrap()
        .replace("\"disable\"", "\"enable\"")
        .into_bytes();
    assert!(forged.len() > 100);
    // Write it back as the authority with a raw PUT DATA.
    let mut data = vec![0x82, 0x00, 0x53];
    let len = forged.len();
    data.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    data.extend_from_slice(&forged);
    let apdu = format!("00DB3FFF00{:04X}{}", data.len(), hex::encode_upper(&data));
    let put = run_env(
        d,
        &["--sim", &card, "apdu", "--secure", &apdu],
        &[("DMSC_SCP_KEYS", &keys)],
    )
    .expect(0);
    assert!(put.stdout.contains("9000"), "{put:?}");
    let out = run(d, &["--sim", &card, "policy", "enforce", "--device", "dev"]).expect(6);
    assert!(out.stderr.contains("does not verify"), "{out:?}");
    assert_eq!(
        fs::read(d.join("dev/policy/resources.json")).unwrap(),
        before
    );
}

/// Granting the user Replace on the policy warns specifically: devices refuse
/// a policy the user can replace.
#[test]
fn acl_set_warns_when_the_user_gets_replace_on_the_policy() {
    let (dir, card) = setup();
    let keys = triple(TEST_KEY);
    let out = run_env(
        dir.path(),
        &[
            "--sim",
            &card,
            "acl",
            "set",
            "policy",
            "Get=*&Replace=admin+user",
            "--yes",
        ],
        &[("DMSC_SCP_KEYS", &keys)],
    );
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("devices refuse a policy"),
        "{out:?}"
    );
}

/// `policy eval` and `policy enforce` both show the policy zone's local time
/// with its offset.
#[test]
fn eval_and_enforce_show_the_same_local_time() {
    let (dir, card) = setup();
    let d = dir.path();
    let at = ["--at", "2026-11-23T09:00"];
    let mut eval = vec!["--sim", card.as_str(), "policy", "eval"];
    eval.extend(at);
    let eval = run(d, &eval).expect(0);
    let mut enforce = vec![
        "--sim",
        card.as_str(),
        "policy",
        "enforce",
        "--device",
        "dev",
    ];
    enforce.extend(at);
    let enforce = run(d, &enforce).expect(0);
    let local = "2026-11-23T09:00:00+01:00[Europe/Paris]";
    assert!(eval.stdout.contains(local), "{eval:?}");
    assert!(enforce.stdout.contains(local), "{enforce:?}");
}
