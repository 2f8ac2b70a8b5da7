//! RFC 4493 §4 AES-CMAC examples (`test-vectors/rfc4493-cmac.json`) through the
//! card: the key is provisioned as bootstrap key 1 over SCP03, then every
//! example goes through MANAGE SECURITY ENVIRONMENT SET + PERFORM SECURITY
//! OPERATION VERIFY CRYPTOGRAPHIC CHECKSUM: the RFC's tag verifies (9000),
//! the tag with any single bit flipped does not (6300).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use dmsc_card_model::commands::{BootstrapKeyValue, ObjectValue, Request};
use dmsc_card_model::objects::{MacAlgorithm, ObjectRef};
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    source: String,
    algorithm: String,
    key: String,
    examples: Vec<Example>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Example {
    name: String,
    message: String,
    tag: String,
}

fn load() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../test-vectors/rfc4493-cmac.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A selected card with the key as AES-CMAC bootstrap key 1 and that key chosen by MSE SET.
fn card_with_key(key: &[u8]) -> MemCard {
    let mut card = new_card();
    assert_eq!(select(&mut card).sw, 0x9000);
    let mut host = Host::open(&mut card, 0x30, 0x33).unwrap();
    let put = Request::PutObject {
        object: ObjectRef::BootstrapKey(1),
        value: ObjectValue::BootstrapKey(BootstrapKeyValue {
            algorithm: MacAlgorithm::AesCmac,
            key: Some(Zeroizing::new(key.to_vec())),
        }),
        acl: None,
    };
    assert_eq!(host.request(&mut card, &put).sw, 0x9000);
    // A plain command ends the session: the checks below run as anyone (Exec=*).
    let mse = request(&mut card, &Request::SelectMacKey { key_id: 1 });
    assert_eq!(mse.sw, 0x9000);
    card
}

fn verify(card: &mut MemCard, data: &[u8], mac: &[u8]) -> u16 {
    let rsp = request(
        card,
        &Request::VerifyMac {
            data: data.to_vec(),
            mac: mac.to_vec(),
        },
    );
    assert!(rsp.data.is_empty());
    rsp.sw
}

#[test]
fn rfc4493_examples_through_the_card() {
    let v = load();
    assert!(v.source.contains("RFC 4493"));
    assert_eq!(v.algorithm, "AES-128-CMAC");
    assert_eq!(v.examples.len(), 4);
    let key = hex::decode(&v.key).unwrap();
    let mut card = card_with_key(&key);
    let lengths: Vec<usize> = v
        .examples
        .iter()
        .map(|e| hex::decode(&e.message).unwrap().len())
        .collect();
    assert_eq!(lengths, [0, 16, 40, 64]);
    for e in &v.examples {
        let msg = hex::decode(&e.message).unwrap();
        let tag = hex::decode(&e.tag).unwrap();
        assert_eq!(verify(&mut card, &msg, &tag), 0x9000, "{}", e.name);
        // Every single-bit change of the tag is refused.
        for bit in 0..tag.len() * 8 {
            let mut bad = tag.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            assert_eq!(
                verify(&mut card, &msg, &bad),
                0x6300,
                "{} bit {bit}",
                e.name
            );
        }
        // So is the right tag over a changed message.
        let mut other = msg.clone();
        match other.last_mut() {
            Some(b) => *b ^= 1,
            None => other.push(0),
        }
        assert_eq!(
            verify(&mut card, &other, &tag),
            0x6300,
            "{} message",
            e.name
        );
        // And the key is still selected and the tag still good after the refusals.
        assert_eq!(verify(&mut card, &msg, &tag), 0x9000, "{} again", e.name);
    }
}

#[test]
fn rfc4493_tags_must_be_full_length() {
    let v = load();
    let key = hex::decode(&v.key).unwrap();
    let mut card = card_with_key(&key);
    let e = &v.examples[1];
    let msg = hex::decode(&e.message).unwrap();
    let tag = hex::decode(&e.tag).unwrap();
    for len in [0, 4, 8, 12, 15] {
        assert_eq!(
            verify(&mut card, &msg, &tag[..len]),
            0x6700,
            "{len}-byte tag"
        );
    }
    let mut long = tag.clone();
    long.push(0);
    assert_eq!(verify(&mut card, &msg, &long), 0x6700);
}

#[test]
fn rfc4493_key_as_aes256_does_not_verify() {
    // The same message and tag under a different key (the RFC key twice, as
    // an AES-256 key) must be refused: the card really uses the provisioned key.
    let v = load();
    let key = hex::decode(&v.key).unwrap();
    let mut card = card_with_key(&[key.clone(), key].concat());
    let e = &v.examples[1];
    let msg = hex::decode(&e.message).unwrap();
    let tag = hex::decode(&e.tag).unwrap();
    assert_eq!(verify(&mut card, &msg, &tag), 0x6300);
}
