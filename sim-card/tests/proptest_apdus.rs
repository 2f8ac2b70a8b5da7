//! Property tests of the card and of the contract's codecs.
//!
//! (a) arbitrary bytes sent to `Card::process` in four states (not selected,
//!     selected, PIN verified, SCP03 session open) never panic, and every
//!     refused command leaves the committed records as they were, except that
//!     the refusals the card records by design (6982, 6300, 63Cx, 6983) may
//!     change the failure counters, the audit log, the try counters and `meta`;
//!     no refusal moves the generation;
//! (b) sequences of structured random commands (known INS/P1-P2, TLV-shaped
//!     data, SM-wrapped when a session is open, with SELECT, PIN, session,
//!     reset and power-cycle actions in between) keep the same properties;
//! (c) `tlv::parse_all` never panics, and encode → parse round-trips;
//! (d) `Command::decode` never panics, and encode → decode round-trips in the
//!     short (when it fits) and extended forms.
//!
//! Case counts: `PROPTEST_CASES` when set, otherwise 256 for the codecs and 64
//! for the card properties (each case personalises a new card).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use dmsc_card_model::apdu::{Command, LengthForm, Response};
use dmsc_card_model::commands::{
    self, ins, tag, Approval, ApprovalRule, AuthorityInfo, BootstrapKeyValue, CardConfig, MoRecord,
    ObjectValue, PackageId, Pin, Request, AID,
};
use dmsc_card_model::objects::{Acl, MacAlgorithm, ObjectKind, ObjectRef, Version};
use dmsc_card_model::tlv;
use dmsc_sim_card::Card;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use zeroize::Zeroizing;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> Config {
    Config {
        cases: cases(default),
        // Keep the source tree clean: failures print their minimal input.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

// ---- the card ------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Start {
    Unselected,
    Selected,
    PinVerified,
    Session,
}

fn card_in(start: Start) -> (MemCard, Option<Host>) {
    let mut card = new_card();
    let mut host = None;
    if !matches!(start, Start::Unselected) {
        assert_eq!(select(&mut card).sw, 0x9000);
    }
    match start {
        Start::PinVerified => {
            let verify = Request::Verify {
                reference: commands::PIN_REF_USER,
                pin: Some(commands::Pin::new(b"123456").unwrap()),
            };
            assert_eq!(request(&mut card, &verify).sw, 0x9000);
        }
        Start::Session => host = Some(Host::open(&mut card, 0x30, 0x33).unwrap()),
        _ => {}
    }
    (card, host)
}

type Records = BTreeMap<Vec<u8>, Vec<u8>>;

fn is_failure_record(key: &[u8]) -> bool {
    key.starts_with(b"fail/")
        || key.starts_with(b"audit/")
        || [b"pin".as_slice(), b"puk", b"meta"].contains(&key)
}

/// The status words of refusals the card records (rights, MAC, PIN failures).
fn records_by_design(sw: u16) -> bool {
    sw == 0x6982 || sw == 0x6300 || sw == 0x6983 || sw & 0xFFF0 == 0x63C0
}

fn check_answer(
    before: &Records,
    generation: u64,
    card: &MemCard,
    answer: &[u8],
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(answer.len() >= 2, "{what}: no status word");
    prop_assert!(!card.is_mute(), "{what}: the card went mute");
    let sw = u16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]]);
    if sw == 0x9000 || sw >> 8 == 0x61 {
        return Ok(());
    }
    let after = card.records();
    let keys: BTreeSet<&Vec<u8>> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    if records_by_design(sw) {
        let others: Vec<_> = changed
            .iter()
            .filter(|k| !is_failure_record(k.as_bytes()))
            .collect();
        prop_assert!(others.is_empty(), "{what}: SW {sw:04X} changed {others:?}");
    } else {
        prop_assert!(
            changed.is_empty(),
            "{what}: SW {sw:04X} changed {changed:?}"
        );
    }
    prop_assert_eq!(card.generation(), generation, "{}: SW {:04X}", what, sw);
    Ok(())
}

