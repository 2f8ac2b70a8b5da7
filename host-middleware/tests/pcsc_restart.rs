//! A session survives a pcscd restart (its own test binary: the restart
//! would disturb other tests running at the same time).

mod e2e;
mod support;

use std::process::Command as Process;

use dmsc_host::CardCommands;
use e2e::*;
use support::*;

#[test]
fn session_keeps_working_after_pcscd_restarts() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 9, card_params(false));
    let mut s = session(&served.reader);
    let before = s.select().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/pcsc-env");
    let status = Process::new("bash")
        .args([script, "restart"])
        .arg(&env.pcsc_dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run .ci/pcsc-env restart");
    assert!(status.success(), "pcscd restart failed");
    // The bridge reattaches the card; the session re-establishes its context.
    wait_present(&served.reader, true);
    let after = s
        .select()
        .expect("the session works again after the restart");
    assert_eq!(after.card_id, before.card_id);
    s.verify_pin(&pin("123456")).unwrap();
}
