//! The record store in PostgreSQL, on a private server (test-support's
//! `PrivatePostgres`): the URL forms, the schema, exactly-once claims between
//! stations, takeover of a stopped station's card, and the refusals (database
//! down, read-only role, read-only server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dmsc_host::fleet::records::{self, AttemptStart, Claim, Location, Records};
use dmsc_test_support::pg::PrivatePostgres;

fn at(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).expect("time")
}

fn start<'a>(card: &'a str, station: &'a str, t: i64) -> AttemptStart<'a> {
    AttemptStart {
        job: "J1",
        card_id: card,
        station,
        profile_digest: "AB",
        key_version: 0x30,
        started: at(t),
    }
}

fn open(loc: &str) -> Box<dyn Records> {
    records::open(Path::new(loc), true).unwrap_or_else(|e| panic!("{loc}: {e}"))
}

#[test]
fn url_forms_schema_claims_and_takeover_of_a_stopped_station() {
    let pg = PrivatePostgres::start();
    pg.create_db("line");
    let url = pg.url("line", "dmsc");
    assert!(matches!(
        Location::parse(Path::new(&url)),
        Location::Postgres(_)
    ));
    let s1 = open(&url);
    // The other forms reach the same database.
    let s2 = open(&url.replacen("postgresql://", "postgres://", 1));
    let kv = open(&pg.conninfo("line", "dmsc"));
    assert!(s1.location().contains("/line"), "{}", s1.location());
    assert_eq!(
        s1.claim(&start("C1", "S1", 0)).expect("claim"),
        Claim::Claimed {
            attempt: 1,
            recovered: None
        }
    );
    // S1's connection is alive: the card is busy for everyone else.
    assert_eq!(
        s2.claim(&start("C1", "S2", 1)).expect("claim"),
        Claim::InProgressElsewhere {
            station: "S1".into()
        }
    );
    s1.finish("J1", "C1", 1, Ok(Some((0x30, [[1, 2, 3]; 3]))), at(2))
        .expect("finish");
    assert_eq!(
        kv.claim(&start("C1", "S3", 3)).expect("claim"),
        Claim::AlreadyProvisioned {
            station: "S1".into()
        }
    );
    // S1 claims C2 and stops (its connection ends): S2 takes the card over.
    assert!(matches!(
        s1.claim(&start("C2", "S1", 4)).expect("claim"),
        Claim::Claimed { attempt: 1, .. }
    ));
    assert_eq!(
        s2.claim(&start("C2", "S2", 5)).expect("claim"),
        Claim::InProgressElsewhere {
            station: "S1".into()
        }
    );
    drop(s1);
    // The server ends the session's locks when it sees the connection close.
    let mut took = None;
    for _ in 0..500 {
        match s2.claim(&start("C2", "S2", 6)).expect("claim") {
            Claim::InProgressElsewhere { .. } => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => {
                took = Some(other);
                break;
            }
        }
    }
    assert_eq!(
        took,
        Some(Claim::Claimed {
            attempt: 2,
            recovered: Some(1)
        })
    );
    s2.finish("J1", "C2", 2, Err("card removed".into()), at(7))
        .expect("finish");
    // A failed card is retried by the next claim, of any station.
    assert!(matches!(
        kv.claim(&start("C2", "S3", 8)).expect("claim"),
        Claim::Claimed {
            attempt: 3,
            recovered: None
        }
    ));
    let r = kv.records(Some("J1")).expect("records");
    let summary: Vec<(&str, i64, &str, &str)> = r
        .iter()
        .map(|r| {
            (
                r.card_id.as_str(),
                r.attempt,
                r.station.as_str(),
                r.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("C1", 1, "S1", "provisioned"),
            ("C2", 1, "S1", "failed"),
            ("C2", 2, "S2", "failed"),
            ("C2", 3, "S3", "in_progress"),
        ]
    );
    assert_eq!(r[0].kcv_enc.as_deref(), Some("010203"));
    assert_eq!(r[0].key_version, "30");
    assert!(r[1]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("interrupted")));
    // The schema is versioned.
    let v: i64 = pg
        .client("line")
        .query_one("SELECT version FROM dmsc_schema", &[])
        .expect("version")
        .get(0);
    assert_eq!(v, records::SCHEMA_VERSION);
}

#[test]
fn racing_stations_claim_each_card_once() {
    let pg = PrivatePostgres::start();
    pg.create_db("race");
    let url = pg.conninfo("race", "dmsc");
    open(&url);
    let all_claimed = std::sync::Barrier::new(4);
    let claimed: Vec<usize> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let url = url.clone();
                let all_claimed = &all_claimed;
                s.spawn(move || {
                    // Each its own connection, as separate stations are.
                    let db = open(&url);
                    let station = format!("S{w}");
                    let n = (0..20)
                        .filter(|c| {
                            let card = format!("C{c}");
                            matches!(
                                db.claim(&start(&card, &station, 0)).expect("claim"),
                                Claim::Claimed { .. }
                            )
                        })
                        .count();
                    // Every station stays connected (working) until all have
                    // tried every card: a closed connection is a stopped
                    // station, whose cards the others take over.
                    all_claimed.wait();
                    n
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("join"))
            .collect()
    });
    assert_eq!(claimed.iter().sum::<usize>(), 20, "{claimed:?}");
}

#[test]
fn down_read_only_and_newer_databases_are_refused_by_name() {
    let mut pg = PrivatePostgres::start();
    pg.create_db("ro");
    let url = pg.url("ro", "dmsc");
    open(&url);
    // A role that may only read: it exports, it cannot provision.
    pg.sql(
        "ro",
        "CREATE ROLE reader LOGIN PASSWORD 'hunter2'; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;",
    );
    let reader = format!("{} password=hunter2", pg.conninfo("ro", "reader"));
    let store = records::open(Path::new(&reader), false).expect("read-only open");
    assert!(store.records(None).expect("export").is_empty());
    let e = records::open(Path::new(&reader), true).expect_err("refused");
    let msg = format!("{e}");
    assert!(
        msg.contains("checking that records can be written"),
        "{msg}"
    );
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    // A server (database) that is read-only.
    pg.sql(
        "postgres",
        "ALTER DATABASE ro SET default_transaction_read_only = on",
    );
    let e = records::open(Path::new(&url), true)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("read-only transaction"), "{e}");
    // A newer schema.
    pg.sql(
        "postgres",
        "ALTER DATABASE ro SET default_transaction_read_only = off",
    );
    pg.sql("ro", "UPDATE dmsc_schema SET version = 9");
    let e = records::open(Path::new(&url), false)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("schema version 9 is newer"), "{e}");
    // Down.
    pg.stop();
    let with_password = url.replacen("dmsc@", "dmsc:hunter2@", 1);
    let e = records::open(Path::new(&with_password), true).expect_err("down");
    let msg = format!("{e}");
    assert!(msg.contains("connecting"), "{msg}");
    assert!(msg.contains("/ro"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}
