//! The APDU codec: `Command::decode` and `Response::from_bytes`.
#![no_main]

use dmsc_card_model::apdu::{Command, LengthForm, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        // Strict: the input is exactly the short or the extended encoding.
        let short = cmd.encode(LengthForm::Short).ok();
        let extended = cmd.encode(LengthForm::Extended).ok();
        assert!(
            short.as_deref() == Some(data) || extended.as_deref() == Some(data),
            "{cmd:?} decoded from a non-canonical encoding"
        );
        let bytes = cmd.to_bytes().unwrap();
        assert_eq!(Command::decode(&bytes).unwrap(), cmd);
        let _ = cmd.case();
        let pieces = cmd.chain(1 + data.len() % 64);
        let joined: Vec<u8> = pieces.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, cmd.data);
    }
    if let Ok(rsp) = Response::from_bytes(data) {
        assert_eq!(rsp.to_bytes(), data);
        let _ = rsp.status_word();
    }
});
