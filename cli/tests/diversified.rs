//! Per-card authority keys from master keys (`--master-key-file`,
//! docs/key-diversification.md): cards whose administrator key set was
//! replaced by keys diversified from master keys are reached by `fleet
//! provision`, `fleet acl-grant` and `ota build` with the master keys only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs;

use common::*;
use dmsc_host::fleet::diversify::derive_card_keys;

/// Three cards whose admin key set 0x30 now holds the card's diversified keys
/// (computed here, as an issuer's system would, and sent with `authority rotate`).
fn diversified_fleet(dir: &std::path::Path) -> Vec<String> {
    fs::create_dir(dir.join("fleet")).expect("mkdir");
    for i in 0..3 {
        new_card(dir, &format!("fleet/c{i}.state"));
    }
    let list = run(dir, &["fleet", "list", "--sim-dir", "fleet", "--json"])
        .expect(0)
        .json();
    let mut ids = Vec::new();
    for (i, card) in list["cards"].as_array().expect("cards").iter().enumerate() {
        let id = card["card_id"].as_str().expect("id").to_string();
        let keys = derive_card_keys(&master(), &hex::decode(&id).expect("hex")).expect("derive");
        let k = &keys.authority.keys;
        let file = dir.join(format!("card{i}.keys"));
        fs::write(
            &file,
            format!(
                "{}:{}:{}\n",
                hex::encode(k.enc()),
                hex::encode(k.mac()),
                hex::encode(k.dek())
            ),
        )
        .expect("write");
        run_env(
            dir,
            &[
                "--sim",
                &format!("fleet/c{i}.state"),
                "--key-version",
                "0x30",
                "authority",
                "rotate",
                "0x30",
                "--new-key-file",
                &file.display().to_string(),
            ],
            &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
        )
        .expect(0);
        fs::remove_file(&file).expect("remove the per-card key file");
        ids.push(id);
    }
    fs::write(dir.join("master.keys"), format!("{MASTER}\n")).expect("write");
    ids
}

#[test]
fn master_keys_alone_reach_every_card_with_its_own_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ids = diversified_fleet(d);
    let prof = d.join("prof");
    fs::create_dir(&prof).expect("mkdir");
    fs::write(prof.join("dmacc.xml"), "<MgmtTree/>").expect("write");
    fs::write(
        prof.join("profile.json"),
        r#"{"objects": [{"ref": "./Vendor/Gw", "mo_type": "urn:x-vendor:gw", "file": "dmacc.xml", "acl": "Get=*&Replace=admin"}]}"#,
    )
    .expect("write");
    let with_master = |args: &[&str]| {
        let mut all = vec!["--master-key-file", "master.keys", "--key-version", "0x30"];
        all.extend_from_slice(args);
        run(d, &all)
    };
    let out = with_master(&[
        "fleet",
        "provision",
        "--profile",
        "prof",
        "--cards",
        "all",
        "--sim-dir",
        "fleet",
        "--json",
    ])
    .expect(0);
    assert!(
        out.stderr.contains("warning: master keys read from a file"),
        "{out:?}"
    );
    let json = out.json();
    assert_eq!(json["failed"], 0, "{json}");
    assert_eq!(json["cards"].as_array().expect("cards").len(), 3);

    let granted = with_master(&[
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
    ])
    .expect(0)
    .json();
    assert_eq!(granted["outcome"], "applied", "{granted}");

    // The test keys (the cards' former key set) no longer open any card.
    let old = run_env(
        d,
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
        &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
    );
    assert_ne!(old.code, 0);
    assert_eq!(old.json()["failed"], 3);

    // An OTA script from the master keys, for card 0 only.
    let dmacc = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-vectors/tnds/dmacc.xml")
        .display()
        .to_string();
    run(
        d,
        &[
            "--sim",
            "fleet/c0.state",
            "--key-version",
            "0x30",
            "ota",
            "request",
            "-o",
            "req.json",
        ],
    )
    .expect(0);
    with_master(&[
        "ota",
        "build",
        "--request",
        "req.json",
        "--put",
        &dmacc,
        "-o",
        "s.json",
    ])
    .expect(0);
    // Relayed to card 1 as if it were its script: card 1's keys differ.
    let script = fs::read_to_string(d.join("s.json")).expect("script");
    fs::write(d.join("other.json"), script.replace(&ids[0], &ids[1])).expect("write");
    let out = run(
        d,
        &["--sim", "fleet/c1.state", "ota", "apply", "other.json"],
    )
    .expect(4);
    assert!(out.stderr.contains("EXTERNAL AUTHENTICATE"), "{out:?}");
    run(d, &["--sim", "fleet/c0.state", "ota", "apply", "s.json"]).expect(0);
}

