//! `include/dmsc.h` is what cbindgen makes of `src/lib.rs` today: CI fails
//! when the checked-in header is stale. Regenerate it with
//! `DMSC_BLESS=1 cargo test -p dmsc-capi --test header`.

use std::path::Path;

fn generated() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_src(dir.join("src/lib.rs"))
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen cannot generate the header: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap_or_else(|e| panic!("the header is not UTF-8: {e}"))
}

#[test]
fn the_checked_in_header_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/dmsc.h");
    let fresh = generated();
    if std::env::var_os("DMSC_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "{} is stale (it differs from what cbindgen makes of src/lib.rs); regenerate it with \
         DMSC_BLESS=1 cargo test -p dmsc-capi --test header",
        path.display()
    );
}

#[test]
fn the_header_declares_the_whole_api() {
    let header = generated();
    for name in [
        "dmsc_open_reader(",
        "dmsc_open_sim(",
        "dmsc_card_info(",
        "dmsc_refresh(",
        "dmsc_firmware_approve(",
        "dmsc_bootstrap_verify(",
        "dmsc_card_close(",
        "dmsc_error_message(",
        "dmsc_error_free(",
        "dmsc_version(",
        "typedef struct dmsc_card dmsc_card;",
        "Thread safety",
    ] {
        assert!(header.contains(name), "dmsc.h lacks {name}");
    }
}
