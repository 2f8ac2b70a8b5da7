//! Transcript tests of the session: each test replays the exact APDUs a card
//! would see and the answers it gives.

use std::sync::{Arc, Mutex};

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::{
    algorithms, CardConfig, ObjectValue, Pin, Request, SelectInfo, APPLET_VERSION, PIN_REF_USER,
};
use dmsc_card_model::objects::{Acl, ObjectRef};

use crate::session::secure::{SecureMessaging, SmError};
use crate::session::trace::TraceEvent;
use crate::session::{ApduLimits, CardCommands, PinStatus, Session};
use crate::transport::scripted::{h, ScriptedTransport};
use crate::{HostError, Status, TransportError};

const SELECT: &str = "00A40400 07 F0444D53430001 00";

fn info(extended: bool, max_command: u32, max_response: u32, id: u8) -> SelectInfo {
    SelectInfo {
        card_id: [id; 16],
        applet_version: APPLET_VERSION,
        generation: 7,
        max_command,
        max_response,
        extended_length: extended,
        algorithms: algorithms::AES_CMAC | algorithms::SCP03_AES128,
        free_memory: 1000,
        total_memory: 4096,
        scp_i: 0x70,
    }
}

fn ok(data: &[u8]) -> String {
    format!("{}9000", hex::encode_upper(data))
}

fn selected(info: &SelectInfo) -> (String, String) {
    (SELECT.to_string(), ok(&info.encode()))
}

/// A session over a transcript that starts with a SELECT answered by `info`.
fn session(
    transport_extended: bool,
    info: &SelectInfo,
    rest: &[(&str, &str)],
) -> Session<ScriptedTransport> {
    let (c, r) = selected(info);
    let mut t = ScriptedTransport::new(transport_extended, &[(&c, &r)]);
    t.push(rest);
    Session::new(t)
}

fn traced(s: &mut Session<ScriptedTransport>) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    s.set_trace(Box::new(move |e: &TraceEvent| {
        sink.lock().unwrap().push(e.to_string())
    }));
    log
}

fn policy_read() -> Request {
    Request::ReadObject {
        object: ObjectRef::Policy,
        audit_from: None,
    }
}

#[test]
fn select_decodes_info_and_negotiates_limits() {
    let card = info(true, 4096, 8192, 1);
    let mut s = session(true, &card, &[]);
    assert_eq!(s.limits(), ApduLimits::SHORT);
    assert_eq!(s.select().unwrap(), card);
    assert_eq!(
        s.limits(),
        ApduLimits {
            extended: true,
            max_command: 4096,
            max_response: 8192
        }
    );
    // The same card over a transport without extended length: short APDUs.
    assert_eq!(
        ApduLimits::negotiate(Some(&card), false),
        ApduLimits {
            extended: false,
            max_command: 255,
            max_response: 256
        }
    );
    assert_eq!(
        ApduLimits::negotiate(Some(&info(false, 100, 100, 1)), true),
        ApduLimits {
            extended: false,
            max_command: 100,
            max_response: 256
        }
    );
}

#[test]
fn select_failure_is_typed() {
    let mut t = ScriptedTransport::new(false, &[(SELECT, "6A82")]);
    t.push(&[]);
    let mut s = Session::new(t);
    let err = s.select().unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Card {
                status: Status::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "SELECT: not found (SW 6A82)");
}

#[test]
fn get_response_reassembles_61xx() {
    let card = info(false, 255, 256, 1);
    let mut s = session(
        false,
        &card,
        &[
            // GET DATA of the policy: Le 65536 travels as short Le 00.
            ("00CB3FFF 02 8200 00", "0102 6104"),
            ("00C00000 04", "03040506 6100"),
            ("00C00000 00", "0708 9000"),
        ],
    );
    let data = s.request(&policy_read()).unwrap();
    assert_eq!(data, h("0102 03040506 0708"));
    assert!(s.transport().transactions >= 1);
}

#[test]
fn wrong_le_6cxx_resends_with_le() {
    let card = info(false, 255, 256, 1);
    let mut s = session(
        false,
        &card,
        &[
            ("00840000 10", "6C08"),
            ("00840000 08", "1122334455667788 9000"),
        ],
    );
    assert_eq!(s.get_challenge(16).unwrap(), h("1122334455667788"));
}

