//! `dmsc sim init`, `dmsc sim serve` and `dmsc sim modem`: simulated cards.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use dmsc_host::card_model::commands::{Pin, MIN_FAILURE_LIMIT};
use dmsc_host::card_model::objects::check_name;
use dmsc_sim_card::file_store::StateLock;
use dmsc_sim_card::modem::{Faults, ModemEmulator};
use dmsc_sim_card::sim::{self, FileCard};
use dmsc_sim_card::vpcd::{self, BridgeEvent, Endpoint, VirtualCard, WithLatency};
use dmsc_sim_card::{InitParams, StoreError};
use serde::Serialize;

use crate::common::{init_params, parse_latency};
use crate::context::Ctx;
use crate::exit::{coded, usage, Code};
use crate::output::{hex_upper, print_json};
use crate::secrets::{KeyTriple, TEST_KEY_VERSION};

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Create (personalise) a new simulated card in a state file
    #[command(
        after_help = "Without --scp-keys/--scp-key-file/DMSC_SCP_KEYS the card gets the \
        well-known GlobalPlatform test keys 404142…4F (key version 0x30) and a warning is \
        printed. --pin/--puk take values on the command line ONLY because this \
        personalises a test card; every other command reads PINs from a file, the \
        environment or a prompt.\n\nWith --uicc PROFILE.json the state file is a simulated \
        UICC instead (a JSON document, docs/standard-cards.md): `dmsc uicc --sim-uicc PATH` \
        and `dmsc uicc serve` use it and save every change (UPDATE BINARY, try counters) to \
        it before the card answers."
    )]
    Init {
        /// The new state file
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Make a simulated UICC from this JSON profile (docs/standard-cards.md) instead
        /// of a dmsc applet card
        #[arg(
            long,
            value_name = "PROFILE.json",
            conflicts_with_all = ["authority", "pin", "puk", "capacity", "failure_limit"]
        )]
        uicc: Option<PathBuf>,
        /// Name of the card's first authority (its administrator)
        #[arg(long, default_value = "admin", value_name = "NAME")]
        authority: String,
        /// Initial user PIN (test cards only)
        #[arg(long, default_value = "123456", value_name = "PIN")]
        pin: String,
        /// Initial PUK (test cards only)
        #[arg(long, default_value = "12345678", value_name = "PUK")]
        puk: String,
        /// Object storage in bytes
        #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
        capacity: u32,
        /// Consecutive authorisation failures before an alarm (at least 4)
        #[arg(long, default_value_t = 4, value_name = "N")]
        failure_limit: u8,
        /// Replace an existing state file (atomically: the old card stays if anything fails)
        #[arg(long)]
        force: bool,
    },
    /// Attach simulated cards to pcscd through its vpcd driver until SIGINT/SIGTERM
    #[command(
        after_help = "Prints exactly one line on stdout once every card is attached, \
        e.g. `ready: 2 cards attached (vpcd 127.0.0.1:35963, 127.0.0.1:35964)`."
    )]
    Serve {
        /// A card state file; repeat for more cards (card i uses port+i)
        #[arg(long = "state", required = true, value_name = "PATH")]
        states: Vec<PathBuf>,
        /// vpcd's listening base port on 127.0.0.1 (card i connects to port+i)
        #[arg(
            long,
            env = "DMSC_VPCD_PORT",
            hide_env_values = true,
            default_value_t = 35963
        )]
        port: u16,
        /// Reversed mode: card i listens on ADDR's host at ADDR's port + i for vpcd
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Answer each APDU this long after it arrived, as a real card's
        /// processing time (e.g. 15ms; units us, ms, s; at most 10s)
        #[arg(long, value_name = "DURATION", value_parser = parse_latency)]
        latency: Option<std::time::Duration>,
    },
    /// Serve a simulated UICC behind an emulated cellular modem on a pseudo-terminal
    /// until SIGINT/SIGTERM
    #[command(after_help = "Prints the pty's path on one line, then \
        `ready: modem emulator on PTY (simulated UICC FILE)` (with --json: one JSON line \
        with the path instead of both). Point `dmsc uicc --modem PTY` at it. The modem \
        answers AT, ATE0/ATE1, AT+CSIM, AT+CCHO/AT+CGLA/AT+CCHC (3GPP TS 27.007) and \
        ERROR to anything else. With a state file (`dmsc sim init --uicc`) every change is \
        saved to it before the card answers; with a bare profile changes last until the \
        command ends. APDUs (AT+CSIM and AT+CGLA) are counted from 1.")]
    Modem {
        /// The simulated UICC: a state file made by `dmsc sim init --uicc`, or a bare
        /// JSON profile
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// An unsolicited result code (alternately RING and +CREG: 1,1) before the
        /// answer to every N-th command
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        urc_every: Option<u64>,
        /// Answer `+CME ERROR: <code>` from the K-th APDU on
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        cme_error_after: Option<u64>,
        /// The code of --cme-error-after (13: SIM failure)
        #[arg(
            long,
            value_name = "N",
            default_value_t = 13,
            requires = "cme_error_after"
        )]
        cme_error_code: u16,
        /// Answer nothing at all from the K-th APDU on
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        silent_after: Option<u64>,
    },
}

