//! Arbitrary bytes to the host parsers of outside input: bootstrap
//! Content-Type headers and content, approval files, WBXML, MCUboot images,
//! P-256 keys and signatures. None may panic.
#![no_main]

use dmsc_host::bootstrap::{decode_content, parse_content_type, MediaType};
use dmsc_host::firmware::ApprovalFile;
use dmsc_host::firmware::mcuboot::McubootScanner;
use dmsc_host::bootstrap::wbxml;
use dmsc_host::p256_keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_content_type(&text);
    let _ = decode_content(MediaType::Xml, data);
    let _ = decode_content(MediaType::Wbxml, data);
    let _ = ApprovalFile::parse(data, None);
    let _ = ApprovalFile::parse(data, Some(data));
    let _ = wbxml::decode_tnds(data);
    let _ = p256_keys::load_public_key(data);
    let _ = p256_keys::load_private_key(data);
    let _ = p256_keys::check_signature(data);
    // The first byte picks the chunk size; the image gets the MCUboot magic.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut image = 0x96f3_b83du32.to_le_bytes().to_vec();
    image.extend_from_slice(data);
    let mut scan = McubootScanner::new();
    for c in image.chunks(chunk) {
        scan.update(c);
    }
    let _ = scan.finish(None);
});