#[test]
fn wrong_le_after_get_response_resends_get_response() {
    let card = info(false, 255, 256, 1);
    let mut s = session(
        false,
        &card,
        &[
            ("00CB3FFF 02 8200 00", "AA 6110"),
            ("00C00000 10", "6C05"),
            ("00C00000 05", "BBBBBBBBBB 9000"),
        ],
    );
    assert_eq!(s.request(&policy_read()).unwrap(), h("AA BBBBBBBBBB"));
}

fn big_policy(len: usize) -> (ObjectRef, ObjectValue) {
    (
        ObjectRef::Policy,
        ObjectValue::Policy((0..len).map(|i| i as u8).collect()),
    )
}

#[test]
fn short_chaining_splits_at_255_and_marks_cla() {
    let card = info(false, 255, 256, 1);
    let (object, value) = big_policy(600);
    let cmd = Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    }
    .to_command();
    let links = cmd.chain(255);
    assert_eq!(links.len(), 3);
    let enc: Vec<String> = links
        .iter()
        .map(|l| hex::encode_upper(l.to_bytes().unwrap()))
        .collect();
    assert!(enc[0].starts_with("10DB3FFFFF") && enc[1].starts_with("10DB3FFFFF"));
    assert!(enc[2].starts_with("00DB3FFF"));
    let mut s = session(
        false,
        &card,
        &[(&enc[0], "9000"), (&enc[1], "9000"), (&enc[2], "9000")],
    );
    s.put_object(&object, &value, None).unwrap();
}

#[test]
fn chain_stops_at_first_refused_link() {
    let card = info(false, 255, 256, 1);
    let (object, value) = big_policy(600);
    let cmd = Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    }
    .to_command();
    let first = hex::encode_upper(cmd.chain(255)[0].to_bytes().unwrap());
    let mut s = session(false, &card, &[(&first, "6A84")]);
    let err = s.put_object(&object, &value, None).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Card {
                command: "PUT DATA",
                status: Status::NotEnoughMemory
            }
        ),
        "{err:?}"
    );
}

#[test]
fn extended_length_when_card_and_transport_allow() {
    let card = info(true, 65_535, 65_536, 1);
    let (object, value) = big_policy(600);
    let cmd = Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    }
    .to_command();
    let one = hex::encode_upper(
        cmd.encode(dmsc_card_model::apdu::LengthForm::Extended)
            .unwrap(),
    );
    assert!(one.starts_with("00DB3FFF00"));
    let mut s = session(
        true,
        &card,
        &[
            (&one, "9000"),
            // A read asks for as much as one extended APDU carries end to end
            // (EXTENDED_DATA_LIMIT = 65 024 = FE00).
            ("00CB3FFF 000002 8200 FE00", "5300 8C00 9000"),
        ],
    );
    s.put_object(&object, &value, None).unwrap();
    assert_eq!(s.request(&policy_read()).unwrap(), h("5300 8C00"));
}

#[test]
fn extended_card_over_short_transport_uses_chaining() {
    let card = info(true, 65_535, 65_536, 1);
    let (object, value) = big_policy(300);
    let cmd = Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    }
    .to_command();
    let links: Vec<String> = cmd
        .chain(255)
        .iter()
        .map(|l| hex::encode_upper(l.to_bytes().unwrap()))
        .collect();
    assert_eq!(links.len(), 2);
    let mut s = session(
        false,
        &card,
        &[
            (&links[0], "9000"),
            (&links[1], "9000"),
            ("00CB3FFF 02 8200 00", "5300 8C00 9000"),
        ],
    );
    s.put_object(&object, &value, None).unwrap();
    s.request(&policy_read()).unwrap();
}

