//! Round trips and refusals of the whole command set.

use alloc::format;
use alloc::vec;

use zeroize::Zeroizing;

use super::consts::*;
use super::*;
use crate::apdu::{Command, Status};
use crate::objects::{self, Acl, ObjectKind, ObjectRef, Version};

fn pin(s: &str) -> Pin {
    Pin::new(s.as_bytes()).unwrap()
}

fn package() -> PackageId {
    PackageId {
        digest: [7; 32],
        version: Version::parse("2.1").unwrap(),
        device_class: "gateway".into(),
    }
}

#[test]
fn every_request_round_trips() {
    let requests = vec![
        Request::Select { aid: AID.to_vec() },
        Request::ReadObject {
            object: ObjectRef::Mo("./DMAcc".into()),
            audit_from: None,
        },
        Request::ReadObject {
            object: ObjectRef::AuditLog,
            audit_from: Some(17),
        },
        Request::ListObjects {
            kind: ObjectKind::Mo,
        },
        Request::ReadAllObjects {
            kind: ObjectKind::Mo,
        },
        Request::PutObject {
            object: ObjectRef::Mo("./DMAcc".into()),
            value: ObjectValue::Mo(MoRecord {
                mo_type: "urn:oma:mo:oma-dm-dmacc:1.0".into(),
                version: 0,
                content: vec![1, 2, 3],
            }),
            acl: Some(Acl::parse("Get=*&Replace=ServerA").unwrap()),
        },
        Request::PutObject {
            object: ObjectRef::BootstrapKey(1),
            value: ObjectValue::BootstrapKey(BootstrapKeyValue {
                algorithm: objects::MacAlgorithm::AesCmac,
                key: Some(Zeroizing::new(vec![0x11; 16])),
            }),
            acl: None,
        },
        Request::PutObject {
            object: ObjectRef::ApprovalRule,
            value: ObjectValue::ApprovalRule(ApprovalRule {
                required: vec!["maintainer".into(), "owner".into()],
                user_consent_needs_pin: true,
            }),
            acl: None,
        },
        Request::PutObject {
            object: ObjectRef::Policy,
            value: ObjectValue::Policy(vec![9; 100]),
            acl: None,
        },
        Request::PutObject {
            object: ObjectRef::Floor("gateway".into()),
            value: ObjectValue::Floor(Version::parse("3.0").unwrap()),
            acl: None,
        },
        Request::PutObject {
            object: ObjectRef::Card,
            value: ObjectValue::Card(CardConfig {
                failure_limit: 6,
                used_memory: 0,
                total_memory: 0,
            }),
            acl: None,
        },
        Request::SetAcl {
            object: ObjectRef::Policy,
            acl: Acl::parse("Get=*").unwrap(),
        },
        Request::DeleteObject {
            object: ObjectRef::Approver("owner".into()),
        },
        Request::Verify {
            reference: PIN_REF_USER,
            pin: None,
        },
        Request::Verify {
            reference: PIN_REF_USER,
            pin: Some(pin("123456")),
        },
        Request::ChangePin {
            old: pin("1234"),
            new: pin("87654321"),
        },
        Request::ResetRetryCounter {
            puk: pin("12345678"),
            new: pin("4321"),
        },
        Request::GetChallenge { len: 8 },
        Request::InternalAuthenticate {
            challenge: vec![5; 32],
        },
        Request::SelectMacKey { key_id: 2 },
        Request::VerifyMac {
            data: vec![3; 70_000],
            mac: vec![4; 16],
        },
        Request::CheckApproval {
            package: package(),
            approvals: vec![Approval {
                approver: "owner".into(),
                signature: vec![0x30; 70],
            }],
        },
        Request::ConfirmInstalled { package: package() },
        Request::VerifySignature {
            approver: "owner".into(),
            data: vec![1; 300],
            signature: vec![2; 64],
        },
        Request::GetResponse { le: 256 },
    ];
    for r in requests {
        let cmd = r.to_command();
        assert_eq!(Request::from_command(&cmd).unwrap(), r, "{cmd:?}");
        // Through bytes as well, when the data fits one APDU.
        if let Ok(bytes) = cmd.to_bytes() {
            let again = Command::decode(&bytes).unwrap();
            assert_eq!(Request::from_command(&again).unwrap(), r);
        }
    }
}

