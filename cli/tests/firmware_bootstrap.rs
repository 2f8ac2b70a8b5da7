//! `dmsc firmware …` and `dmsc bootstrap …` against simulated cards, with keys,
//! signatures and MACs made by the real `openssl` tool; prompts answered on a
//! pseudo-terminal (`script`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::{new_card, run, run_env, triple, Out, TEST_KEY};
use dmsc_test_support::openssl;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn admin(dir: &Path, args: &[&str]) -> Out {
    run_env(dir, args, &[("DMSC_SCP_KEYS", &triple(TEST_KEY))])
}

/// Runs `dmsc ARGS` on a pseudo-terminal, typing `input`.
fn on_terminal(dir: &Path, args: &[&str], input: &str, env: &[(&str, &str)]) -> Out {
    let bin = env!("CARGO_BIN_EXE_dmsc");
    let line = std::iter::once(bin)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "printf '{input}' | script -qec \"{line}\" /dev/null"
        ))
        .current_dir(dir)
        .env_remove("DMSC_SIM")
        .env_remove("DMSC_PIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A card with approvers maintainer (SEC1 key, PEM public key) and owner
/// (PKCS#8 key, DER public key), the rule requiring both (and the PIN to
/// override), and a 2 MiB package.
fn firmware_card(dir: &Path) {
    new_card(dir, "card.state");
    openssl(
        dir,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-out",
            "maintainer.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            "maintainer.pem",
            "-pubout",
            "-out",
            "maintainer.pub",
        ],
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "owner.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            "owner.pem",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "owner.der",
        ],
    );
    for (name, key) in [("maintainer", "maintainer.pub"), ("owner", "owner.der")] {
        admin(
            dir,
            &[
                "--sim",
                "card.state",
                "firmware",
                "approver",
                "add",
                name,
                "--key",
                key,
            ],
        )
        .expect(0);
    }
    admin(
        dir,
        &[
            "--sim",
            "card.state",
            "firmware",
            "rule",
            "set",
            "--require",
            "maintainer,owner",
            "--user-pin",
        ],
    )
    .expect(0);
    let package: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    std::fs::write(dir.join("pkg.bin"), package).unwrap();
}

fn sign_both(dir: &Path, version: &str) -> (String, String) {
    let m = format!("m-{version}.approval");
    let o = format!("o-{version}.approval");
    run(
        dir,
        &[
            "firmware",
            "sign",
            "pkg.bin",
            "--key",
            "maintainer.pem",
            "--version",
            version,
            "--class",
            "gateway",
            "-o",
            &m,
        ],
    )
    .expect(0);
    // The owner signs the statement bytes with plain openssl.
    run(
        dir,
        &[
            "firmware",
            "statement",
            "pkg.bin",
            "--version",
            version,
            "--class",
            "gateway",
            "--approver",
            "owner",
            "-o",
            &o,
        ],
    )
    .expect(0);
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "owner.pem",
            "-out",
            &format!("{o}.sig"),
            &o,
        ],
    );
    (m, o)
}

#[test]
fn firmware_approve_rule_floor_and_confirm() {
    let dir = tmp();
    let d = dir.path();
    firmware_card(d);
    let (m, o) = sign_both(d, "2.1.0");
    let list = run(
        d,
        &[
            "--sim",
            "card.state",
            "--json",
            "firmware",
            "approver",
            "list",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(list["approvers"].as_array().unwrap().len(), 2);

    // One approval: refused, the missing approver named.
    let out = run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "approve",
            "pkg.bin",
            "--approval",
            &m,
        ],
    )
    .expect(6);
    assert!(out.stdout.contains("approval of owner missing"), "{out:?}");
    // Both, from standard input: approved.
    let mut cmd = common::dmsc(d);
    cmd.args([
        "--sim",
        "card.state",
        "--json",
        "firmware",
        "approve",
        "-",
        "--approval",
        &m,
        "--approval",
        &o,
    ])
    .stdin(std::fs::File::open(d.join("pkg.bin")).unwrap());
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["decision"], "approved");
    assert_eq!(doc["package"]["size"], 2 * 1024 * 1024);

    run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "confirm-installed",
            "pkg.bin",
            "--version",
            "2.1.0",
            "--class",
            "gateway",
        ],
    )
    .expect(0);
    // Nothing pending any more.
    run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "confirm-installed",
            "pkg.bin",
            "--version",
            "2.1.0",
            "--class",
            "gateway",
        ],
    )
    .expect(4);
    // Replay of an older version's approvals: below the floor.
    let (m0, o0) = sign_both(d, "2.0.0");
    let out = run(
        d,
        &[
            "--sim",
            "card.state",
            "--json",
            "firmware",
            "approve",
            "pkg.bin",
            "--approval",
            &m0,
            "--approval",
            &o0,
        ],
    )
    .expect(6)
    .json();
    assert_eq!(
        out["reasons"][0],
        "version below the anti-rollback floor 2.1.0"
    );
}

