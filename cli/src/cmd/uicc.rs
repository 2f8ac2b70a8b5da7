//! `dmsc uicc`: the standard bootstrap data on a SIM/UICC (docs/standard-cards.md).
//! The use cases live in `dmsc_host::uicc`; this module parses, asks and prints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dmsc_host::uicc::sim::VirtualCardTransport;
use dmsc_host::uicc::{self, lwm2m::Value, Pin, UiccError};
use dmsc_host::Transport;
use dmsc_sim_card::vpcd::VirtualCard;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::common::{given_pin, pin_hint, PIN_HINT};
use crate::context::{CardSession, Ctx};
use crate::exit::{coded, usage, Code};
use crate::output::print_json;
use crate::sim_uicc::sim_card;

/// `dmsc uicc …`.
#[derive(Debug, Args)]
pub struct UiccArgs {
    /// Use a simulated UICC instead of --reader / --sim / --modem: a state file made by `dmsc sim
    /// init --uicc` (every change saved to it before the card answers), or a bare JSON
    /// profile (docs/standard-cards.md), whose changes live in memory only and are lost
    /// when the command ends
    #[arg(long, value_name = "FILE", env = "DMSC_SIM_UICC")]
    pub sim_uicc: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: UiccCommand,
}

/// The `uicc` subcommands.
#[derive(Debug, Subcommand)]
pub enum UiccCommand {
    /// Applications (EF(DIR)), PKCS#15 token info and data objects (label, OID, path, size)
    Info,
    /// Read and decode the LwM2M bootstrap (OID 2.23.43.9.1) from the PKCS#15 application
    #[command(
        visible_alias = "lwm2m-bootstrap",
        after_help = "Text output lists one resource per line (/object/instance/resource = value); \
        --tree prints the same as the configuration a LwM2M client consumes; --json gives \
        the documented JSON form (docs/standard-cards.md)."
    )]
    Lwm2m {
        /// One `path = value` line per resource, names omitted
        #[arg(long)]
        tree: bool,
    },
    /// Attach the simulated UICC of --sim-uicc to pcscd through vpcd until SIGINT/SIGTERM
    #[command(
        after_help = "Connects to vpcd at 127.0.0.1:PORT (a reader.conf slot; see \
        docs/pcsc-testing.md) and prints `ready: simulated UICC attached (vpcd ADDR)` once \
        pcscd sees the card. With a state file (`dmsc sim init --uicc`) every change is \
        saved to it before the card answers; with a bare profile the card's state lives in \
        memory and updates last until the command ends."
    )]
    Serve {
        /// The vpcd port of the slot
        #[arg(long, default_value_t = 35963)]
        port: u16,
    },
    /// Read the OMA DM bootstrap (OID 2.23.43.7.1), a WBXML DM message: hex, or raw to --out
    DmBootstrap {
        /// Write the raw bytes to this file
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Encode a bootstrap (the JSON form) and write it to EF(LwM2M_Bootstrap) after VERIFY ADM1
    #[command(
        visible_alias = "write-lwm2m-bootstrap",
        after_help = "The ADM1 key (8 bytes, 16 hex digits) comes from --adm-key-file or \
        DMSC_ADM_KEY, never from the command line. The file is encoded and checked against \
        the EF's size (its FCP) before anything is sent."
    )]
    WriteLwm2m {
        /// The bootstrap in the JSON form of docs/standard-cards.md
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        /// File holding the ADM1 key in hex
        #[arg(long, value_name = "FILE")]
        adm_key_file: Option<PathBuf>,
    },
    /// Apply the card's smartcard bootstrap (OMA DM and LwM2M) to a device tree
    #[command(
        after_help = "The OMA DM bootstrap's Add/Replace items become MOs (as for the HTTP \
        bootstrap), the LwM2M bootstrap the MO ./LwM2M; both are recorded with the ICCID and \
        the bootstrap's digest, and what another card provided goes. A device policy with \
        the resource smartcard-bootstrap disabled (DIR/policy/resources.json) turns it off. \
        See docs/bootstrap.md."
    )]
    Apply {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
        /// The factory bootstrap, applied when the card has no bootstrap
        #[arg(long, value_name = "FILE")]
        factory_bootstrap: Option<PathBuf>,
    },
}