fn send_checked(card: &mut MemCard, bytes: &[u8]) -> Result<Vec<u8>, TestCaseError> {
    let before = card.records().clone();
    let generation = card.generation();
    let answer = card.process(bytes);
    check_answer(
        &before,
        generation,
        card,
        &answer,
        &hex::encode_upper(bytes),
    )?;
    Ok(answer)
}

const CLAS: [u8; 10] = [0x00, 0x80, 0x84, 0x04, 0x10, 0x90, 0x94, 0x14, 0x0C, 0x01];
const INSS: [u8; 18] = [
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
    ins::PUT_KEY,
    0x00,
];
const P1P2: [(u8, u8); 12] = [
    (0x3F, 0xFF),
    (0x3F, 0xFE),
    (0x04, 0x00),
    (0x00, 0x81),
    (0x00, 0x82),
    (0x41, 0xB4),
    (0x00, 0xA2),
    (0x00, 0xA8),
    (0x00, 0x00),
    (0x30, 0x00),
    (0x33, 0x00),
    (0x01, 0x00),
];
const TAGS: [u32; 36] = [
    0x80,
    0x81,
    0x82,
    0x83,
    0x84,
    0x85,
    0x86,
    0x87,
    0x88,
    0x89,
    tag::VALUE,
    tag::ACL,
    tag::MO_TYPE,
    tag::MO_VERSION,
    tag::MO_CONTENT,
    tag::ALGORITHM,
    tag::KEY,
    tag::PUBLIC_KEY,
    tag::APPROVER,
    tag::USER_CONSENT_PIN,
    tag::VERSION,
    tag::FAILURE_LIMIT,
    tag::USED_MEMORY,
    tag::TOTAL_MEMORY,
    tag::CHECKSUM,
    tag::DIGEST,
    tag::DEVICE_CLASS,
    tag::APPROVAL,
    tag::SIGNATURE,
    tag::AUDIT_FROM,
    tag::AUTHORITY_NAME,
    tag::KEY_LENGTH,
    tag::KEY_CHECK,
    tag::LIST_ENTRY,
    0x9F7F,
    0x5F2D,
];

/// Values that are sometimes meaningful: names, versions, ACLs, points, keys.
fn tlv_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => prop::sample::select(vec![
            b"./DMAcc".to_vec(),
            b"owner".to_vec(),
            b"gateway".to_vec(),
            b"2.1".to_vec(),
            b"Get=*&Replace=*&Delete=*&Exec=*&Add=*".to_vec(),
            b"Get=ServerA".to_vec(),
            vec![0x01],
            vec![0x30],
            vec![0x11; 16],
            vec![0x22; 32],
            vec![0x33; 64],
            {
                let mut p = vec![0x04];
                p.extend_from_slice(&[0x55; 64]);
                p
            },
        ]),
    ]
}

fn tlv_item() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(TAGS.to_vec()), tlv_value())
        .prop_map(|(t, v): (u32, Vec<u8>)| tlv::encode(t, &v))
}

/// TLV-shaped data: known tags, random or meaningful values, one level of nesting.
fn tlv_soup() -> impl Strategy<Value = Vec<u8>> {
    let inner = proptest::collection::vec(tlv_item(), 0..4).prop_map(|v| v.concat());
    let nested = (
        prop::sample::select(vec![tag::VALUE, tag::APPROVAL, 0xE3]),
        inner,
    )
        .prop_map(|(t, v): (u32, Vec<u8>)| tlv::encode(t, &v));
    proptest::collection::vec(prop_oneof![3 => tlv_item(), 1 => nested], 0..5)
        .prop_map(|v| v.concat())
}

/// A class byte that fits the instruction (00 interindustry, 80 for the
/// proprietary and GlobalPlatform ones), sometimes with the chaining or SM bit,
/// sometimes anything.
fn cla_for(ins: u8) -> impl Strategy<Value = u8> {
    let base = match ins {
        ins::DELETE
        | ins::CHECK_APPROVAL
        | ins::CONFIRM_INSTALLED
        | ins::INITIALIZE_UPDATE
        | ins::PUT_KEY => 0x80,
        _ => 0x00,
    };
    prop_oneof![
        8 => Just(base),
        1 => Just(base | 0x10),
        1 => Just(base | 0x04),
        1 => prop::sample::select(CLAS.to_vec()),
        1 => any::<u8>().prop_filter("PPS", |c| *c != 0xFF),
    ]
}

