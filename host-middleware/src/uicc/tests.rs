//! Transcript tests of UICC file access: the exact APDUs a card sees.

use crate::session::Session;
use crate::transport::scripted::ScriptedTransport;

use super::*;

fn session(table: &[(&str, &str)]) -> Session<ScriptedTransport> {
    Session::new(ScriptedTransport::new(false, table))
}

#[test]
fn channel_class_bytes() {
    assert_eq!(cla_for_channel(0), Some(0x00));
    assert_eq!(cla_for_channel(3), Some(0x03));
    assert_eq!(cla_for_channel(4), Some(0x40));
    assert_eq!(cla_for_channel(19), Some(0x4F));
    assert_eq!(cla_for_channel(20), None);
}

#[test]
fn further_channel_uses_4x_class_and_closes() {
    let mut s = session(&[
        ("0070000001", "079000"),
        ("43A4000C022F00", "9000"),
        ("43708007", "9000"),
    ]);
    let mut u = Uicc::new(&mut s);
    assert_eq!(u.open_channel().unwrap(), 7);
    u.select_no_fcp(&Target::Fid(0x2F00)).unwrap();
    u.close_channel().unwrap();
    assert_eq!(u.channel(), 0);
}

#[test]
fn a_channel_number_out_of_range_is_refused_with_the_answer() {
    let mut s = session(&[("0070000001", "149000")]);
    let e = Uicc::new(&mut s).open_channel().unwrap_err();
    assert!(
        matches!(&e, UiccError::BadChannel { assigned } if assigned == &[0x14]),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "MANAGE CHANNEL: the card assigned channel 14 (1 to 19 expected)"
    );
}

#[test]
fn t0_style_61xx_after_select_fetches_on_the_same_channel() {
    // A T=0 UICC answers SELECT with 61xx; GET RESPONSE must carry the
    // channel's class byte (02), not 00 (which would read the basic channel).
    let fcp = "621682024121830264328A01058B036F060280020140880";
    let mut s = session(&[
        ("0070000001", "029000"),
        ("02A40804047FFF643200", "6118"),
        ("02C0000018", &format!("{fcp}09000")),
        // 320-byte file: 128 + 128 + the 64 left (offset 256 = P1 01).
        ("02B0000080", &format!("{}9000", "11".repeat(128))),
        ("02B0008080", &format!("{}9000", "22".repeat(128))),
        ("02B0010040", "6C40"),
        ("02B0010040", &format!("{}9000", "33".repeat(64))),
        ("02708002", "9000"),
    ]);
    let mut u = Uicc::new(&mut s);
    u.open_channel().unwrap();
    let (f, data) = u.read_file(&[0x64, 0x32]).unwrap();
    assert_eq!(f.unwrap().size, Some(320));
    assert_eq!(data.len(), 320);
    assert_eq!(&data[256..], &[0x33; 64][..]);
    u.close_channel().unwrap();
}

#[test]
fn six_c_xx_resends_with_the_card_length() {
    let mut s = session(&[
        ("00B0000080", "6C20"),
        ("00B0000020", &format!("{}9000", "AB".repeat(32))),
    ]);
    let mut u = Uicc::new(&mut s);
    let d = u.read_binary(0, 32).unwrap();
    assert_eq!(d, vec![0xAB; 32]);
}

#[test]
fn malformed_fcp_names_the_file() {
    let mut s = session(&[("00A40804047FFF503100", "62058303503100 9000")]);
    let mut u = Uicc::new(&mut s);
    let e = u.select_path(&[0x50, 0x31]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SELECT 7FFF5031: FCP: tag 83 at offset 2: 3 bytes, expected [2]"
    );
}

#[test]
fn dir_records_are_read_by_number() {
    let mut s = session(&[
        (
            "00A40804022F0000",
            "621A8205422100260283022F008A01058B032F06018002004C88 01F0 9000",
        ),
        (
            "00B2010426",
            "61194F0CA000000063504B43532D313550094D49445066696C6573FFFFFFFFFFFFFFFFFFFFFF9000",
        ),
        ("00B2020426", &format!("{}9000", "FF".repeat(38))),
    ]);
    let apps = read_dir(&mut s).unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].aid, "A000000063504B43532D3135");
}

