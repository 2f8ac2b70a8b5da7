//! Black-box attacks by someone who holds the device but neither the keys nor
//! the PIN, sent as raw commands to the card (docs/security.md §3.10–§3.12):
//!
//! - a flood of unauthenticated events must not evict security evidence;
//! - a replayed valid bootstrap packet must not clear the failure count;
//! - unauthenticated INITIALIZE UPDATEs must not spend the SCP03 sequence counter;
//! - CHECK APPROVAL must not reveal a floor the caller may not read;
//! - every class byte is decoded as ISO/IEC 7816-4 §5.4.1 says.
//!
//! Each check is a function that returns `Err` when the attack succeeds.
//! The self-tests switch the real card back to the behaviour that the attack
//! defeated (`Card::reintroduce`, feature `regressions`) and show that the
//! same check then fails (run with `--features regressions`, or
//! `--all-features`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use dmsc_card_model::apdu::Command;
use dmsc_card_model::commands::*;
use dmsc_card_model::objects::*;
use dmsc_card_model::scp03::{self, InitializeUpdateResponse};
#[cfg(feature = "regressions")]
use dmsc_sim_card::Regression;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use zeroize::Zeroizing;

const BOOTSTRAP_KEY: [u8; 16] = [0x5A; 16];

/// The audit log, read in a ServerA session (which the next plain command ends).
fn audit_log(card: &mut MemCard) -> Vec<AuditEntry> {
    assert_eq!(select(card).sw, 0x9000);
    let mut host = Host::open(card, 0x30, 0x33).unwrap();
    let rsp = host.request(
        card,
        &Request::ReadObject {
            object: ObjectRef::AuditLog,
            audit_from: None,
        },
    );
    assert_eq!(rsp.sw, 0x9000);
    assert_eq!(select(card).sw, 0x9000);
    match ObjectData::decode(ObjectKind::AuditLog, &rsp.data)
        .unwrap()
        .value
    {
        ObjectValue::AuditLog(entries) => entries,
        other => panic!("not an audit log: {other:?}"),
    }
}

fn find<'a>(log: &'a [AuditEntry], event: AuditEvent, principal: &str) -> Option<&'a AuditEntry> {
    log.iter()
        .find(|e| e.event == event && e.principal == principal)
}

/// Puts objects as ServerA (level 33), then ends the session.
fn put_as_admin(card: &mut MemCard, puts: &[Request]) {
    assert_eq!(select(card).sw, 0x9000);
    let mut host = Host::open(card, 0x30, 0x33).unwrap();
    for put in puts {
        assert_eq!(host.request(card, put).sw, 0x9000, "{put:?}");
    }
    assert_eq!(select(card).sw, 0x9000);
}

fn approver_key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32].into()).unwrap()
}

/// A card with the approval rule "maintainer" (Exec for anyone, the default),
/// the maintainer's key and bootstrap key 1 (AES-CMAC, Exec for anyone).
fn prepared_card() -> MemCard {
    let mut card = new_card();
    let point = approver_key()
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    put_as_admin(
        &mut card,
        &[
            Request::PutObject {
                object: ObjectRef::Approver("maintainer".into()),
                value: ObjectValue::Approver(point),
                acl: None,
            },
            Request::PutObject {
                object: ObjectRef::ApprovalRule,
                value: ObjectValue::ApprovalRule(ApprovalRule {
                    required: vec!["maintainer".into()],
                    user_consent_needs_pin: true,
                }),
                acl: None,
            },
            Request::PutObject {
                object: ObjectRef::BootstrapKey(1),
                value: ObjectValue::BootstrapKey(BootstrapKeyValue {
                    algorithm: MacAlgorithm::AesCmac,
                    key: Some(Zeroizing::new(BOOTSTRAP_KEY.to_vec())),
                }),
                acl: None,
            },
        ],
    );
    card
}

/// A read of the audit log as `*`: refused (6982), counted against `*`.
fn denied_read(card: &mut MemCard) -> u16 {
    request(
        card,
        &Request::ReadObject {
            object: ObjectRef::AuditLog,
            audit_from: None,
        },
    )
    .sw
}

fn package(class: &str, version: &str) -> PackageId {
    PackageId {
        digest: [0x42; 32],
        version: Version::parse(version).unwrap(),
        device_class: class.into(),
    }
}

