//! Arbitrary bytes to an initialised card's `process`.
//!
//! Input: byte 0 picks the starting state (not selected, selected, PIN
//! verified, SCP03 session as ServerA) and how the rest is cut: either one
//! APDU, or several, each preceded by a one-byte length. After every answer:
//! the card is not mute, the answer carries a status word, and a refused
//! command has changed no committed record except, for the refusals the card
//! records by design (6982, 6300, 63Cx, 6983), the failure counters, the audit
//! log, the try counters and `meta`; no refusal moves the generation.
#![no_main]

use std::collections::BTreeSet;

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::{Pin, Request, AID, PIN_REF_USER};
use dmsc_card_model::scp03::{
    self, InitializeUpdateResponse, SecureChannel, SecurityLevel, StaticKeys,
};
use dmsc_sim_card::store::Records;
use dmsc_sim_card::{AuthorityKeys, Card, InitParams, MemoryStore};
use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

type FuzzCard = Card<MemoryStore, ChaCha20Rng>;

const KEYS: [u8; 16] = *b"@ABCDEFGHIJKLMNO";

fn personalised_card() -> FuzzCard {
    let key = || Zeroizing::new(KEYS.to_vec());
    let params = InitParams::with_authorities(vec![
        AuthorityKeys {
            key_version: 0x30,
            name: "ServerA".into(),
            enc: key(),
            mac: key(),
            dek: key(),
        },
        AuthorityKeys {
            key_version: 0x31,
            name: "ServerB".into(),
            enc: Zeroizing::new(vec![0x11; 16]),
            mac: Zeroizing::new(vec![0x22; 16]),
            dek: Zeroizing::new(vec![0x33; 16]),
        },
    ]);
    let store = Card::initialize(MemoryStore::new(), ChaCha20Rng::from_seed([7; 32]), params)
        .unwrap()
        .into_store();
    Card::power_up(store, ChaCha20Rng::from_seed([8; 32])).unwrap()
}

/// The card in starting state `mode & 3` (not selected, selected, PIN
/// verified, SCP03 session as ServerA).
fn prepared_card(mode: u8) -> FuzzCard {
    let mut card = personalised_card();
    if mode & 0x03 != 0 {
        let select = Request::Select { aid: AID.to_vec() }.to_command();
        assert_eq!(exchange(&mut card, &select).sw, 0x9000);
    }
    match mode & 0x03 {
        2 => {
            let verify = Request::Verify {
                reference: PIN_REF_USER,
                pin: Some(Pin::new(b"123456").unwrap()),
            };
            assert_eq!(exchange(&mut card, &verify.to_command()).sw, 0x9000);
        }
        3 => open_session(&mut card),
        _ => {}
    }
    card
}

thread_local! {
    // Personalising (the identity key generation), powering up and opening
    // the session are done once per starting state; every input runs on a
    // clone of the prepared card.
    static PREPARED: [FuzzCard; 4] = [0, 1, 2, 3].map(prepared_card);
}

fn new_card(mode: u8) -> FuzzCard {
    PREPARED.with(|cards| cards[usize::from(mode & 0x03)].clone())
}

fn exchange(card: &mut FuzzCard, cmd: &Command) -> Response {
    Response::from_bytes(&card.process(&cmd.to_bytes().unwrap())).unwrap()
}

fn open_session(card: &mut FuzzCard) {
    let hc = [1, 2, 3, 4, 5, 6, 7, 8];
    let rsp = exchange(card, &scp03::initialize_update(0x30, &hc).unwrap());
    assert_eq!(rsp.sw, 0x9000);
    let iu = InitializeUpdateResponse::decode(&rsp.data).unwrap();
    let keys = StaticKeys::new(&KEYS, &KEYS, &KEYS).unwrap();
    let (_channel, ext) =
        SecureChannel::host_authenticate(&keys, &hc, &iu, SecurityLevel::new(0x01).unwrap())
            .unwrap();
    assert_eq!(exchange(card, &ext).sw, 0x9000);
}

fn is_failure_record(key: &[u8]) -> bool {
    key.starts_with(b"fail/")
        || key.starts_with(b"audit/")
        || [b"pin".as_slice(), b"puk", b"meta"].contains(&key)
}

/// Sends `apdu` and checks the answer. `before` holds the committed records
/// as at the last commit seen; they are copied again only when a command
/// committed (`MemoryStore` counts commits, and most fuzzed commands are
/// refused without writing anything).
fn send_checked(card: &mut FuzzCard, before: &mut Records, apdu: &[u8]) {
    let commits = card.store().commits();
    let generation = card.generation();
    let answer = card.process(apdu);
    assert!(!card.is_mute(), "the card went mute");
    assert!(answer.len() >= 2, "no status word");
    let sw = u16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]]);
    if card.store().commits() == commits {
        // No commit: the store's committed records (and the generation in
        // them) are those of `before`.
        return;
    }
    let after = card.records().clone();
    if !(sw == 0x9000 || sw >> 8 == 0x61) {
        let keys: BTreeSet<&Vec<u8>> = before.keys().chain(after.keys()).collect();
        let changed: Vec<&Vec<u8>> = keys
            .into_iter()
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        let by_design = sw == 0x6982 || sw == 0x6300 || sw == 0x6983 || sw & 0xFFF0 == 0x63C0;
        for k in &changed {
            assert!(
                by_design && is_failure_record(k),
                "SW {sw:04X} changed record {:?}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(card.generation(), generation, "SW {sw:04X} moved the generation");
    }
    *before = after;
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut card = new_card(mode);
    let mut before = card.records().clone();
    if mode & 0x04 == 0 {
        send_checked(&mut card, &mut before, rest);
    } else {
        let mut rest = rest;
        while let Some((&len, tail)) = rest.split_first() {
            let n = (len as usize).min(tail.len());
            let (apdu, tail) = tail.split_at(n);
            send_checked(&mut card, &mut before, apdu);
            rest = tail;
        }
    }
    // The card still answers a SELECT.
    let select = Request::Select { aid: AID.to_vec() }.to_command();
    assert_eq!(exchange(&mut card, &select).sw, 0x9000);
});
