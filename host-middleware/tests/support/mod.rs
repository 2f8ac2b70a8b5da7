//! Scenarios shared by the in-process and the PC/SC end-to-end tests: each
//! takes a session on a freshly initialised card (see [`card_params`]).
#![allow(dead_code, unused_imports)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dmsc_host::card_model::commands::{
    BootstrapKeyValue, MoRecord, ObjectValue, Pin, SelectInfo, PIN_REF_USER,
};
use dmsc_host::card_model::objects::{MacAlgorithm, ObjectKind, ObjectRef};
use dmsc_host::card_model::scp03::{SecurityLevel, StaticKeys};
use dmsc_host::{
    open_secure_channel, AuthorityKeySet, CardCommands, HostError, PinStatus, Session, Status,
    Transport, TransportError,
};
use dmsc_sim_card::{AuthorityKeys, InitParams};
use zeroize::Zeroizing;

pub use dmsc_test_support::{Counting, TEST_KEY};
pub const B_ENC: [u8; 32] = [0x11; 32];
pub const B_MAC: [u8; 32] = [0x22; 32];
pub const B_DEK: [u8; 32] = [0x33; 32];

/// A card with `ServerA` (kvn 30, AES-128 test keys) and `ServerB` (kvn 31,
/// AES-256, distinct ENC/MAC/DEK).
pub fn card_params(s16: bool) -> InitParams {
    let mut p = InitParams::with_authorities(vec![
        AuthorityKeys {
            key_version: 0x30,
            name: "ServerA".into(),
            enc: Zeroizing::new(TEST_KEY.to_vec()),
            mac: Zeroizing::new(TEST_KEY.to_vec()),
            dek: Zeroizing::new(TEST_KEY.to_vec()),
        },
        AuthorityKeys {
            key_version: 0x31,
            name: "ServerB".into(),
            enc: Zeroizing::new(B_ENC.to_vec()),
            mac: Zeroizing::new(B_MAC.to_vec()),
            dek: Zeroizing::new(B_DEK.to_vec()),
        },
    ]);
    p.scp_s16 = s16;
    p
}

pub fn server_a() -> AuthorityKeySet {
    AuthorityKeySet {
        key_version: 0x30,
        keys: StaticKeys::new(&TEST_KEY, &TEST_KEY, &TEST_KEY).unwrap(),
    }
}

pub fn server_b() -> AuthorityKeySet {
    AuthorityKeySet {
        key_version: 0x31,
        keys: StaticKeys::new(&B_ENC, &B_MAC, &B_DEK).unwrap(),
    }
}

pub fn pin(s: &str) -> Pin {
    Pin::new(s.as_bytes()).unwrap()
}

/// SELECT reports the applet and a 64 KiB-capable card.
pub fn select_reports_capabilities<T: Transport>(s: &mut Session<T>) -> SelectInfo {
    let info = s.select().unwrap();
    assert_eq!(info.applet_version, (1, 0));
    assert!(info.extended_length);
    assert!(info.total_memory >= 256 * 1024);
    assert!(info.generation >= 1);
    info
}

