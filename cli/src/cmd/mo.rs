//! `dmsc mo put|get|list|delete|copy|diff`, `dmsc refresh`, `dmsc watch`:
//! OMA DM management objects on the card and in the device tree.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use dmsc_host::device_tree::{DeviceTree, DirectoryTree, TreeError};
use dmsc_host::mo;
use dmsc_host::provisioning::{self, DeviceCopy, MoComparison, RefreshReport};
use serde_json::json;

use crate::common::{
    authority_session, confirm, open_as, parse_acl, read_tree_file, write_atomically,
};
use crate::context::Ctx;
use crate::exit::{coded, usage, Code};
use crate::output::print_json;

/// MO file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MoFormat {
    /// OMA DM TNDS XML (syncml:dmddf1.2)
    Tnds,
    /// The equivalent JSON (docs/provisioning.md)
    Json,
}

#[derive(Debug, Subcommand)]
pub enum MoCommand {
    /// Store the MOs of a TNDS (or JSON) file on the card, one record per top-level node
    /// (an authority: SCP03 keys needed)
    Put {
        /// TNDS XML or JSON file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Root URI for the MO (the file must hold one top-level node), e.g. ./DMAcc
        #[arg(long, value_name = "URI")]
        uri: Option<String>,
        /// Card ACL of the record, e.g. 'Get=*&Replace=admin' (default: the card's)
        #[arg(long, value_name = "ACL")]
        acl: Option<String>,
    },
    /// Read one MO, or any node inside one, from the card as TNDS XML or JSON
    Get {
        /// Root URI or node path, e.g. ./DMAcc or ./DMAcc/ServerA/AppAddr
        #[arg(value_name = "URI")]
        uri: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = MoFormat::Tnds)]
        format: MoFormat,
        /// Write to FILE (atomically) instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List the MOs on the card that the caller may read
    List,
    /// Delete one MO from the card (an authority; asks for confirmation on a terminal)
    Delete {
        /// Root URI
        #[arg(value_name = "URI")]
        uri: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Copy an MO, or a subtree of it, from the device tree to the card (an authority)
    Copy {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// The MO's root URI in the device tree, or a node path inside an MO
        #[arg(long, value_name = "URI")]
        uri: String,
        /// Only this part, relative to the MO root (e.g. ServerA/AppAddr)
        #[arg(long, value_name = "PATH")]
        subtree: Option<String>,
        /// Card ACL of the new record
        #[arg(long, value_name = "ACL")]
        acl: Option<String>,
        /// Erase the device copy after the card stored it (default: keep both)
        #[arg(long)]
        erase_device: bool,
        /// Do not ask before erasing the device copy
        #[arg(long, short = 'y')]
        yes: bool,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
    },
    /// Compare the device tree's MOs with the card's, node by node
    Diff {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Only this node (an MO root or a node path inside an MO)
        #[arg(value_name = "URI")]
        uri: Option<String>,
    },
}

/// `dmsc refresh` options.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The device tree directory
    #[arg(long, value_name = "DIR")]
    pub device: PathBuf,
    /// Create the device tree if DIR is new or empty (else DIR must be one)
    #[arg(long)]
    pub init: bool,
    /// The factory bootstrap (TNDS, or an OMA DM bootstrap message in XML or
    /// WBXML): in force only while no card provides anything
    #[arg(long, value_name = "FILE")]
    pub factory_bootstrap: Option<PathBuf>,
}

/// `dmsc watch` options.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The device tree directory
    #[arg(long, value_name = "DIR")]
    pub device: PathBuf,
    /// Create the device tree if DIR is new or empty (else DIR must be one)
    #[arg(long)]
    pub init: bool,
    /// Seconds between two checks of the card's generation
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub interval: f64,
    /// Stop after this many events
    #[arg(long, value_name = "N")]
    pub events: Option<u64>,
    /// The factory bootstrap (TNDS, or an OMA DM bootstrap message in XML or
    /// WBXML): in force only while no card provides anything
    #[arg(long, value_name = "FILE")]
    pub factory_bootstrap: Option<PathBuf>,
}

/// An MO error with its exit code: an overlap is bad input (2), a node no
/// readable record holds is not found (8); others keep their card error's.
fn mo_error(e: mo::MoCardError) -> anyhow::Error {
    use mo::MoCardError as E;
    match e {
        E::Overlap { .. } | E::Usage(_) => usage(e.to_string()),
        E::NotFoundOrNotPermitted { .. } | E::NoSuchNode { .. } => {
            coded(Code::NotFound, e.to_string())
        }
        E::RolledBack { ref source, .. } | E::PartlyStored { ref source, .. } => {
            coded(crate::exit::host_code(source), e.to_string())
        }
        other => anyhow::Error::new(other),
    }
}

