//! The production line (docs/records.md): `dmsc fleet provision --job` with
//! master keys in a SoftHSM2 token, records in a private PostgreSQL (and
//! SQLite), through the real parts:
//!
//! - two stations (two `dmsc` processes) race over 16 simulated cards on the
//!   vpcd slots of a private pcscd started here (`.ci/pcsc-env`, 16 slots on
//!   ports of its own): every card is provisioned exactly once, every card
//!   has its own keys, a fresh process with only the token reaches every
//!   card, and no key is in the database or in anything printed;
//! - a station killed with SIGKILL in the middle of a card (stopped there by
//!   `DMSC_FAULT_STOP_MID_CARD`, killed once it says so): another station
//!   completes the card, and card and record agree;
//! - bad input (wrong PIN, missing key label, database down or read-only,
//!   a profile that does not validate): a clear error, and no card touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use dmsc_host::fleet::diversify::derive_card_keys;
use dmsc_test_support::pg::PrivatePostgres;

const PIN: &str = "3141";
const NOW: &str = "2027-01-15T08:00:00Z";

/// A private SoftHSM2 token "line" (SOFTHSM2_CONF in `dir`) holding the
/// master keys [`MASTER`] (key version 30), imported with pkcs11-tool.
fn hsm_token(dir: &Path) -> (String, String) {
    let module = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libsofthsm2.so not found: run .ci/install-deps (softhsm2)")
    .to_string();
    fs::create_dir(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let tool = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect(program);
        assert!(out.status.success(), "{program}: {out:?}");
    };
    tool(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "line",
            "--pin",
            PIN,
            "--so-pin",
            "27182818",
        ],
    );
    for (kind, key) in ["enc", "mac", "dek"].into_iter().zip(MASTER.split(':')) {
        let file = dir.join("key.bin");
        fs::write(&file, hex::decode(key).unwrap()).unwrap();
        tool(
            "pkcs11-tool",
            &[
                "--module",
                &module,
                "--login",
                "--pin",
                PIN,
                "--write-object",
                &file.display().to_string(),
                "--type",
                "secrkey",
                "--key-type",
                "AES:16",
                "--usage-sign",
                "--sensitive",
                "--label",
                &format!("dmsc-master-30-{kind}"),
            ],
        );
        fs::remove_file(&file).unwrap();
    }
    (module, conf)
}

/// The profile: one MO with its ACL.
fn profile(d: &Path) {
    fs::create_dir(d.join("prof")).unwrap();
    fs::write(d.join("prof/dmacc.xml"), "<MgmtTree/>").unwrap();
    fs::write(
        d.join("prof/profile.json"),
        r#"{"objects": [{"ref": "./Vendor/Gw", "mo_type": "urn:x-vendor:gw", "file": "dmacc.xml", "acl": "Get=*&Replace=admin"}], "failure_limit": 6}"#,
    )
    .unwrap();
}

/// `n` new cards (the test keys as key set 30: their transport keys) in `d/fleet`.
fn cards(d: &Path, n: usize) -> Vec<PathBuf> {
    fs::create_dir(d.join("fleet")).unwrap();
    (0..n)
        .map(|i| new_card(d, &format!("fleet/c{i:02}.state")))
        .collect()
}

/// A private pcscd with 16 vpcd slots on ports of its own, and the cards
/// attached to them by one `dmsc sim serve`; both stopped when dropped.
struct Readers {
    dir: tempfile::TempDir,
    sock: String,
    serve: Option<Child>,
}

