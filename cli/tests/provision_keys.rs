//! `dmsc fleet provision --job` with master keys and the cards' transport
//! keys (docs/fleet.md, docs/key-diversification.md): every card gets its own
//! authority keys while it is provisioned, the records carry their key
//! version and KCVs (never keys), the master keys alone reach every card
//! afterwards and the transport keys no longer do.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs;

use common::*;
use dmsc_host::fleet::diversify::derive_card_keys;

/// Three cards with the test keys as key set 30 (their transport keys).
fn fleet(d: &std::path::Path) -> Vec<String> {
    fs::create_dir(d.join("fleet")).expect("mkdir");
    for i in 0..3 {
        new_card(d, &format!("fleet/c{i}.state"));
    }
    fs::create_dir(d.join("prof")).expect("mkdir");
    fs::write(d.join("prof/dmacc.xml"), "<MgmtTree/>").expect("write");
    fs::write(
        d.join("prof/profile.json"),
        r#"{"objects": [{"ref": "./Vendor/Gw", "mo_type": "urn:x-vendor:gw", "file": "dmacc.xml", "acl": "Get=*&Replace=admin"}], "failure_limit": 6}"#,
    )
    .expect("write");
    fs::write(d.join("master.keys"), format!("{MASTER}\n")).expect("write");
    let list = run(d, &["fleet", "list", "--sim-dir", "fleet", "--json"])
        .expect(0)
        .json();
    list["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["card_id"].as_str().expect("id").to_string())
        .collect()
}

/// `fleet provision --job JOB` with the master keys and the transport keys.
fn provision(d: &std::path::Path, job: &str) -> Out {
    run_env(
        d,
        &[
            "--now",
            "2027-01-15T08:00:00Z",
            "--master-key-file",
            "master.keys",
            "--key-version",
            "0x30",
            "fleet",
            "provision",
            "--job",
            job,
            "--db",
            "r.sqlite",
            "--station",
            "S1",
            "--profile",
            "prof",
            "--cards",
            "all",
            "--sim-dir",
            "fleet",
            "--json",
        ],
        &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
    )
}

fn grant(d: &std::path::Path, keys: &[&str], env: &[(&str, &str)]) -> Out {
    let mut args = keys.to_vec();
    args.extend_from_slice(&[
        "fleet",
        "acl-grant",
        "--sim-dir",
        "fleet",
        "--cards",
        "all",
        "--object",
        "./Vendor/Gw",
        "--right",
        "Get",
        "--to",
        "ServerB",
        "--as",
        "admin",
        "--json",
    ]);
    run_env(d, &args, env)
}

#[test]
fn provisioning_gives_every_card_its_own_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ids = fleet(d);

    let first = provision(d, "J1").expect(0).json();
    assert_eq!(first["provisioned"], 3, "{first}");
    assert_eq!(first["failed"], 0, "{first}");

    // The records: key version 30 and each card's own KCVs, all different.
    let records = run(d, &["fleet", "records", "--db", "r.sqlite", "--json"])
        .expect(0)
        .json();
    let records = records["records"].as_array().expect("records");
    assert_eq!(records.len(), 3, "{records:?}");
    let mut kcvs = Vec::new();
    for id in &ids {
        let keys = derive_card_keys(&master(), &hex::decode(id).expect("hex")).expect("derive");
        let r = records
            .iter()
            .find(|r| r["card_id"] == id.as_str())
            .expect("record");
        assert_eq!(r["status"], "provisioned", "{r}");
        assert_eq!(r["key_version"], "30", "{r}");
        assert_eq!(r["kcv_enc"], hex::encode_upper(keys.kcvs[0]), "{r}");
        assert_eq!(r["kcv_mac"], hex::encode_upper(keys.kcvs[1]), "{r}");
        assert_eq!(r["kcv_dek"], hex::encode_upper(keys.kcvs[2]), "{r}");
        kcvs.push(r["kcv_enc"].to_string());
    }
    kcvs.sort();
    kcvs.dedup();
    assert_eq!(kcvs.len(), 3, "per-card keys differ: {kcvs:?}");

    // A fresh process with only the master keys reaches every card.
    let granted = grant(
        d,
        &["--master-key-file", "master.keys", "--key-version", "0x30"],
        &[],
    )
    .expect(0)
    .json();
    assert_eq!(granted["outcome"], "applied", "{granted}");

    // The transport keys no longer open any card.
    let old = grant(
        d,
        &["--key-version", "0x30"],
        &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
    );
    assert_ne!(old.code, 0, "{old:?}");
    assert_ne!(old.json()["outcome"], "applied", "{old:?}");

    // A job run on cards that already hold their own keys (as after an
    // interrupted run) recognises them and completes.
    let again = provision(d, "J2").expect(0).json();
    assert_eq!(again["provisioned"], 3, "{again}");

    // No key byte, raw or in hex, is in the database.
    let db = fs::read(d.join("r.sqlite")).expect("db");
    let db_upper = String::from_utf8_lossy(&db).to_uppercase();
    let transport = hex::decode(TEST_KEY).expect("hex");
    let mut secrets = vec![transport];
    for id in &ids {
        let keys = derive_card_keys(&master(), &hex::decode(id).expect("hex")).expect("derive");
        let k = &keys.authority.keys;
        secrets.extend([k.enc().to_vec(), k.mac().to_vec(), k.dek().to_vec()]);
    }
    for key in &secrets {
        assert!(!db.windows(key.len()).any(|w| w == key.as_slice()));
        assert!(!db_upper.contains(&hex::encode_upper(key)));
    }
}