fn check_approval(card: &mut MemCard, package: PackageId, signed: bool) -> Vec<u8> {
    let approvals = if signed {
        let sig: Signature =
            approver_key().sign(&package.statement("maintainer").to_signed_bytes());
        vec![Approval {
            approver: "maintainer".into(),
            signature: sig.to_der().as_bytes().to_vec(),
        }]
    } else {
        Vec::new()
    };
    let rsp = request(card, &Request::CheckApproval { package, approvals });
    assert_eq!(rsp.sw, 0x9000);
    rsp.data
}

// ---- 1. the audit log ---------------------------------------------------------

/// Raises evidence (4 denied reads by `*`, an alarm, a wrong PIN), then sends
/// `flood` as the attacker and checks that every piece of evidence is still
/// in the log.
fn evidence_survives(card: &mut MemCard, flood: impl FnOnce(&mut MemCard)) -> Result<(), String> {
    assert_eq!(select(card).sw, 0x9000);
    for _ in 0..4 {
        assert_eq!(denied_read(card), 0x6982);
    }
    let wrong = Request::Verify {
        reference: PIN_REF_USER,
        pin: Some(Pin::new(b"000000").unwrap()),
    };
    assert_eq!(request(card, &wrong).sw, 0x63C2);
    let before = audit_log(card);
    let alarm = find(&before, AuditEvent::Alarm, "*").ok_or("no alarm before the flood")?;
    assert!(alarm.detail.starts_with("4 "), "{alarm:?}");
    flood(card);
    let after = audit_log(card);
    for (event, principal) in [
        (AuditEvent::Alarm, "*"),
        (AuditEvent::AccessDenied, "*"),
        (AuditEvent::AuthFailure, "user"),
    ] {
        if find(&after, event, principal).is_none() {
            return Err(format!(
                "the {} record of {principal} was evicted ({} records left, {} of them {:?})",
                event.name(),
                after.len(),
                after
                    .iter()
                    .filter(|e| e.event == AuditEvent::ApprovalRefused)
                    .count(),
                AuditEvent::ApprovalRefused.name()
            ));
        }
    }
    Ok(())
}

/// 300 refused CHECK APPROVALs (`80 A0`) sent as `*`.
fn approval_flood(card: &mut MemCard) {
    assert_eq!(select(card).sw, 0x9000);
    for i in 0..300u32 {
        let data = check_approval(card, package("gateway", &format!("1.0.{i}")), false);
        assert!(!ApprovalVerdict::decode(&data).unwrap().approved);
    }
}

#[test]
fn a_flood_of_refused_approvals_keeps_alarms_and_failures() {
    let mut card = prepared_card();
    evidence_survives(&mut card, approval_flood).unwrap();
    // The 300 refusals are one counted record, holding the latest detail.
    let log = audit_log(&mut card);
    let refused: Vec<_> = log
        .iter()
        .filter(|e| e.event == AuditEvent::ApprovalRefused)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].repeats.map(|r| r.count), Some(300));
    assert_eq!(refused[0].detail, "gateway 1.0.299");
    assert!(refused[0].repeats.unwrap().first_sequence < refused[0].sequence);
}

#[test]
fn a_flood_of_denials_keeps_the_first_alarm_and_other_evidence() {
    // Even a flood of evidence itself (1,000 denied reads by `*`) only counts
    // into the aggregated records: the wrong PIN's record stays.
    let mut card = prepared_card();
    evidence_survives(&mut card, |card| {
        assert_eq!(select(card).sw, 0x9000);
        for _ in 0..1000 {
            assert_eq!(denied_read(card), 0x6982);
        }
    })
    .unwrap();
    let log = audit_log(&mut card);
    let alarm = find(&log, AuditEvent::Alarm, "*").unwrap();
    assert_eq!(alarm.repeats.map(|r| r.count), Some(251)); // 1,004 failures / 4
    let denied = find(&log, AuditEvent::AccessDenied, "*").unwrap();
    assert_eq!(denied.repeats.map(|r| r.count), Some(1004));
}

#[test]
#[cfg(feature = "regressions")]
fn self_test_a_flat_ring_loses_the_evidence() {
    let mut card = prepared_card();
    card.reintroduce(Regression::FlatAuditRing);
    let err = evidence_survives(&mut card, approval_flood).unwrap_err();
    assert!(err.contains("evicted"), "{err}");
}

