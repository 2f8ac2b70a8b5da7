//! vpcd's reversed mode end to end: the bridge listens on loopback, a second
//! private pcscd (`.ci/pcsc-env start-reversed`) whose vpcd connects to it, and
//! the host talks to the card through that daemon. Its own test binary:
//! libpcsclite reads `PCSCLITE_CSOCK_NAME` once per process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use dmsc_host::{CardCommands, PcscContext, Session};
use dmsc_sim_card::vpcd::{self, BridgeEvent, EchoCard, Endpoint, VirtualCard};
use support::*;

fn pcsc_env(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/pcsc-env");
    let status = Process::new("bash")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run .ci/pcsc-env");
    assert!(status.success(), ".ci/pcsc-env {args:?} failed");
}

#[test]
fn reversed_mode_through_its_own_pcscd() {
    let env = e2e::env();
    let var =
        |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set (see .ci/pcsc-env)"));
    let port: u16 = var("DMSC_VPCD_REVERSED_PORT").parse().unwrap();
    let readers: Vec<String> = var("DMSC_VPCD_REVERSED_READERS")
        .split(';')
        .map(str::to_string)
        .collect();
    // Before any PC/SC call of this process: talk to the reversed-mode daemon.
    std::env::set_var("PCSCLITE_CSOCK_NAME", var("DMSC_PCSC_REVERSED_SOCK"));

    // Both reversed slots need a listening card before that pcscd starts.
    let dir = tempfile::tempdir().unwrap();
    let card =
        dmsc_sim_card::sim::create(&dir.path().join("reversed.state"), card_params(false)).unwrap();
    let listen = |p: u16| Endpoint::Listen(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
    let cards: Vec<(Box<dyn VirtualCard>, Endpoint)> = vec![
        (Box::new(card), listen(port)),
        (Box::new(EchoCard), listen(port + 1)),
    ];
    let shutdown = Arc::new(AtomicBool::new(false));
    let (tx, events) = mpsc::channel();
    let flag = shutdown.clone();
    let bridge = std::thread::spawn(move || vpcd::serve(cards, flag, move |e| drop(tx.send(e))));
    let mut listening = 0;
    while listening < 2 {
        match events
            .recv_timeout(Duration::from_secs(10))
            .expect("listeners bound")
        {
            BridgeEvent::Listening { .. } => listening += 1,
            BridgeEvent::CardStopped { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let pcsc_dir = env.pcsc_dir.to_string_lossy().to_string();
    pcsc_env(&["start-reversed", &pcsc_dir]);
    let result = std::panic::catch_unwind(|| {
        e2e::wait_present(&readers[0], true);
        let mut ctx = PcscContext::establish().unwrap();
        let mut s = Session::new(ctx.connect(&readers[0]).unwrap());
        select_reports_capabilities(&mut s);
        s.verify_pin(&pin("123456")).unwrap();
    });
    // The reversed daemon must stop before its cards go away.
    pcsc_env(&["stop-reversed", &pcsc_dir]);
    shutdown.store(true, Ordering::SeqCst);
    let _ = bridge.join();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
