//! `dmsc mo …`, `dmsc refresh`, `dmsc ota …` on simulated cards (in-process).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use common::*;

fn vector(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-vectors/tnds")
        .join(name)
        .display()
        .to_string()
}

fn with_keys(keys: &str) -> [(&str, &str); 1] {
    [("DMSC_SCP_KEYS", keys)]
}

fn mo_uris(dir: &Path, card: &str) -> Vec<String> {
    let out = run(dir, &["--sim", card, "--json", "mo", "list"]).expect(0);
    out.json()["mos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uri"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn put_list_get_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let keys = triple(TEST_KEY);
    let dmacc = vector("dmacc.xml");
    run_env(
        d,
        &["--sim", "card", "mo", "put", &dmacc],
        &with_keys(&keys),
    )
    .expect(0);
    run_env(
        d,
        &[
            "--sim",
            "card",
            "mo",
            "put",
            &vector("devinfo.json"),
            "--uri",
            "./Vendor/Info",
        ],
        &with_keys(&keys),
    )
    .expect(0);
    assert_eq!(mo_uris(d, "card"), vec!["./DMAcc", "./Vendor/Info"]);

    // TNDS out, back in, out again: the same document.
    let first = run(d, &["--sim", "card", "mo", "get", "./DMAcc"]).expect(0);
    assert!(first
        .stdout
        .contains("<Value>  Example  DM &lt;server&gt; </Value>"));
    assert!(first
        .stdout
        .contains("<ACL>Get=*&amp;Replace=ServerA+ServerB</ACL>"));
    std::fs::write(d.join("copy.xml"), &first.stdout).unwrap();
    run_env(
        d,
        &["--sim", "card", "mo", "put", "copy.xml"],
        &with_keys(&keys),
    )
    .expect(0);
    let second = run(d, &["--sim", "card", "mo", "get", "./DMAcc"]).expect(0);
    assert_eq!(first.stdout, second.stdout);
    let json = run(
        d,
        &["--sim", "card", "mo", "get", "./DMAcc", "--format", "json"],
    )
    .expect(0);
    std::fs::write(d.join("copy.json"), &json.stdout).unwrap();
    run_env(
        d,
        &["--sim", "card", "mo", "put", "copy.json"],
        &with_keys(&keys),
    )
    .expect(0);
    let third = run(d, &["--sim", "card", "mo", "get", "./DMAcc"]).expect(0);
    assert_eq!(first.stdout, third.stdout);
    let doc = run(d, &["--sim", "card", "--json", "mo", "get", "./DMAcc"])
        .expect(0)
        .json();
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["mo_type"], "urn:oma:mo:oma-dm-dmacc:1.0");

    // Delete needs --yes off a terminal, and an authority.
    run_env(
        d,
        &["--sim", "card", "mo", "delete", "./DMAcc"],
        &with_keys(&keys),
    )
    .expect(2);
    run(d, &["--sim", "card", "mo", "delete", "./DMAcc", "--yes"]).expect(2);
    run_env(
        d,
        &["--sim", "card", "mo", "delete", "./DMAcc", "--yes"],
        &with_keys(&keys),
    )
    .expect(0);
    assert_eq!(mo_uris(d, "card"), vec!["./Vendor/Info"]);
    // As `*`: the card would answer alike for missing and forbidden; the host
    // does not ask it for a record it does not list.
    let gone = run(d, &["--sim", "card", "mo", "get", "./DMAcc"]).expect(8);
    assert!(
        gone.stderr.contains("not found or not permitted"),
        "{gone:?}"
    );
    run_env(
        d,
        &["--sim", "card", "mo", "get", "./DMAcc"],
        &with_keys(&keys),
    )
    .expect(8);
}

#[test]
fn malformed_input_names_line_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let keys = triple(TEST_KEY);
    std::fs::write(
        d.join("bad.xml"),
        "<MgmtTree xmlns=\"syncml:dmddf1.2\">\n  <VerDTD>1.2</VerDTD>\n  <Node><NodeName>A</NodeName>\n</MgmtTree>\n",
    )
    .unwrap();
    let out = run_env(
        d,
        &["--sim", "card", "mo", "put", "bad.xml"],
        &with_keys(&keys),
    )
    .expect(2);
    assert!(
        out.stderr.contains("bad.xml: TNDS XML line 4, column 1"),
        "{out:?}"
    );
    std::fs::write(
        d.join("bad.json"),
        "{\n  \"ver_dtd\": \"1.2\",\n  \"nodes\": [\n    {\"name\": }\n  ]\n}",
    )
    .unwrap();
    let out = run_env(
        d,
        &["--sim", "card", "mo", "put", "bad.json"],
        &with_keys(&keys),
    )
    .expect(2);
    assert!(
        out.stderr.contains("bad.json: JSON line 4, column"),
        "{out:?}"
    );
    std::fs::write(
        d.join("acl.xml"),
        std::fs::read_to_string(vector("dmacc.xml"))
            .unwrap()
            .replace("Get=*&amp;Replace=ServerA+ServerB", "Get=*&amp;Get=ServerA"),
    )
    .unwrap();
    let out = run_env(
        d,
        &["--sim", "card", "mo", "put", "acl.xml"],
        &with_keys(&keys),
    )
    .expect(2);
    assert!(out.stderr.contains("right listed twice"), "{out:?}");
    assert!(mo_uris(d, "card").is_empty());
}