// ---- 1b. failure counts are not laundered ----------------------------------------

/// 4 denied reads as `*`, each followed by a replayed valid bootstrap packet
/// (PSO VERIFY CRYPTOGRAPHIC CHECKSUM → 9000): the alarm must still come at 4.
fn alarm_despite_replays(card: &mut MemCard) -> Result<(), String> {
    let packet = b"application/vnd.wap.connectivity-wbxml; SEC=USERPIN".repeat(4);
    let mac = {
        use cmac::Mac;
        let mut m = cmac::Cmac::<aes::Aes128>::new_from_slice(&BOOTSTRAP_KEY).unwrap();
        m.update(&packet);
        m.finalize().into_bytes().to_vec()
    };
    let replay = Request::VerifyMac {
        data: packet.clone(),
        mac,
    };
    assert_eq!(select(card).sw, 0x9000);
    assert_eq!(
        request(card, &Request::SelectMacKey { key_id: 1 }).sw,
        0x9000
    );
    for _ in 0..4 {
        assert_eq!(request(card, &replay).sw, 0x9000);
        assert_eq!(denied_read(card), 0x6982);
    }
    let log = audit_log(card);
    match find(&log, AuditEvent::Alarm, "*") {
        Some(a) if a.detail.starts_with("4 ") => Ok(()),
        other => Err(format!("no alarm after 4 denials: {other:?}")),
    }
}

#[test]
fn a_replayed_bootstrap_packet_does_not_clear_the_failure_count() {
    alarm_despite_replays(&mut prepared_card()).unwrap();
}

#[test]
#[cfg(feature = "regressions")]
fn self_test_a_bootstrap_success_that_clears_failures_hides_the_alarm() {
    let mut card = prepared_card();
    card.reintroduce(Regression::BootstrapClearsFailures);
    assert!(alarm_despite_replays(&mut card).is_err());
}

#[test]
fn successful_writes_do_not_clear_the_failure_count_either() {
    // An MO anyone may replace: writes by `*` between its denials succeed,
    // and still the alarm comes at the fourth denial.
    let mut card = prepared_card();
    let mo = |n: u8| Request::PutObject {
        object: ObjectRef::Mo("./Open".into()),
        value: ObjectValue::Mo(MoRecord {
            mo_type: "urn:dmsc:test:open".into(),
            version: 1,
            content: vec![n; 4],
        }),
        acl: None,
    };
    let open = Request::PutObject {
        object: ObjectRef::Mo("./Open".into()),
        value: ObjectValue::Mo(MoRecord {
            mo_type: "urn:dmsc:test:open".into(),
            version: 1,
            content: vec![0; 4],
        }),
        acl: Some(Acl::parse("Get=*&Replace=*&Delete=ServerA").unwrap()),
    };
    put_as_admin(&mut card, &[open]);
    assert_eq!(select(&mut card).sw, 0x9000);
    for n in 0..4 {
        assert_eq!(request(&mut card, &mo(n)).sw, 0x9000);
        assert_eq!(denied_read(&mut card), 0x6982);
    }
    let log = audit_log(&mut card);
    let alarm = find(&log, AuditEvent::Alarm, "*").expect("an alarm for *");
    assert!(alarm.detail.starts_with("4 "), "{alarm:?}");
}

// ---- 2. the SCP03 sequence counter -----------------------------------------------

fn initialize_update(card: &mut MemCard, host_challenge: [u8; 8]) -> InitializeUpdateResponse {
    let rsp = send(
        card,
        &scp03::initialize_update(0x30, &host_challenge).unwrap(),
    );
    assert_eq!(rsp.sw, 0x9000);
    InitializeUpdateResponse::decode(&rsp.data).unwrap()
}

fn counter(iu: &InitializeUpdateResponse) -> u32 {
    let c = iu.sequence_counter.expect("i = 70 carries the counter");
    u32::from_be_bytes([0, c[0], c[1], c[2]])
}