/// Runs a `sim` subcommand. `port_on_command_line`: whether `--port` was
/// given on the command line (not from `DMSC_VPCD_PORT`), which `--listen`
/// excludes.
pub fn run(ctx: &Ctx, cmd: &SimCommand, port_on_command_line: bool) -> Result<Code> {
    match cmd {
        SimCommand::Init {
            path,
            uicc: Some(profile),
            force,
            ..
        } => init_uicc(ctx, profile, path, *force)?,
        SimCommand::Init {
            path,
            uicc: None,
            authority,
            pin,
            puk,
            capacity,
            failure_limit,
            force,
        } => init(
            ctx,
            &InitArgs {
                path,
                authority,
                pin,
                puk,
                capacity: *capacity,
                failure_limit: *failure_limit,
                force: *force,
            },
        )?,
        SimCommand::Serve {
            states,
            port,
            listen,
            latency,
        } => {
            if port_on_command_line && listen.is_some() {
                return Err(usage("give either --port or --listen, not both"));
            }
            serve(
                ctx,
                states,
                *port,
                listen.as_deref(),
                *latency,
                ctx.verbose > 0,
            )?
        }
        SimCommand::Modem {
            state,
            urc_every,
            cme_error_after,
            cme_error_code,
            silent_after,
        } => {
            let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            let faults = Faults {
                urc_every: urc_every.map(count),
                cme_error_after: cme_error_after.map(|k| (count(k), *cme_error_code)),
                silent_after: silent_after.map(count),
            };
            modem(ctx, state, faults)?
        }
    }
    Ok(Code::Ok)
}

#[derive(Serialize)]
struct ModemReadyJson {
    schema_version: u32,
    ready: bool,
    pty: String,
    state: String,
    urc_every: Option<usize>,
    cme_error_after: Option<usize>,
    cme_error_code: Option<u16>,
    silent_after: Option<usize>,
}

/// `dmsc sim modem --state FILE [faults]`.
fn modem(ctx: &Ctx, state: &Path, faults: Faults) -> Result<()> {
    let card = crate::sim_uicc::sim_card(state)?;
    let emulator = ModemEmulator::new(card, faults).context("cannot start the modem emulator")?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(sig, shutdown.clone()))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let pty = emulator.path().display().to_string();
    let name = state.display().to_string();
    {
        let mut out = std::io::stdout().lock();
        if ctx.json {
            let doc = ModemReadyJson {
                schema_version: crate::output::SCHEMA_VERSION,
                ready: true,
                pty,
                state: name,
                urc_every: faults.urc_every,
                cme_error_after: faults.cme_error_after.map(|f| f.0),
                cme_error_code: faults.cme_error_after.map(|f| f.1),
                silent_after: faults.silent_after,
            };
            writeln!(out, "{}", serde_json::to_string(&doc)?)?;
        } else {
            writeln!(out, "{pty}")?;
            writeln!(
                out,
                "ready: modem emulator on {pty} (simulated UICC {name})"
            )?;
        }
        out.flush()?;
    }
    emulator.serve(&shutdown).map(drop).map_err(|e| {
        coded(
            Code::Error,
            format!("modem emulator: {:#}", anyhow::Error::new(e)),
        )
    })
}

/// What `sim init` personalises.
struct InitArgs<'a> {
    pub path: &'a Path,
    pub authority: &'a str,
    pub pin: &'a str,
    pub puk: &'a str,
    pub capacity: u32,
    pub failure_limit: u8,
    pub force: bool,
}

#[derive(Serialize)]
struct InitJson {
    path: String,
    card_id: String,
    authority: String,
    key_version: u8,
    key_bits: usize,
    test_keys: bool,
    capacity: u32,
    failure_limit: u8,
}

/// The warning printed when a card gets the well-known test keys.
pub const TEST_KEY_WARNING: &str = "warning: no authority keys given; using the well-known \
    GlobalPlatform test keys 404142434445464748494A4B4C4D4E4F (ENC=MAC=DEK, key version 0x30). \
    Anyone can authenticate as this card's authority: use them for tests only.";

/// The warning printed when the keys given are the well-known test keys.
pub const GIVEN_TEST_KEY_WARNING: &str = "warning: the authority keys given are the well-known \
    GlobalPlatform test keys 404142434445464748494A4B4C4D4E4F (ENC=MAC=DEK). Anyone can \
    authenticate as this card's authority: use them for tests only.";