#[test]
fn extended_chaining_above_card_max_command() {
    let card = info(true, 1000, 65_536, 1);
    let (object, value) = big_policy(2500);
    let cmd = Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    }
    .to_command();
    let links: Vec<String> = cmd
        .chain(1000)
        .iter()
        .map(|l| {
            hex::encode_upper(
                l.encode(dmsc_card_model::apdu::LengthForm::Extended)
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(links.len(), 3);
    assert!(links[0].starts_with("10DB3FFF0003E8"));
    let table: Vec<(&str, &str)> = links.iter().map(|l| (l.as_str(), "9000")).collect();
    let mut s = session(true, &card, &table);
    s.put_object(&object, &value, None).unwrap();
}

#[test]
fn read_object_decodes() {
    let card = info(false, 255, 256, 1);
    let config = CardConfig {
        failure_limit: 5,
        used_memory: 10,
        total_memory: 4096,
    };
    let data = dmsc_card_model::commands::ObjectData {
        value: ObjectValue::Card(config),
        acl: Acl::parse("Get=*").unwrap(),
    };
    let enc = data.encode();
    let mut s = session(false, &card, &[("00CB3FFF 02 8000 00", &ok(&enc))]);
    assert_eq!(s.read_object(&ObjectRef::Card).unwrap(), data);
}

#[test]
fn pin_commands_map_status_words_and_are_redacted() {
    let card = info(false, 255, 256, 1);
    let pin = Pin::new(b"1234").unwrap();
    let block = "31323334FFFFFFFF";
    let mut s = session(
        false,
        &card,
        &[
            ("00200081", "63C3"),
            (&format!("00200081 08 {block}"), "63C2"),
            (&format!("00200081 08 {block}"), "9000"),
            ("00200081", "9000"),
            (&format!("00200081 08 {block}"), "6983"),
            ("00200081", "6983"),
        ],
    );
    let log = traced(&mut s);
    assert_eq!(
        s.pin_tries().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    match s.verify_pin(&pin) {
        Err(HostError::Card {
            command: "VERIFY",
            status: Status::RemainingRetries(2),
        }) => {}
        other => panic!("{other:?}"),
    }
    s.verify_pin(&pin).unwrap();
    assert_eq!(s.pin_status(PIN_REF_USER).unwrap(), PinStatus::Verified);
    assert!(matches!(
        s.verify_pin(&pin),
        Err(HostError::Card {
            command: "VERIFY",
            status: Status::OperationBlocked
        })
    ));
    assert_eq!(s.pin_tries().unwrap(), PinStatus::Blocked);

    let log = log.lock().unwrap();
    let all = log.join("\n");
    assert!(!all.contains(block), "PIN leaked into the trace:\n{all}");
    assert!(all.contains("> 00200081 08 <redacted 8 bytes>"), "{all}");
    assert!(all.contains("< 63C2"), "{all}");
    // VERIFY without data is not a secret.
    assert!(all.contains("> 00200081\n< 63C3"), "{all}");
}

#[test]
fn change_and_unblock_pin() {
    let card = info(false, 255, 256, 1);
    let old = Pin::new(b"1234").unwrap();
    let new = Pin::new(b"5678").unwrap();
    let mut s = session(
        false,
        &card,
        &[
            ("00240081 10 31323334FFFFFFFF 35363738FFFFFFFF", "63C1"),
            ("002C0081 10 31323334FFFFFFFF 35363738FFFFFFFF", "9000"),
        ],
    );
    assert!(matches!(
        s.change_pin(&old, &new),
        Err(HostError::Card {
            command: "CHANGE REFERENCE DATA",
            status: Status::RemainingRetries(1)
        })
    ));
    s.unblock_pin(&old, &new).unwrap();
}

fn apdu(req: &Request) -> String {
    hex::encode_upper(req.to_command().to_bytes().unwrap())
}

#[test]
fn verify_mac_true_false() {
    let card = info(false, 255, 256, 1);
    // The wire form of both commands belongs to the card model.
    let mse = apdu(&Request::SelectMacKey { key_id: 2 });
    let mse9 = apdu(&Request::SelectMacKey { key_id: 9 });
    let pso = apdu(&Request::VerifyMac {
        data: h("AABB"),
        mac: h("CCDD"),
    });
    let mut s = session(
        false,
        &card,
        &[
            (&mse, "9000"),
            (&pso, "9000"),
            (&mse, "9000"),
            (&pso, "6300"),
            (&mse9, "6A88"),
        ],
    );
    let before = s.transport().transactions;
    assert!(s.verify_mac(2, &h("AABB"), &h("CCDD")).unwrap());
    // SELECT, MSE and PSO go in one transaction.
    assert_eq!(s.transport().transactions, before + 1);
    assert!(!s.verify_mac(2, &h("AABB"), &h("CCDD")).unwrap());
    assert!(matches!(
        s.verify_mac(9, &h("AABB"), &h("CCDD")),
        Err(HostError::Card {
            command: "MANAGE SECURITY ENVIRONMENT",
            status: Status::KeyReferenceNotFound
        })
    ));
}

#[test]
fn reset_during_a_read_reselects_and_retries() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[]);
    s.select().unwrap();
    let t = s.transport_mut();
    t.push_error("00CB3FFF 02 8200 00", TransportError::CardReset);
    let (c, r) = selected(&card);
    t.push(&[(&c, &r), ("00CB3FFF 02 8200 00", "5300 8C00 9000")]);
    assert_eq!(s.request(&policy_read()).unwrap(), h("5300 8C00"));
}

#[test]
fn reset_during_a_write_is_reported_then_reselected() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[]);
    s.select().unwrap();
    let put = "80E40000 02 8200";
    s.transport_mut().push_error(put, TransportError::CardReset);
    let err = s.delete(&ObjectRef::Policy).unwrap_err();
    assert!(
        matches!(err, HostError::Transport(TransportError::CardReset)),
        "{err:?}"
    );
    // The next operation selects the applet again first.
    let (c, r) = selected(&card);
    s.transport_mut().push(&[(&c, &r), (put, "9000")]);
    s.delete(&ObjectRef::Policy).unwrap();
}