#[test]
fn master_keys_need_a_key_version_and_exclude_the_authority_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    fs::create_dir(d.join("prof")).expect("mkdir");
    fs::write(d.join("prof/profile.json"), r#"{"objects": []}"#).expect("write");
    fs::create_dir(d.join("fleet")).expect("mkdir");
    new_card(d, "fleet/c0.state");
    fs::write(d.join("master.keys"), format!("{MASTER}\n")).expect("write");
    let args = [
        "--master-key-file",
        "master.keys",
        "fleet",
        "provision",
        "--profile",
        "prof",
        "--cards",
        "all",
        "--sim-dir",
        "fleet",
    ];
    let out = run(d, &args).expect(2);
    assert!(out.stderr.contains("needs --key-version"), "{out:?}");
    let out = run_env(
        d,
        &[&["--key-version", "0x30"], &args[..]].concat(),
        &[("DMSC_SCP_KEYS", &triple(TEST_KEY))],
    )
    .expect(2);
    assert!(out.stderr.contains("not both"), "{out:?}");
    // No key byte is ever printed.
    for part in MASTER.split(':') {
        assert!(!out.stderr.contains(part) && !out.stdout.contains(part));
    }
}

/// A private SoftHSM2 token (SOFTHSM2_CONF in `dir`) holding the master keys,
/// imported with OpenSC's pkcs11-tool as docs/key-diversification.md says.
fn softhsm_token(dir: &std::path::Path) -> (String, String) {
    let module = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("libsofthsm2.so: install softhsm2 (.ci/install-deps)")
    .to_string();
    fs::create_dir(dir.join("tokens")).expect("mkdir");
    let conf = dir.join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .expect("write");
    let conf = conf.display().to_string();
    let tool = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
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
            "3141",
            "--so-pin",
            "27182818",
        ],
    );
    for (kind, key) in ["enc", "mac", "dek"].into_iter().zip(MASTER.split(':')) {
        let file = dir.join("key.bin");
        fs::write(&file, hex::decode(key).expect("hex")).expect("write");
        tool(
            "pkcs11-tool",
            &[
                "--module",
                &module,
                "--login",
                "--pin",
                "3141",
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
        fs::remove_file(&file).expect("remove");
    }
    fs::remove_file(dir.join("master.keys")).ok();
    (module, conf)
}

#[test]
fn a_station_with_only_the_hsm_reaches_every_card() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    diversified_fleet(d);
    let (module, conf) = softhsm_token(d);
    fs::create_dir(d.join("prof")).expect("mkdir");
    fs::write(d.join("prof/profile.json"), r#"{"objects": []}"#).expect("write");
    let args = |kvn: &'static str| {
        vec![
            "--hsm-module".to_string(),
            module.clone(),
            "--hsm-token".into(),
            "line".into(),
            "--key-version".into(),
            kvn.into(),
            "fleet".into(),
            "provision".into(),
            "--profile".into(),
            "prof".into(),
            "--cards".into(),
            "all".into(),
            "--sim-dir".into(),
            "fleet".into(),
            "--json".into(),
        ]
    };
    let run_hsm = |args: &[String], pin: Option<&str>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env = vec![("SOFTHSM2_CONF", conf.as_str())];
        if let Some(pin) = pin {
            env.push(("DMSC_HSM_PIN", pin));
        }
        run_env(d, &args, &env)
    };
    let out = run_hsm(&args("0x30"), Some("3141")).expect(0);
    assert!(!out.stderr.contains("warning"), "{out:?}");
    let json = out.json();
    assert_eq!(json["failed"], 0, "{json}");
    assert_eq!(json["cards"].as_array().expect("cards").len(), 3);
    let mut printed = out.stdout + &out.stderr;

    let out = run_hsm(&args("0x30"), Some("0000")).expect(1);
    assert!(out.stderr.contains("PIN"), "{out:?}");
    printed += &out.stderr;
    let out = run_hsm(&args("0x31"), Some("3141")).expect(1);
    assert!(out.stderr.contains("'dmsc-master-31-enc'"), "{out:?}");
    printed += &out.stderr;
    let out = run_hsm(&args("0x30"), None).expect(2);
    assert!(out.stderr.contains("DMSC_HSM_PIN"), "{out:?}");
    // No master key byte in anything printed.
    for key in MASTER.split(':') {
        assert!(!printed.to_uppercase().contains(key), "{printed}");
    }
}