/// 63Cx counts down, 6983 blocks, the PUK unblocks.
pub fn pin_countdown_and_block<T: Transport>(s: &mut Session<T>) {
    assert_eq!(
        s.pin_tries().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    for left in [2u8, 1] {
        match s.verify_pin(&pin("0000")) {
            Err(HostError::Card {
                status: Status::RemainingRetries(tries_left),
                ..
            }) => assert_eq!(tries_left, left),
            other => panic!("wrong PIN gave {other:?}"),
        }
    }
    assert!(matches!(
        s.verify_pin(&pin("0000")),
        Err(HostError::Card {
            status: Status::OperationBlocked,
            ..
        })
    ));
    assert_eq!(s.pin_tries().unwrap(), PinStatus::Blocked);
    assert!(matches!(
        s.verify_pin(&pin("123456")),
        Err(HostError::Card {
            status: Status::OperationBlocked,
            ..
        })
    ));
    s.unblock_pin(&pin("12345678"), &pin("2468")).unwrap();
    s.verify_pin(&pin("2468")).unwrap();
    assert_eq!(s.pin_status(PIN_REF_USER).unwrap(), PinStatus::Verified);
}

/// Every security level the card supports, with both authorities; a write and
/// a read-back under each.
pub fn scp03_every_level<T: Transport>(s: &mut Session<T>) {
    let levels = [0x01, 0x03, 0x11, 0x13, 0x33];
    for (i, level) in levels.into_iter().enumerate() {
        let level = SecurityLevel::new(level).unwrap();
        // ServerB (AES-256) may read the audit log, not create objects.
        let info = open_secure_channel(s, &server_b(), level).unwrap();
        assert_eq!(info.key_version, 0x31);
        assert!(s.read_audit_log(None).is_ok());
        let object = ObjectRef::Mo(format!("./Level{:02X}", level.bits()));
        let attempt = ObjectValue::Mo(MoRecord {
            mo_type: "urn:x-dmsc:test".into(),
            version: 0,
            content: vec![1],
        });
        let refused = s.put_object(&object, &attempt, None);
        assert!(
            matches!(
                refused,
                Err(HostError::Card {
                    status: Status::SecurityStatusNotSatisfied,
                    ..
                })
            ),
            "{refused:?}"
        );
        // ServerA (AES-128, the card's administrator) writes and reads back.
        {
            let info = open_secure_channel(s, &server_a(), level).unwrap();
            assert_eq!(info.key_version, 0x30);
            let content: Vec<u8> = (0..3000u32).map(|b| (b * 7 + i as u32) as u8).collect();
            let value = ObjectValue::Mo(MoRecord {
                mo_type: "urn:x-dmsc:test".into(),
                version: 0,
                content: content.clone(),
            });
            s.put_object(&object, &value, None).unwrap();
            match s.read_object(&object).unwrap().value {
                ObjectValue::Mo(m) => assert_eq!(m.content, content),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // A wrong key set is refused before anything is sent under it.
    let wrong = AuthorityKeySet {
        key_version: 0x30,
        keys: StaticKeys::new(&[9; 16], &[9; 16], &[9; 16]).unwrap(),
    };
    assert!(matches!(
        open_secure_channel(s, &wrong, SecurityLevel::new(0x33).unwrap()),
        Err(HostError::SecureMessaging { .. })
    ));
    // Without a session the write is refused.
    s.select().unwrap();
    let value = ObjectValue::Policy(vec![1, 2, 3]);
    assert!(matches!(
        s.put_object(&ObjectRef::Policy, &value, None),
        Err(HostError::Card {
            status: Status::SecurityStatusNotSatisfied,
            ..
        })
    ));
}

/// A 64 KiB MAC check and a 60 KiB MO written and read back, under SCP03
/// (level 33) for the write; the card path is the same whether the session
/// uses extended length or chaining.
pub fn transfers_64k<T: Transport>(s: &mut Session<T>) {
    let key = vec![0x5C; 32];
    open_secure_channel(s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
    let value = ObjectValue::BootstrapKey(BootstrapKeyValue {
        algorithm: MacAlgorithm::HmacSha256,
        key: Some(Zeroizing::new(key.clone())),
    });
    s.put_object(&ObjectRef::BootstrapKey(1), &value, None)
        .unwrap();
    let big: Vec<u8> = (0..60 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mo = ObjectRef::Mo("./Big".into());
    let record = ObjectValue::Mo(MoRecord {
        mo_type: "urn:x-dmsc:big".into(),
        version: 0,
        content: big.clone(),
    });
    s.put_object(&mo, &record, None).unwrap();
    s.select().unwrap();
    match s.read_object(&mo).unwrap().value {
        ObjectValue::Mo(m) => assert_eq!(m.content, big),
        other => panic!("unexpected {other:?}"),
    }
    let packet: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mac = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        m.update(&packet);
        m.finalize().into_bytes().to_vec()
    };
    assert!(s.verify_mac(1, &packet, &mac).unwrap());
    let mut tampered = packet.clone();
    tampered[40_000] ^= 1;
    assert!(!s.verify_mac(1, &tampered, &mac).unwrap());
    let list = s.list(ObjectKind::Mo).unwrap();
    assert!(list
        .iter()
        .any(|e| e.object == mo && e.size as usize > big.len()));
}

/// The trace shows APDUs but never the PIN.
pub fn trace_redacts_pins<T: Transport>(s: &mut Session<T>) {
    use std::sync::{Arc, Mutex};
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    s.set_trace(Box::new(move |e| sink.lock().unwrap().push(e.to_string())));
    s.select().unwrap();
    s.verify_pin(&pin("123456")).unwrap();
    let text = lines.lock().unwrap().join("\n");
    assert!(text.contains("00A40400"), "{text}");
    assert!(text.contains("00200081"), "{text}");
    assert!(text.contains("redacted"), "{text}");
    assert!(
        !text.contains("313233343536"),
        "PIN leaked into the trace:\n{text}"
    );
}

/// A transport that refuses extended length, to exercise chaining.
pub struct ShortOnly<T>(pub T);

impl<T: Transport> Transport for ShortOnly<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        assert!(
            apdu.len() <= 4 + 1 + 255 + 1,
            "an extended APDU was sent: {} bytes",
            apdu.len()
        );
        self.0.transmit(apdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.0.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.0.reset()
    }
    fn reader_name(&self) -> &str {
        self.0.reader_name()
    }
    fn supports_extended(&self) -> bool {
        false
    }
    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        self.0
            .exclusive(&mut |t: &mut dyn Transport| body(&mut ShortOnly(t)))
    }
}