/// `dmsc sim init PATH`.
fn init(ctx: &Ctx, args: &InitArgs<'_>) -> Result<()> {
    // Check everything before touching the file system.
    let keys = match &ctx.keys {
        Some(source) => source.load()?,
        None => KeyTriple::test_keys(),
    };
    // Given explicitly or not, the test keys get the warning.
    let test_keys = keys.is_test_keys();
    keys.static_keys()?;
    let key_version = ctx.key_version.unwrap_or(TEST_KEY_VERSION);
    if key_version == 0 || key_version == 0xFF {
        return Err(usage("--key-version of a new card must be 0x01 to 0xFE"));
    }
    if check_name(args.authority).is_err() || args.authority == "user" {
        return Err(usage(format!(
            "invalid authority name '{}': use 1-64 of A-Z a-z 0-9 . _ - (not 'user')",
            args.authority
        )));
    }
    for (what, value) in [("--pin", args.pin), ("--puk", args.puk)] {
        if Pin::new(value.as_bytes()).is_err() {
            return Err(usage(format!("{what} must be 4 to 8 characters")));
        }
    }
    if args.failure_limit < MIN_FAILURE_LIMIT {
        return Err(usage(format!(
            "--failure-limit must be at least {MIN_FAILURE_LIMIT}"
        )));
    }
    let mut params = init_params(
        args.authority,
        key_version,
        &keys,
        args.pin.as_bytes(),
        args.puk.as_bytes(),
    );
    params.capacity = args.capacity;
    params.failure_limit = args.failure_limit;

    let exists = std::fs::symlink_metadata(args.path).is_ok();
    if exists && !args.force {
        return Err(anyhow::anyhow!(
            "{} already exists; refusing to overwrite a card (use --force to replace it)",
            args.path.display()
        ));
    }
    if ctx.keys.is_none() {
        ctx.note(TEST_KEY_WARNING);
    } else if test_keys {
        ctx.note(GIVEN_TEST_KEY_WARNING);
    }
    let card_id = if exists {
        replace_card(args.path, params)?
    } else {
        sim::create(args.path, params)
            .with_context(|| format!("cannot create the simulated card {}", args.path.display()))?
            .card_id()
    };
    let out = InitJson {
        path: args.path.display().to_string(),
        card_id: hex_upper(&card_id),
        authority: args.authority.to_string(),
        key_version,
        key_bits: keys.bits(),
        test_keys,
        capacity: args.capacity,
        failure_limit: args.failure_limit,
    };
    if ctx.json {
        return print_json(&out);
    }
    println!("created simulated card {}", out.path);
    println!("card ID      {}", out.card_id);
    println!(
        "authority    {} (key version 0x{:02X}, AES-{}{})",
        out.authority,
        out.key_version,
        out.key_bits,
        if test_keys { ", test keys" } else { "" }
    );
    println!(
        "memory       {} bytes, failure limit {}",
        out.capacity, out.failure_limit
    );
    Ok(())
}

/// `dmsc sim init --uicc PROFILE PATH`.
fn init_uicc(ctx: &Ctx, profile: &Path, path: &Path, force: bool) -> Result<()> {
    let out = crate::sim_uicc::init_state_file(profile, path, force)?;
    if ctx.json {
        return print_json(&out);
    }
    println!(
        "{} simulated UICC {}",
        if out.replaced { "replaced" } else { "created" },
        out.path
    );
    println!("ICCID        {}", out.iccid.as_deref().unwrap_or("-"));
    println!(
        "keys         ADM1{} (3 tries each; saved with every change)",
        if out.pin1 { ", PIN1" } else { "" }
    );
    println!(
        "format       {} schema {}",
        out.format, out.state_schema_version
    );
    Ok(())
}

