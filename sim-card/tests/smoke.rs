//! Smoke test: SELECT, VERIFY and a first object round trip on a new card.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use dmsc_card_model::commands::*;
use dmsc_card_model::objects::*;

#[test]
fn basic_flow() {
    let mut card = new_card();
    let rsp = select(&mut card);
    assert_eq!(rsp.sw, 0x9000);
    let info = SelectInfo::decode(&rsp.data).unwrap();
    assert_eq!(info.generation, 1);
    // PIN
    let r = request(
        &mut card,
        &Request::Verify {
            reference: PIN_REF_USER,
            pin: None,
        },
    );
    assert_eq!(r.sw, 0x63C3);
    let r = request(
        &mut card,
        &Request::Verify {
            reference: PIN_REF_USER,
            pin: Some(Pin::new(b"0000").unwrap()),
        },
    );
    assert_eq!(r.sw, 0x63C2);
    let r = request(
        &mut card,
        &Request::Verify {
            reference: PIN_REF_USER,
            pin: Some(Pin::new(b"123456").unwrap()),
        },
    );
    assert_eq!(r.sw, 0x9000);
    // Unauthenticated put is refused
    let put = Request::PutObject {
        object: ObjectRef::Mo("./DMAcc".into()),
        value: ObjectValue::Mo(MoRecord {
            mo_type: "t".into(),
            version: 0,
            content: vec![1; 40_000],
        }),
        acl: None,
    };
    assert_eq!(request(&mut card, &put).sw, 0x6982);
    for level in [0x01, 0x03, 0x11, 0x13, 0x33] {
        let mut host = Host::open(&mut card, 0x30, level).unwrap();
        let r = host.request(&mut card, &put);
        assert_eq!(r.sw, 0x9000, "level {level:02X}");
        let r = host.request(
            &mut card,
            &Request::ReadObject {
                object: ObjectRef::AuditLog,
                audit_from: None,
            },
        );
        assert_eq!(r.sw, 0x9000);
    }
    select(&mut card);
    let r = request(
        &mut card,
        &Request::ReadObject {
            object: ObjectRef::Mo("./DMAcc".into()),
            audit_from: None,
        },
    );
    assert_eq!(r.sw, 0x9000);
    let d = ObjectData::decode(ObjectKind::Mo, &r.data).unwrap();
    match d.value {
        ObjectValue::Mo(m) => {
            assert_eq!(m.content.len(), 40_000);
            assert_eq!(m.version, 5);
        }
        _ => panic!(),
    }
    let info = SelectInfo::decode(&select(&mut card).data).unwrap();
    assert_eq!(info.generation, 6);
}
