//! Master keys in a PKCS#11 token: SoftHSM2 (Debian `softhsm2`, installed by
//! `.ci/install-deps`) with a private token directory made here
//! (`SOFTHSM2_CONF` names a configuration in a temporary directory). The keys
//! are imported with the cryptoki API, labelled as docs/key-diversification.md
//! says; the token's CMAC gives the same card keys as the documented vector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use dmsc_host::card_model::scp03::StaticKeys;
use dmsc_host::fleet::diversify::{derive_card_keys, KeyKind, SoftMasterKeys};
use dmsc_host::fleet::hsm::HsmMasterKeys;

const TOKEN: &str = "dmsc-test";
const PIN: &str = "3141";
const SO_PIN: &str = "27182818";

fn module() -> PathBuf {
    for p in [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("libsofthsm2.so not found: install softhsm2 (.ci/install-deps)");
}

fn master_key(b: u8) -> Vec<u8> {
    (0..16).map(|i| b + i).collect()
}

/// A private SoftHSM2 token holding the documented master keys (key version 30).
fn token(dir: &Path) {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).expect("mkdir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("write");
    // The only test of this binary sets it before the module is loaded.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ])
        .output()
        .expect("softhsm2-util (install softhsm2: .ci/install-deps)");
    assert!(out.status.success(), "{out:?}");

    let pkcs11 = Pkcs11::new(module()).expect("module");
    pkcs11.initialize(CInitializeArgs::OsThreads).expect("init");
    let slot = pkcs11
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).expect("info").label().trim_end() == TOKEN)
        .expect("token");
    let session = pkcs11.open_rw_session(slot).expect("session");
    session
        .login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .expect("login");
    for (kind, b) in KeyKind::ALL.into_iter().zip([0x40, 0x50, 0x60]) {
        session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Label(kind.master_label(0x30).into_bytes()),
                Attribute::Value(master_key(b)),
            ])
            .expect("import");
    }
}

#[test]
fn the_token_derives_the_documented_card_keys_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    token(dir.path());
    let card_id = hex::decode("0102030405060708090A0B0C0D0E0F10").expect("hex");
    let soft = SoftMasterKeys::new(
        0x30,
        StaticKeys::new(&master_key(0x40), &master_key(0x50), &master_key(0x60)).expect("k"),
    );
    {
        let hsm = HsmMasterKeys::open(&module(), TOKEN, PIN, 0x30).expect("open the token");
        let keys = derive_card_keys(&hsm, &card_id).expect("derive in the token");
        // docs/key-diversification.md, "Known-answer vector".
        assert_eq!(
            hex::encode_upper(keys.authority.keys.enc()),
            "F1FBE82CFA135D553347C909B9740956"
        );
        assert_eq!(
            hex::encode_upper(keys.authority.keys.mac()),
            "E3454625F2A73E30AEB6D558F519EFD8"
        );
        assert_eq!(
            hex::encode_upper(keys.authority.keys.dek()),
            "89AC2DF1779F707ED6CE6D3B1F899363"
        );
        let other = [0x5Au8; 16];
        let a = derive_card_keys(&hsm, &other).expect("derive");
        let b = derive_card_keys(&soft, &other).expect("derive");
        assert_eq!(a.kcvs, b.kcvs);
        assert_ne!(a.kcvs, keys.kcvs);
    }
    #[cfg(feature = "sim")]
    a_fresh_process_with_only_the_token_authenticates();
    let err = |pin: &str, kvn: u8, token: &str| {
        HsmMasterKeys::open(&module(), token, pin, kvn)
            .expect_err("refused")
            .to_string()
    };
    let e = err("0000", 0x30, TOKEN);
    assert!(e.contains("PIN"), "{e}");
    assert!(!e.contains("0000"), "the PIN is never shown: {e}");
    let e = err(PIN, 0x31, TOKEN);
    assert!(e.contains("'dmsc-master-31-enc'"), "{e}");
    let e = err(PIN, 0x30, "no-such-token");
    assert!(e.contains("'no-such-token'") && e.contains(TOKEN), "{e}");
}

/// Keys installed from the token; a new token session (nothing else kept)
/// opens an authority session with the card.
#[cfg(feature = "sim")]
fn a_fresh_process_with_only_the_token_authenticates() {
    use dmsc_host::card_model::scp03::SecurityLevel;
    use dmsc_host::fleet::diversify::{install_diversified_keys, open_diversified_channel};
    use dmsc_host::transport::sim::SimTransport;
    use dmsc_host::{AuthorityKeySet, Session};
    use dmsc_sim_card::{AuthorityKeys, InitParams};
    use zeroize::Zeroizing;

    let transport_key = [0x4Bu8; 16];
    let params = InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x01,
        name: "Transport".into(),
        enc: Zeroizing::new(transport_key.to_vec()),
        mac: Zeroizing::new(transport_key.to_vec()),
        dek: Zeroizing::new(transport_key.to_vec()),
    }]);
    let mut card = Session::new(SimTransport::in_memory(params).expect("card"));
    let level = SecurityLevel::new(0x33).expect("level");
    let installer = AuthorityKeySet {
        key_version: 0x01,
        keys: StaticKeys::new(&transport_key, &transport_key, &transport_key).expect("k"),
    };
    let installed = {
        let hsm = HsmMasterKeys::open(&module(), TOKEN, PIN, 0x30).expect("open");
        install_diversified_keys(&mut card, &installer, &hsm, "Line", level).expect("install")
    };
    let hsm = HsmMasterKeys::open(&module(), TOKEN, PIN, 0x30).expect("reopen");
    let (info, keys) = open_diversified_channel(&mut card, &hsm, level).expect("session");
    assert_eq!(info.key_version, 0x30);
    assert_eq!(keys.kcvs, installed.kcvs);
}