/// 1,000 INITIALIZE UPDATEs as anyone (no EXTERNAL AUTHENTICATE), then the
/// authority opens a session. The counter may move by at most one.
fn counter_survives_initialize_updates(card: &mut MemCard) -> Result<(), String> {
    assert_eq!(select(card).sw, 0x9000);
    let first = initialize_update(card, [0; 8]);
    let mut last = first.clone();
    for i in 1..1000u32 {
        let mut challenge = [0u8; 8];
        challenge[4..].copy_from_slice(&i.to_be_bytes());
        last = initialize_update(card, challenge);
    }
    let moved = counter(&last) - counter(&first);
    if moved > 1 {
        return Err(format!(
            "1,000 INITIALIZE UPDATEs moved the counter by {moved}"
        ));
    }
    // Same counter, same pseudo-random card challenge; other host challenge,
    // other cryptogram (and other session keys).
    assert_eq!(last.card_challenge, first.card_challenge);
    assert_ne!(last.card_cryptogram, first.card_cryptogram);
    Host::open(card, 0x30, 0x01).map_err(|sw| format!("ServerA cannot authenticate: {sw:04X}"))?;
    // The successful session spent exactly that value.
    assert_eq!(select(card).sw, 0x9000);
    let next = initialize_update(card, [0; 8]);
    assert_eq!(counter(&next), counter(&last) + 1);
    Ok(())
}

#[test]
fn unauthenticated_initialize_updates_do_not_spend_the_counter() {
    let mut card = new_card();
    counter_survives_initialize_updates(&mut card).unwrap();
    // One counted record: 1,000 + the session's + the last one.
    let log = audit_log(&mut card);
    let iu: Vec<_> = log
        .iter()
        .filter(|e| e.event == AuditEvent::InitializeUpdate)
        .collect();
    assert_eq!(iu.len(), 1, "{iu:?}");
    assert_eq!(iu[0].principal, "ServerA");
    // audit_log's own session adds one more.
    assert_eq!(iu[0].repeats.map(|r| r.count), Some(1003));
}

#[test]
fn a_failed_external_authenticate_does_not_spend_the_counter() {
    let mut card = new_card();
    assert_eq!(select(&mut card).sw, 0x9000);
    let before = counter(&initialize_update(&mut card, [0; 8]));
    for _ in 0..10 {
        initialize_update(&mut card, [0; 8]);
        // A guessed host cryptogram and C-MAC.
        let external = Command::new(0x84, 0x82, 0x01, 0x00).with_data(vec![0x99; 16]);
        assert_eq!(send(&mut card, &external).sw, 0x6982);
    }
    assert_eq!(counter(&initialize_update(&mut card, [0; 8])), before);
    let log = audit_log(&mut card);
    let failures: Vec<_> = log
        .iter()
        .filter(|e| e.event == AuditEvent::AuthFailure && e.principal == "ServerA")
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].repeats.map(|r| r.count), Some(10));
}

#[test]
#[cfg(feature = "regressions")]
fn self_test_a_counter_spent_by_initialize_update_is_caught() {
    let mut card = new_card();
    card.reintroduce(Regression::CounterSpentByInitializeUpdate);
    let err = counter_survives_initialize_updates(&mut card).unwrap_err();
    assert!(err.contains("moved the counter by 999"), "{err}");
}

// ---- 3. CHECK APPROVAL and hidden floors -------------------------------------

/// floor:hidden = 7.3.1, readable by ServerA only; no floor for class `missing`.
fn card_with_hidden_floor() -> MemCard {
    let mut card = prepared_card();
    put_as_admin(
        &mut card,
        &[Request::PutObject {
            object: ObjectRef::Floor("hidden".into()),
            value: ObjectValue::Floor(Version::parse("7.3.1").unwrap()),
            acl: Some(Acl::parse("Get=ServerA&Replace=ServerA&Delete=ServerA").unwrap()),
        }],
    );
    card
}

/// CHECK APPROVAL as `*` for class `hidden` and class `missing` must give
/// the same bytes, below and above the floor, unless the approval is valid
/// and the package below the floor (then it is refused without a reason).
fn floor_stays_hidden(card: &mut MemCard) -> Result<(), String> {
    assert_eq!(select(card).sw, 0x9000);
    for version in ["1.0", "7.3.0", "7.3.1", "7.3.2", "9"] {
        let hidden = check_approval(card, package("hidden", version), false);
        let missing = check_approval(card, package("missing", version), false);
        if hidden != missing {
            return Err(format!(
                "unsigned {version}: hidden {:02X?} != missing {:02X?}",
                hidden, missing
            ));
        }
        let hidden = check_approval(card, package("hidden", version), true);
        let missing = check_approval(card, package("missing", version), true);
        let below = Version::parse(version).unwrap() < Version::parse("7.3.1").unwrap();
        if below {
            // Refused (the floor holds), with nothing that names the floor.
            let v = ApprovalVerdict::decode(&hidden).unwrap();
            if v.approved || !v.reasons.is_empty() {
                return Err(format!("signed {version} below the floor: {v:?}"));
            }
        } else if hidden != missing {
            return Err(format!("signed {version}: hidden and missing differ"));
        }
    }
    Ok(())
}