#[test]
fn reset_found_before_a_write_started_reselects_and_runs_it() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[]);
    s.select().unwrap();
    let t = s.transport_mut();
    t.push_begin_error(TransportError::CardReset);
    let (c, r) = selected(&card);
    t.push(&[(&c, &r), ("80E40000 02 8200", "9000")]);
    s.delete(&ObjectRef::Policy).unwrap();
}

#[test]
fn other_card_after_reset_is_refused() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[]);
    s.select().unwrap();
    let t = s.transport_mut();
    t.push_error("00CB3FFF 02 8200 00", TransportError::CardReset);
    let (c, r) = selected(&info(false, 255, 256, 2));
    t.push(&[(&c, &r)]);
    let err = s.request(&policy_read()).unwrap_err();
    assert!(matches!(err, HostError::CardChanged { .. }), "{err:?}");
}

#[test]
fn reset_twice_is_reported() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[]);
    s.select().unwrap();
    let t = s.transport_mut();
    t.push_error("00CB3FFF 02 8200 00", TransportError::CardReset);
    t.push_error(SELECT, TransportError::CardReset);
    let err = s.request(&policy_read()).unwrap_err();
    assert!(matches!(
        err,
        HostError::Transport(TransportError::CardReset)
    ));
}

#[test]
fn malformed_response_is_an_error() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[("00840000 08", "90")]);
    let err = s.get_challenge(8).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Transport(TransportError::MalformedResponse(1))
        ),
        "{err:?}"
    );
}

#[test]
fn raw_transmit_returns_any_status() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[("00CA9F7F 00", "6A88")]);
    s.select().unwrap();
    let resp = s
        .transmit(&Command::new(0x00, 0xCA, 0x9F, 0x7F).with_le(256))
        .unwrap();
    assert_eq!(
        resp,
        Response {
            data: vec![],
            sw: 0x6A88
        }
    );
}

/// A stand-in for SCP03: sets the CLA SM bit and appends a counter "MAC";
/// unwrap strips a 1-byte trailer from the reassembled response.
struct FakeSm {
    counter: u8,
    log: Arc<Mutex<Vec<String>>>,
}

impl SecureMessaging for FakeSm {
    fn wrap(&mut self, cmd: &Command) -> Result<Command, SmError> {
        self.counter += 1;
        let mut w = cmd.clone();
        w.cla |= 0x04;
        w.data.push(0xE0 | self.counter);
        self.log
            .lock()
            .unwrap()
            .push(format!("wrap {}", cmd.data.len()));
        Ok(w)
    }