#[test]
fn firmware_tampered_package_bad_files_and_user_decisions() {
    let dir = tmp();
    let d = dir.path();
    firmware_card(d);
    let (m, o) = sign_both(d, "3.0");
    let mut bytes = std::fs::read(d.join("pkg.bin")).unwrap();
    bytes[12345] ^= 1;
    std::fs::write(d.join("tampered.bin"), &bytes).unwrap();
    let out = run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "approve",
            "tampered.bin",
            "--approval",
            &m,
            "--approval",
            &o,
        ],
    )
    .expect(6);
    assert!(
        out.stdout
            .contains("signature of maintainer does not verify"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("is for a package with SHA-256"),
        "{out:?}"
    );

    // A truncated approval file: usage error naming the file and line, before the card.
    let text = std::fs::read_to_string(d.join(&m)).unwrap();
    std::fs::write(d.join("cut.approval"), &text[..60]).unwrap();
    let out = run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "approve",
            "pkg.bin",
            "--approval",
            "cut.approval",
        ],
    )
    .expect(2);
    assert!(
        out.stderr.contains("cut.approval") && out.stderr.contains("line"),
        "{out:?}"
    );
    // A missing detached signature.
    std::fs::remove_file(d.join(format!("{o}.sig"))).unwrap();
    let out = run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "approve",
            "pkg.bin",
            "--approval",
            &o,
        ],
    )
    .expect(2);
    assert!(out.stderr.contains(".sig"), "{out:?}");
    // A bad key file.
    std::fs::write(
        d.join("junk.pem"),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let out = admin(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "approver",
            "add",
            "x",
            "--key",
            "junk.pem",
        ],
    )
    .expect(2);
    assert!(
        out.stderr.contains("junk.pem") && out.stderr.contains("P-256"),
        "{out:?}"
    );

    // On an unapproved package, --on-unapproved ask: the rule wants the PIN, then the user decides.
    let args = [
        "--sim",
        "card.state",
        "firmware",
        "approve",
        "pkg.bin",
        "--approval",
        &m,
        "--on-unapproved",
        "ask",
    ];
    let out = on_terminal(d, &args, "n\\n", &[("DMSC_PIN", "123456")]);
    assert_eq!(out.code, 9, "{out:?}");
    let out = on_terminal(d, &args, "y\\n", &[("DMSC_PIN", "123456")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("the user accepted"), "{out:?}");
    let out = on_terminal(d, &args, "y\\n", &[("DMSC_PIN", "000000")]);
    assert_eq!(out.code, 7, "a wrong PIN: {out:?}");
}

// ---- bootstrap -------------------------------------------------------------------

const TNDS: &str = "<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>\
    <Node><NodeName>DMAcc</NodeName><Node><NodeName>ServerID</NodeName>\
    <Value>net.example</Value></Node></Node></MgmtTree>\n";

fn bootstrap_card(d: &Path, alg: &str, key_bytes: usize) -> String {
    new_card(d, "card.state");
    openssl(
        d,
        &["rand", "-hex", "-out", "bk.hex", &key_bytes.to_string()],
    );
    std::fs::write(d.join("boot.xml"), TNDS).unwrap();
    admin(
        d,
        &[
            "--sim",
            "card.state",
            "bootstrap",
            "set-key",
            "--key-id",
            "1",
            "--alg",
            alg,
            "--key-file",
            "bk.hex",
        ],
    )
    .expect(0);
    let out = run(
        d,
        &[
            "--json",
            "bootstrap",
            "sign",
            "boot.xml",
            "--key",
            "bk.hex",
            "--alg",
            alg,
        ],
    )
    .expect(0)
    .json();
    out["content_type"].as_str().unwrap().to_string()
}