fn random_command() -> impl Strategy<Value = Command> {
    prop_oneof![4 => prop::sample::select(INSS.to_vec()), 1 => any::<u8>()]
        .prop_flat_map(|ins| {
            (
                cla_for(ins),
                Just(ins),
                prop_oneof![4 => prop::sample::select(P1P2.to_vec()), 1 => any::<(u8, u8)>()],
                prop_oneof![
                    3 => tlv_soup(),
                    1 => proptest::collection::vec(any::<u8>(), 0..40),
                    1 => Just(AID.to_vec()),
                ],
                prop_oneof![
                    Just(None),
                    (1usize..=256).prop_map(Some),
                    Just(Some(65_536)),
                ],
            )
        })
        .prop_map(|(cla, ins, (p1, p2), data, le)| Command {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
}

fn object_ref() -> impl Strategy<Value = ObjectRef> {
    prop_oneof![
        Just(ObjectRef::Card),
        prop::sample::select(vec!["./A", "./B", "./DMAcc"]).prop_map(|s| ObjectRef::Mo(s.into())),
        Just(ObjectRef::Policy),
        (1u8..4).prop_map(ObjectRef::BootstrapKey),
        prop::sample::select(vec!["owner", "eve"]).prop_map(|s| ObjectRef::Approver(s.into())),
        Just(ObjectRef::ApprovalRule),
        prop::sample::select(vec!["gateway", "sensor"]).prop_map(|s| ObjectRef::Floor(s.into())),
        Just(ObjectRef::IdentityKey),
        Just(ObjectRef::AuditLog),
        prop::sample::select(vec![0x30u8, 0x31, 0x32]).prop_map(ObjectRef::Authority),
    ]
}

fn acl() -> impl Strategy<Value = Acl> {
    prop::sample::select(vec![
        "",
        "Get=*",
        "Get=*&Replace=*&Delete=*&Exec=*&Add=*",
        "Delete=ServerA&Exec=*&Get=*+ServerA&Replace=ServerA",
        "Get=ServerB&Replace=ServerB&Delete=ServerB&Exec=ServerB",
        "Get=user&Exec=user",
    ])
    .prop_map(|s| Acl::parse(s).unwrap())
}

fn p256_point() -> Vec<u8> {
    // The RFC 6979 A.2.5 public key.
    hex::decode("0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb67903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299").unwrap()
}

/// A value of the reference's kind (or, rarely, of another kind).
fn value_for(object: &ObjectRef) -> BoxedStrategy<ObjectValue> {
    let kind = object.kind();
    let v: BoxedStrategy<ObjectValue> = match kind {
        ObjectKind::Card => (0u8..8)
            .prop_map(|l| {
                ObjectValue::Card(CardConfig {
                    failure_limit: l,
                    used_memory: 0,
                    total_memory: 0,
                })
            })
            .boxed(),
        ObjectKind::Mo => proptest::collection::vec(any::<u8>(), 0..600)
            .prop_map(|content| {
                ObjectValue::Mo(MoRecord {
                    mo_type: "t".into(),
                    version: 7,
                    content,
                })
            })
            .boxed(),
        ObjectKind::Policy => proptest::collection::vec(any::<u8>(), 0..100)
            .prop_map(ObjectValue::Policy)
            .boxed(),
        ObjectKind::BootstrapKey => (
            prop::sample::select(MacAlgorithm::ALL.to_vec()),
            prop::sample::select(vec![16usize, 20, 32, 64]),
        )
            .prop_map(|(algorithm, n)| {
                ObjectValue::BootstrapKey(BootstrapKeyValue {
                    algorithm,
                    key: Some(Zeroizing::new(vec![0x5A; n])),
                })
            })
            .boxed(),
        ObjectKind::Approver | ObjectKind::IdentityKey => {
            Just(ObjectValue::Approver(p256_point())).boxed()
        }
        ObjectKind::ApprovalRule => (
            proptest::collection::vec(
                prop::sample::select(vec!["owner", "eve", "maintainer"]),
                0..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(names, pin)| {
                let mut required: Vec<String> = Vec::new();
                for n in names {
                    if !required.iter().any(|r| r == n) {
                        required.push(n.into());
                    }
                }
                ObjectValue::ApprovalRule(ApprovalRule {
                    required,
                    user_consent_needs_pin: pin,
                })
            })
            .boxed(),
        ObjectKind::Floor => prop::sample::select(vec!["0.1", "2.1", "10"])
            .prop_map(|v| ObjectValue::Floor(Version::parse(v).unwrap()))
            .boxed(),
        ObjectKind::AuditLog => Just(ObjectValue::AuditLog(Vec::new())).boxed(),
        ObjectKind::Authority => Just(ObjectValue::Authority(AuthorityInfo {
            name: "ServerC".into(),
            key_length: 16,
            key_check_values: [[0; 3]; 3],
        }))
        .boxed(),
    };
    v
}

fn package() -> impl Strategy<Value = PackageId> {
    (
        prop::sample::select(vec![[0u8; 32], [0x11; 32]]),
        prop::sample::select(vec!["0.1", "2.1", "10"]),
        prop::sample::select(vec!["gateway", "sensor"]),
    )
        .prop_map(|(digest, v, c)| PackageId {
            digest,
            version: Version::parse(v).unwrap(),
            device_class: c.into(),
        })
}

fn pin() -> impl Strategy<Value = Pin> {
    prop::sample::select(vec!["123456", "12345678", "0000", "87654321"])
        .prop_map(|p| Pin::new(p.as_bytes()).unwrap())
}

/// Well-formed requests with random content, as the host library encodes them.
fn typed_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (object_ref(), proptest::option::of(0u32..40)).prop_map(|(object, audit_from)| {
            let audit_from = audit_from.filter(|_| object == ObjectRef::AuditLog);
            Request::ReadObject { object, audit_from }
        }),
        prop::sample::select(
            ObjectKind::ALL
                .iter()
                .copied()
                .filter(|k| k.is_named())
                .collect::<Vec<_>>()
        )
        .prop_map(|kind| Request::ListObjects { kind }),
        object_ref()
            .prop_flat_map(|o| (Just(o.clone()), value_for(&o), proptest::option::of(acl())))
            .prop_map(|(object, value, acl)| Request::PutObject { object, value, acl }),
        (object_ref(), acl()).prop_map(|(object, acl)| Request::SetAcl { object, acl }),
        object_ref().prop_map(|object| Request::DeleteObject { object }),
        (
            prop::sample::select(vec![commands::PIN_REF_USER, commands::PIN_REF_PUK]),
            proptest::option::of(pin())
        )
            .prop_map(|(reference, pin)| Request::Verify { reference, pin }),
        (pin(), pin()).prop_map(|(old, new)| Request::ChangePin { old, new }),
        (pin(), pin()).prop_map(|(puk, new)| Request::ResetRetryCounter { puk, new }),
        (1usize..=300).prop_map(|len| Request::GetChallenge { len }),
        proptest::collection::vec(any::<u8>(), 1..40)
            .prop_map(|challenge| Request::InternalAuthenticate { challenge }),
        (0u8..5).prop_map(|key_id| Request::SelectMacKey { key_id }),
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            prop::sample::select(vec![16usize, 20, 32, 15])
        )
            .prop_map(|(data, n)| Request::VerifyMac {
                data,
                mac: vec![0xA5; n]
            }),
        (
            prop::sample::select(vec!["owner", "eve"]),
            proptest::collection::vec(any::<u8>(), 0..40),
            prop::sample::select(vec![8usize, 64, 70])
        )
            .prop_map(|(a, data, n)| Request::VerifySignature {
                approver: a.into(),
                data,
                signature: vec![0x30; n]
            }),
        (
            package(),
            proptest::collection::vec(
                (
                    prop::sample::select(vec!["owner", "eve", "maintainer"]),
                    prop::sample::select(vec![64usize, 70])
                ),
                0..3
            )
        )
            .prop_map(|(package, a)| Request::CheckApproval {
                package,
                approvals: a
                    .into_iter()
                    .map(|(n, len)| Approval {
                        approver: n.into(),
                        signature: vec![0x42; len]
                    })
                    .collect(),
            }),
        package().prop_map(|package| Request::ConfirmInstalled { package }),
        (1usize..=256).prop_map(|le| Request::GetResponse { le }),
    ]
}