    fn unwrap(&mut self, resp: &Response) -> Result<Response, SmError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("unwrap {}", resp.data.len()));
        if resp.sw != 0x9000 {
            return Ok(resp.clone());
        }
        let mut data = resp.data.clone();
        if data.is_empty() {
            return Ok(resp.clone());
        }
        match data.pop() {
            Some(0x4D) => Ok(Response { data, sw: resp.sw }),
            _ => Err(SmError::Scp03(
                dmsc_card_model::scp03::Scp03Error::MacMismatch,
            )),
        }
    }

    fn max_plain_len(&self, max_wrapped: usize) -> usize {
        max_wrapped - 1
    }
}

#[test]
fn secure_messaging_wraps_each_link_and_unwraps_after_get_response() {
    let card = info(false, 255, 256, 1);
    let (object, value) = big_policy(300);
    let cmd = Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    }
    .to_command();
    // Chain by 254 (one byte left for the "MAC"), then wrap each link.
    let links = cmd.chain(254);
    assert_eq!(links.len(), 2);
    let wire: Vec<String> = links
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut w = l.clone();
            w.cla |= 0x04;
            w.data.push(0xE0 | (i as u8 + 1));
            hex::encode_upper(w.to_bytes().unwrap())
        })
        .collect();
    assert!(wire[0].starts_with("14DB3FFFFF") && wire[1].starts_with("04DB3FFF"));

    let mut s = session(
        false,
        &card,
        &[
            (&wire[0], "9000"),
            (&wire[1], "9000"),
            // A read under SM: 61xx, GET RESPONSE in plain, unwrap after reassembly.
            ("04CB3FFF 03 8200E3 00", "5300 6103"),
            ("00C00000 03", "8C00 4D 9000"),
            // 6Cxx: the plain command is wrapped again (new "MAC").
            ("04840000 01 E4 10", "6C08"),
            ("04840000 01 E5 08", "1122334455667788 4D 9000"),
        ],
    );
    s.select().unwrap();
    let sm_log = Arc::new(Mutex::new(Vec::new()));
    s.set_secure_messaging(Box::new(FakeSm {
        counter: 0,
        log: sm_log.clone(),
    }));
    let log = traced(&mut s);
    // The PUT carries a policy (no secret): wrapped link by link.
    s.put_object(&object, &value, None).unwrap();
    assert_eq!(s.request(&policy_read()).unwrap(), h("5300 8C00"));
    assert_eq!(s.get_challenge(16).unwrap(), h("1122334455667788"));
    assert_eq!(
        *sm_log.lock().unwrap(),
        [
            "wrap 254", "unwrap 0", "wrap 52", "unwrap 0", "wrap 2", "unwrap 5", "wrap 0",
            "wrap 0", "unwrap 9"
        ]
    );
    let log = log.lock().unwrap();
    let all = log.join("\n");
    // Plain commands and unwrapped responses are traced as secured; GET RESPONSE in plain.
    assert!(all.contains("> (secured) 00CB3FFF 02 8200 00"), "{all}");
    assert!(all.contains("> 00C00000 03\n< 8C004D 9000"), "{all}");
    assert!(all.contains("< (secured) 53008C00 9000"), "{all}");
    assert!(!all.contains("04CB3FFF"), "{all}");
}

#[test]
fn secure_messaging_redacts_secret_and_fails_typed() {
    let card = info(false, 255, 256, 1);
    let pin = Pin::new(b"1234").unwrap();
    let mut s = session(
        false,
        &card,
        &[("04200081 09 31323334FFFFFFFF E1", "0000 9000")],
    );
    s.select().unwrap();
    s.set_secure_messaging(Box::new(FakeSm {
        counter: 0,
        log: Arc::new(Mutex::new(Vec::new())),
    }));
    let log = traced(&mut s);
    let err = s.verify_pin(&pin).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::SecureMessaging {
                command: "VERIFY",
                ..
            }
        ),
        "{err:?}"
    );
    let all = log.lock().unwrap().join("\n");
    assert_eq!(all, "> (secured) 00200081 08 <redacted 8 bytes>");
}

