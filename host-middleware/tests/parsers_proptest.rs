//! Property tests of the host parsers that take outside input: bootstrap
//! Content-Type headers, approval files, WBXML, MCUboot images, P-256 keys and
//! signatures. None panics on any input; well-formed inputs round-trip.

use dmsc_host::bootstrap::wbxml;
use dmsc_host::bootstrap::{content_type, parse_content_type, MediaType, SecMethod};
use dmsc_host::card_model::objects::{ApprovalStatement, Version};
use dmsc_host::firmware::mcuboot::McubootScanner;
use dmsc_host::firmware::ApprovalFile;
use dmsc_host::p256_keys;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_inputs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_content_type(&text);
        let _ = ApprovalFile::parse(&bytes, None);
        let _ = ApprovalFile::parse(&bytes, Some(&bytes));
        let _ = wbxml::decode_tnds(&bytes);
        let _ = p256_keys::load_public_key(&bytes);
        let _ = p256_keys::load_private_key(&bytes);
        let _ = p256_keys::check_signature(&bytes);
        let mut scan = McubootScanner::new();
        let mut with_magic = 0x96f3_b83du32.to_le_bytes().to_vec();
        with_magic.extend_from_slice(&bytes);
        for chunk in with_magic.chunks(7) {
            scan.update(chunk);
        }
        let _ = scan.finish(None);
    }

    #[test]
    fn headers_round_trip(mac in proptest::collection::vec(any::<u8>(), 1..64), wbxml in any::<bool>(), pin in any::<bool>()) {
        let media = if wbxml { MediaType::Wbxml } else { MediaType::Xml };
        let sec = if pin { SecMethod::NetwPin } else { SecMethod::NetworkId };
        let parsed = parse_content_type(&content_type(media, sec, &mac)).unwrap();
        prop_assert_eq!((parsed.media_type, parsed.sec, parsed.mac), (media, sec, mac));
    }

    #[test]
    fn approval_files_round_trip_and_every_edit_is_caught(
        digest in any::<[u8; 32]>(),
        version in proptest::collection::vec(0u32..1_000_000, 1..5),
        class in "[A-Za-z0-9._-]{1,20}",
        approver in "[A-Za-z0-9._-]{1,20}",
        signature in proptest::collection::vec(any::<u8>(), 64),
        flip in any::<prop::sample::Index>(),
    ) {
        let statement = ApprovalStatement {
            digest,
            version: Version(version),
            device_class: class,
            approver,
        };
        let sig_ok = p256_keys::check_signature(&signature).is_ok();
        let file = ApprovalFile { statement, signature };
        let bytes = file.to_bytes();
        match ApprovalFile::parse(&bytes, None) {
            Ok(parsed) => prop_assert_eq!(parsed, file.clone()),
            Err(e) => prop_assert!(!sig_ok, "{}", e),
        }
        // Changing any byte of the statement part never yields the same statement.
        let statement_len = file.statement.to_signed_bytes().len();
        let i = flip.index(statement_len);
        let mut edited = bytes.clone();
        edited[i] ^= 0x01;
        if let Ok(parsed) = ApprovalFile::parse(&edited, None) {
            prop_assert_ne!(parsed.statement, file.statement);
        }
    }
}