/// The ADM1 key from its file or `DMSC_ADM_KEY` (hex, 8 bytes).
fn adm_key(file: Option<&std::path::Path>) -> Result<Zeroizing<Vec<u8>>> {
    let text: Zeroizing<String> = match file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the ADM key file {}", path.display()))?,
        ),
        None => match std::env::var("DMSC_ADM_KEY") {
            Ok(v) => Zeroizing::new(v),
            Err(_) => {
                return Err(usage(
                    "the ADM1 key is needed: give --adm-key-file FILE or set DMSC_ADM_KEY",
                ))
            }
        },
    };
    let clean: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let key = Zeroizing::new(
        hex::decode(clean.as_bytes())
            .map_err(|_| usage("the ADM1 key is not hex (16 hex digits expected)"))?,
    );
    if key.len() != 8 {
        return Err(usage(format!(
            "the ADM1 key has {} bytes, 8 expected (16 hex digits)",
            key.len()
        )));
    }
    Ok(key)
}

/// Runs a read with the PIN given (if any). A protected object without a
/// PIN is asked for on a terminal (and the read done again with it, once);
/// elsewhere the error says how to give it. A wrong or blocked PIN is
/// reported, never tried again.
fn with_pin<T>(ctx: &Ctx, mut read: impl FnMut(Option<&Pin>) -> Result<T, UiccError>) -> Result<T> {
    use std::io::IsTerminal;
    let pin = given_pin(ctx)?;
    let result = match read(pin.as_ref()) {
        Err(UiccError::PinRequired { .. }) if pin.is_none() && std::io::stdin().is_terminal() => {
            let pin = ctx.user_pin()?;
            read(Some(&pin))
        }
        other => other,
    };
    result.map_err(|e| match e {
        UiccError::PinRequired { .. } => usage(format!("{e}: {PIN_HINT}")),
        UiccError::WrongPin { .. } => coded(Code::WrongPin, e.to_string()),
        UiccError::PinBlocked { .. } => coded(Code::Blocked, e.to_string()),
        UiccError::PinFormat { .. } | UiccError::NoAuthObject { .. } => usage(e.to_string()),
        other => other.into(),
    })
}

/// `dmsc uicc serve`: the simulated UICC on a vpcd slot.
fn serve(ctx: &Ctx, profile: &std::path::Path, port: u16) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use dmsc_sim_card::vpcd::{self, BridgeEvent, Endpoint};

    let card: Box<dyn VirtualCard> = Box::new(sim_card(profile)?);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(sig, shutdown.clone()))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let quiet = ctx.quiet;
    let mut ready = false;
    vpcd::serve(
        vec![(card, Endpoint::Connect(addr))],
        shutdown,
        move |event| match &event {
            BridgeEvent::Attached { .. } if !ready => {
                ready = true;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ready: simulated UICC attached (vpcd {addr})");
                let _ = out.flush();
            }
            BridgeEvent::Attached { .. } | BridgeEvent::Stopped => {}
            other if !quiet => eprintln!("{other}"),
            _ => {}
        },
    )
    .map_err(|e| anyhow::anyhow!("vpcd bridge: {e}"))
}

fn open(ctx: &Ctx, args: &UiccArgs) -> Result<CardSession> {
    match &args.sim_uicc {
        Some(path) => {
            let t: Box<dyn Transport> = Box::new(VirtualCardTransport::new(
                sim_card(path)?,
                format!("simulated UICC {}", path.display()),
            ));
            Ok(ctx.session(t))
        }
        None => ctx.open_card(),
    }
}