#[test]
fn a_full_card_refuses_and_keeps_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, &["-q", "sim", "init", "card", "--capacity", "700"]).expect(0);
    let keys = triple(TEST_KEY);
    run_env(
        d,
        &["--sim", "card", "mo", "put", &vector("devinfo.json")],
        &with_keys(&keys),
    )
    .expect(0);
    let out = run_env(
        d,
        &["--sim", "card", "mo", "put", &vector("dmacc.xml")],
        &with_keys(&keys),
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not enough free memory"), "{out:?}");
    assert!(out.stderr.contains("nothing was stored"), "{out:?}");
    assert_eq!(mo_uris(d, "card"), vec!["./DevInfo"]);
}

#[test]
fn refresh_copy_and_diff_with_a_device_tree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let keys = triple(TEST_KEY);
    run_env(
        d,
        &["--sim", "card", "mo", "put", &vector("devinfo.json")],
        &with_keys(&keys),
    )
    .expect(0);
    // A folder that is not a device tree (a typo) is refused, and not created.
    let typo = run(
        d,
        &["--sim", "card", "--json", "refresh", "--device", "tere"],
    )
    .expect(2);
    assert!(typo.stderr.contains("no such directory"), "{typo:?}");
    assert!(typo.stderr.contains("--init"), "{typo:?}");
    assert!(!d.join("tere").exists());
    std::fs::create_dir(d.join("docs")).unwrap();
    std::fs::write(d.join("docs/notes.txt"), "mine").unwrap();
    for extra in [&[][..], &["--init"][..]] {
        let mut args = vec!["--sim", "card", "refresh", "--device", "docs"];
        args.extend_from_slice(extra);
        let out = run(d, &args).expect(2);
        assert!(out.stderr.contains("not a device tree"), "{out:?}");
    }
    assert_eq!(std::fs::read_dir(d.join("docs")).unwrap().count(), 1);
    let r = run(
        d,
        &[
            "--sim", "card", "--json", "refresh", "--device", "tree", "--init",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(r["added"], serde_json::json!(["./DevInfo"]));
    assert!(d.join("tree/device-tree.json").exists());
    assert_eq!(r["unchanged"], false);
    let r = run(
        d,
        &["--sim", "card", "--json", "refresh", "--device", "tree"],
    )
    .expect(0)
    .json();
    assert_eq!(r["unchanged"], true);
    // Visible names: `ls tree/current/mo` shows the MOs.
    let names: Vec<String> = std::fs::read_dir(d.join("tree/current/mo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["DevInfo.xml"]);

    // The device's own MO (copied into the tree by hand, as an integrator would),
    // then copied to the card.
    let devtree = dmsc_host::device_tree::DirectoryTree::open(&d.join("tree")).unwrap();
    let mut devtree = devtree;
    use dmsc_host::device_tree::DeviceTree;
    let own =
        dmsc_host::mo::MgmtTree::from_tnds(&std::fs::read_to_string(vector("dmacc.xml")).unwrap())
            .unwrap();
    devtree
        .apply(&dmsc_host::device_tree::TreeChange {
            put: vec![(
                "./DMAcc".into(),
                own,
                dmsc_host::device_tree::Origin::Device,
            )],
            ..Default::default()
        })
        .unwrap();
    let diff = run(
        d,
        &["--sim", "card", "--json", "mo", "diff", "--device", "tree"],
    )
    .expect(0)
    .json();
    assert_eq!(diff["mos"]["./DMAcc"], "device_only");
    assert_eq!(diff["mos"]["./DevInfo"], "same");
    run(
        d,
        &[
            "--sim", "card", "mo", "copy", "--device", "tree", "--uri", "./DMAcc",
        ],
    )
    .expect(2);
    run_env(
        d,
        &[
            "--sim",
            "card",
            "mo",
            "copy",
            "--device",
            "tree",
            "--uri",
            "./DMAcc",
            "--subtree",
            "ServerA/AppAddr",
        ],
        &with_keys(&keys),
    )
    .expect(0);
    assert_eq!(
        mo_uris(d, "card"),
        vec!["./DMAcc/ServerA/AppAddr", "./DevInfo"]
    );
    run_env(
        d,
        &[
            "--sim",
            "card",
            "mo",
            "copy",
            "--device",
            "tree",
            "--uri",
            "./DMAcc",
            "--erase-device",
        ],
        &with_keys(&keys),
    )
    .expect(2);
    // The whole MO would enclose the card's record of its subtree: refused,
    // naming that record; the device copy stays.
    let copy_all = [
        "--sim",
        "card",
        "mo",
        "copy",
        "--device",
        "tree",
        "--uri",
        "./DMAcc",
        "--erase-device",
        "--yes",
    ];
    let refused = run_env(d, &copy_all, &with_keys(&keys)).expect(2);
    assert!(
        refused
            .stderr
            .contains("encloses the MO record ./DMAcc/ServerA/AppAddr"),
        "{refused:?}"
    );
    let diff = run(
        d,
        &["--sim", "card", "--json", "mo", "diff", "--device", "tree"],
    )
    .expect(0)
    .json();
    assert_eq!(diff["mos"]["./DMAcc/ServerA/AppAddr"], "same");
    assert_eq!(diff["mos"]["./DMAcc"], "device_only");
    let one = run(
        d,
        &[
            "--sim",
            "card",
            "--json",
            "mo",
            "diff",
            "--device",
            "tree",
            "./DMAcc/ServerA/AppAddr/1",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(
        one["mos"],
        serde_json::json!({"./DMAcc/ServerA/AppAddr/1": "same"})
    );
    run_env(
        d,
        &[
            "--sim",
            "card",
            "mo",
            "delete",
            "./DMAcc/ServerA/AppAddr",
            "--yes",
        ],
        &with_keys(&keys),
    )
    .expect(0);
    run_env(d, &copy_all, &with_keys(&keys)).expect(0);
    let diff = run(
        d,
        &["--sim", "card", "--json", "mo", "diff", "--device", "tree"],
    )
    .expect(0)
    .json();
    assert_eq!(diff["mos"]["./DMAcc"], "card_only");
    run_env(
        d,
        &[
            "--sim", "card", "mo", "copy", "--device", "tree", "--uri", "./Nope",
        ],
        &with_keys(&keys),
    )
    .expect(8);
    // The card's MOs arrive with the next refresh.
    let r = run(
        d,
        &["--sim", "card", "--json", "refresh", "--device", "tree"],
    )
    .expect(0)
    .json();
    assert_eq!(r["added"], serde_json::json!(["./DMAcc"]));
    run(d, &["--sim", "card", "watch", "--device", "tree"]).expect(2);
}

#[test]
fn ota_script_applies_once_on_its_card_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let keys = triple(TEST_KEY);
    run(
        d,
        &["--sim", "card", "refresh", "--device", "tree", "--init"],
    )
    .expect(0);
    run(d, &["--sim", "card", "ota", "request", "-o", "req.json"]).expect(0);
    run(
        d,
        &[
            "ota",
            "build",
            "--request",
            "req.json",
            "--put",
            &vector("dmacc.xml"),
            "-o",
            "s.json",
        ],
    )
    .expect(2);
    run_env(
        d,
        &[
            "ota",
            "build",
            "--request",
            "req.json",
            "--put",
            &vector("dmacc.xml"),
            "-o",
            "s.json",
        ],
        &with_keys(&keys),
    )
    .expect(0);
    let script = std::fs::read_to_string(d.join("s.json")).unwrap();
    assert!(!script.contains(&hex::encode_upper("com.example.dm")));

    // An altered byte in the wrapped command.
    let mut doc: serde_json::Value = serde_json::from_str(&script).unwrap();
    let apdu = doc["apdus"][2].as_str().unwrap().to_string();
    let flipped = if apdu.ends_with('0') { "1" } else { "0" };
    doc["apdus"][2] = serde_json::json!(format!("{}{flipped}", &apdu[..apdu.len() - 1]));
    std::fs::write(d.join("altered.json"), doc.to_string()).unwrap();
    let out = run(d, &["--sim", "card", "ota", "apply", "altered.json"]).expect(4);
    assert!(out.stderr.contains("refused"), "{out:?}");
    assert!(mo_uris(d, "card").is_empty());

    // The refusal used up the script's counter: a new request, a new script.
    run(d, &["--sim", "card", "ota", "request", "-o", "req.json"]).expect(0);
    run_env(
        d,
        &[
            "ota",
            "build",
            "--request",
            "req.json",
            "--put",
            &vector("dmacc.xml"),
            "-o",
            "s.json",
        ],
        &with_keys(&keys),
    )
    .expect(0);
    // Another card: refused before anything is sent.
    new_card(d, "other");
    let out = run(d, &["--sim", "other", "ota", "apply", "s.json"]).expect(4);
    assert!(out.stderr.contains("is for card"), "{out:?}");
    assert!(mo_uris(d, "other").is_empty());

    let out = run(d, &["--sim", "card", "--json", "ota", "apply", "s.json"])
        .expect(0)
        .json();
    assert_eq!(out["operations"], serde_json::json!(["put mo:./DMAcc"]));
    // Replayed: refused, unchanged.
    run(d, &["--sim", "card", "ota", "apply", "s.json"]).expect(4);
    assert_eq!(mo_uris(d, "card"), vec!["./DMAcc"]);
    let r = run(
        d,
        &["--sim", "card", "--json", "refresh", "--device", "tree"],
    )
    .expect(0)
    .json();
    assert_eq!(r["added"], serde_json::json!(["./DMAcc"]));
    // A malformed script.
    std::fs::write(d.join("broken.json"), "{\n \"schema_version\": 1,\n").unwrap();
    let out = run(d, &["--sim", "card", "ota", "apply", "broken.json"]).expect(2);
    assert!(out.stderr.contains("line 3"), "{out:?}");
}

/// `./Vendor` holding `Acme/Email/Port` = `port`, rooted at `root`, as JSON.
fn vendor_json(root: &str, port: &str) -> String {
    use dmsc_host::mo::{self, MgmtTree, Node};
    let mut port_node = Node::named("Port");
    port_node.value = Some(port.into());
    let mut email = Node::named("Email");
    email.children.push(port_node);
    let mut acme = Node::named("Acme");
    acme.children.push(email);
    let mut top = Node::named("Vendor");
    top.children.push(acme);
    let whole = mo::rooted_at(&MgmtTree::single(top), "./Vendor").unwrap();
    if root == "./Vendor" {
        whole.to_json()
    } else {
        let rel = root.trim_start_matches("./Vendor/");
        whole.subtree(rel).unwrap().to_json()
    }
}

#[test]
fn one_record_per_node_and_inner_nodes_read_from_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let keys = triple(TEST_KEY);
    std::fs::write(d.join("vendor.json"), vendor_json("./Vendor", "995")).unwrap();
    std::fs::write(
        d.join("email.json"),
        vendor_json("./Vendor/Acme/Email", "25"),
    )
    .unwrap();
    run_env(
        d,
        &["--sim", "card", "mo", "put", "vendor.json"],
        &with_keys(&keys),
    )
    .expect(0);
    let refused = run_env(
        d,
        &["--sim", "card", "mo", "put", "email.json"],
        &with_keys(&keys),
    )
    .expect(2);
    assert!(
        refused
            .stderr
            .contains("./Vendor/Acme/Email lies inside the MO record ./Vendor"),
        "{refused:?}"
    );
    assert_eq!(mo_uris(d, "card"), vec!["./Vendor"]);

    // An inner node, as `*`: read from its record.
    let inner = run(
        d,
        &[
            "--sim",
            "card",
            "--json",
            "mo",
            "get",
            "./Vendor/Acme/Email",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(inner["uri"], "./Vendor/Acme/Email");
    assert_eq!(inner["record"], "./Vendor");
    let text = run(d, &["--sim", "card", "mo", "get", "./Vendor/Acme/Email"]).expect(0);
    assert!(text.stdout.contains("<Value>995</Value>"), "{text:?}");
    let none = run(d, &["--sim", "card", "mo", "get", "./Vendor/Acme/Fax"]).expect(8);
    assert!(none.stderr.contains("no such node"), "{none:?}");
    let none = run(d, &["--sim", "card", "mo", "get", "./Elsewhere/X"]).expect(8);
    assert!(
        none.stderr.contains("not found or not permitted"),
        "{none:?}"
    );
    // None of these reads was refused by the card: no access denied audited.
    let audit = run_env(
        d,
        &[
            "--sim",
            "card",
            "--json",
            "audit",
            "--event",
            "access-denied",
        ],
        &with_keys(&keys),
    )
    .expect(0)
    .json();
    assert_eq!(audit["entries"], serde_json::json!([]), "{audit}");
}

#[test]
fn a_put_that_does_not_fit_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, &["-q", "sim", "init", "card", "--capacity", "6000"]).expect(0);
    let keys = triple(TEST_KEY);
    let one = dmsc_host::mo::MgmtTree::parse_any(
        &std::fs::read_to_string(vector("devinfo.json")).unwrap(),
    )
    .unwrap();
    let mut all = one.clone();
    all.nodes = (0..100)
        .map(|i| {
            dmsc_host::mo::rooted_at(&one, &format!("./Many/M{i}"))
                .unwrap()
                .nodes
                .remove(0)
        })
        .collect();
    std::fs::write(d.join("many.json"), all.to_json()).unwrap();
    let out = run_env(
        d,
        &["--sim", "card", "mo", "put", "many.json"],
        &with_keys(&keys),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("100 MO(s)"), "{out:?}");
    assert!(out.stderr.contains("nothing was stored"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(mo_uris(d, "card").is_empty());
}
