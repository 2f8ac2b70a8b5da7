//! The `kill -9` campaign (docs/device-tree.md): `dmsc refresh` (100 MOs),
//! `dmsc bootstrap verify` and `dmsc policy enforce` on one device directory,
//! each killed with SIGKILL at a random moment. After every kill the device
//! directory must hold the old state or the new one, never a mix, and the
//! same command run again must succeed and give the new one.
//!
//! `DMSC_KILL_CAMPAIGN_ROUNDS` (default 21: 7 of each command) and
//! `DMSC_KILL_CAMPAIGN_SEED` (default 20261203; printed) size and replay it;
//! `DMSC_KILL_CAMPAIGN_MOS` (default 100) sets the MOs per card.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dmsc_host::device_tree::{DeviceTree, DirectoryTree, Origin};

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// SplitMix64: a small deterministic generator for the kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

fn admin(dir: &Path, args: &[&str]) -> Out {
    run_env(dir, args, &[("DMSC_SCP_KEYS", &triple(TEST_KEY))])
}

/// A TNDS document of `n` MOs `./Vendor/M<i>` whose values name `tag`.
fn card_mos(n: u64, tag: &str) -> String {
    let nodes: String = (0..n)
        .map(|i| {
            format!(
                "<Node><NodeName>M{i}</NodeName><Path>./Vendor</Path>\
                 <Node><NodeName>Tag</NodeName><Value>card-{tag}-{i}</Value></Node></Node>"
            )
        })
        .collect();
    format!("<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>{nodes}</MgmtTree>\n")
}

fn boot_doc(tag: &str) -> String {
    format!(
        "<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>\
         <Node><NodeName>DMAcc</NodeName><Node><NodeName>ServerID</NodeName>\
         <Value>boot-{tag}</Value></Node></Node>\
         <Node><NodeName>Boot</NodeName><Path>./Vendor</Path><Node><NodeName>Tag</NodeName>\
         <Value>boot-{tag}</Value></Node></Node></MgmtTree>\n"
    )
}

/// The policy enforced between the kills: the one sample (its content does
/// not matter here, only that enforcing it writes the device's policy files).
const POLICY: &str = dmsc_test_support::SAMPLE_POLICY;

/// What a reader of the device directory finds, after the next run's
/// recovery (opening the tree collects leftovers).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    last_card: Option<String>,
    mos: BTreeMap<String, (Origin, String)>,
    resources: Option<Vec<u8>>,
}

