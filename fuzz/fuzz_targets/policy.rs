//! The policy use case's parsers of outside input: the policy file
//! (`Policy::parse`), the card's policy envelope (`SignedPolicy::decode`) and
//! administrators' command statements (`CommandStatement::from_text`).
#![no_main]

use dmsc_host::policy::engine::{evaluate, next_change, Context};
use dmsc_host::policy::signing::{CommandStatement, SignedPolicy};
use dmsc_host::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sp) = SignedPolicy::decode(data) {
        // What decodes re-encodes to the same bytes.
        assert_eq!(sp.encode(), data);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = CommandStatement::from_text(text) {
        assert_eq!(s.to_text(), text);
    }
    if let Ok(p) = Policy::parse(text) {
        // A valid policy evaluates and schedules without panicking.
        let ctx = Context::at(jiff::Timestamp::UNIX_EPOCH);
        let _ = evaluate(&p, &ctx);
        let _ = next_change(&p, &ctx);
    }
});