impl Readers {
    fn start(d: &Path, states: &[PathBuf], port: u16) -> Readers {
        let dir = tempfile::Builder::new()
            .prefix("pcsc.")
            .tempdir_in("/tmp")
            .unwrap();
        let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/pcsc-env");
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"eval "$("$0" start "$1")" && echo "$PCSCLITE_CSOCK_NAME""#)
            .arg(&ci)
            .arg(dir.path())
            .env("DMSC_VPCD_PORT", port.to_string())
            .env("DMSC_VPCD_SLOTS", "16")
            .env("DMSC_VPCD_REVERSED_PORT", (port + 40).to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting a private pcscd (.ci/pcsc-env; run .ci/install-deps): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sock = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut readers = Readers {
            dir,
            sock,
            serve: None,
        };
        let mut serve = dmsc(d);
        serve.args(["sim", "serve", "--port", &port.to_string()]);
        for s in states {
            serve.arg("--state").arg(s);
        }
        let mut serve = serve
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(serve.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        readers.serve = Some(serve);
        assert!(ready.starts_with("ready"), "{ready}");
        // pcscd reports a card some time after it attached: wait (a hang
        // guard, not a timing assertion) until every reader shows one.
        for _ in 0..600 {
            let out = readers.run(d, &["fleet", "list", "--json"], &[]);
            if out.code == 0 && out.json()["cards"].as_array().map(Vec::len) == Some(states.len()) {
                return readers;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("pcscd did not show {} cards", states.len());
    }

    fn command(&self, d: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = dmsc(d);
        cmd.args(args).env("PCSCLITE_CSOCK_NAME", &self.sock);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, d: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
        output(self.command(d, args, env).output().unwrap())
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        if let Some(mut s) = self.serve.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/pcsc-env");
        let _ = Command::new(ci)
            .arg("stop")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn output(out: std::process::Output) -> Out {
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `fleet provision --job J --db DB --station S` with the token's master keys
/// and the cards' transport keys.
fn provision_args<'a>(
    module: &'a str,
    job: &'a str,
    db: &'a str,
    station: &'a str,
) -> Vec<&'a str> {
    vec![
        "--now",
        NOW,
        "--hsm-module",
        module,
        "--hsm-token",
        "line",
        "--key-version",
        "0x30",
        "fleet",
        "provision",
        "--job",
        job,
        "--db",
        db,
        "--station",
        station,
        "--profile",
        "prof",
        "--cards",
        "all",
        "--json",
    ]
}

/// Every key of every card (and the master and transport keys), as bytes.
fn all_keys(ids: &[String]) -> Vec<Vec<u8>> {
    let m = master();
    let mut keys: Vec<Vec<u8>> = ids
        .iter()
        .flat_map(|id| {
            let k = derive_card_keys(&m, &hex::decode(id).unwrap()).unwrap();
            let k = &k.authority.keys;
            [k.enc().to_vec(), k.mac().to_vec(), k.dek().to_vec()]
        })
        .collect();
    keys.extend(MASTER.split(':').map(|k| hex::decode(k).unwrap()));
    keys.push(hex::decode(TEST_KEY).unwrap());
    keys
}

fn assert_no_key_in(what: &str, haystack: &[u8], keys: &[Vec<u8>]) {
    let upper = String::from_utf8_lossy(haystack).to_uppercase();
    for key in keys {
        assert!(
            !haystack.windows(key.len()).any(|w| w == key.as_slice()),
            "{what} holds a key's bytes"
        );
        assert!(
            !upper.contains(&hex::encode_upper(key)),
            "{what} holds a key in hex"
        );
    }
}

fn records_of(d: &Path, db: &str) -> Vec<serde_json::Value> {
    run(d, &["fleet", "records", "--db", db, "--json"])
        .expect(0)
        .json()["records"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn two_stations_race_over_sixteen_cards_each_provisioned_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pg = PrivatePostgres::start();
    pg.create_db("line");
    let db = pg.url("line", "dmsc");
    let (module, conf) = hsm_token(d);
    profile(d);
    let states = cards(d, 16);
    let readers = Readers::start(d, &states, 62300);
    let ids: Vec<String> = readers
        .run(d, &["fleet", "list", "--json"], &[])
        .expect(0)
        .json()["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["card_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 16);
    let transport = triple(TEST_KEY);
    let env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("DMSC_HSM_PIN", PIN),
        ("DMSC_SCP_KEYS", transport.as_str()),
    ];
    // Both stations at once.
    let stations: Vec<Child> = ["A", "B"]
        .iter()
        .map(|s| {
            readers
                .command(d, &provision_args(&module, "J1", &db, s), &env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Out> = stations
        .into_iter()
        .map(|c| output(c.wait_with_output().unwrap()))
        .collect();
    let mut printed = Vec::new();
    let mut provisioned = 0;
    for out in &outs {
        let out_json = out.json();
        assert_eq!(out.code, 0, "{out:#?}");
        provisioned += out_json["provisioned"].as_u64().unwrap();
        printed.extend_from_slice(out.stdout.as_bytes());
        printed.extend_from_slice(out.stderr.as_bytes());
    }
    assert_eq!(provisioned, 16, "{outs:#?}");

    // One provisioned record per card, by one of the two stations, with the
    // card's own keys (KCVs), all different.
    let records = records_of(d, &db);
    let done: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["status"] == "provisioned")
        .collect();
    assert_eq!(done.len(), 16, "{records:#?}");
    eprintln!(
        "race: {} attempts recorded for 16 cards ({} failed and redone)",
        records.len(),
        records.iter().filter(|r| r["status"] == "failed").count()
    );
    let done_ids: BTreeSet<&str> = done
        .iter()
        .map(|r| r["card_id"].as_str().unwrap())
        .collect();
    assert_eq!(done_ids, ids.iter().map(String::as_str).collect());
    assert!(records.iter().all(|r| r["status"] != "in_progress"));
    let m = master();
    let mut kcvs = BTreeSet::new();
    for r in &done {
        assert!(r["station"] == "A" || r["station"] == "B", "{r}");
        assert_eq!(r["key_version"], "30");
        let keys =
            derive_card_keys(&m, &hex::decode(r["card_id"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(r["kcv_enc"], hex::encode_upper(keys.kcvs[0]));
        assert_eq!(r["kcv_mac"], hex::encode_upper(keys.kcvs[1]));
        assert_eq!(r["kcv_dek"], hex::encode_upper(keys.kcvs[2]));
        kcvs.insert(r["kcv_enc"].as_str().unwrap().to_string());
    }
    assert_eq!(kcvs.len(), 16, "every card has its own keys");

    // A fresh process with only the token reaches every card (the grant is
    // there already: read and checked on every card, nothing written).
    let out = readers
        .run(
            d,
            &[
                "--hsm-module",
                &module,
                "--hsm-token",
                "line",
                "--key-version",
                "0x30",
                "fleet",
                "acl-grant",
                "--cards",
                "all",
                "--object",
                "./Vendor/Gw",
                "--right",
                "Get",
                "--to",
                "*",
                "--as",
                "admin",
            ],
            &[("SOFTHSM2_CONF", conf.as_str()), ("DMSC_HSM_PIN", PIN)],
        )
        .expect(0);
    assert!(out.stdout.contains("on 16 cards"), "{out:?}");
    printed.extend_from_slice(out.stdout.as_bytes());
    printed.extend_from_slice(out.stderr.as_bytes());

    // No key in the database or in anything printed.
    let keys = all_keys(&ids);
    assert_no_key_in("the database", pg.dump("line").as_bytes(), &keys);
    assert_no_key_in("the output", &printed, &keys);
}

#[test]
fn a_station_killed_mid_card_is_completed_by_another_and_card_and_record_agree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pg = PrivatePostgres::start();
    pg.create_db("kill");
    let db = pg.conninfo("kill", "dmsc");
    let (module, conf) = hsm_token(d);
    profile(d);
    cards(d, 3);
    let list = run(d, &["fleet", "list", "--sim-dir", "fleet", "--json"])
        .expect(0)
        .json();
    let ids: Vec<String> = list["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["card_id"].as_str().unwrap().to_string())
        .collect();
    let transport = triple(TEST_KEY);
    let env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("DMSC_HSM_PIN", PIN),
        ("DMSC_SCP_KEYS", transport.as_str()),
    ];
    let with_dir = |station: &'static str| {
        let mut a = provision_args(&module, "J1", &db, station);
        a.extend_from_slice(&["--sim-dir", "fleet"]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // Station A stops on card 0 after claiming it and installing its keys;
    // it is killed (SIGKILL) once it says so.
    let mut a = dmsc(d);
    a.args(with_dir("A"))
        .envs(env)
        .env("DMSC_FAULT_STOP_MID_CARD", &ids[0])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut a = a.spawn().unwrap();
    let mut err = BufReader::new(a.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "station A ended early"
        );
        if line.starts_with("stopped mid-card") {
            break;
        }
    }
    assert_eq!(line.trim(), format!("stopped mid-card {}", ids[0]));
    a.kill().unwrap();
    a.wait().unwrap();
    // The claim is in progress; the server ends A's session (and its hold on
    // the card) once it sees the connection closed.
    let mut client = pg.client("kill");
    let status: String = client
        .query_one(
            "SELECT status FROM claims WHERE job = 'J1' AND card_id = $1",
            &[&ids[0]],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "in_progress");
    for _ in 0..1000 {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                &[],
            )
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // Station B completes it.
    let args = with_dir("B");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = run_env(d, &args, &env).expect(0);
    let json = b.json();
    assert_eq!(json["failed"], 0, "{json}");
    let card0 = json["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["card_id"] == ids[0].as_str())
        .unwrap()
        .clone();
    assert_eq!(card0["outcome"], "provisioned", "{card0}");
    assert_eq!(card0["recovered_attempt"], 1, "{card0}");

    let records = records_of(d, &db);
    let of0: Vec<(i64, &str, &str)> = records
        .iter()
        .filter(|r| r["card_id"] == ids[0].as_str())
        .map(|r| {
            (
                r["attempt"].as_i64().unwrap(),
                r["station"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(of0, [(1, "A", "failed"), (2, "B", "provisioned")]);
    for id in &ids {
        let last = records
            .iter()
            .rfind(|r| r["card_id"] == id.as_str())
            .unwrap();
        assert_eq!(last["status"], "provisioned", "{last}");
        let keys = derive_card_keys(&master(), &hex::decode(id).unwrap()).unwrap();
        assert_eq!(last["kcv_enc"], hex::encode_upper(keys.kcvs[0]));
    }
    // The card holds the keys recorded: the master keys alone open it (the
    // per-card keys of the KCVs above), and it holds the profile.
    fs::write(d.join("master.keys"), format!("{MASTER}\n")).unwrap();
    let out = run_env(
        d,
        &[
            "--master-key-file",
            "master.keys",
            "--key-version",
            "0x30",
            "fleet",
            "acl-grant",
            "--sim-dir",
            "fleet",
            "--cards",
            &ids[0],
            "--object",
            "./Vendor/Gw",
            "--right",
            "Get",
            "--to",
            "*",
            "--as",
            "admin",
            "--json",
        ],
        &[],
    )
    .expect(0);
    let grant = out.json();
    assert_eq!(grant["outcome"], "applied", "{grant}");
    assert_eq!(
        grant["cards"][0]["before"], "Get=*&Replace=admin",
        "{grant}"
    );
    assert_no_key_in("the database", pg.dump("kill").as_bytes(), &all_keys(&ids));
}

/// Runs `dmsc ARGS` on a read-only mount of `ro` (root: a private mount
/// namespace; otherwise the files are made read-only).
fn run_read_only(d: &Path, ro: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(ro)
            .arg(env!("CARGO_BIN_EXE_dmsc"));
        c
    } else {
        for e in fs::read_dir(ro).unwrap() {
            let p = e.unwrap().path();
            let mut perm = fs::metadata(&p).unwrap().permissions();
            perm.set_readonly(true);
            fs::set_permissions(&p, perm).unwrap();
        }
        let mut perm = fs::metadata(ro).unwrap().permissions();
        perm.set_readonly(true);
        fs::set_permissions(ro, perm).unwrap();
        Command::new(env!("CARGO_BIN_EXE_dmsc"))
    };
    cmd.args(args).current_dir(d).stdin(Stdio::null());
    for var in ["DMSC_SCP_KEYS", "DMSC_SIM", "DMSC_READER", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    output(cmd.output().unwrap())
}

#[test]
fn bad_input_is_refused_by_name_and_touches_no_card() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut pg = PrivatePostgres::start();
    pg.create_db("bad");
    let url = pg.url("bad", "dmsc");
    let (module, conf) = hsm_token(d);
    profile(d);
    let states = cards(d, 2);
    let before: Vec<Vec<u8>> = states.iter().map(|s| fs::read(s).unwrap()).collect();
    let untouched = |what: &str| {
        for (s, b) in states.iter().zip(&before) {
            assert!(
                &fs::read(s).unwrap() == b,
                "{what}: {} changed",
                s.display()
            );
        }
    };
    let transport = triple(TEST_KEY);
    let env = |pin: &'static str| {
        vec![
            ("SOFTHSM2_CONF", conf.clone()),
            ("DMSC_HSM_PIN", pin.to_string()),
            ("DMSC_SCP_KEYS", transport.clone()),
        ]
    };
    let go = |args: Vec<&str>, pin: &'static str| {
        let mut args = args;
        args.extend_from_slice(&["--sim-dir", "fleet"]);
        let env = env(pin);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_env(d, &args, &env)
    };
    let mut printed = String::new();
    let mut check = |what: &str, out: Out, code: i32, says: &[&str]| {
        assert_eq!(out.code, code, "{what}: {out:#?}");
        for s in says {
            assert!(out.stderr.contains(s), "{what}: {out:#?}");
        }
        untouched(what);
        printed += &out.stdout;
        printed += &out.stderr;
    };

    let out = go(provision_args(&module, "J1", &url, "S1"), "0000");
    check("wrong PIN", out, 1, &["PIN"]);
    let mut args = provision_args(&module, "J1", &url, "S1");
    args[7] = "0x31";
    let out = go(args, PIN);
    check("missing key label", out, 1, &["'dmsc-master-31-enc'"]);

    // A profile that does not validate.
    fs::write(
        d.join("prof/profile.json"),
        r#"{"objects": [{"ref": "./Vendor/Gw", "mo_type": "urn:x-vendor:gw", "file": "dmacc.xml", "acl": "Get=*&Fly=admin"}]}"#,
    )
    .unwrap();
    let out = go(provision_args(&module, "J1", &url, "S1"), PIN);
    check("bad profile", out, 2, &["profile.json", "invalid ACL"]);
    fs::remove_dir_all(d.join("prof")).unwrap();
    profile(d);

    // PostgreSQL: a role that may only read, then a read-only database.
    go(provision_args(&module, "J0", &url, "S1"), PIN).expect(0);
    let before: Vec<Vec<u8>> = states.iter().map(|s| fs::read(s).unwrap()).collect();
    let untouched = |what: &str| {
        for (s, b) in states.iter().zip(&before) {
            assert!(
                &fs::read(s).unwrap() == b,
                "{what}: {} changed",
                s.display()
            );
        }
    };
    pg.sql(
        "bad",
        "CREATE ROLE reader LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;",
    );
    let reader = pg.url("bad", "reader");
    let out = go(provision_args(&module, "J1", &reader, "S1"), PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("checking that records can be written"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("permission denied"), "{out:#?}");
    untouched("read-only role");
    pg.sql(
        "postgres",
        "ALTER DATABASE bad SET default_transaction_read_only = on",
    );
    let out = go(provision_args(&module, "J1", &url, "S1"), PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("read-only transaction"), "{out:#?}");
    untouched("read-only database");
    // Down.
    pg.stop();
    let out = go(provision_args(&module, "J1", &url, "S1"), PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("connecting"), "{out:#?}");
    assert!(out.stderr.contains("/bad"), "{out:#?}");
    untouched("database down");

    // A read-only SQLite file.
    fs::create_dir(d.join("ro")).unwrap();
    let sqlite = d.join("ro/r.sqlite").display().to_string();
    dmsc_host::fleet::records::SqliteRecords::open(Path::new(&sqlite)).unwrap();
    let mut args = provision_args(&module, "J1", &sqlite, "S1");
    args.extend_from_slice(&["--sim-dir", "fleet"]);
    let env = env(PIN);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run_read_only(d, &d.join("ro"), &args, &env);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("r.sqlite"), "{out:#?}");
    assert!(out.stderr.contains("readonly"), "{out:#?}");
    untouched("read-only SQLite file");
    printed += &out.stdout;
    printed += &out.stderr;
    assert_no_key_in("the output", printed.as_bytes(), &all_keys(&[]));
}