fn look(dev: &Path) -> Result<Seen, String> {
    let tree = DirectoryTree::open_existing(dev).map_err(|e| format!("open: {e}"))?;
    let index = tree.index().map_err(|e| format!("index: {e}"))?;
    let mut mos = BTreeMap::new();
    for (uri, entry) in &index.mos {
        let mo = tree
            .read_mo(uri)
            .map_err(|e| format!("{uri}: {e}"))?
            .ok_or_else(|| format!("{uri}: in the index, not readable"))?;
        mos.insert(uri.clone(), (entry.origin.clone(), mo.to_tnds()));
    }
    if let Some(dir) = tree.current_dir().map_err(|e| e.to_string())? {
        let mut files: Vec<String> = std::fs::read_dir(dir.join("mo"))
            .map_err(|e| e.to_string())?
            .map(|e| format!("mo/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        files.sort();
        let mut named: Vec<String> = index.mos.values().map(|e| e.file.clone()).collect();
        named.sort();
        if files != named {
            return Err(format!(
                "mo/ holds {} files, the index names {}",
                files.len(),
                named.len()
            ));
        }
    }
    let gens = std::fs::read_dir(dev.join("trees"))
        .map_err(|e| e.to_string())?
        .count();
    if gens != 1 {
        return Err(format!("{gens} generations in trees/"));
    }
    let resources = match std::fs::read(dev.join("policy/resources.json")) {
        Ok(b) => {
            serde_json::from_slice::<serde_json::Value>(&b)
                .map_err(|e| format!("resources.json: {e}"))?;
            Some(b)
        }
        Err(_) => None,
    };
    if let Ok(b) = std::fs::read(dev.join("policy/report.json")) {
        serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| format!("report.json: {e}"))?;
    }
    Ok(Seen {
        last_card: index.last_card.map(|m| m.card_id),
        mos,
        resources,
    })
}

/// The check of one round: the state after the kill is the state before or
/// the state the rerun gave, and that state is whole (every card MO from the
/// card of the last refresh).
fn old_or_new(
    before: &Seen,
    after: &Seen,
    new: &Seen,
    card_tag: &BTreeMap<String, &str>,
    n: u64,
) -> Result<(), String> {
    let same_tree = |a: &Seen, b: &Seen| a.last_card == b.last_card && a.mos == b.mos;
    if !same_tree(after, before) && !same_tree(after, new) {
        return Err("the tree is neither the old one nor the new one".into());
    }
    if after.resources != before.resources && after.resources != new.resources {
        return Err("resources.json is neither the old one nor the new one".into());
    }
    for seen in [after, new] {
        let Some(tag) = seen.last_card.as_ref().and_then(|c| card_tag.get(c)) else {
            return Err("no refresh recorded".into());
        };
        let card_mos: Vec<_> = seen
            .mos
            .iter()
            .filter(|(_, (o, _))| o.card_id().is_some())
            .collect();
        if card_mos.len() as u64 != n {
            return Err(format!("{} card MOs, not {n}", card_mos.len()));
        }
        for (uri, (_, tnds)) in card_mos {
            let i = uri.trim_start_matches("./Vendor/M");
            if !tnds.contains(&format!("card-{tag}-{i}<")) {
                return Err(format!("{uri} is not card {tag}'s"));
            }
        }
    }
    Ok(())
}

struct Op {
    name: &'static str,
    args: Vec<String>,
}

fn spawn(d: &Path, op: &Op) -> std::process::Child {
    dmsc(d)
        .args(&op.args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(d: &Path, op: &Op) {
    let out = run(d, &op.args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 0, "{}: {out:?}", op.name);
}

#[test]
fn kill_9_at_random_moments_leaves_old_or_new_and_the_next_run_recovers() {
    let rounds = env_number("DMSC_KILL_CAMPAIGN_ROUNDS", 21);
    let seed = env_number("DMSC_KILL_CAMPAIGN_SEED", 20261203);
    let n = env_number("DMSC_KILL_CAMPAIGN_MOS", 100);
    eprintln!(
        "kill -9 campaign: {rounds} rounds, {n} MOs, seed {seed} \
         (DMSC_KILL_CAMPAIGN_ROUNDS, DMSC_KILL_CAMPAIGN_SEED, DMSC_KILL_CAMPAIGN_MOS)"
    );
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Two cards of n MOs each, a card with a bootstrap key, a card with a policy.
    for tag in ["A", "B"] {
        new_card(d, &format!("card{tag}"));
        std::fs::write(d.join(format!("{tag}.xml")), card_mos(n, tag)).unwrap();
        admin(
            d,
            &[
                "--sim",
                &format!("card{tag}"),
                "mo",
                "put",
                &format!("{tag}.xml"),
            ],
        )
        .expect(0);
    }
    let card_tag: BTreeMap<String, &str> = ["A", "B"]
        .into_iter()
        .map(|tag| {
            let info = run(d, &["--sim", &format!("card{tag}"), "info", "--json"]).expect(0);
            (info.json()["card_id"].as_str().unwrap().to_uppercase(), tag)
        })
        .collect();
    new_card(d, "boot.state");
    openssl(d, &["rand", "-hex", "-out", "bk.hex", "32"]);
    admin(
        d,
        &[
            "--sim",
            "boot.state",
            "bootstrap",
            "set-key",
            "--key-id",
            "1",
            "--alg",
            "hmac-sha256",
            "--key-file",
            "bk.hex",
        ],
    )
    .expect(0);
    let mut content_type = BTreeMap::new();
    for tag in ["X", "Y"] {
        std::fs::write(d.join(format!("boot{tag}.xml")), boot_doc(tag)).unwrap();
        let out = run(
            d,
            &[
                "--json",
                "bootstrap",
                "sign",
                &format!("boot{tag}.xml"),
                "--key",
                "bk.hex",
                "--alg",
                "hmac-sha256",
            ],
        )
        .expect(0);
        content_type.insert(
            tag,
            out.json()["content_type"].as_str().unwrap().to_string(),
        );
    }
    new_card(d, "policy.state");
    openssl(
        d,
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
    std::fs::write(d.join("acme.toml"), POLICY).unwrap();
    admin(
        d,
        &[
            "--sim",
            "policy.state",
            "policy",
            "put",
            "acme.toml",
            "--sign-key",
            "ent.pem",
        ],
    )
    .expect(0);

    let dev = d.join("dev");
    let refresh = |tag: &str| Op {
        name: "refresh",
        args: [
            "--sim",
            &format!("card{tag}"),
            "refresh",
            "--device",
            "dev",
            "--init",
        ]
        .map(String::from)
        .to_vec(),
    };
    let bootstrap = |tag: &str| Op {
        name: "bootstrap verify",
        args: [
            "--sim",
            "boot.state",
            "bootstrap",
            "verify",
            &format!("boot{tag}.xml"),
            "--device",
            "dev",
            "--init",
            "--yes",
            "--content-type",
            &content_type[tag],
        ]
        .map(String::from)
        .to_vec(),
    };
    let enforce = |at: &str| Op {
        name: "policy enforce",
        args: [
            "--sim",
            "policy.state",
            "policy",
            "enforce",
            "--device",
            "dev",
            "--at",
            at,
        ]
        .map(String::from)
        .to_vec(),
    };
    // A first state, and how long each command takes (to spread the kills).
    let mut took = BTreeMap::new();
    for op in [refresh("B"), bootstrap("Y"), enforce("2026-11-23T20:00")] {
        let start = Instant::now();
        finish(d, &op);
        took.insert(op.name, start.elapsed());
    }
    eprintln!("uninterrupted: {took:?}");

    let (mut killed, mut finished, mut mid_change) = (0, 0, 0);
    for round in 0..rounds {
        let before = look(&dev).unwrap();
        let op = match round % 3 {
            0 => {
                // The other card: every MO changes.
                let last = before.last_card.clone().unwrap_or_default();
                refresh(if card_tag.get(&last) == Some(&"A") {
                    "B"
                } else {
                    "A"
                })
            }
            1 => {
                let x = before
                    .mos
                    .get("./DMAcc")
                    .is_some_and(|(_, t)| t.contains("boot-X"));
                bootstrap(if x { "Y" } else { "X" })
            }
            _ => enforce(if round % 2 == 0 {
                "2026-11-23T09:00"
            } else {
                "2026-11-23T20:00"
            }),
        };
        // Half of the kills anywhere in the run, half in its last two
        // fifths, where the tree is written.
        let t = took[op.name].as_micros() as u64;
        let delay = Duration::from_micros(if rng.next().is_multiple_of(2) {
            rng.next() % (t * 6 / 5 + 1)
        } else {
            t * 3 / 5 + rng.next() % (t * 2 / 5 + 1)
        });
        let mut child = spawn(d, &op);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            finished += 1;
        } else {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let place = format!(
            "round {round} ({}, killed after {delay:?}, seed {seed})",
            op.name
        );
        // A kill inside the change leaves its generation beside the old one
        // (until the next open collects it).
        if std::fs::read_dir(dev.join("trees")).unwrap().count() > 1 {
            mid_change += 1;
        }
        let after = look(&dev).unwrap_or_else(|e| panic!("{place}: {e}"));
        // The next run recovers; it gives the new state.
        finish(d, &op);
        let new = look(&dev).unwrap_or_else(|e| panic!("{place}: after the rerun: {e}"));
        if let Err(e) = old_or_new(&before, &after, &new, &card_tag, n) {
            panic!("{place}: {e}");
        }
    }
    eprintln!("{mid_change} kills landed inside a tree change");
    eprintln!("{killed} runs killed, {finished} finished before their kill; all old or new");
    assert!(killed > 0, "no run was killed");
}

/// Self-test of the round check: a tree half of one card, half of the
/// other (what a change without atomicity leaves) is caught, as is a tree
/// with an MO missing; the old and the new states pass.
#[test]
fn self_test_a_mixed_tree_fails_the_check() {
    let cards: BTreeMap<String, &str> = [("AA".to_string(), "A"), ("BB".to_string(), "B")].into();
    let state = |tags: &[&str]| Seen {
        last_card: Some(if tags[0] == "A" { "AA" } else { "BB" }.into()),
        mos: tags
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                let origin = Origin::Card {
                    card_id: format!("{tag}{tag}"),
                    generation: 1,
                    version: 1,
                };
                let tnds = format!("<Value>card-{tag}-{i}</Value>");
                (format!("./Vendor/M{i}"), (origin, tnds))
            })
            .collect(),
        resources: None,
    };
    let (old, new) = (state(&["A", "A", "A"]), state(&["B", "B", "B"]));
    assert!(old_or_new(&old, &old, &new, &cards, 3).is_ok());
    assert!(old_or_new(&old, &new, &new, &cards, 3).is_ok());
    let mixed = state(&["B", "B", "A"]);
    assert!(old_or_new(&old, &mixed, &new, &cards, 3).is_err());
    let mut missing = new.clone();
    missing.mos.remove("./Vendor/M2");
    assert!(old_or_new(&old, &missing, &new, &cards, 3).is_err());
}