#[test]
fn check_approval_is_no_floor_oracle() {
    let mut card = card_with_hidden_floor();
    floor_stays_hidden(&mut card).unwrap();
    // The exact answer for an unsigned package: not approved, the maintainer missing.
    let data = check_approval(&mut card, package("hidden", "1.0"), false);
    assert_eq!(
        ApprovalVerdict::decode(&data).unwrap(),
        ApprovalVerdict {
            approved: false,
            reasons: vec![RefusalReason::MissingApprover("maintainer".into())],
            user_consent_needs_pin: true,
        }
    );
    // Nothing to CONFIRM INSTALLED either: the hidden floor refused it.
    assert_eq!(
        request(
            &mut card,
            &Request::ConfirmInstalled {
                package: package("hidden", "7.3.0")
            }
        )
        .sw,
        0x6985
    );
}

#[test]
fn a_readable_floor_is_still_reported() {
    let mut card = prepared_card();
    put_as_admin(
        &mut card,
        &[Request::PutObject {
            object: ObjectRef::Floor("open".into()),
            value: ObjectValue::Floor(Version::parse("7.3.1").unwrap()),
            acl: None, // Get=* by default
        }],
    );
    assert_eq!(select(&mut card).sw, 0x9000);
    let data = check_approval(&mut card, package("open", "7.3.0"), true);
    assert_eq!(
        ApprovalVerdict::decode(&data).unwrap().reasons,
        vec![RefusalReason::BelowFloor(Version::parse("7.3.1").unwrap())]
    );
}

#[test]
#[cfg(feature = "regressions")]
fn self_test_a_floor_told_to_anyone_is_caught() {
    let mut card = card_with_hidden_floor();
    card.reintroduce(Regression::FloorToAnyone);
    let err = floor_stays_hidden(&mut card).unwrap_err();
    assert!(err.starts_with("unsigned 1.0"), "{err}");
}

// ---- 7. class byte ------------------------------------------------------------

#[test]
fn class_bytes_are_decoded_as_iso_7816_4_says() {
    let mut card = new_card();
    assert_eq!(select(&mut card).sw, 0x9000);
    // GET DATA of the identity key, with every class byte.
    let sw = |card: &mut MemCard, cla: u8| {
        let cmd = Command::new(cla, 0xCB, 0x3F, 0xFF)
            .with_data(vec![0x87, 0x00])
            .with_le(256);
        let rsp = card.process(&cmd.to_bytes().unwrap());
        u16::from_be_bytes([rsp[rsp.len() - 2], rsp[rsp.len() - 1]])
    };
    for cla in 0x00..=0xFEu8 {
        let want = match cla {
            0x00 => 0x9000,
            // First interindustry and GlobalPlatform: logical channels 1-3.
            0x01..=0x1F | 0x80..=0x9F if cla & 0x03 != 0 => 0x6881,
            // ISO secure messaging.
            0x08 | 0x0C | 0x18 | 0x1C => 0x6882,
            // Further interindustry and GlobalPlatform: logical channels 4-19.
            0x40..=0x7F | 0xC0..=0xFE => 0x6881,
            // 04 without a session; a chain link (10, 14) is accepted alone.
            0x04 | 0x14 => 0x6982,
            0x10 => 0x9000,
            // GET DATA is not a proprietary-class command.
            0x80 | 0x84 | 0x90 | 0x94 => {
                if cla & 0x04 != 0 {
                    0x6982
                } else if cla & 0x10 != 0 {
                    0x9000
                } else {
                    0x6A86
                }
            }
            _ => 0x6E00,
        };
        assert_eq!(sw(&mut card, cla), want, "CLA {cla:02X}");
        // Drop any chain the 10/90 links started.
        assert_eq!(select(&mut card).sw, 0x9000);
    }
}