/// The same for a provisioning error.
fn provisioning_error(e: provisioning::ProvisioningError) -> anyhow::Error {
    match e {
        provisioning::ProvisioningError::Mo(m) => mo_error(m),
        provisioning::ProvisioningError::NotInDevice(_) => coded(Code::NotFound, e.to_string()),
        other => anyhow::Error::new(other),
    }
}

/// Opens the device tree directory: it must be one, unless `init` (then a
/// new or empty directory becomes one). A directory that is not a device
/// tree is a usage error (a mistyped `--device`).
pub fn open_tree(dir: &Path, init: bool) -> Result<DirectoryTree> {
    let opened = if init {
        DirectoryTree::init(dir)
    } else {
        DirectoryTree::open_existing(dir)
    };
    opened.map_err(|e| match e {
        TreeError::NotATree { .. } => usage(format!("--device {e}")),
        other => anyhow::Error::new(other)
            .context(format!("cannot open the device tree {}", dir.display())),
    })
}

/// Runs an `mo` subcommand.
pub fn run(ctx: &Ctx, cmd: &MoCommand) -> Result<Code> {
    execute(ctx, cmd).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, cmd: &MoCommand) -> Result<()> {
    match cmd {
        MoCommand::Put { file, uri, acl } => put(ctx, file, uri.as_deref(), acl.as_deref()),
        MoCommand::Get { uri, format, out } => get(ctx, uri, *format, out.as_deref()),
        MoCommand::List => list(ctx),
        MoCommand::Delete { uri, yes } => delete(ctx, uri, *yes),
        MoCommand::Copy {
            device,
            uri,
            subtree,
            acl,
            erase_device,
            yes,
            init,
        } => copy(
            ctx,
            device,
            uri,
            subtree.as_deref(),
            acl.as_deref(),
            *erase_device,
            *yes,
            *init,
        ),
        MoCommand::Diff { device, uri } => diff(ctx, device, uri.as_deref()),
    }
}

fn put(ctx: &Ctx, file: &Path, uri: Option<&str>, acl: Option<&str>) -> Result<()> {
    // Everything from the user is checked before the card is touched.
    let mut tree = read_tree_file(file)?;
    if let Some(uri) = uri {
        tree = mo::rooted_at(&tree, uri).map_err(|e| usage(e.to_string()))?;
    }
    let acl = acl.map(parse_acl).transpose()?;
    let mut session = authority_session(ctx, "storing MOs")?;
    let stored = mo::put_mo(&mut session, &tree, acl.as_ref())
        .map_err(mo_error)
        .with_context(|| format!("storing the MOs of {} on the card", file.display()))?;
    if ctx.json {
        return print_json(&json!({ "stored": stored }));
    }
    for uri in &stored {
        println!("stored {uri}");
    }
    Ok(())
}

fn get(ctx: &Ctx, uri: &str, format: MoFormat, out: Option<&Path>) -> Result<()> {
    let (mut session, who) = open_as(ctx, false)?;
    let (m, record) = mo::get_node(&mut session, uri)
        .map_err(mo_error)
        .with_context(|| format!("reading MO {uri} as {who}"))?;
    let text = match format {
        MoFormat::Tnds => m.tree.to_tnds(),
        MoFormat::Json => m.tree.to_json() + "\n",
    };
    if let Some(path) = out {
        write_atomically(path, text.as_bytes())?;
        ctx.note(&format!("wrote {uri} to {}", path.display()));
    }
    if ctx.json {
        return print_json(&json!({
            "uri": m.uri,
            "record": record,
            "mo_type": m.mo_type,
            "version": m.version,
            "acl": m.acl.to_string(),
            "tree": m.tree,
        }));
    }
    if out.is_none() {
        print!("{text}");
    }
    Ok(())
}

fn list(ctx: &Ctx) -> Result<()> {
    let (mut session, who) = open_as(ctx, false)?;
    let mos = mo::list_mos(&mut session).with_context(|| format!("listing MOs as {who}"))?;
    if ctx.json {
        let items: Vec<_> = mos
            .iter()
            .map(|(uri, size)| json!({ "uri": uri, "size": size }))
            .collect();
        return print_json(&json!({ "mos": items }));
    }
    if mos.is_empty() {
        println!("no MOs readable by {who}");
    }
    for (uri, size) in &mos {
        println!("{uri}  {size} bytes");
    }
    Ok(())
}

