//! Data-driven APDU transcripts: `test-vectors/transcripts/*.json` (format in
//! `test-vectors/README.md`). Each transcript is replayed against a fresh card;
//! every status word and every expected response is asserted, and after every
//! step the committed records are compared with those before it:
//!
//! - a step whose status word is not `9000`/`61xx` must leave the records
//!   untouched, unless it is marked `"records_failure": true`;
//! - a step marked `"records_failure"` must change the records, and only the
//!   failure counters (`fail/…`), the audit log (`audit/…`), the try counters
//!   (`pin`, `puk`) and `meta` (audit sequence, SCP03 counter); the generation
//!   (the visible content) must not move;
//! - `reset` and `power_cycle` must leave the records untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use common::*;
use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::{ins, Request};
use dmsc_card_model::scp03::{
    self, InitializeUpdateResponse, SecureChannel, SecurityLevel, SessionKeys, StaticKeys,
};
use dmsc_sim_card::{Card, MemoryStore};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Transcript {
    source: String,
    description: String,
    #[serde(default)]
    card: CardSetup,
    steps: Vec<Step>,
}

/// Card personalisation; anything absent takes the harness default
/// (`tests/common/mod.rs`: seed 7, PIN 123456, PUK 12345678, 3/10 tries,
/// 256 KiB, failure limit 4, ServerA kvn 30 and ServerB kvn 31).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardSetup {
    rng_seed: Option<u8>,
    capacity: Option<u32>,
    pin: Option<String>,
    puk: Option<String>,
    pin_tries: Option<u8>,
    puk_tries: Option<u8>,
    failure_limit: Option<u8>,
    /// The SCP03 sequence counter the card starts with (default 0).
    scp_counter: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    note: String,
    apdu: Option<String>,
    sw: Option<String>,
    data: Option<String>,
    data_prefix: Option<String>,
    data_len: Option<usize>,
    #[serde(default)]
    secure: bool,
    chain: Option<usize>,
    #[serde(default)]
    records_failure: bool,
    #[serde(default)]
    host_encodes: bool,
    open_scp: Option<OpenScp>,
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    power_cycle: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenScp {
    kvn: String,
    level: String,
    host_challenge: String,
    /// Static keys the host uses instead of the authority's (hex ENC/MAC/DEK).
    keys: Option<KeysHex>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysHex {
    enc: String,
    mac: String,
    dek: String,
}

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

fn one_byte(s: &str) -> u8 {
    match unhex(s).as_slice() {
        [b] => *b,
        other => panic!("expected one hex byte, got {other:02X?}"),
    }
}

fn parse_sw(s: &str) -> u16 {
    match unhex(s).as_slice() {
        [a, b] => u16::from_be_bytes([*a, *b]),
        other => panic!("expected a two-byte status word, got {other:02X?}"),
    }
}

fn transcripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/transcripts")
}

