//! The policy use case against the simulated card: the enterprise key and
//! the signed policy on the card, verification by the card, enforcement
//! into a device folder, administrators' signed commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dmsc_host::card_model::commands::ObjectValue;
use dmsc_host::card_model::objects::{Acl, ObjectRef, Right};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::policy::card::{put_policy, read_verified};
use dmsc_host::policy::device::{accept_command, enforce, CommandState};
use dmsc_host::policy::signing::{policy_digest, CommandStatement, SignedCommand, SignedPolicy};
use dmsc_host::policy::{Context, DecidedBy, PolicyError, Refusal, SignatureIssue, State};
use dmsc_host::transport::sim::SimTransport;
use dmsc_host::{open_secure_channel, CardCommands, HostError, Session, Status};
use jiff::Timestamp;
use p256::ecdsa::SigningKey;
use support::*;

type Card = Session<SimTransport<dmsc_sim_card::MemoryStore>>;

/// The policy of these tests: the one sample.
const POLICY: &str = dmsc_test_support::SAMPLE_POLICY;

fn card() -> Card {
    Session::new(SimTransport::in_memory(card_params(false)).unwrap())
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_slice(&[b; 32]).unwrap()
}

fn as_authority(c: &mut Card) {
    open_secure_channel(c, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn read(dir: &std::path::Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("policy").join(name)).unwrap()).unwrap()
}

#[test]
fn put_verify_enforce_and_refuse_tampering() {
    let mut c = card();
    // The device cannot put a policy.
    c.select().unwrap();
    assert!(matches!(
        put_policy(&mut c, POLICY.as_bytes(), &key(1), false),
        Err(PolicyError::Card(HostError::Card {
            status: Status::SecurityStatusNotSatisfied,
            ..
        }))
    ));
    as_authority(&mut c);
    let out = put_policy(&mut c, POLICY.as_bytes(), &key(1), false).unwrap();
    assert!(out.key_written);
    assert_eq!(out.digest, policy_digest(POLICY.as_bytes()));

    // Read back as the device: the card verified it with its key.
    let v = read_verified(&mut c).unwrap();
    assert_eq!(v.policy.name, "ACME");
    assert_eq!(
        v.key_acl,
        "Delete=ServerA&Exec=*&Get=*+ServerA&Replace=ServerA"
    );
    assert_eq!(v.policy_acl, "Delete=ServerA&Get=*+ServerA&Replace=ServerA");

    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::at(ts("2026-11-23T10:00:00Z")); // Monday 11:00 in Paris
    let report = enforce(&mut c, dir.path(), &ctx).unwrap();
    assert_eq!(report.status, "applied");
    assert_eq!(report.next_change, Some(ts("2026-11-23T17:00:00Z")));
    let res = read(dir.path(), "resources.json");
    assert_eq!(res["resources"]["camera"], "disabled");
    assert_eq!(res["resources"]["bluetooth"], "enabled");
    assert_eq!(res["resources"]["torch"], "enabled");
    let rep = read(dir.path(), "report.json");
    assert_eq!(rep["schema_version"], 1);
    assert_eq!(rep["applied"][0]["resource"], "bluetooth");
    assert_eq!(rep["applied"][1]["decided_by"]["by"], "rule");
    assert_eq!(rep["applied"][1]["decided_by"]["id"], "work-hours");
    assert_eq!(rep["applied"][1]["changed"], true);

    // Someone with write access swaps the policy text but keeps the signature.
    let good = SignedPolicy::sign(POLICY.as_bytes(), &key(1));
    let forged = SignedPolicy {
        text: POLICY.replace("\"disable\"", "\"enable\"").into_bytes(),
        signature: good.signature.clone(),
    };
    as_authority(&mut c);
    c.put_object(
        &ObjectRef::Policy,
        &ObjectValue::Policy(forged.encode()),
        None,
    )
    .unwrap();
    assert!(matches!(
        read_verified(&mut c),
        Err(PolicyError::BadSignature(_))
    ));
    let before = std::fs::read(dir.path().join("policy/resources.json")).unwrap();
    assert!(enforce(&mut c, dir.path(), &ctx).is_err());
    assert_eq!(
        std::fs::read(dir.path().join("policy/resources.json")).unwrap(),
        before
    );
    let rep = read(dir.path(), "report.json");
    assert_eq!(rep["status"], "refused");
    assert_eq!(rep["failures"][0]["stage"], "signature");

    // A policy signed by another key is refused at put time unless the key
    // is replaced; with --replace-key the new pair verifies.
    as_authority(&mut c);
    assert!(matches!(
        put_policy(&mut c, POLICY.as_bytes(), &key(2), false),
        Err(PolicyError::Key(_))
    ));
    let out = put_policy(&mut c, POLICY.as_bytes(), &key(2), true).unwrap();
    assert!(out.key_written);
    assert!(read_verified(&mut c).is_ok());

    // A policy the device could rewrite is not trusted.
    as_authority(&mut c);
    c.set_acl(&ObjectRef::Policy, &Acl::parse("Get=*&Replace=*").unwrap())
        .unwrap();
    assert!(matches!(
        read_verified(&mut c),
        Err(PolicyError::BadSignature(SignatureIssue::Unprotected {
            right: Right::Replace,
            ..
        }))
    ));
}