#[test]
fn pin_protected_bootstrap_says_so() {
    // DODF entry with authId 01 (opaque DO, OID 2.23.43.9.1, path 6432).
    let mut s = session(&[
        ("0070000001", "019000"),
        ("01A404040CA000000063504B43532D313500", "9000"),
        ("01A40804047FFF503100", "9000"),
        ("01B0000080", "A7063004040264309000"),
        ("01A40804047FFF643000", "9000"),
        (
            "01B0000080",
            "301D 300B 0C06425354524150 040101 3006 0604672B0901 A106 3004 04026432 FFFF 9000",
        ),
        ("01A40804047FFF643200", "9000"),
        ("01B0000080", "6982"),
        ("01708001", "9000"),
    ]);
    let e = read_lwm2m_bootstrap_raw(&mut s).unwrap_err();
    assert!(matches!(e, UiccError::PinRequired { .. }), "{e:?}");
    assert!(
        e.to_string().contains("needs the user PIN (authId 01)"),
        "{e}"
    );
}

#[test]
fn without_an_aodf_the_pin_is_ts_102_221_pin1_padded_with_ff() {
    // Same card as above, with a PIN: the ODF lists no AODF, so VERIFY goes to
    // key reference 01 with the PIN padded with FF to 8 bytes, once, before
    // the read; 63C1 is a wrong PIN with one try left, and nothing is read.
    let dodf = "301D 300B 0C06425354524150 040101 3006 0604672B0901 A106 3004 04026432 FFFF 9000";
    let head = [
        ("0070000001", "019000"),
        ("01A404040CA000000063504B43532D313500", "9000"),
        ("01A40804047FFF503100", "9000"),
        ("01B0000080", "A7063004040264309000"),
        ("01A40804047FFF643000", "9000"),
        ("01B0000080", dodf),
        ("01A40804047FFF503100", "9000"),
        ("01B0000080", "A7063004040264309000"),
    ];
    let mut ok = head.to_vec();
    ok.extend([
        ("012000010831323334FFFFFFFF", "9000"),
        ("01A40804047FFF643200", "9000"),
        ("01B0000080", "AABB9000"),
        ("01708001", "9000"),
    ]);
    let pin = Pin::new(b"1234").unwrap();
    let mut s = session(&ok);
    assert_eq!(
        read_lwm2m_bootstrap_raw_with_pin(&mut s, Some(&pin)).unwrap(),
        vec![0xAA, 0xBB]
    );
    let mut bad = head.to_vec();
    bad.extend([("012000010831323334FFFFFFFF", "63C1"), ("01708001", "9000")]);
    let mut s = session(&bad);
    let e = read_lwm2m_bootstrap_raw_with_pin(&mut s, Some(&pin)).unwrap_err();
    assert!(
        matches!(
            e,
            UiccError::WrongPin {
                tries_left: 1,
                reference: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_length_beyond_the_file_asks_for_the_rest() {
    // A 32-byte EF (size from its FCP) on a card that refuses Le 128 with 6700.
    let mut s = session(&[
        ("00A40804047FFF503100", "62088202412180020020 9000"),
        ("00B0000080", "6700"),
        ("00B0000020", &format!("{}9000", "A7".repeat(32))),
    ]);
    let mut u = Uicc::new(&mut s);
    let (_, data) = u.read_file(&[0x50, 0x31]).unwrap();
    assert_eq!(data.len(), 32);
}

#[test]
fn a_card_without_logical_channels_is_read_on_the_basic_channel() {
    let mut s = session(&[
        ("0070000001", "6881"),
        ("00A404040CA000000063504B43532D313500", "6A82"),
    ]);
    let e = read_lwm2m_bootstrap_raw(&mut s).unwrap_err();
    assert!(matches!(e, UiccError::NoPkcs15Application { .. }), "{e:?}");
}