#[test]
fn reset_under_secure_messaging_is_not_retried_and_drops_the_channel() {
    let card = info(false, 255, 256, 1);
    let mut s = session(false, &card, &[]);
    s.select().unwrap();
    s.set_secure_messaging(Box::new(FakeSm {
        counter: 0,
        log: Arc::new(Mutex::new(Vec::new())),
    }));
    s.transport_mut()
        .push_error("04CB3FFF 03 8200E1 00", TransportError::CardReset);
    let err = s.request(&policy_read()).unwrap_err();
    assert!(matches!(
        err,
        HostError::Transport(TransportError::CardReset)
    ));
    assert!(!s.is_secured());
}

#[test]
fn transaction_groups_commands_in_one_exclusive_access() {
    let card = info(false, 255, 256, 1);
    let pin = Pin::new(b"1234").unwrap();
    let mut s = session(
        false,
        &card,
        &[
            ("00200081 08 31323334FFFFFFFF", "9000"),
            ("00CB3FFF 02 8200 00", "5300 8C00 9000"),
        ],
    );
    let before = s.transport().transactions;
    let data = s
        .transaction(|x| {
            x.verify_pin(&pin)?;
            x.request(&policy_read())
        })
        .unwrap();
    assert_eq!(data, h("5300 8C00"));
    assert_eq!(s.transport().transactions, before + 1);
}

#[test]
fn selecting_another_application_forgets_the_applet() {
    let card = info(false, 255, 256, 1);
    let (c, r) = selected(&card);
    let mut s = session(
        false,
        &card,
        &[
            ("00A40400 05 A000000003 00", "9000"),
            (&c, &r),
            ("00840000 04", "01020304 9000"),
        ],
    );
    s.select().unwrap();
    let other = Command::new(0x00, 0xA4, 0x04, 0x00)
        .with_data(h("A000000003"))
        .with_le(256);
    assert!(s.transmit(&other).unwrap().is_ok());
    // The next command selects the dmsc applet again first.
    assert_eq!(s.get_challenge(4).unwrap(), h("01020304"));
}

#[test]
fn bootstrap_key_put_is_redacted() {
    use dmsc_card_model::commands::BootstrapKeyValue;
    use dmsc_card_model::objects::MacAlgorithm;
    let card = info(false, 255, 256, 1);
    let value = ObjectValue::BootstrapKey(BootstrapKeyValue {
        algorithm: MacAlgorithm::AesCmac,
        key: Some(zeroize::Zeroizing::new(vec![0x5A; 16])),
    });
    let object = ObjectRef::BootstrapKey(1);
    let put = apdu(&Request::PutObject {
        object: object.clone(),
        value: value.clone(),
        acl: None,
    });
    let mut s = session(false, &card, &[(&put, "9000")]);
    let log = traced(&mut s);
    s.put_object(&object, &value, None).unwrap();
    let all = log.lock().unwrap().join("\n");
    assert!(!all.contains("5A5A5A5A"), "{all}");
    assert!(all.contains("> 00DB3FFF "), "{all}");
    assert!(all.contains("<redacted "), "{all}");
}

#[test]
fn oversized_reassembly_is_refused() {
    let card = info(false, 255, 256, 1);
    let huge = format!("{}6100", "00".repeat(crate::session::MAX_RESPONSE_LEN + 1));
    let mut s = session(false, &card, &[("00CB3FFF 02 8200 00", &huge)]);
    let err = s.request(&policy_read()).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Protocol {
                command: "GET DATA",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sessions_are_send_and_work_over_boxed_transports() {
    fn assert_send<T: Send>() {}
    assert_send::<Session<Box<dyn crate::Transport>>>();
    #[cfg(feature = "pcsc")]
    assert_send::<Session<crate::PcscCard>>();
    let card = info(false, 255, 256, 1);
    let (c, r) = selected(&card);
    let boxed: Box<dyn crate::Transport> = Box::new(ScriptedTransport::new(false, &[(&c, &r)]));
    let mut s = Session::new(boxed);
    assert_eq!(s.select().unwrap(), card);
}