#[test]
fn invalid_policy_is_not_stored() {
    let mut c = card();
    as_authority(&mut c);
    let bad = POLICY.replace("\"usb\"", "\"flashlight\"");
    match put_policy(&mut c, bad.as_bytes(), &key(1), false) {
        Err(PolicyError::Invalid { line, rule, .. }) => {
            assert_eq!(line, 16);
            assert_eq!(rule.as_deref(), Some("work-hours"));
        }
        other => panic!("{other:?}"),
    }
    as_authority(&mut c);
    assert!(matches!(
        c.read_object(&ObjectRef::Policy),
        Err(HostError::Card {
            status: Status::NotFound | Status::KeyReferenceNotFound,
            ..
        })
    ));
    assert!(matches!(
        c.read_object(&ObjectRef::Approver("enterprise".into())),
        Err(HostError::Card {
            status: Status::NotFound | Status::KeyReferenceNotFound,
            ..
        })
    ));
    // And a device with no policy on its card refuses to enforce.
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        enforce(&mut c, dir.path(), &Context::at(ts("2026-11-23T10:00:00Z"))),
        Err(PolicyError::Missing(_))
    ));
}

#[test]
fn signed_commands_checked_against_the_card_key() {
    let mut c = card();
    as_authority(&mut c);
    put_policy(&mut c, POLICY.as_bytes(), &key(1), false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-23T10:00:00Z");
    let statement = CommandStatement {
        action: State::Enabled,
        resource: "camera".into(),
        until: Some(ts("2026-11-23T12:00:00Z")),
        counter: 5,
        not_after: ts("2026-11-23T11:00:00Z"),
        policy: policy_digest(POLICY.as_bytes()),
    };
    let cmd = SignedCommand::sign(&statement, &key(1));

    // Signed by someone else: refused, nothing recorded.
    let rogue = SignedCommand::sign(&statement, &key(9));
    assert!(matches!(
        accept_command(&mut c, dir.path(), &rogue, now),
        Err(PolicyError::BadSignature(_))
    ));
    assert!(!dir.path().join("policy/commands.json").exists());
    // Too late.
    assert!(matches!(
        accept_command(&mut c, dir.path(), &cmd, ts("2026-11-23T11:00:01Z")),
        Err(PolicyError::CommandRefused(Refusal::Expired(_)))
    ));
    // Accepted; the camera is back on until noon.
    accept_command(&mut c, dir.path(), &cmd, now).unwrap();
    let report = enforce(&mut c, dir.path(), &Context::at(now)).unwrap();
    let camera = report
        .applied
        .iter()
        .find(|a| a.decision.resource == "camera")
        .unwrap();
    assert_eq!(camera.decision.state, State::Enabled);
    assert_eq!(
        camera.decision.decided_by,
        DecidedBy::Command {
            counter: 5,
            until: Some(ts("2026-11-23T12:00:00Z"))
        }
    );
    assert_eq!(report.next_change, Some(ts("2026-11-23T12:00:00Z")));
    // Replayed: refused.
    assert!(matches!(
        accept_command(&mut c, dir.path(), &cmd, now),
        Err(PolicyError::CommandRefused(Refusal::Replay {
            counter: 5,
            last: 5
        }))
    ));
    // A resource the policy does not manage, and another policy: refused.
    for (resource, policy) in [
        ("nfc", statement.policy.clone()),
        ("camera", "sha256:00".to_string()),
    ] {
        let s = CommandStatement {
            resource: resource.into(),
            policy,
            counter: 6,
            ..statement.clone()
        };
        assert!(matches!(
            accept_command(&mut c, dir.path(), &SignedCommand::sign(&s, &key(1)), now),
            Err(PolicyError::CommandRefused(_))
        ));
    }
    assert_eq!(CommandState::load(dir.path()).unwrap().last_counter, 5);
    // A tampered statement (the signature no longer matches).
    let mut t = SignedCommand::sign(
        &CommandStatement {
            counter: 7,
            ..statement.clone()
        },
        &key(1),
    );
    t.statement = t.statement.replace("action=enable", "action=disable");
    assert!(matches!(
        accept_command(&mut c, dir.path(), &t, now),
        Err(PolicyError::BadSignature(_))
    ));
}

/// The envelope and key of `test-vectors/transcripts/policy.json` (made with
/// openssl) are what the host reads: the envelope decodes, its signature
/// verifies with the key, and the policy validates.
#[test]
fn transcript_envelope_verifies_on_the_host() {
    use dmsc_host::policy::signing::load_verifying_key;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../test-vectors/transcripts/policy.json"
    );
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let data = |i: usize| {
        let s: String = t["steps"][i]["data"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect();
        hex::decode(s).unwrap()
    };
    let policy = data(5);
    assert_eq!(&policy[..2], [0x53, 0x82]);
    let len = u16::from_be_bytes([policy[2], policy[3]]) as usize;
    let envelope = &policy[4..4 + len];
    let key = data(6);
    assert_eq!(&key[..4], [0x53, 0x43, 0xD5, 0x41]);
    let vk = load_verifying_key(&key[4..69]).unwrap();
    let sp = SignedPolicy::decode(envelope).unwrap();
    sp.verify_with(&vk).unwrap();
    dmsc_host::policy::Policy::parse(std::str::from_utf8(&sp.text).unwrap()).unwrap();
}

/// A policy replaced over the air: the authority builds the script offline for
/// this card, the device relays it, and the next enforcement applies it.
/// A script signed with another key is relayed but the device refuses it.
#[test]
fn policy_replaced_over_the_air_is_applied_by_the_next_enforce() {
    use dmsc_host::ota::{self, OtaOperation};
    let mut c = card();
    as_authority(&mut c);
    put_policy(&mut c, POLICY.as_bytes(), &key(1), false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::at(ts("2026-11-23T10:00:00Z")); // Monday 11:00 in Paris
    enforce(&mut c, dir.path(), &ctx).unwrap();
    assert_eq!(
        read(dir.path(), "resources.json")["resources"]["camera"],
        "disabled"
    );

    // The enterprise now allows the camera at work.
    let relaxed = POLICY.replace("effect = \"disable\"", "effect = \"enable\"");
    let level = SecurityLevel::new(0x33).unwrap();
    let envelope = SignedPolicy::sign(relaxed.as_bytes(), &key(1)).encode();
    let request = ota::read_request(&mut c, 0x30).unwrap();
    let script = ota::build_script(
        &server_a().keys,
        &request,
        level,
        &[OtaOperation::PutPolicy(envelope)],
    )
    .unwrap();
    ota::apply_script(&mut c, &script).unwrap();
    enforce(&mut c, dir.path(), &ctx).unwrap();
    assert_eq!(
        read(dir.path(), "resources.json")["resources"]["camera"],
        "enabled"
    );

    // A script carrying a policy signed with another key reaches the card, but
    // the device refuses the policy and keeps what it applied.
    let rogue = SignedPolicy::sign(POLICY.as_bytes(), &key(9)).encode();
    let request = ota::read_request(&mut c, 0x30).unwrap();
    let script = ota::build_script(
        &server_a().keys,
        &request,
        level,
        &[OtaOperation::PutPolicy(rogue)],
    )
    .unwrap();
    ota::apply_script(&mut c, &script).unwrap();
    assert!(enforce(&mut c, dir.path(), &ctx).is_err());
    assert_eq!(
        read(dir.path(), "resources.json")["resources"]["camera"],
        "enabled"
    );
}