#[test]
fn bootstrap_exit_codes_and_nothing_written_unless_accepted() {
    let dir = tmp();
    let d = dir.path();
    let ct = bootstrap_card(d, "hmac-sha256", 32);
    assert!(
        ct.starts_with("application/vnd.syncml.dm+xml; SEC=NETWORKID; MAC="),
        "{ct}"
    );
    // The MAC is openssl's HMAC-SHA256 with the same key.
    let key = std::fs::read_to_string(d.join("bk.hex")).unwrap();
    let out = Command::new("openssl")
        .args([
            "mac",
            "-digest",
            "SHA256",
            "-macopt",
            &format!("hexkey:{}", key.trim()),
            "-in",
            "boot.xml",
            "HMAC",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    let mac = String::from_utf8(out.stdout).unwrap().trim().to_uppercase();
    assert!(ct.ends_with(&mac), "{ct} vs {mac}");

    let verify = |extra: &[&str]| -> Out {
        let mut args = vec![
            "--sim",
            "card.state",
            "bootstrap",
            "verify",
            "boot.xml",
            "--device",
            "dev",
            "--init",
        ];
        args.extend_from_slice(extra);
        run(d, &args)
    };
    let written = || d.join("dev/current").exists();
    // Not on a terminal without --yes: usage error, the card is not asked.
    verify(&["--content-type", &ct]).expect(2);
    // Unknown SEC value, malformed header.
    let out = verify(&["--content-type", &ct.replace("NETWORKID", "BOGUS"), "--yes"]).expect(2);
    assert!(out.stderr.contains("unknown SEC value"), "{out:?}");
    verify(&[
        "--content-type",
        "application/vnd.syncml.dm+xml; SEC=NETWORKID",
        "--yes",
    ])
    .expect(2);
    // A wrong MAC: exit 6.
    let wrong = format!("{}00", &mac[..mac.len() - 2]);
    let wrong = if wrong == mac {
        format!("{}11", &mac[..mac.len() - 2])
    } else {
        wrong
    };
    verify(&["--mac", &wrong, "--alg", "hmac-sha256", "--yes"]).expect(6);
    // A MAC of the wrong length for the algorithm: usage error before the card.
    verify(&["--mac", "0011", "--alg", "hmac-sha256", "--yes"]).expect(2);
    // Without --alg, a MAC of no algorithm's length is refused on the host too
    // (not sent to the card, which would answer 6700), in --mac and in the header.
    let out = verify(&["--mac", "0011", "--yes"]).expect(2);
    assert!(out.stderr.contains("MACs are 16"), "{out:?}");
    let short = format!("{}; SEC=NETWORKID; MAC=0011", ct.split(';').next().unwrap());
    let out = verify(&["--content-type", &short, "--yes"]).expect(2);
    assert!(out.stderr.contains("MACs are 16"), "{out:?}");
    // A wrong key id: the card refuses (no such key for the device).
    verify(&["--content-type", &ct, "--key-id", "9", "--yes"]).expect(4);
    assert!(!written());
    // The user declines: exit 9, nothing written.
    let out = on_terminal(
        d,
        &[
            "--sim",
            "card.state",
            "bootstrap",
            "verify",
            "boot.xml",
            "--device",
            "dev",
            "--init",
            "--content-type",
            &ct,
        ],
        "n\\n",
        &[],
    );
    assert_eq!(out.code, 9, "{out:?}");
    assert!(!written());
    // Accepted: written.
    let out = verify(&["--content-type", &ct, "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(out["result"], "applied");
    // The stable path bootstrap.md shows: DIR/current/mo/<MO>.xml.
    assert_eq!(out["written"], "dev/current/mo/DMAcc.xml");
    let content = std::fs::read_to_string(d.join(out["written"].as_str().unwrap())).unwrap();
    assert!(content.contains("<NodeName>DMAcc</NodeName>"), "{content}");

    // The card counted and audited the wrong MAC.
    let audit = admin(
        d,
        &[
            "--sim",
            "card.state",
            "--json",
            "audit",
            "--event",
            "bootstrap-rejected",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
}

#[test]
fn bootstrap_aes_cmac_and_bad_keys() {
    let dir = tmp();
    let d = dir.path();
    let ct = bootstrap_card(d, "aes-cmac", 16);
    run(
        d,
        &[
            "--sim",
            "card.state",
            "bootstrap",
            "verify",
            "boot.xml",
            "--device",
            "dev",
            "--init",
            "--content-type",
            &ct,
            "--yes",
        ],
    )
    .expect(0);
    // A key of the wrong length for the algorithm, never echoed.
    std::fs::write(d.join("short.hex"), "00112233").unwrap();
    let out = run(
        d,
        &[
            "bootstrap",
            "sign",
            "boot.xml",
            "--key",
            "short.hex",
            "--alg",
            "aes-cmac",
        ],
    )
    .expect(2);
    assert!(
        out.stderr.contains("short.hex") && !out.stderr.contains("00112233"),
        "{out:?}"
    );
    // set-key without authority keys.
    run(
        d,
        &[
            "--sim",
            "card.state",
            "bootstrap",
            "set-key",
            "--key-id",
            "2",
            "--alg",
            "aes-cmac",
            "--key-file",
            "bk.hex",
        ],
    )
    .expect(2);
}

// ---- MCUboot ----------------------------------------------------------------------

/// An MCUboot image: header + payload signed by `openssl dgst -sha256 -sign`
/// (ECDSA over SHA-256 of header and payload, as MCUboot verifies), with the
/// SHA-256 and ECDSA P-256 TLVs; `corrupt_hash` spoils the hash TLV.
fn mcuboot_image(d: &Path, name: &str, corrupt_hash: bool) {
    use sha2::Digest;
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let mut img = Vec::new();
    img.extend_from_slice(&0x96f3_b83du32.to_le_bytes());
    img.extend_from_slice(&0u32.to_le_bytes());
    img.extend_from_slice(&32u16.to_le_bytes());
    img.extend_from_slice(&0u16.to_le_bytes());
    img.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    img.extend_from_slice(&0u32.to_le_bytes());
    img.extend_from_slice(&[2, 1, 0, 0, 7, 0, 0, 0]); // 2.1.0+7
    img.extend_from_slice(&0u32.to_le_bytes());
    img.extend_from_slice(&payload);
    std::fs::write(d.join("signed-part.bin"), &img).unwrap();
    openssl(
        d,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "mcu.pem",
            "-out",
            "mcu.sig",
            "signed-part.bin",
        ],
    );
    let sig = std::fs::read(d.join("mcu.sig")).unwrap();
    let mut hash: [u8; 32] = sha2::Sha256::digest(&img).into();
    if corrupt_hash {
        hash[0] ^= 1;
    }
    let mut tlvs = vec![0x10, 0, 32, 0];
    tlvs.extend_from_slice(&hash);
    tlvs.extend_from_slice(&[0x22, 0, sig.len() as u8, 0]);
    tlvs.extend_from_slice(&sig);
    img.extend_from_slice(&0x6907u16.to_le_bytes());
    img.extend_from_slice(&((tlvs.len() + 4) as u16).to_le_bytes());
    img.extend_from_slice(&tlvs);
    std::fs::write(d.join(name), img).unwrap();
}

#[test]
fn firmware_mcuboot_image_checks() {
    let dir = tmp();
    let d = dir.path();
    firmware_card(d);
    openssl(
        d,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "mcu.pem",
        ],
    );
    openssl(d, &["pkey", "-in", "mcu.pem", "-pubout", "-out", "mcu.pub"]);
    let approve = |image: &str, key: &str| -> Out {
        for (who, k) in [("maintainer", "maintainer.pem"), ("owner", "owner.pem")] {
            let file = format!("{image}.{who}");
            run(
                d,
                &[
                    "firmware",
                    "sign",
                    image,
                    "--key",
                    k,
                    "--version",
                    "2.1.0",
                    "--class",
                    "gateway",
                    "-o",
                    &file,
                ],
            )
            .expect(0);
        }
        let (m, o) = (format!("{image}.maintainer"), format!("{image}.owner"));
        run(
            d,
            &[
                "--sim",
                "card.state",
                "--json",
                "firmware",
                "approve",
                image,
                "--approval",
                &m,
                "--approval",
                &o,
                "--mcuboot-key",
                key,
            ],
        )
    };
    mcuboot_image(d, "good.img", false);
    let out = approve("good.img", "mcu.pub").expect(0).json();
    assert_eq!(out["mcuboot"]["version"], "2.1.0+7");
    assert_eq!(out["mcuboot"]["sha256"], "valid");
    assert_eq!(out["mcuboot"]["signature"], "valid");
    // Approved by the card, but signed by another key than the image's: refused.
    let out = approve("good.img", "maintainer.pub").expect(6).json();
    assert_eq!(out["mcuboot"]["signature"], "invalid");
    assert!(
        out["reasons"][0].as_str().unwrap().contains("MCUboot"),
        "{out}"
    );
    // A wrong image hash TLV: refused even though both approvers signed the file.
    mcuboot_image(d, "bad.img", true);
    let out = approve("bad.img", "mcu.pub").expect(6).json();
    assert_eq!(out["mcuboot"]["sha256"], "invalid");
}

/// A package below the anti-rollback floor is never installed by consent:
/// neither `y` on the terminal nor `--yes` with DMSC_PIN accepts it; only the
/// dangerous device setting lets the user accept it.
#[test]
fn below_floor_is_refused_whatever_the_user_says() {
    let dir = tmp();
    let d = dir.path();
    firmware_card(d);
    let (m, o) = sign_both(d, "2.1.0");
    let sim = ["--sim", "card.state", "firmware"];
    let approve = |approvals: &[&str], extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = sim.iter().map(|s| s.to_string()).collect();
        v.extend(["approve".into(), "pkg.bin".into()]);
        for a in approvals {
            v.extend(["--approval".into(), a.to_string()]);
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = approve(&[&m, &o], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(d, &args).expect(0);
    run(
        d,
        &[
            "--sim",
            "card.state",
            "firmware",
            "confirm-installed",
            "pkg.bin",
            "--version",
            "2.1.0",
            "--class",
            "gateway",
        ],
    )
    .expect(0);
    let (m0, o0) = sign_both(d, "2.0.0");
    let pin = [("DMSC_PIN", "123456")];

    // The user answers y on the terminal: still refused.
    let ask = approve(&[&m0, &o0], &["--on-unapproved", "ask"]);
    let ask: Vec<&str> = ask.iter().map(String::as_str).collect();
    let out = on_terminal(d, &ask, "y\\n", &pin);
    assert_eq!(out.code, 6, "{out:?}");
    // (On the pseudo-terminal, stderr arrives with stdout.)
    assert!(
        out.stdout.contains("below the anti-rollback floor 2.1.0")
            && out.stdout.contains("never installed by consent"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("the user accepted"), "{out:?}");
    // --yes with DMSC_PIN, no terminal: refused, and the JSON says why.
    let yes = approve(&[&m0, &o0], &["--on-unapproved", "ask", "--yes"]);
    let mut json = vec!["--json"];
    json.extend(yes.iter().map(String::as_str));
    let out = run_env(d, &json, &pin).expect(6).json();
    assert_eq!(out["decision"], "refused");
    assert!(
        out["final"]
            .as_str()
            .unwrap_or("")
            .contains("anti-rollback floor"),
        "{out}"
    );
    // Only the dangerous device setting lets the user accept it.
    let dangerous = approve(
        &[&m0, &o0],
        &[
            "--on-unapproved",
            "ask",
            "--yes",
            "--dangerous-allow-below-floor",
        ],
    );
    let dangerous: Vec<&str> = dangerous.iter().map(String::as_str).collect();
    let out = run_env(d, &dangerous, &pin).expect(0);
    assert!(out.stdout.contains("the user accepted"), "{out:?}");
    // The setting alone does not accept anything: without ask it is refused.
    let reject = approve(&[&m0, &o0], &["--dangerous-allow-below-floor"]);
    let reject: Vec<&str> = reject.iter().map(String::as_str).collect();
    run_env(d, &reject, &pin).expect(6);
}

/// A rule naming an approver the card does not know could never be met: it is
/// refused unless --allow-unregistered, and nothing is stored.
#[test]
fn rule_naming_an_unregistered_approver_is_refused() {
    let dir = tmp();
    let d = dir.path();
    firmware_card(d);
    let set = |extra: &[&str]| {
        let mut v = vec![
            "--sim",
            "card.state",
            "firmware",
            "rule",
            "set",
            "--require",
            "maintainer,bob",
        ];
        v.extend_from_slice(extra);
        admin(d, &v)
    };
    let out = set(&[]).expect(2);
    assert!(
        out.stderr.contains("bob") && out.stderr.contains("--allow-unregistered"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("maintainer,"), "{out:?}");
    let show = run(
        d,
        &["--sim", "card.state", "--json", "firmware", "rule", "show"],
    )
    .expect(0)
    .json();
    assert_eq!(show["required"], serde_json::json!(["maintainer", "owner"]));
    set(&["--allow-unregistered"]).expect(0);
    let show = run(
        d,
        &["--sim", "card.state", "--json", "firmware", "rule", "show"],
    )
    .expect(0)
    .json();
    assert_eq!(show["required"], serde_json::json!(["maintainer", "bob"]));
}