/// A command: a typed request (as encoded, or with one byte of its data
/// changed) or a header and data assembled at random.
fn structured_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => typed_request().prop_map(|r| r.to_command()),
        1 => (typed_request(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(r, i, b)| {
            let mut c = r.to_command();
            if !c.data.is_empty() {
                let at = i.index(c.data.len());
                c.data[at] ^= b | 1;
            }
            c
        }),
        3 => random_command(),
    ]
}

fn raw_apdu() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..48),
        3 => structured_command().prop_map(|c| c.to_bytes().unwrap()),
        // A valid header with a random body.
        1 => (structured_command(), proptest::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(c, body)| [&[c.cla, c.ins, c.p1, c.p2][..], &body].concat()),
    ]
}

fn start() -> impl Strategy<Value = Start> {
    prop::sample::select(vec![
        Start::Unselected,
        Start::Selected,
        Start::PinVerified,
        Start::Session,
    ])
}

proptest! {
    #![proptest_config(config(64))]

    /// (a) arbitrary bytes in four states.
    #[test]
    fn arbitrary_bytes_never_panic_nor_change_state_when_refused(
        start in start(),
        apdus in proptest::collection::vec(raw_apdu(), 1..8),
    ) {
        let (mut card, _host) = card_in(start);
        for apdu in &apdus {
            send_checked(&mut card, apdu)?;
        }
        // Whatever happened, the card still works.
        prop_assert_eq!(select(&mut card).sw, 0x9000);
    }
}

