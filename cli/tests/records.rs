//! `dmsc fleet provision --job` and `dmsc fleet records` on simulated cards:
//! each card once per job, every attempt recorded, CSV and JSON exports.

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
