//! `dmsc fleet provision --job` and `dmsc fleet records` on simulated cards:
//! each card once per job, every attempt recorded, CSV and JSON exports.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs;

use common::*;

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

const PROVISION: [&str; 15] = [
    "--now",
    "2027-01-15T08:00:00Z",
    "fleet",
    "provision",
    "--job",
    "J1",
    "--db",
    "r.sqlite",
    "--station",
    "S1",
    "--profile",
    "prof",
    "--cards",
    "all",
    "--sim-dir",
];

fn provision(d: &std::path::Path, extra: &[&str]) -> Out {
    let mut args = PROVISION.to_vec();
    args.push("fleet");
    args.extend_from_slice(extra);
    run_env(d, &args, &[("DMSC_SCP_KEYS", &triple(TEST_KEY))])
}

#[test]
fn each_card_once_per_job_and_the_records_export() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ids = fleet(d);
    let first = provision(d, &["--json"]).expect(0).json();
    assert_eq!(first["provisioned"], 3, "{first}");
    let again = provision(d, &[]).expect(0);
    assert_eq!(again.stdout.matches("skipped").count(), 4, "{again:?}");
    assert!(
        again.stdout.contains("0 provisioned, 3 skipped"),
        "{again:?}"
    );

    let csv = run(
        d,
        &[
            "fleet", "records", "--db", "r.sqlite", "--job", "J1", "--csv",
        ],
    )
    .expect(0)
    .stdout;
    let mut lines = csv.lines();
    assert!(lines.next().expect("header").starts_with(
        "card_id,job,station,status,key_version,kcv_enc,kcv_mac,kcv_dek,started,finished"
    ));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for id in &ids {
        let row = rows
            .iter()
            .find(|r| r.starts_with(id.as_str()))
            .expect("a row per card");
        assert!(
            row.starts_with(&format!("{id},J1,S1,provisioned,30,")),
            "{row}"
        );
        assert!(row.contains(",2027-01-15T08:00:00Z,"), "{row}");
    }
    let json = run(d, &["fleet", "records", "--db", "r.sqlite", "--json"])
        .expect(0)
        .json();
    let records = json["records"].as_array().expect("records");
    assert_eq!(records.len(), 3);
    // The KCV of the test key (404142…4F): never the key itself.
    assert!(records.iter().all(|r| r["kcv_enc"] == r["kcv_mac"]));
    let db = fs::read(d.join("r.sqlite")).expect("db");
    let key = hex::decode(TEST_KEY).expect("hex");
    assert!(!db.windows(key.len()).any(|w| w == key.as_slice()));
    assert!(!String::from_utf8_lossy(&db)
        .to_uppercase()
        .contains(&TEST_KEY.to_uppercase()));
    run(
        d,
        &["fleet", "records", "--db", "r.sqlite", "--csv", "--json"],
    )
    .expect(2);
    run(d, &["fleet", "records", "--db", "missing.sqlite"]).expect(8);
}

#[test]
fn a_database_that_cannot_be_opened_touches_no_card() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    fleet(d);
    let before = fs::read(d.join("fleet/c0.state")).expect("state");
    let mut args = PROVISION.to_vec();
    args[7] = "no-such-dir/r.sqlite";
    args.push("fleet");
    let out = run_env(d, &args, &[("DMSC_SCP_KEYS", &triple(TEST_KEY))]).expect(1);
    assert!(out.stderr.contains("no-such-dir/r.sqlite"), "{out:?}");
    assert_eq!(fs::read(d.join("fleet/c0.state")).expect("state"), before);
}

/// A station stopped mid-card leaves its claim `in_progress` and the card
/// half written; its next run redoes the card and the records agree with it.
#[test]
fn the_next_run_redoes_a_card_left_in_progress() {
    use dmsc_host::fleet::records::{AttemptStart, Records, SqliteRecords};
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ids = fleet(d);
    // What a killed run leaves: the claim and attempt 1 in progress.
    SqliteRecords::open(&d.join("r.sqlite"))
        .expect("db")
        .claim(&AttemptStart {
            job: "J1",
            card_id: &ids[1],
            station: "S1",
            profile_digest: "00",
            key_version: 0x30,
            started: "2027-01-15T07:59:00Z".parse().expect("time"),
        })
        .expect("claim");
    let out = provision(d, &["--json"]).expect(0).json();
    assert_eq!(out["provisioned"], 3, "{out}");
    let redone = out["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .find(|c| c["card_id"] == ids[1].as_str())
        .expect("card 1")
        .clone();
    assert_eq!(redone["attempt"], 2, "{redone}");
    assert_eq!(redone["recovered_attempt"], 1, "{redone}");
    let records = run(d, &["fleet", "records", "--db", "r.sqlite", "--json"])
        .expect(0)
        .json();
    let of_card: Vec<(i64, String)> = records["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["card_id"] == ids[1].as_str())
        .map(|r| {
            (
                r["attempt"].as_i64().expect("attempt"),
                r["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    assert_eq!(
        of_card,
        [(1, "failed".to_string()), (2, "provisioned".to_string())]
    );
    // The card holds the profile.
    let acl = run_env(
        d,
        &[
            "--sim",
            "fleet/c1.state",
            "acl",
            "get",
            "./Vendor/Gw",
            "--json",
        ],
        &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
    )
    .expect(0)
    .json();
    assert_eq!(acl["acl"], "Get=*&Replace=admin");
}