#[derive(Debug, Clone)]
enum Action {
    Plain(Command),
    Secure(Command),
    Select,
    VerifyPin,
    OpenSession(u8),
    Reset,
    PowerCycle,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => structured_command().prop_map(Action::Plain),
        6 => structured_command().prop_map(Action::Secure),
        1 => Just(Action::Select),
        1 => Just(Action::VerifyPin),
        2 => prop::sample::select(vec![0x30u8, 0x30, 0x31]).prop_map(Action::OpenSession),
        1 => Just(Action::Reset),
        1 => Just(Action::PowerCycle),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    /// (b) sequences of structured random commands.
    #[test]
    fn command_sequences_never_panic_nor_change_state_when_refused(
        start in start(),
        actions in proptest::collection::vec(action(), 1..16),
    ) {
        let (card, host) = card_in(start);
        let mut card = Some(card);
        let mut host = host;
        for a in &actions {
            let c = card.as_mut().unwrap();
            match a {
                Action::Plain(cmd) => {
                    send_checked(c, &cmd.to_bytes().unwrap())?;
                    // A plain command ends the card's side of any session.
                    host = None;
                }
                Action::Secure(cmd) => {
                    if host.is_none() {
                        host = Host::open(c, 0x30, 0x33).ok();
                    }
                    let wrapped = host.as_mut().and_then(|h| h.channel.wrap_command(cmd).ok());
                    match wrapped {
                        Some(w) => match w.to_bytes() {
                            Ok(bytes) => {
                                let answer = send_checked(c, &bytes)?;
                                let rsp = Response::from_bytes(&answer).unwrap();
                                // The host may or may not accept it; the card's properties are what count.
                                let _ = host.as_mut().unwrap().channel.unwrap_response(&rsp);
                            }
                            Err(_) => continue,
                        },
                        None => {
                            send_checked(c, &cmd.to_bytes().unwrap())?;
                        }
                    }
                }
                Action::Select => {
                    select(c);
                }
                Action::VerifyPin => {
                    let before = c.records().clone();
                    let generation = c.generation();
                    let verify = Request::Verify {
                        reference: commands::PIN_REF_USER,
                        pin: Some(commands::Pin::new(b"123456").unwrap()),
                    };
                    let answer = c.process(&verify.to_command().to_bytes().unwrap());
                    check_answer(&before, generation, c, &answer, "VERIFY")?;
                }
                Action::OpenSession(kvn) => {
                    host = Host::open(c, *kvn, 0x33).ok();
                }
                Action::Reset => {
                    let before = c.records().clone();
                    c.reset();
                    prop_assert_eq!(&before, c.records());
                    prop_assert_eq!(select(c).sw, 0x9000);
                }
                Action::PowerCycle => {
                    let before = c.records().clone();
                    let store = card.take().unwrap().into_store();
                    let mut powered = Card::power_up(store, rng(9)).unwrap();
                    prop_assert_eq!(&before, powered.records());
                    prop_assert_eq!(select(&mut powered).sw, 0x9000);
                    card = Some(powered);
                    host = None;
                }
            }
        }
        prop_assert_eq!(select(card.as_mut().unwrap()).sw, 0x9000);
    }
}

