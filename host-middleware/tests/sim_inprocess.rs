//! The host middleware against the simulated card in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dmsc_host::transport::sim::{FileSimTransport, SimTransport};
use dmsc_host::Session;
use support::*;

fn memory_session(s16: bool) -> Session<SimTransport<dmsc_sim_card::MemoryStore>> {
    Session::new(SimTransport::in_memory(card_params(s16)).unwrap())
}

#[test]
fn select_reports_capabilities_in_process() {
    select_reports_capabilities(&mut memory_session(false));
}

#[test]
fn pin_countdown_and_block_in_process() {
    pin_countdown_and_block(&mut memory_session(false));
}

#[test]
fn scp03_every_level_s8_in_process() {
    scp03_every_level(&mut memory_session(false));
}

#[test]
fn scp03_every_level_s16_in_process() {
    scp03_every_level(&mut memory_session(true));
}

#[test]
fn transfers_64k_extended_in_process() {
    transfers_64k(&mut memory_session(false));
}

#[test]
fn transfers_64k_chaining_in_process() {
    let transport = ShortOnly(SimTransport::in_memory(card_params(false)).unwrap());
    let mut s = Session::new(transport);
    transfers_64k(&mut s);
    assert!(!s.limits().extended);
}

#[test]
fn trace_redacts_pins_in_process() {
    trace_redacts_pins(&mut memory_session(false));
}

#[test]
fn file_backed_card_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.state");
    let generation = {
        let mut s = Session::new(FileSimTransport::create(&path, card_params(false)).unwrap());
        transfers_64k(&mut s);
        use dmsc_host::CardCommands;
        s.select().unwrap().generation
    };
    let mut s = Session::new(FileSimTransport::open(&path).unwrap());
    use dmsc_host::CardCommands;
    assert_eq!(s.select().unwrap().generation, generation);
    // The state file holds PINs and keys: owner-only permissions.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "state file mode {mode:o}");
}