fn load(name: &str) -> Transcript {
    let path = transcripts_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

struct Runner {
    name: String,
    seed: u8,
    card: Option<MemCard>,
    host: Option<Host>,
}

const FAILURE_RECORDS: [&[u8]; 3] = [b"pin", b"puk", b"meta"];

fn is_failure_record(key: &[u8]) -> bool {
    key.starts_with(b"fail/") || key.starts_with(b"audit/") || FAILURE_RECORDS.contains(&key)
}

fn changed_keys(
    before: &BTreeMap<Vec<u8>, Vec<u8>>,
    after: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Vec<String> {
    let keys: BTreeSet<&Vec<u8>> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

impl Runner {
    fn new(name: &str, setup: &CardSetup) -> Runner {
        let seed = setup.rng_seed.unwrap_or(7);
        let mut params = init_params();
        if let Some(c) = setup.capacity {
            params.capacity = c;
        }
        if let Some(p) = &setup.pin {
            params.pin = Zeroizing::new(p.as_bytes().to_vec());
        }
        if let Some(p) = &setup.puk {
            params.puk = Zeroizing::new(p.as_bytes().to_vec());
        }
        if let Some(t) = setup.pin_tries {
            params.pin_tries = t;
        }
        if let Some(t) = setup.puk_tries {
            params.puk_tries = t;
        }
        if let Some(l) = setup.failure_limit {
            params.failure_limit = l;
        }
        let card = match setup.scp_counter {
            None => Card::initialize(MemoryStore::new(), rng(seed), params).unwrap(),
            Some(counter) => {
                let mut store = MemoryStore::new();
                drop(Card::initialize(&mut store, rng(seed), params).unwrap());
                let mut state = dmsc_sim_card::state::State::from_records(store.records()).unwrap();
                state.scp_counter = counter;
                Card::power_up(MemoryStore::with_records(state.to_records()), rng(seed)).unwrap()
            }
        };
        Runner {
            name: name.to_string(),
            seed,
            card: Some(card),
            host: None,
        }
    }

    fn card(&mut self) -> &mut MemCard {
        self.card.as_mut().expect("card present")
    }

    fn raw(&mut self, bytes: &[u8]) -> Response {
        let out = self.card().process(bytes);
        Response::from_bytes(&out).expect("the card answers at least a status word")
    }

    fn run(&mut self, steps: &[Step]) {
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{} step {} ({})", self.name, i + 1, step.note);
            self.step(step, &at);
        }
    }

    fn step(&mut self, step: &Step, at: &str) {
        let kinds = [
            step.apdu.is_some(),
            step.open_scp.is_some(),
            step.reset,
            step.power_cycle,
        ];
        assert_eq!(
            kinds.iter().filter(|k| **k).count(),
            1,
            "{at}: a step has exactly one of apdu, open_scp, reset, power_cycle"
        );
        assert!(!step.note.trim().is_empty(), "{at}: every step has a note");
        let before = self.card().records().clone();
        let generation = self.card().generation();

        let sw = if step.reset {
            self.card().reset();
            self.host = None;
            None
        } else if step.power_cycle {
            let card = self.card.take().expect("card present");
            let store = card.into_store();
            self.card = Some(Card::power_up(store, rng(self.seed)).expect("power up"));
            self.host = None;
            None
        } else if let Some(open) = &step.open_scp {
            Some(self.open_scp(open, step, at))
        } else {
            Some(self.apdu(step, at))
        };

        let after = self.card().records().clone();
        let changed = changed_keys(&before, &after);
        match sw {
            None => assert!(
                changed.is_empty(),
                "{at}: reset/power cycle changed {changed:?}"
            ),
            Some(sw) => {
                let success = sw == 0x9000 || sw >> 8 == 0x61;
                if step.records_failure {
                    assert!(!success, "{at}: records_failure on a successful step");
                    assert!(
                        !changed.is_empty(),
                        "{at}: the card should have recorded the failure"
                    );
                    let others: Vec<_> = changed
                        .iter()
                        .filter(|k| !is_failure_record(k.as_bytes()))
                        .collect();
                    assert!(
                        others.is_empty(),
                        "{at}: a failure changed records other than fail/audit/pin/puk/meta: {others:?}"
                    );
                    assert_eq!(
                        self.card().generation(),
                        generation,
                        "{at}: a failure moved the generation"
                    );
                } else if !success {
                    assert!(
                        changed.is_empty(),
                        "{at}: SW {sw:04X} but the committed state changed: {changed:?}"
                    );
                }
            }
        }
    }

    fn open_scp(&mut self, open: &OpenScp, step: &Step, at: &str) -> u16 {
        assert!(step.data.is_none() && step.data_prefix.is_none(), "{at}");
        let kvn = one_byte(&open.kvn);
        let level = SecurityLevel::new(one_byte(&open.level)).expect("valid level");
        let host_challenge = unhex(&open.host_challenge);
        let expected_sw = step.sw.as_deref().map(parse_sw).unwrap_or(0x9000);
        self.host = None;
        let iu = scp03::initialize_update(kvn, &host_challenge).unwrap();
        let rsp = send(self.card(), &iu);
        assert_eq!(rsp.sw, 0x9000, "{at}: INITIALIZE UPDATE");
        let mut iu_rsp = InitializeUpdateResponse::decode(&rsp.data).expect("IU response");
        let keys = match &open.keys {
            Some(k) => {
                let keys = StaticKeys::new(&unhex(&k.enc), &unhex(&k.mac), &unhex(&k.dek))
                    .expect("AES keys");
                // A host holding other keys cannot check the card cryptogram; to
                // make it send its EXTERNAL AUTHENTICATE anyway, recompute the
                // cryptogram it expects.
                let session =
                    SessionKeys::derive(&keys, &host_challenge, &iu_rsp.card_challenge).unwrap();
                iu_rsp.card_cryptogram = session
                    .card_cryptogram(&host_challenge, &iu_rsp.card_challenge)
                    .unwrap();
                keys
            }
            None => keys_for(iu_rsp.key_version),
        };
        let (channel, ext) =
            SecureChannel::host_authenticate(&keys, &host_challenge, &iu_rsp, level)
                .unwrap_or_else(|e| panic!("{at}: host side of EXTERNAL AUTHENTICATE: {e}"));
        let rsp = send(self.card(), &ext);
        assert_eq!(rsp.sw, expected_sw, "{at}: EXTERNAL AUTHENTICATE SW");
        assert!(rsp.data.is_empty(), "{at}: EXTERNAL AUTHENTICATE data");
        if rsp.sw == 0x9000 {
            self.host = Some(Host { channel });
        }
        rsp.sw
    }

    fn apdu(&mut self, step: &Step, at: &str) -> u16 {
        let bytes = unhex(step.apdu.as_deref().unwrap());
        let expected_sw = parse_sw(
            step.sw
                .as_deref()
                .unwrap_or_else(|| panic!("{at}: every APDU step names its \"sw\"")),
        );
        if step.host_encodes {
            let cmd = Command::decode(&bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
            let req = Request::from_command(&cmd).unwrap_or_else(|e| {
                panic!("{at}: host_encodes on a command that does not decode: {e}")
            });
            assert_eq!(
                hex::encode_upper(req.to_command().to_bytes().unwrap()),
                hex::encode_upper(&bytes),
                "{at}: the card-model encoder writes this request differently"
            );
        }
        let rsp = if step.secure {
            let cmd = Command::decode(&bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
            let mut host = self
                .host
                .take()
                .unwrap_or_else(|| panic!("{at}: a secure step needs an open_scp before it"));
            let pieces = match step.chain {
                Some(n) => cmd.chain(n),
                None => vec![cmd],
            };
            let last = pieces.len() - 1;
            let mut rsp = None;
            for (i, piece) in pieces.iter().enumerate() {
                let wrapped = host
                    .channel
                    .wrap_command(piece)
                    .unwrap_or_else(|e| panic!("{at}: wrap: {e}"));
                let raw = send(self.card(), &wrapped);
                let plain = host
                    .channel
                    .unwrap_response(&raw)
                    .unwrap_or_else(|e| panic!("{at}: unwrap {raw:?}: {e}"));
                if i < last {
                    assert_eq!(plain.sw, 0x9000, "{at}: chain piece {}", i + 1);
                } else {
                    rsp = Some(plain);
                }
            }
            self.host = Some(host);
            rsp.unwrap()
        } else {
            assert!(
                step.chain.is_none(),
                "{at}: write plain chains out piece by piece"
            );
            self.raw(&bytes)
        };
        assert_eq!(
            format!("{:04X}", rsp.sw),
            format!("{expected_sw:04X}"),
            "{at}: status word (data {})",
            hex::encode_upper(&rsp.data)
        );
        if let Some(d) = &step.data {
            assert_eq!(
                hex::encode_upper(&rsp.data),
                hex::encode_upper(unhex(d)),
                "{at}: response data"
            );
        }
        if let Some(p) = &step.data_prefix {
            let p = unhex(p);
            assert!(
                rsp.data.starts_with(&p),
                "{at}: response data {} does not start with {}",
                hex::encode_upper(&rsp.data),
                hex::encode_upper(&p)
            );
        }
        if let Some(n) = step.data_len {
            assert_eq!(rsp.data.len(), n, "{at}: response length");
        }
        if step.data.is_none() && step.data_prefix.is_none() && step.data_len.is_none() {
            assert!(
                rsp.data.is_empty(),
                "{at}: unexpected response data {}",
                hex::encode_upper(&rsp.data)
            );
        }
        rsp.sw
    }
}

/// How a transcript was made, from its `source`: `hand-written …`, or
/// `generated by PATH …` where PATH is a generator in the repository that
/// names the transcript it writes.
fn check_source(name: &str, source: &str) {
    if let Some(rest) = source.strip_prefix("generated by ") {
        let tool = rest.split_whitespace().next().unwrap_or("");
        let path = transcripts_dir().join("../..").join(tool);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{name}: generator {tool}: {e}"));
        assert!(
            text.contains(name),
            "{name}: its generator {tool} does not name it"
        );
    } else {
        assert!(
            source.starts_with("hand-written"),
            "{name}: the source must start with 'hand-written' or 'generated by PATH'"
        );
    }
}

fn run_file(name: &str) -> Transcript {
    let t = load(name);
    check_source(name, &t.source);
    assert!(!t.description.is_empty() && !t.steps.is_empty(), "{name}");
    let mut runner = Runner::new(name, &t.card);
    runner.run(&t.steps);
    t
}

macro_rules! transcript {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            run_file($file);
        }
    };
}

/// Every transcript file, with its test. A file in the folder that is not
/// listed here fails `every_transcript_is_listed`.
const FILES: &[&str] = &[
    "select_and_errors.json",
    "authorities.json",
    "objects.json",
    "pin.json",
    "challenge_internal_auth.json",
    "bootstrap_mac.json",
    "signature.json",
    "approval.json",
    "scp03.json",
    "get_response.json",
    "chaining.json",
    "card_full.json",
    "existence_oracle.json",
    "initialize_update_le.json",
    "acl_capacity.json",
    "read_all.json",
    "policy.json",
    "scp_counter_exhausted.json",
    "mo_overlap.json",
];

transcript!(select_and_errors, "select_and_errors.json");
transcript!(objects, "objects.json");
transcript!(scp_counter_exhausted, "scp_counter_exhausted.json");
transcript!(pin, "pin.json");
transcript!(challenge_internal_auth, "challenge_internal_auth.json");
transcript!(bootstrap_mac, "bootstrap_mac.json");
transcript!(signature, "signature.json");
transcript!(approval, "approval.json");
transcript!(scp03_session, "scp03.json");
transcript!(get_response, "get_response.json");
transcript!(chaining, "chaining.json");
transcript!(card_full, "card_full.json");
transcript!(existence_oracle, "existence_oracle.json");
transcript!(initialize_update_le, "initialize_update_le.json");
transcript!(acl_capacity, "acl_capacity.json");
transcript!(read_all, "read_all.json");
transcript!(policy, "policy.json");
transcript!(authorities, "authorities.json");
transcript!(mo_overlap, "mo_overlap.json");

#[test]
fn every_transcript_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(transcripts_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// The transcripts together exercise every instruction of the card and every
/// status word it can answer in normal operation.
#[test]
fn transcripts_cover_every_command_and_status() {
    let mut seen_ins = BTreeSet::new();
    let mut seen_sw = BTreeSet::new();
    let mut records_failure = 0;
    let mut steps = 0;
    for name in FILES.iter() {
        let t = load(name);
        for step in &t.steps {
            steps += 1;
            records_failure += step.records_failure as usize;
            if let Some(a) = &step.apdu {
                let b = unhex(a);
                if b.len() >= 2 {
                    seen_ins.insert(b[1]);
                }
            }
            if step.open_scp.is_some() {
                seen_ins.insert(ins::INITIALIZE_UPDATE);
                seen_ins.insert(ins::EXTERNAL_AUTHENTICATE);
            }
            if let Some(sw) = &step.sw {
                let sw = parse_sw(sw);
                // 61xx and 63Cx are families: keep the family.
                let family = match sw >> 8 {
                    0x61 => 0x6100,
                    0x63 if sw & 0xF0 == 0xC0 => 0x63C0,
                    _ => sw,
                };
                seen_sw.insert(family);
            }
        }
    }
    let all_ins = [
        ins::SELECT,
        ins::GET_DATA,
        ins::PUT_DATA,
        ins::DELETE,
        ins::VERIFY,
        ins::CHANGE_REFERENCE_DATA,
        ins::RESET_RETRY_COUNTER,
        ins::GET_CHALLENGE,
        ins::INTERNAL_AUTHENTICATE,
        ins::MANAGE_SECURITY_ENVIRONMENT,
        ins::PERFORM_SECURITY_OPERATION,
        ins::CHECK_APPROVAL,
        ins::CONFIRM_INSTALLED,
        ins::INITIALIZE_UPDATE,
        ins::EXTERNAL_AUTHENTICATE,
        ins::GET_RESPONSE,
    ];
    let missing: Vec<_> = all_ins.iter().filter(|i| !seen_ins.contains(*i)).collect();
    assert!(
        missing.is_empty(),
        "instructions without a transcript: {missing:02X?}"
    );
    // Every status word the card can answer to a command from outside. Not
    // listed: 6581/6500 (a failed persistent write; the card is then mute, and
    // the power-cut campaign covers it) and 6F00 (an internal error no input
    // can cause: signing or building the INITIALIZE UPDATE answer failed).
    let all_sw: [u16; 20] = [
        0x9000, 0x6100, 0x63C0, 0x6300, 0x6700, 0x6881, 0x6882, 0x6883, 0x6982, 0x6983, 0x6984,
        0x6985, 0x6A80, 0x6A82, 0x6A84, 0x6A86, 0x6A88, 0x6A89, 0x6D00, 0x6E00,
    ];
    let missing: Vec<_> = all_sw.iter().filter(|s| !seen_sw.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "status words without a transcript: {missing:04X?}"
    );
    assert!(
        records_failure >= 10 && steps >= 200,
        "{records_failure} / {steps}"
    );
}

/// The harness itself: a transcript whose expectation is wrong must fail.
#[test]
fn harness_rejects_wrong_expectations() {
    fn outcome(steps: serde_json::Value) -> Result<(), String> {
        let steps: Vec<Step> = serde_json::from_value(steps).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut runner = Runner::new("self-test", &CardSetup::default());
            runner.run(&steps);
        }));
        result.map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".into())
        })
    }
    let select = "00 A4 04 00 07 F0 44 4D 53 43 00 01 00";
    let ok = |extra: serde_json::Value| {
        let mut s = serde_json::json!({"note": "SELECT", "apdu": select, "sw": "9000", "data_prefix": "6F 4D"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };
    // Controls: right expectations pass.
    outcome(serde_json::json!([ok(
        serde_json::json!({"host_encodes": true})
    )]))
    .unwrap();
    outcome(serde_json::json!([
        ok(serde_json::json!({})),
        {"note": "card as anyone", "apdu": "00 CB 3F FF 02 80 00 00", "sw": "6982", "records_failure": true},
        {"note": "tries", "apdu": "00 20 00 81", "sw": "63C3"}
    ]))
    .unwrap();
    let wrong = [
        (
            "wrong SW",
            serde_json::json!([ok(serde_json::json!({"sw": "6A82"}))]),
        ),
        (
            "wrong data",
            serde_json::json!([ok(serde_json::json!({"data": "6F 4D"}))]),
        ),
        (
            "wrong prefix",
            serde_json::json!([ok(serde_json::json!({"data_prefix": "6F 4E"}))]),
        ),
        (
            "wrong length",
            serde_json::json!([ok(serde_json::json!({"data_len": 78}))]),
        ),
        (
            "unexpected data",
            serde_json::json!([{"note": "SELECT", "apdu": select, "sw": "9000"}]),
        ),
        (
            "no SW",
            serde_json::json!([{"note": "SELECT", "apdu": select, "data_prefix": "6F"}]),
        ),
        (
            "host encodes otherwise",
            serde_json::json!([ok(
                serde_json::json!({"apdu": "00 A4 04 00 07 F0 44 4D 53 43 00 01", "host_encodes": true})
            )]),
        ),
        (
            "unmarked failure record",
            serde_json::json!([ok(serde_json::json!({})), {"note": "card", "apdu": "00 CB 3F FF 02 80 00 00", "sw": "6982"}]),
        ),
        (
            "failure record that is not there",
            serde_json::json!([ok(serde_json::json!({})), {"note": "tries", "apdu": "00 20 00 81", "sw": "63C3", "records_failure": true}]),
        ),
        (
            "secure step without a session",
            serde_json::json!([ok(serde_json::json!({})), {"note": "card", "apdu": "00 CB 3F FF 02 80 00 00", "sw": "9000", "secure": true, "data_prefix": "53"}]),
        ),
        (
            "two kinds in one step",
            serde_json::json!([ok(serde_json::json!({"reset": true}))]),
        ),
        (
            "EXTERNAL AUTHENTICATE SW",
            serde_json::json!([ok(serde_json::json!({})), {"note": "scp", "open_scp": {"kvn": "30", "level": "01", "host_challenge": "0102030405060708"}, "sw": "6982"}]),
        ),
    ];
    for (what, steps) in wrong {
        assert!(
            outcome(steps).is_err(),
            "the harness accepted a transcript with a {what}"
        );
    }
}

/// Too large for a JSON transcript: a chain longer than the 128 KiB the card
/// assembles is refused with 6700 on the piece that overflows, the chain is
/// dropped, and nothing is committed.
#[test]
fn chain_beyond_128_kib_is_refused() {
    let mut card = new_card();
    assert_eq!(select(&mut card).sw, 0x9000);
    let before = card.records().clone();
    let piece = |cla: u8| {
        Command::new(cla, ins::PERFORM_SECURITY_OPERATION, 0x00, 0xA2)
            .with_data(vec![0x5A; 65_535])
            .to_bytes()
            .unwrap()
    };
    let sw = |r: Vec<u8>| u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
    assert_eq!(sw(card.process(&piece(0x10))), 0x9000);
    assert_eq!(sw(card.process(&piece(0x10))), 0x9000);
    assert_eq!(sw(card.process(&piece(0x10))), 0x6700);
    // The chain is gone: a last piece alone is an ordinary (malformed) command.
    assert_eq!(sw(card.process(&piece(0x00))), 0x6A80);
    assert_eq!(&before, card.records());
}