// ---- TLV -------------------------------------------------------------------

/// Tags the codec can write and read back: 1 byte (not 00, FF, nor xxx11111),
/// 2 bytes (xxx11111 then 1F..7F: tag numbers 31-127), 3 bytes.
fn valid_tag() -> impl Strategy<Value = u32> {
    let one = any::<u8>()
        .prop_filter("single-byte tag", |b| *b != 0x00 && b & 0x1F != 0x1F)
        .prop_map(|b| b as u32);
    let first = any::<u8>()
        .prop_map(|b| (b | 0x1F) as u32)
        .prop_filter("FF", |b| *b != 0xFF);
    let two = (first.clone(), 0x1Fu32..=0x7F).prop_map(|(a, b)| (a << 8) | b);
    let three =
        (first, 0x81u32..=0xFF, 0x00u32..=0x7F).prop_map(|(a, b, c)| (a << 16) | (b << 8) | c);
    prop_oneof![3 => one, 2 => two, 1 => three]
}

fn tlv_value_any() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => proptest::collection::vec(any::<u8>(), 120..300),
        1 => proptest::collection::vec(any::<u8>(), 65_530..65_545),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// (c) parse_all and everything built on it never panic.
    #[test]
    fn tlv_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = tlv::parse_all(&bytes);
        let _ = tlv::parse_one(&bytes);
        if let Ok(f) = tlv::Fields::parse(&bytes) {
            let _ = f.only(&[0x80, 0x53], &[0x53]);
            for t in &f.items {
                let _ = t.children();
            }
        }
        let _ = ObjectRef::decode(&bytes);
        for kind in ObjectKind::ALL {
            let _ = ObjectValue::decode(kind, &bytes);
            let _ = commands::ObjectData::decode(kind, &bytes);
        }
        let _ = commands::SelectInfo::decode(&bytes);
        let _ = commands::ApprovalVerdict::decode(&bytes);
        let _ = commands::decode_list(&bytes);
        let _ = commands::AuditEntry::decode(&bytes);
    }

    /// (c) encode → parse round-trips any list of (tag, value).
    #[test]
    fn tlv_round_trip(items in proptest::collection::vec((valid_tag(), tlv_value_any()), 0..6)) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for (t, v) in &items {
            offsets.push(bytes.len());
            tlv::write(&mut bytes, *t, v);
        }
        let parsed = tlv::parse_all(&bytes).unwrap();
        prop_assert_eq!(parsed.len(), items.len());
        for ((p, (t, v)), off) in parsed.iter().zip(&items).zip(&offsets) {
            prop_assert_eq!(p.tag, *t);
            prop_assert_eq!(p.value, v.as_slice());
            prop_assert_eq!(p.offset, *off);
        }
        // The same objects one at a time.
        let mut rest = bytes.as_slice();
        for (t, v) in &items {
            let (one, r) = tlv::parse_one(rest).unwrap();
            prop_assert_eq!(one.tag, *t);
            prop_assert_eq!(one.value, v.as_slice());
            rest = r;
        }
        prop_assert!(rest.is_empty());
        // Any strict prefix of a non-empty encoding is an error, never a panic or a shorter list.
        if let Some((t, v)) = items.first() {
            let one = tlv::encode(*t, v);
            for cut in 1..one.len() {
                prop_assert!(tlv::parse_all(&one[..cut]).is_err());
            }
        }
    }
}

