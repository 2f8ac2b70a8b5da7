//! `dmsc_open_reader` through the private pcscd of `.ci/test` and the vpcd
//! bridge: the C API finds the reader, selects the card and refreshes from
//! it; a pulled card is a transport error.

#[path = "../../tests/e2e/mod.rs"]
mod e2e;

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::ptr::null_mut;

use dmsc::{
    dmsc_card_close, dmsc_card_info, dmsc_error, dmsc_error_free, dmsc_error_message,
    dmsc_error_status, dmsc_open_reader, dmsc_refresh, dmsc_status,
};
use dmsc_host::CardCommands;
use dmsc_sim_card::{AuthorityKeys, InitParams};
use zeroize::Zeroizing;

fn params() -> InitParams {
    let key = Zeroizing::new(b"@ABCDEFGHIJKLMNO".to_vec());
    InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x30,
        name: "ServerA".into(),
        enc: key.clone(),
        mac: key.clone(),
        dek: key,
    }])
}

/// The error's message, and frees it.
fn take(err: *mut dmsc_error) -> (dmsc_status, String) {
    // SAFETY: `err` is NULL or an error from the library, freed once here.
    unsafe {
        let r = (
            dmsc_error_status(err),
            CStr::from_ptr(dmsc_error_message(err))
                .to_string_lossy()
                .into_owned(),
        );
        dmsc_error_free(err);
        r
    }
}

#[test]
fn open_reader_selects_refreshes_and_reports_a_pulled_card() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slot = 0;
    let (served, _) = e2e::serve_new_card(dir.path(), slot, params());
    let expected = hex::encode_upper(
        e2e::session(&served.reader)
            .select()
            .expect("select")
            .card_id,
    );
    // A part of the reader's name, as device configurations give it.
    let name = CString::new(served.reader.to_lowercase()).expect("name");

    let mut err: *mut dmsc_error = null_mut();
    // SAFETY: a NUL-terminated name, a writable `err`.
    let card = unsafe { dmsc_open_reader(name.as_ptr(), &mut err) };
    assert!(!card.is_null(), "{:?}", take(err));
    let mut info = MaybeUninit::uninit();
    // SAFETY: a live card, a writable info and err.
    let status = unsafe { dmsc_card_info(card, info.as_mut_ptr(), &mut err) };
    assert_eq!(status, dmsc_status::DMSC_OK, "{:?}", take(err));
    // SAFETY: filled in by dmsc_card_info.
    let info = unsafe { info.assume_init() };
    // SAFETY: card_id is NUL-terminated.
    let id = unsafe { CStr::from_ptr(info.card_id.as_ptr()) };
    assert_eq!(id.to_str().expect("hex"), expected);

    let device = CString::new(dir.path().join("device").display().to_string()).expect("dir");
    let mut changed = true;
    // SAFETY: a live card, a NUL-terminated path, writable out-parameters.
    let status = unsafe { dmsc_refresh(card, device.as_ptr(), &mut changed, &mut err) };
    assert_eq!(status, dmsc_status::DMSC_OK, "{:?}", take(err));
    assert!(!changed, "a new card has no MO");
    // SAFETY: closed once.
    unsafe { dmsc_card_close(card) };

    served.pull();
    // SAFETY: as above.
    let card = unsafe { dmsc_open_reader(name.as_ptr(), &mut err) };
    assert!(card.is_null());
    let (status, message) = take(err);
    assert_eq!(status, dmsc_status::DMSC_ERROR_TRANSPORT, "{message}");
}