/// Replaces an existing state file with a new card: the card is made in a
/// temporary directory next to it and renamed over it, while holding the old
/// card's lock (on the state file itself), so the old card stays intact if
/// anything fails and a card in use (e.g. by `dmsc sim serve`) is never replaced.
fn replace_card(path: &Path, params: InitParams) -> Result<[u8; 16]> {
    let lock = StateLock::acquire(path).map_err(|e| match e {
        StoreError::InUse { .. } => anyhow::anyhow!(
            "{} is in use by another process (it holds the card state's lock); stop it first",
            path.display()
        ),
        e => anyhow::Error::new(e),
    })?;
    let dir = lock.dir().to_path_buf();
    let tmp = tempfile::Builder::new()
        .prefix(".dmsc-sim-init-")
        .tempdir_in(&dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    let staged = tmp.path().join("card.state");
    let card_id = {
        let card: FileCard = sim::create(&staged, params)
            .with_context(|| format!("cannot create the new card in {}", staged.display()))?;
        card.card_id()
    };
    lock.replace_with(&staged)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(card_id)
}

/// `dmsc sim serve`: the endpoint of card `index`.
fn endpoint(base: SocketAddr, index: usize, listen: bool) -> Result<Endpoint> {
    let port = if base.port() == 0 {
        0
    } else {
        u16::try_from(usize::from(base.port()) + index)
            .map_err(|_| usage(format!("port {} + {index} is beyond 65535", base.port())))?
    };
    let addr = SocketAddr::new(base.ip(), port);
    Ok(if listen {
        Endpoint::Listen(addr)
    } else {
        Endpoint::Connect(addr)
    })
}

#[derive(Serialize)]
struct ServeCardJson {
    state: String,
    endpoint: String,
}

#[derive(Serialize)]
struct ReadyJson {
    schema_version: u32,
    ready: bool,
    mode: &'static str,
    cards: Vec<ServeCardJson>,
}

/// `dmsc sim serve --state PATH… [--port N | --listen ADDR] [--latency DURATION]`.
fn serve(
    ctx: &Ctx,
    states: &[PathBuf],
    port: u16,
    listen: Option<&str>,
    latency: Option<std::time::Duration>,
    verbose: bool,
) -> Result<()> {
    let (base, reversed) = match listen {
        Some(text) => {
            let addr: SocketAddr = text.parse().map_err(|_| {
                usage(format!(
                    "--listen {text}: expected a loopback address and port, e.g. 127.0.0.1:35963"
                ))
            })?;
            if !addr.ip().is_loopback() {
                return Err(usage(format!(
                    "--listen {addr}: not a loopback address (a virtual card must not be \
                     reachable from the network)"
                )));
            }
            (addr, true)
        }
        None => (SocketAddr::from(([127, 0, 0, 1], port)), false),
    };
    let mut cards: Vec<(Box<dyn VirtualCard>, Endpoint)> = Vec::new();
    let mut endpoints = Vec::new();
    for (i, path) in states.iter().enumerate() {
        let ep = endpoint(base, i, reversed)?;
        let card = sim::open(path)
            .with_context(|| format!("cannot open the simulated card {}", path.display()))?;
        endpoints.push(ep.addr());
        match latency {
            Some(latency) => cards.push((Box::new(WithLatency::new(card, latency)), ep)),
            None => cards.push((Box::new(card), ep)),
        }
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(sig, shutdown.clone()))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let total = cards.len();
    let json = ctx.json;
    let quiet = ctx.quiet;
    let names: Vec<String> = states.iter().map(|p| p.display().to_string()).collect();
    let mut attached = BTreeSet::new();
    let mut ready = false;
    let start = std::time::Instant::now();
    let result = vpcd::serve(cards, shutdown, move |event| {
        match &event {
            BridgeEvent::Listening { index, addr } => {
                if let Some(e) = endpoints.get_mut(*index) {
                    *e = *addr;
                }
            }
            BridgeEvent::Attached { index, .. } => {
                attached.insert(*index);
            }
            BridgeEvent::Detached { index, .. } | BridgeEvent::CardStopped { index, .. } => {
                attached.remove(index);
            }
            _ => {}
        }
        // By default: where cards listen, waiting for vpcd, losses and failures.
        let important = match &event {
            BridgeEvent::Detached { reason, .. } => !matches!(reason, vpcd::DetachReason::Shutdown),
            BridgeEvent::Attached { .. } | BridgeEvent::Stopped => false,
            _ => true,
        };
        let failure = matches!(event, BridgeEvent::CardStopped { .. });
        if verbose || failure || (important && !quiet) {
            eprintln!("[{:8.3}s] {event}", start.elapsed().as_secs_f64());
        }
        if !ready && attached.len() == total {
            ready = true;
            print_ready(json, reversed, &names, &endpoints);
        }
    });
    result.map_err(|e| coded(Code::Error, format!("vpcd bridge: {e}")))
}

fn print_ready(json: bool, reversed: bool, names: &[String], endpoints: &[SocketAddr]) {
    let mut out = std::io::stdout().lock();
    if json {
        let doc = ReadyJson {
            schema_version: crate::output::SCHEMA_VERSION,
            ready: true,
            mode: if reversed { "listen" } else { "connect" },
            cards: names
                .iter()
                .zip(endpoints)
                .map(|(n, e)| ServeCardJson {
                    state: n.clone(),
                    endpoint: e.to_string(),
                })
                .collect(),
        };
        let _ = writeln!(out, "{}", serde_json::to_string(&doc).unwrap_or_default());
    } else {
        let list: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        let n = endpoints.len();
        let _ = writeln!(
            out,
            "ready: {n} card{} attached ({} {})",
            if n == 1 { "" } else { "s" },
            if reversed { "listening on" } else { "vpcd" },
            list.join(", ")
        );
    }
    let _ = out.flush();
}