// ---- APDU --------------------------------------------------------------------

fn any_command(max_nc: usize) -> impl Strategy<Value = Command> {
    (
        any::<u8>().prop_filter("CLA FF is PPS", |c| *c != 0xFF),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![
            2 => Just(Vec::new()),
            4 => proptest::collection::vec(any::<u8>(), 1..=300),
            1 => proptest::collection::vec(any::<u8>(), max_nc - 3..=max_nc),
        ],
        prop_oneof![
            Just(None),
            (1usize..=256).prop_map(Some),
            (257usize..=65_536).prop_map(Some),
            Just(Some(65_536)),
        ],
    )
        .prop_map(|(cla, ins, p1, p2, data, le)| Command {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
}

proptest! {
    #![proptest_config(config(256))]

    /// (d) decoding never panics, and what decodes is exactly its own short or extended encoding.
    #[test]
    fn command_decode_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]) {
        let _ = Response::from_bytes(&bytes);
        if let Ok(cmd) = Command::decode(&bytes) {
            let short = cmd.encode(LengthForm::Short).ok();
            let extended = cmd.encode(LengthForm::Extended).ok();
            prop_assert!(
                short.as_deref() == Some(bytes.as_slice()) || extended.as_deref() == Some(bytes.as_slice()),
                "{} is not a canonical encoding of {:?}", hex::encode_upper(&bytes), cmd
            );
            let _ = Request::from_command(&cmd);
            let _ = commands::command_carries_secret(&cmd);
        }
    }

    /// (d) encode → decode round-trips, short when it fits and extended always.
    #[test]
    fn command_round_trip(cmd in any_command(65_535)) {
        let fits = cmd.data.len() <= 255 && cmd.le.is_none_or(|n| n <= 256);
        prop_assert_eq!(cmd.fits_short(), fits);
        match cmd.encode(LengthForm::Short) {
            Ok(bytes) => {
                prop_assert!(fits);
                prop_assert!(bytes.len() <= 4 + 1 + 255 + 1);
                prop_assert_eq!(&Command::decode(&bytes).unwrap(), &cmd);
            }
            Err(_) => prop_assert!(!fits),
        }
        let bytes = cmd.encode(LengthForm::Extended).unwrap();
        prop_assert_eq!(&Command::decode(&bytes).unwrap(), &cmd);
        let bytes = cmd.to_bytes().unwrap();
        prop_assert_eq!(&Command::decode(&bytes).unwrap(), &cmd);
        // Chaining splits and joins back.
        let chain = cmd.chain(97);
        let joined: Vec<u8> = chain.iter().flat_map(|c| c.data.clone()).collect();
        prop_assert_eq!(joined, cmd.data.clone());
        prop_assert_eq!(chain.last().unwrap().le, cmd.le);
    }

    /// Response bytes round-trip.
    #[test]
    fn response_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300), sw in any::<u16>()) {
        let rsp = Response { data, sw };
        prop_assert_eq!(Response::from_bytes(&rsp.to_bytes()).unwrap(), rsp);
    }

    /// Every request the card-model can build round-trips through from_command.
    #[test]
    fn decoded_requests_re_encode(cmd in structured_command()) {
        if let Ok(req) = Request::from_command(&cmd) {
            let again = req.to_command();
            prop_assert_eq!(Request::from_command(&again).unwrap(), req);
        }
    }
}

/// Two-byte tags carry tag numbers 31 to 127 (ISO/IEC 7816-4 5.2.2.1).
#[test]
fn tlv_accepts_two_byte_tags_from_31() {
    for second in 0x1F..=0x7Fu8 {
        let bytes = [0x5F, second, 0x01, 0xAA];
        let items = tlv::parse_all(&bytes).unwrap();
        assert_eq!(items[0].tag, 0x5F00 | second as u32);
    }
}

#[test]
fn tlv_rejects_two_byte_tags_below_31() {
    for second in 0x00..=0x1Eu8 {
        for first in [0x1Fu8, 0x5F, 0x9F, 0xDF] {
            assert!(
                tlv::parse_all(&[first, second, 0x00]).is_err(),
                "{first:02X} {second:02X} accepted"
            );
        }
    }
}