#[test]
fn unknown_and_malformed_commands() {
    assert_eq!(
        Request::from_command(&Command::new(0, 0x01, 0, 0)),
        Err(DecodeError::UnknownCommand)
    );
    assert_eq!(
        Request::from_command(&Command::new(0, ins::SELECT, 0x00, 0x0C)),
        Err(DecodeError::UnknownCommand)
    );
    let bad_tlv = Command::new(0, ins::GET_DATA, 0x3F, 0xFF).with_data(vec![0x81, 0x05, 1]);
    assert_eq!(
        Request::from_command(&bad_tlv).unwrap_err().status(),
        Status::IncorrectDataParameter
    );
    let bad_pin = Command::new(0, ins::VERIFY, 0, PIN_REF_USER).with_data(vec![0x31; 5]);
    assert_eq!(
        Request::from_command(&bad_pin).unwrap_err().status(),
        Status::WrongLength
    );
    let list_singleton = Command::new(0, ins::GET_DATA, 0x3F, 0xFE).with_data(vec![0x82, 0x00]);
    assert!(Request::from_command(&list_singleton).is_err());
}

#[test]
fn responses_round_trip() {
    let info = SelectInfo {
        card_id: [0xA5; 16],
        applet_version: APPLET_VERSION,
        generation: 42,
        max_command: 65_535,
        max_response: 65_536,
        extended_length: true,
        algorithms: algorithms::AES_CMAC | algorithms::SCP03_AES128,
        free_memory: 1000,
        total_memory: 262_144,
        scp_i: 0x70,
    };
    assert_eq!(SelectInfo::decode(&info.encode()).unwrap(), info);

    let verdict = ApprovalVerdict {
        approved: false,
        reasons: vec![
            RefusalReason::MissingApprover("owner".into()),
            RefusalReason::BadSignature("maintainer".into()),
            RefusalReason::UnknownApprover("eve".into()),
            RefusalReason::BelowFloor(Version::parse("3.1").unwrap()),
            RefusalReason::NoRule,
        ],
        user_consent_needs_pin: true,
    };
    assert_eq!(ApprovalVerdict::decode(&verdict.encode()).unwrap(), verdict);

    let list = vec![
        ListEntry {
            object: ObjectRef::Mo("./A".into()),
            size: 10,
        },
        ListEntry {
            object: ObjectRef::BootstrapKey(1),
            size: 0,
        },
    ];
    assert_eq!(decode_list(&encode_list(&list)).unwrap(), list);

    let log = ObjectData {
        value: ObjectValue::AuditLog(vec![
            AuditEntry {
                sequence: 9,
                event: AuditEvent::Alarm,
                principal: "ServerA".into(),
                session: 3,
                detail: "4 consecutive failures".into(),
                repeats: None,
            },
            AuditEntry {
                sequence: 12,
                event: AuditEvent::InitializeUpdate,
                principal: "ServerA".into(),
                session: 4,
                detail: "key version 30".into(),
                repeats: Some(Repeats {
                    count: 1000,
                    first_sequence: 10,
                }),
            },
        ]),
        acl: Acl::parse("Get=ServerA").unwrap(),
    };
    assert_eq!(
        ObjectData::decode(ObjectKind::AuditLog, &log.encode()).unwrap(),
        log
    );
}

#[test]
fn secrets_are_flagged() {
    let verify = Request::Verify {
        reference: PIN_REF_USER,
        pin: Some(pin("1234")),
    };
    assert!(verify.carries_secret());
    assert!(command_carries_secret(&verify.to_command()));
    let read = Request::ReadObject {
        object: ObjectRef::Policy,
        audit_from: None,
    };
    assert!(!command_carries_secret(&read.to_command()));
    assert!(!command_carries_secret(
        &Request::Verify {
            reference: PIN_REF_USER,
            pin: None
        }
        .to_command()
    ));
    // The same PIN on another logical channel (first and further interindustry
    // class) and with secure messaging bits is still a secret.
    for cla in [0x01, 0x03, 0x0C, 0x40, 0x4F, 0x60] {
        let mut cmd = verify.to_command();
        cmd.cla = cla;
        assert!(command_carries_secret(&cmd), "VERIFY with CLA {cla:02X}");
    }
    // A UICC's ADM-protected file update carries keys (LwM2M bootstrap).
    let update = Command::new(0x01, 0xD6, 0, 0).with_data(vec![0x00, 0x01]);
    assert!(command_carries_secret(&update));
    assert!(format!("{:?}", pin("1234")).contains("redacted"));
}
