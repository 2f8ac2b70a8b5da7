//! Serves a simulated dmsc card (state file) and an echo card to vpcd.
//!
//! ```sh
//! eval "$(.ci/pcsc-env start /tmp/p)"
//! cargo run -p dmsc-sim-card --example vpcd_serve -- /tmp/p/card.state "$DMSC_VPCD_PORT"
//! # reversed mode: listen instead (then `.ci/pcsc-env start-reversed /tmp/p`)
//! cargo run -p dmsc-sim-card --example vpcd_serve -- /tmp/p/card.state "$DMSC_VPCD_REVERSED_PORT" --listen
//! ```
//!
//! The dmsc card is on `PORT` (slot 0), the echo card on `PORT + 1` (slot 1).
//! A missing state file is created (PIN 123456, one authority with test keys).
//! SIGINT / SIGTERM stop it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use dmsc_sim_card::sim;
use dmsc_sim_card::vpcd::{serve, EchoCard, Endpoint, VirtualCard};
use dmsc_sim_card::{AuthorityKeys, InitParams};
use zeroize::Zeroizing;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = args.iter().any(|a| a == "--listen");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(path), Some(port)) = (pos.first(), pos.get(1)) else {
        eprintln!("usage: vpcd_serve STATE_FILE PORT [--listen]");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bad port {port}");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(path);
    let card = if path.exists() {
        sim::open(&path)
    } else {
        sim::create(
            &path,
            InitParams::with_authorities(vec![AuthorityKeys {
                key_version: 0x30,
                name: "ServerA".into(),
                enc: Zeroizing::new((0x40..0x50).collect()),
                mac: Zeroizing::new((0x40..0x50).collect()),
                dek: Zeroizing::new((0x40..0x50).collect()),
            }]),
        )
    };
    let card = match card {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let endpoint = |p: u16| {
        let addr = SocketAddr::from(([127, 0, 0, 1], p));
        if listen {
            Endpoint::Listen(addr)
        } else {
            Endpoint::Connect(addr)
        }
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, shutdown.clone()) {
            eprintln!("signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let cards: Vec<(Box<dyn VirtualCard>, Endpoint)> = vec![
        (Box::new(card), endpoint(port)),
        (Box::new(EchoCard), endpoint(port.wrapping_add(1))),
    ];
    let start = std::time::Instant::now();
    match serve(cards, shutdown, move |e| {
        eprintln!("[{:8.3}s] {e}", start.elapsed().as_secs_f64())
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