fn delete(ctx: &Ctx, uri: &str, yes: bool) -> Result<()> {
    let authority = ctx.require_authority("deleting MOs")?;
    if !yes {
        confirm(
            ctx,
            &format!("Delete MO {uri} from the card?"),
            &format!("refusing to delete MO {uri}"),
        )?;
    }
    let mut session = ctx.open_card()?;
    ctx.authenticate(&mut session, &authority)?;
    mo::delete_mo(&mut session, uri).with_context(|| format!("deleting MO {uri}"))?;
    if ctx.json {
        return print_json(&json!({ "uri": uri, "result": "deleted" }));
    }
    println!("deleted {uri}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn copy(
    ctx: &Ctx,
    device: &Path,
    uri: &str,
    subtree: Option<&str>,
    acl: Option<&str>,
    erase_device: bool,
    yes: bool,
    init: bool,
) -> Result<()> {
    let acl = acl.map(parse_acl).transpose()?;
    let authority = ctx.require_authority("copying MOs to the card")?;
    let mut tree = open_tree(device, init)?;
    let index = tree.index()?;
    if mo::enclosing(index.mos.keys().map(String::as_str), uri).is_none() {
        return Err(coded(
            Code::NotFound,
            format!(
                "the device tree {} has no MO holding {uri}",
                device.display()
            ),
        ));
    }
    if erase_device && !yes {
        confirm(
            ctx,
            &format!("Erase the device copy of {uri} after copying it to the card?"),
            "refusing to erase the device copy",
        )?;
    }
    let mut session = ctx.open_card()?;
    ctx.authenticate(&mut session, &authority)?;
    let keep = if erase_device {
        DeviceCopy::Erase
    } else {
        DeviceCopy::Keep
    };
    let card_uri =
        provisioning::copy_to_card(&mut session, &mut tree, uri, subtree, acl.as_ref(), keep)
            .map_err(provisioning_error)
            .with_context(|| format!("copying {uri} to the card"))?;
    if ctx.json {
        return print_json(&json!({
            "device_uri": uri,
            "card_uri": card_uri,
            "device_copy": if erase_device { "erased" } else { "kept" },
        }));
    }
    println!(
        "copied {uri}{} to the card as {card_uri}; device copy {}",
        subtree
            .map(|s| format!(" (subtree {s})"))
            .unwrap_or_default(),
        if erase_device { "erased" } else { "kept" }
    );
    Ok(())
}

fn diff(ctx: &Ctx, device: &Path, uri: Option<&str>) -> Result<()> {
    let tree = open_tree(device, false)?;
    let (mut session, who) = open_as(ctx, false)?;
    let result = match uri {
        None => provisioning::diff(&mut session, &tree),
        Some(uri) => provisioning::diff_node(&mut session, &tree, uri)
            .map(|cmp| std::iter::once((uri.to_string(), cmp)).collect()),
    }
    .map_err(provisioning_error)
    .with_context(|| format!("comparing {} with the card as {who}", device.display()))?;
    if ctx.json {
        return print_json(&json!({ "mos": result }));
    }
    if result.is_empty() {
        println!("no MOs on either side");
    }
    for (uri, cmp) in &result {
        match cmp {
            MoComparison::Same => println!("same         {uri}"),
            MoComparison::DeviceOnly => println!("device only  {uri}"),
            MoComparison::CardOnly => println!("card only    {uri}"),
            MoComparison::Differ { nodes } => {
                println!("differ       {uri}");
                for n in nodes {
                    println!("  {n}");
                }
            }
        }
    }
    Ok(())
}

/// Prints a refresh report.
fn print_report(r: &RefreshReport) {
    if r.kind == provisioning::CardKind::Uicc {
        print_uicc_report(r);
        return;
    }
    if r.unchanged {
        println!(
            "card {} generation {}: unchanged since the last refresh",
            r.card_id, r.generation
        );
        return;
    }
    println!("card {} generation {}", r.card_id, r.generation);
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
    if r.added.is_empty() && r.updated.is_empty() && r.removed.is_empty() {
        println!("  no MO changed");
    }
}

/// Prints the refresh report of a plain UICC.
fn print_uicc_report(r: &RefreshReport) {
    let what = if r.smartcard_bootstrap_disabled {
        "smartcard bootstrap disabled by the device policy".to_string()
    } else if r.bootstrap.is_empty() {
        "no bootstrap".to_string()
    } else {
        format!(
            "bootstrap {} ({})",
            r.bootstrap.join(", "),
            r.bootstrap_digest.as_deref().unwrap_or("-")
        )
    };
    let state = if r.unchanged {
        ": unchanged since the last refresh"
    } else {
        ""
    };
    println!("UICC {}: {what}{state}", r.card_id);
    if r.unchanged {
        return;
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

/// `dmsc refresh --device DIR`.
pub fn refresh(ctx: &Ctx, args: &RefreshArgs) -> Result<Code> {
    refresh_tree(ctx, args).map(|()| Code::Ok)
}

fn refresh_tree(ctx: &Ctx, args: &RefreshArgs) -> Result<()> {
    let device = args.device.as_path();
    let mut tree = open_tree(device, args.init)?;
    let mut options =
        provisioning::RefreshOptions::for_device(device, args.factory_bootstrap.as_deref())?;
    options.uicc_pin = crate::common::given_pin(ctx)?;
    // Without authority keys the card is opened as it is: one SELECT tells a
    // dmsc card from a plain UICC. An authority session needs the applet.
    let (mut session, who) = if ctx.authority()?.is_some() {
        open_as(ctx, false)?
    } else {
        let session = ctx.open_card()?;
        let who = format!("anyone on {}", session.transport().reader_name());
        (session, who)
    };
    let report = provisioning::refresh_with(&mut session, &mut tree, &options)
        .with_context(|| format!("refreshing {} from the card as {who}", device.display()))
        .map_err(crate::common::pin_hint)?;
    if ctx.json {
        return print_json(&report);
    }
    print_report(&report);
    Ok(())
}

/// `dmsc watch --device DIR`.
pub fn watch(ctx: &Ctx, args: &WatchArgs) -> Result<Code> {
    follow(ctx, args).map(|()| Code::Ok)
}

#[cfg(feature = "pcsc")]
fn follow(ctx: &Ctx, args: &WatchArgs) -> Result<()> {
    use std::ops::ControlFlow;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use dmsc_host::provisioning::watch::WatchEvent;

    let (device, init, interval, events) =
        (args.device.as_path(), args.init, args.interval, args.events);
    if ctx.sim.is_some() {
        return Err(usage(
            "watch follows PC/SC reader events: attach the simulated card with \
             `dmsc sim serve` and give --reader instead of --sim",
        ));
    }
    if !(interval.is_finite() && interval > 0.0) {
        return Err(usage("--interval must be a positive number of seconds"));
    }
    let mut tree = open_tree(device, init)?;
    let mut options =
        provisioning::RefreshOptions::for_device(device, args.factory_bootstrap.as_deref())?;
    options.uicc_pin = crate::common::given_pin(ctx)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let mut pcsc = dmsc_host::PcscContext::establish()?;
    let pattern = ctx.reader.clone().unwrap_or_default();
    let mut seen = 0u64;
    let json = ctx.json;
    dmsc_host::provisioning::watch::watch_with(
        &mut pcsc,
        &mut tree,
        &pattern,
        Duration::from_secs_f64(interval),
        &options,
        |event| {
            let Some(event) = event else {
                return if stop.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            };
            if json {
                let doc =
                    json!({ "schema_version": crate::output::SCHEMA_VERSION, "event": event });
                println!("{doc}");
            } else {
                match event {
                    WatchEvent::Inserted { reader, refresh } => {
                        println!("inserted in {reader}");
                        print_report(refresh);
                    }
                    WatchEvent::Changed { reader, refresh } => {
                        println!("changed in {reader}");
                        print_report(refresh);
                    }
                    WatchEvent::Removed {
                        reader,
                        removed,
                        factory,
                        ..
                    } => {
                        println!("removed from {reader}");
                        for uri in removed {
                            println!("  removed  {uri}");
                        }
                        for uri in factory {
                            println!("  factory  {uri}");
                        }
                    }
                    WatchEvent::Failed { reader, error } => {
                        println!("refresh failed in {reader}: {error} (device tree unchanged)")
                    }
                }
            }
            let _ = std::io::stdout().flush();
            seen += 1;
            if stop.load(Ordering::SeqCst) || events.is_some_and(|n| seen >= n) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .with_context(|| format!("watching readers for {}", device.display()))?;
    Ok(())
}

/// `dmsc watch` without PC/SC support.
#[cfg(not(feature = "pcsc"))]
fn follow(_ctx: &Ctx, _args: &WatchArgs) -> Result<()> {
    Err(crate::context::no_pcsc())
}
