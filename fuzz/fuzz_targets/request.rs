//! `Request::from_command` on arbitrary commands: never panics, and every
//! request it returns re-encodes to a command that decodes to the same request.
#![no_main]

use dmsc_card_model::apdu::Command;
use dmsc_card_model::commands::{command_carries_secret, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    // Header, then Le selector, then the data field (no length limits of the
    // byte encoding: the card assembles chained data up to 128 KiB).
    let le = match data[4] % 4 {
        0 => None,
        1 => Some(256),
        2 => Some(65_536),
        _ => Some(1 + data[4] as usize),
    };
    let cmd = Command {
        cla: data[0],
        ins: data[1],
        p1: data[2],
        p2: data[3],
        data: data[5..].to_vec(),
        le,
    };
    let _ = command_carries_secret(&cmd);
    match Request::from_command(&cmd) {
        Ok(req) => {
            let again = req.to_command();
            assert_eq!(Request::from_command(&again).as_ref(), Ok(&req));
            let _ = req.carries_secret();
        }
        Err(e) => {
            let _ = e.status();
            let _ = e.to_string();
        }
    }
});
