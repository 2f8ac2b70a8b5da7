//! Per-APDU time through pcscd: the simulated card against a minimal echo card
//! served by the same bridge on the same pcscd, in the same run (target: the
//! simulated card within 1.15× of the echo card), plus the in-process figure.
//!
//! Needs the private pcscd of `.ci/pcsc-env`; `bash .ci/bench` sets it up and
//! runs every benchmark. `DMSC_BENCH_APDUS` sets the APDUs per batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dmsc_host::card_model::apdu::Command;
use dmsc_host::card_model::commands::{Request, AID};
use dmsc_host::transport::sim::SimTransport;
use dmsc_host::{PcscContext, Transport};
use dmsc_sim_card::vpcd::{self, BridgeEvent, EchoCard, Endpoint, VirtualCard};
use dmsc_sim_card::{AuthorityKeys, InitParams};
use zeroize::Zeroizing;

fn params() -> InitParams {
    let key = Zeroizing::new(dmsc_test_support::TEST_KEY.to_vec());
    InitParams::with_authorities(vec![AuthorityKeys {
        key_version: 0x30,
        name: "admin".into(),
        enc: key.clone(),
        mac: key.clone(),
        dek: key,
    }])
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set: run this benchmark through `bash .ci/bench`");
        std::process::exit(2)
    })
}

/// Sends `apdu` `n` times; returns µs per APDU.
fn batch(t: &mut dyn Transport, apdu: &[u8], n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let rsp = t.transmit(apdu).expect("transmit");
        assert_eq!(rsp[rsp.len() - 2..], [0x90, 0x00], "APDU failed");
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("DMSC_BENCH_APDUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let port: u16 = env("DMSC_VPCD_PORT").parse().expect("port");
    let readers: Vec<String> = env("DMSC_VPCD_READERS")
        .split(';')
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dmsc_sim_card::sim::create(&dir.path().join("bench.state"), params()).expect("card");
    let (sim_slot, echo_slot) = (8usize, 9usize);
    let shutdown = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let cards: Vec<(Box<dyn VirtualCard>, Endpoint)> = vec![
        (
            Box::new(sim),
            Endpoint::Connect(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                port + sim_slot as u16,
            ))),
        ),
        (
            Box::new(EchoCard),
            Endpoint::Connect(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                port + echo_slot as u16,
            ))),
        ),
    ];
    let flag = shutdown.clone();
    let bridge = std::thread::spawn(move || vpcd::serve(cards, flag, move |e| drop(tx.send(e))));
    let mut attached = 0;
    while attached < 2 {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("cards attach within 20 s")
        {
            BridgeEvent::Attached { .. } => attached += 1,
            BridgeEvent::CardStopped { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let mut ctx = PcscContext::establish().expect("PC/SC");
    let connect = |ctx: &mut PcscContext, reader: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ctx.connect(reader) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{reader}: {e}"),
            }
        }
    };
    let mut sim_card = connect(&mut ctx, &readers[sim_slot]);
    let mut echo_card = connect(&mut ctx, &readers[echo_slot]);

    // The simulated card: GET CHALLENGE of 8 bytes (no persistent write).
    let select = Request::Select { aid: AID.to_vec() }
        .to_command()
        .to_bytes()
        .expect("select");
    let challenge = Request::GetChallenge { len: 8 }
        .to_command()
        .to_bytes()
        .expect("challenge");
    assert_eq!(sim_card.transmit(&select).expect("select")[..1], [0x6F]);
    // The echo card: an APDU of the same size whose answer is as long.
    let echo = Command::new(0x00, 0xCA, 0x00, 0x00)
        .with_data(vec![0xA5; 8])
        .to_bytes()
        .expect("echo");

    let (mut sims, mut echoes) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        echoes.push(batch(&mut echo_card, &echo, n / 5));
        sims.push(batch(&mut sim_card, &challenge, n / 5));
    }
    let (sim_us, echo_us) = (median(sims), median(echoes));

    let mut in_process = SimTransport::in_memory(params()).expect("card");
    in_process.transmit(&select).expect("select");
    let local_us = median(
        (0..5)
            .map(|_| batch(&mut in_process, &challenge, n / 5))
            .collect(),
    );

    shutdown.store(true, Ordering::SeqCst);
    let _ = bridge.join();
    println!("pcsc_apdu: {n} APDUs per card, 5 interleaved batches, medians");
    println!("  echo card through pcscd        {echo_us:>9.1} µs/APDU  (baseline)");
    println!("  simulated card through pcscd   {sim_us:>9.1} µs/APDU");
    println!(
        "  ratio simulated / echo         {:>9.2}  (target <= 1.15)",
        sim_us / echo_us
    );
    println!("  simulated card in-process      {local_us:>9.1} µs/APDU");
}
