//! Arbitrary bytes to the UICC parsers of card and modem input: FCP, PKCS#15
//! DER (ODF, DODF, EF(DIR) records, TokenInfo), the LwM2M bootstrap file
//! (OMA-TLV) and AT+CSIM reply lines. None may panic; a bootstrap file that
//! decodes re-encodes to one that decodes the same.
#![no_main]

use dmsc_host::uicc::lwm2m::BootstrapFile;
use dmsc_host::transport::modem;
use dmsc_host::uicc::{parse_fcp, pkcs15};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_fcp(data);
    let _ = pkcs15::parse_odf(data);
    let _ = pkcs15::parse_dodf(data);
    let _ = pkcs15::parse_dir_record(data);
    let _ = pkcs15::parse_token_info(data);
    if let Ok(file) = BootstrapFile::decode(data) {
        let bytes = file.encode().expect("a decoded file encodes");
        let again = BootstrapFile::decode(&bytes).expect("an encoded file decodes");
        assert_eq!(again, file);
    }
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.split(['\r', '\n']).map(str::to_string).collect();
    let _ = modem::parse_csim_reply("AT+CSIM", &lines);
});
