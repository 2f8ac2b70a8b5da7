//! Per-card keys against the simulated card: diversified keys installed with
//! PUT KEY, authority sessions opened from the master keys alone, fleet
//! operations and OTA scripts with per-card keys.

use crate::fleet::diversify::*;
use crate::governance::Governance;
use crate::ota::build_ota_script;
use crate::session::scp::{open_secure_channel, AuthorityKeySet};
use crate::session::CardCommands;
use crate::session::Session;
use crate::transport::sim::SimTransport;
use dmsc_card_model::scp03::{SecurityLevel, StaticKeys};
use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
use zeroize::Zeroizing;

const TRANSPORT_KEY: [u8; 16] = [0x4B; 16];

fn card() -> Session<SimTransport<MemoryStore>> {
    let params = InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x01,
        name: "Transport".into(),
        enc: Zeroizing::new(TRANSPORT_KEY.to_vec()),
        mac: Zeroizing::new(TRANSPORT_KEY.to_vec()),
        dek: Zeroizing::new(TRANSPORT_KEY.to_vec()),
    }]);
    Session::new(SimTransport::in_memory(params).expect("card"))
}

fn transport() -> AuthorityKeySet {
    AuthorityKeySet {
        key_version: 0x01,
        keys: StaticKeys::new(&TRANSPORT_KEY, &TRANSPORT_KEY, &TRANSPORT_KEY).expect("k"),
    }
}

fn master_keys(byte: u8) -> StaticKeys {
    StaticKeys::new(&[byte; 16], &[byte + 1; 16], &[byte + 2; 16]).expect("keys")
}

fn master(byte: u8) -> SoftMasterKeys {
    SoftMasterKeys::new(0x30, master_keys(byte))
}

fn level() -> SecurityLevel {
    SecurityLevel::new(0x33).expect("level")
}

#[test]
fn a_station_with_only_the_master_keys_authenticates_to_every_card() {
    let m = master(0x70);
    let mut cards = [card(), card()];
    let mut installed = Vec::new();
    for c in &mut cards {
        installed
            .push(install_diversified_keys(c, &transport(), &m, "Line", level()).expect("install"));
    }
    // Two cards, two key sets.
    assert_ne!(installed[0].kcvs, installed[1].kcvs);
    for (c, keys) in cards.iter_mut().zip(&installed) {
        // The card lists the derived keys' KCVs under the master key version.
        let entry = c
            .authorities()
            .expect("authorities")
            .into_iter()
            .find(|a| a.key_version == 0x30)
            .expect("key set 30");
        assert_eq!(entry.key_check_values, keys.kcvs);
        assert_eq!(entry.name, "Line");
        // A fresh master key source (nothing per card) opens a session.
        let (info, again) =
            open_diversified_channel(c, &master(0x70), level()).expect("diversified session");
        assert_eq!(info.key_version, 0x30);
        assert_eq!(again.kcvs, keys.kcvs);
        assert!(c.is_secured());
    }
    // One card's keys do not open the other card.
    let e = open_secure_channel(&mut cards[1], &installed[0].authority, level())
        .expect_err("other card's keys");
    assert!(e.to_string().contains("wrong key set"), "{e}");
    // Other master keys do not open any card.
    let e = open_diversified_channel(&mut cards[0], &master(0x10), level())
        .expect_err("other master keys");
    assert!(e.to_string().contains("wrong key set"), "{e}");
}

#[test]
fn fleet_grant_and_provision_with_master_keys_only() {
    use crate::fleet::{acl_grant, provision, FleetCard, GrantOutcome, GrantRequest, Profile};
    use dmsc_card_model::commands::ObjectValue;
    use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
    let m = master(0x70);
    let mut cards: Vec<_> = (0..3)
        .map(|i| {
            let mut c = card();
            install_diversified_keys(&mut c, &transport(), &m, "Line", level()).expect("install");
            // The transport authority (the card's administrator) sets the ACL.
            c.put_object(
                &ObjectRef::Policy,
                &ObjectValue::Policy(b"p".to_vec()),
                Some(&Acl::parse("Get=*&Replace=Line").expect("acl")),
            )
            .expect("policy");
            FleetCard::new(format!("card {i}"), c)
        })
        .collect();
    let report = acl_grant(
        &mut cards,
        &GrantRequest {
            object: ObjectRef::Policy,
            right: Right::Get,
            to: Principal::Authority("Audit".into()),
            as_authority: "Line",
            keys: &m,
            level: level(),
        },
        |_| {},
    );
    assert_eq!(report.outcome, GrantOutcome::Applied, "{:?}", report.failed);
    let results = provision(&mut cards, &Profile::default(), &m, level(), &|_| {});
    assert!(results.iter().all(|r| r.result.is_ok()), "{results:?}");
    // The same grant with the transport keys of another key version fails
    // the check on every card: nothing is changed.
    let report = acl_grant(
        &mut cards,
        &GrantRequest {
            object: ObjectRef::Policy,
            right: Right::Get,
            to: Principal::Authority("Other".into()),
            as_authority: "Line",
            keys: &SoftMasterKeys::new(0x30, master_keys(0x10)),
            level: level(),
        },
        |_| {},
    );
    assert_eq!(report.outcome, GrantOutcome::Refused);
    assert_eq!(report.failed.len(), 3);
}

#[test]
fn an_ota_script_built_from_master_keys_opens_its_card_only() {
    use crate::ota::{read_request, relay, OtaOperation};
    let m = master(0x70);
    let mut a = card();
    let mut b = card();
    for c in [&mut a, &mut b] {
        install_diversified_keys(c, &transport(), &m, "Line", level()).expect("install");
    }
    let request = read_request(&mut a, 0x30).expect("request");
    let ops = [OtaOperation::DeleteMo("./Nothing".into())];
    let script = build_ota_script(&m, &request, level(), &ops).expect("script");
    // The other card (same master keys, other card keys) refuses it.
    let mut forged = script.clone();
    forged.card_id = hex::encode_upper(b.select().expect("select").card_id);
    let e = relay(&mut b, &forged).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("APDU 2 of the script (EXTERNAL AUTHENTICATE)"),
        "{e}"
    );
    // Its own card accepts the handshake (APDUs 1 and 2); the delete
    // itself is then refused (Line holds no Delete right).
    let e = relay(&mut a, &script).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("APDU 3 of the script (delete mo:./Nothing)"),
        "{e}"
    );
}

#[test]
fn the_transport_key_set_can_be_replaced_by_the_diversified_one() {
    let m = SoftMasterKeys::new(0x01, master_keys(0x70));
    let mut c = card();
    install_diversified_keys(&mut c, &transport(), &m, "Line", level()).expect("rotate");
    assert!(open_secure_channel(&mut c, &transport(), level()).is_err());
    open_diversified_channel(&mut c, &m, level()).expect("diversified session");
}