#[derive(Serialize)]
struct Lwm2mJson<'a> {
    bootstrap: &'a uicc::BootstrapFile,
    entries: Vec<Entry>,
    /// Secret resources, emptied in this output.
    redacted: Vec<String>,
}

#[derive(Serialize)]
struct Entry {
    path: String,
    value: Value,
}

/// Runs `dmsc uicc`.
pub fn run(ctx: &Ctx, args: &UiccArgs) -> Result<Code> {
    execute(ctx, args).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, args: &UiccArgs) -> Result<()> {
    // Bad input is refused before the card is opened.
    let write = match &args.command {
        UiccCommand::WriteLwm2m { file, adm_key_file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let bootstrap: uicc::BootstrapFile = serde_json::from_str(&text).map_err(|e| {
                usage(format!(
                    "{}: not the bootstrap JSON form: {e}",
                    file.display()
                ))
            })?;
            bootstrap
                .encode()
                .map_err(|e| usage(format!("{}: {e}", file.display())))?;
            Some((bootstrap, adm_key(adm_key_file.as_deref())?))
        }
        _ => None,
    };
    if let UiccCommand::Serve { port } = &args.command {
        let profile = args
            .sim_uicc
            .as_deref()
            .ok_or_else(|| usage("uicc serve needs --sim-uicc FILE (a state file or a profile)"))?;
        return serve(ctx, profile, *port);
    }
    let options = match &args.command {
        UiccCommand::Apply {
            device,
            factory_bootstrap,
            ..
        } => {
            let mut o = dmsc_host::provisioning::RefreshOptions::for_device(
                device,
                factory_bootstrap.as_deref(),
            )
            .map_err(|e| usage(e.to_string()))?;
            o.uicc_pin = given_pin(ctx)?;
            Some(o)
        }
        _ => None,
    };
    let mut session = open(ctx, args)?;
    match &args.command {
        UiccCommand::Serve { .. } => {}
        UiccCommand::Apply { device, init, .. } => {
            use dmsc_host::device_tree::{DirectoryTree, TreeError};
            let opened = if *init {
                DirectoryTree::init(device)
            } else {
                DirectoryTree::open_existing(device)
            };
            let mut tree = opened.map_err(|e| match e {
                TreeError::NotATree { .. } => usage(format!("--device {e}")),
                other => anyhow::Error::new(other)
                    .context(format!("cannot open the device tree {}", device.display())),
            })?;
            let options = options.unwrap_or_default();
            let r = dmsc_host::provisioning::uicc::refresh_uicc(&mut session, &mut tree, &options)
                .with_context(|| format!("applying the UICC's bootstrap to {}", device.display()))
                .map_err(pin_hint)?;
            if ctx.json {
                return print_json(&r);
            }
            let state = if r.unchanged { " (unchanged)" } else { "" };
            match (&r.bootstrap_digest, r.smartcard_bootstrap_disabled) {
                (_, true) => println!(
                    "UICC {}: smartcard bootstrap disabled by the device policy",
                    r.card_id
                ),
                (Some(d), _) if !r.bootstrap.is_empty() => {
                    println!(
                        "UICC {}: bootstrap {} ({d}){state}",
                        r.card_id,
                        r.bootstrap.join(", ")
                    )
                }
                _ => println!("UICC {}: no bootstrap{state}", r.card_id),
            }
            for (label, list) in [
                ("added", &r.added),
                ("updated", &r.updated),
                ("removed", &r.removed),
            ] {
                for uri in list {
                    println!("  {label:8} {uri}");
                }
            }
            for s in &r.skipped {
                println!("  skipped  {} ({})", s.uri, s.reason);
            }
            if r.factory {
                println!("  the factory bootstrap is in force");
            }
        }
        UiccCommand::WriteLwm2m { file, .. } => {
            if let Some((bootstrap, key)) = &write {
                uicc::write_lwm2m_bootstrap(&mut session, bootstrap, Some(key.as_slice()))?;
                ctx.note(&format!("wrote {} to EF(LwM2M_Bootstrap)", file.display()));
            }
        }
        UiccCommand::DmBootstrap { out } => {
            let raw = with_pin(ctx, |pin| {
                uicc::read_dm_bootstrap_raw_with_pin(&mut session, pin)
            })?;
            match out {
                Some(path) => std::fs::write(path, &raw)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None if ctx.json => {
                    #[derive(Serialize)]
                    struct Dm {
                        wbxml_hex: String,
                        length: usize,
                    }
                    return print_json(&Dm {
                        wbxml_hex: hex::encode_upper(&raw),
                        length: raw.len(),
                    });
                }
                None => println!("{}", hex::encode_upper(&raw)),
            }
        }
        UiccCommand::Info => {
            let info = with_pin(ctx, |pin| uicc::read_info_with_pin(&mut session, pin))?;
            if ctx.json {
                return print_json(&info);
            }
            println!("applications:");
            if info.applications.is_empty() {
                println!("  (none: no EF(DIR))");
            }
            for a in &info.applications {
                println!("  {}  {}", a.aid, a.label.as_deref().unwrap_or(""));
            }
            if !info.pkcs15 {
                println!("this card has no PKCS#15 application");
                return Ok(());
            }
            if let Some(t) = &info.token_info {
                println!(
                    "token: {} ({})",
                    t.label.as_deref().unwrap_or("-"),
                    t.manufacturer.as_deref().unwrap_or("-")
                );
            }
            println!("data objects:");
            for o in &info.data_objects {
                let d = &o.object;
                println!(
                    "  {:<20} oid {:<14} path {:<6} size {:<6} {}{}",
                    d.label
                        .as_deref()
                        .or(d.application.as_deref())
                        .unwrap_or("-"),
                    d.oid.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                    d.path.as_ref().map(|p| p.path.as_str()).unwrap_or("-"),
                    o.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    if d.auth_id.is_some() { "PIN " } else { "" },
                    if d.oid_wrapped {
                        "(OID wrapped twice)"
                    } else {
                        ""
                    },
                );
            }
            for p in &info.pin_objects {
                println!(
                    "PIN object {:<13} authId {} reference {:02X}, {} to {} characters{}",
                    p.label.as_deref().unwrap_or("-"),
                    p.auth_id,
                    p.reference,
                    p.min_length,
                    p.max_length.unwrap_or(p.stored_length),
                    if info.pin_verified { " (verified)" } else { "" }
                );
            }
        }
        UiccCommand::Lwm2m { tree } => {
            let read = with_pin(ctx, |pin| {
                uicc::read_lwm2m_bootstrap_with_pin(&mut session, pin)
            })?;
            // Secret keys are never printed.
            let (file, redacted) = read.redacted();
            drop(read);
            let entries = file.entries();
            if ctx.json {
                return print_json(&Lwm2mJson {
                    bootstrap: &file,
                    entries: entries
                        .into_iter()
                        .map(|(path, value)| Entry { path, value })
                        .collect(),
                    redacted,
                });
            }
            for (path, value) in &entries {
                if redacted.contains(path) {
                    println!("{path} = (secret, not shown)");
                    continue;
                }
                if *tree {
                    println!("{path} = {value}");
                    continue;
                }
                let mut parts = path.trim_start_matches('/').split('/');
                let name = match (parts.next(), parts.nth(1)) {
                    (Some(o), Some(r)) => o
                        .parse()
                        .ok()
                        .zip(r.parse().ok())
                        .and_then(|(o, r)| uicc::lwm2m::registry(o, r))
                        .map(|(n, _)| n),
                    _ => None,
                };
                match name {
                    Some(n) => println!("{path} = {value}  ({n})"),
                    None => println!("{path} = {value}"),
                }
            }
        }
    }
    Ok(())
}
