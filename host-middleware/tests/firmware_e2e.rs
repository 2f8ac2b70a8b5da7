//! Firmware approval and HTTP bootstrap end to end: host ↔ pcscd ↔ vpcd ↔ the
//! simulated card, on the private pcscd of `.ci/test` (vpcd slot 8). The card
//! is pulled between hashing the package and asking the card.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;
mod support;

use dmsc_host::bootstrap::{self, BootstrapOutcome, MediaType};
use dmsc_host::card_model::commands::PackageId;
use dmsc_host::card_model::objects::{MacAlgorithm, Version};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::firmware::{self, ApprovalFile};
use dmsc_host::{open_secure_channel, CardCommands, HostError, Status, TransportError};
use e2e::*;
use p256::ecdsa::SigningKey;
use support::*;

const SLOT: usize = 8;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

#[test]
fn card_pulled_between_hashing_and_verifying_then_bootstrap_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.state");
    drop(dmsc_sim_card::sim::create(&path, card_params(false)).unwrap());
    let (maintainer, owner) = (key(7), key(9));
    let bootstrap_key = [0x5Au8; 32];

    // The authority registers the approvers, the rule and a bootstrap key.
    {
        let served = Served::start(SLOT, Box::new(dmsc_sim_card::sim::open(&path).unwrap()));
        let mut s = session(&served.reader);
        open_secure_channel(&mut s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
        for (name, k) in [("maintainer", &maintainer), ("owner", &owner)] {
            let public = p256::PublicKey::from(k.verifying_key());
            firmware::register_approver(&mut s, name, &public, None).unwrap();
        }
        firmware::set_rule(&mut s, &["maintainer".into(), "owner".into()], false).unwrap();
        bootstrap::provision_key(&mut s, 1, MacAlgorithm::HmacSha256, &bootstrap_key).unwrap();
    }

    // The device hashes an 8 MiB package; the card is pulled before it is asked.
    let package: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i >> 3) as u8).collect();
    let hashed = firmware::hash_package(&package[..], "package", None, &mut |_| {}).unwrap();
    let id = PackageId {
        digest: hashed.digest,
        version: Version::parse("4.2").unwrap(),
        device_class: "meter".into(),
    };
    let approvals: Vec<ApprovalFile> = [("maintainer", &maintainer), ("owner", &owner)]
        .into_iter()
        .map(|(n, k)| firmware::sign_statement(&id.statement(n), k))
        .collect();
    {
        let served = Served::start(SLOT, Box::new(dmsc_sim_card::sim::open(&path).unwrap()));
        let mut s = session(&served.reader);
        s.select().unwrap();
        served.pull();
        let err = firmware::check_with_card(&mut s, &id, &approvals).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::Transport(TransportError::CardRemoved | TransportError::NoCard { .. })
            ),
            "a pulled card is a typed error, got {err:?}"
        );
    }

    // Reinserted: nothing was approved meanwhile; asking again approves; the floor moves.
    let served = Served::start(SLOT, Box::new(dmsc_sim_card::sim::open(&path).unwrap()));
    let mut s = session(&served.reader);
    assert!(matches!(
        s.confirm_installed(&id),
        Err(HostError::Card {
            status: Status::ConditionsOfUseNotSatisfied,
            ..
        })
    ));
    let verdict = firmware::check_with_card(&mut s, &id, &approvals).unwrap();
    assert!(verdict.approved, "{verdict:?}");
    s.confirm_installed(&id).unwrap();

    // HTTP bootstrap through pcscd: a 64 KiB packet is refused by the host, a TNDS
    // packet verified by the card and written after consent.
    let tnds = b"<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName></Node></MgmtTree>";
    let mac = bootstrap::compute_mac(MacAlgorithm::HmacSha256, &bootstrap_key, tnds).unwrap();
    let device = tempfile::tempdir().unwrap();
    let outcome = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        tnds,
        &mac,
        device.path(),
        &mut |_| true,
    )
    .unwrap();
    let tree = dmsc_host::device_tree::DirectoryTree::open(device.path()).unwrap();
    let path = tree
        .mo_path("./DMAcc")
        .unwrap()
        .expect("./DMAcc in the device tree");
    assert_eq!(outcome, BootstrapOutcome::Applied(path));
    let mut wrong = mac.clone();
    wrong[31] ^= 0x80;
    let outcome = bootstrap::verify_and_apply(
        &mut s,
        1,
        MediaType::Xml,
        tnds,
        &wrong,
        dir.path(),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(outcome, BootstrapOutcome::MacInvalid);
    assert!(!dir.path().join("bootstrap").exists());
}
