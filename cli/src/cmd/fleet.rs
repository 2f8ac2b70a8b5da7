//! `dmsc fleet list|acl-grant`: every reader holding a card at once.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use dmsc_host::card_model::objects::{check_name, Principal, Right};
use dmsc_host::fleet::{
    acl_grant, FleetCard, GrantOutcome, GrantReport, GrantRequest, Phase, Profile, Progress,
};
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::Transport;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::{FleetCommand, FleetSource};
use crate::cmd::acl::parse_object;
use crate::context::Ctx;
use crate::exit::{coded, usage, Code};
use crate::output::print_json;

/// A card of the fleet, over PC/SC or simulated.
pub type Member = FleetCard<Box<dyn Transport>>;

/// Readers whose card could not be opened: (reader, why).
pub type Broken = Vec<(String, String)>;

/// The cards of `--sim-dir DIR` (every `*.state` file, by name), or of every
/// PC/SC reader holding a card. Cards that cannot be opened are returned as
/// (reader, error).
pub fn open_fleet(ctx: &Ctx, source: &FleetSource) -> Result<(Vec<Member>, Broken)> {
    let mut cards = Vec::new();
    let mut broken = Vec::new();
    match &source.sim_dir {
        Some(dir) => {
            for path in state_files(dir)? {
                let name = path.display().to_string();
                match FileSimTransport::open(&path) {
                    Ok(t) => cards.push(FleetCard::new(name, ctx.session(Box::new(t)))),
                    Err(e) => broken.push((name, e.to_string())),
                }
            }
        }
        None => open_readers(ctx, &mut cards, &mut broken)?,
    }
    Ok((cards, broken))
}

fn state_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the card directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "state"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(coded(
            Code::NoCard,
            format!("no simulated cards (*.state) in {}", dir.display()),
        ));
    }
    Ok(files)
}

#[cfg(feature = "pcsc")]
fn open_readers(
    ctx: &Ctx,
    cards: &mut Vec<Member>,
    broken: &mut Vec<(String, String)>,
) -> Result<()> {
    let mut pcsc = dmsc_host::PcscContext::establish()?;
    let readers = pcsc.list_readers()?;
    for r in readers.iter().filter(|r| r.card_present) {
        match pcsc.connect(&r.name) {
            Ok(card) => cards.push(FleetCard::new(r.name.clone(), ctx.session(Box::new(card)))),
            Err(e) => broken.push((r.name.clone(), e.to_string())),
        }
    }
    if cards.is_empty() && broken.is_empty() {
        return Err(coded(Code::NoCard, "no reader holds a card"));
    }
    Ok(())
}

#[cfg(not(feature = "pcsc"))]
fn open_readers(_: &Ctx, _: &mut Vec<Member>, _: &mut Vec<(String, String)>) -> Result<()> {
    Err(crate::context::no_pcsc())
}

/// Runs a `fleet` subcommand; returns the exit code.
pub fn run(ctx: &Ctx, cmd: &FleetCommand) -> Result<Code> {
    match cmd {
        FleetCommand::List { source } => list(ctx, source),
        FleetCommand::AclGrant {
            cards,
            object,
            right,
            to,
            as_authority,
            source,
        } => grant(ctx, cards, object, right, to, as_authority, source),
        FleetCommand::Provision {
            profile,
            cards,
            source,
            record,
        } => match &record.job {
            Some(job) => crate::cmd::records::provision(ctx, profile, cards, source, job, record),
            None => provision(ctx, profile, cards, source),
        },
        FleetCommand::Records { job, db, csv } => {
            crate::cmd::records::list(ctx, db, job.as_deref(), *csv)
        }
    }
}

fn list(ctx: &Ctx, source: &FleetSource) -> Result<Code> {
    let (mut cards, mut broken) = open_fleet(ctx, source)?;
    let mut rows = Vec::new();
    for c in &mut cards {
        match c.status() {
            Ok(s) => rows.push(s),
            Err(e) => broken.push((c.reader.clone(), e.to_string())),
        }
    }
    if ctx.json {
        print_json(&json!({
            "cards": rows.iter().map(|s| json!({
                "reader": s.reader, "card_id": s.card_id, "generation": s.generation,
            })).collect::<Vec<_>>(),
            "errors": broken.iter().map(|(r, e)| json!({ "reader": r, "error": e })).collect::<Vec<_>>(),
        }))?;
    } else {
        for s in &rows {
            println!("{}  {}  generation {}", s.reader, s.card_id, s.generation);
        }
        for (r, e) in &broken {
            eprintln!("error: {r}: {e}");
        }
    }
    Ok(if broken.is_empty() {
        Code::Ok
    } else {
        Code::Error
    })
}

fn parse_right(s: &str) -> Result<Right> {
    Right::parse(s).ok_or_else(|| {
        usage(format!(
            "unknown right '{s}': use Add, Delete, Exec, Get or Replace"
        ))
    })
}

pub(crate) fn parse_ids(s: &str) -> Result<Option<Vec<String>>> {
    if s == "all" {
        return Ok(None);
    }
    let ids: Vec<String> = s
        .split(',')
        .map(|i| i.trim().to_ascii_uppercase())
        .collect();
    for id in &ids {
        if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(usage(format!(
                "--cards: '{id}' is not a card ID (32 hex digits); use all or ID,ID,…"
            )));
        }
    }
    Ok(Some(ids))
}

pub(crate) fn progress_bar(ctx: &Ctx, len: usize) -> ProgressBar {
    if ctx.json || ctx.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:8} [{bar:30}] {pos}/{len} {prefix}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[allow(clippy::too_many_arguments)]
fn grant(
    ctx: &Ctx,
    cards: &str,
    object: &str,
    right: &str,
    to: &str,
    as_authority: &str,
    source: &FleetSource,
) -> Result<Code> {
    // Every input first: nothing is sent to any card before all of it is valid.
    let object = parse_object(object)?;
    let right = parse_right(right)?;
    let to = Principal::parse(to).map_err(|e| {
        usage(format!(
            "--to '{to}': {e}; use an authority name, user or *"
        ))
    })?;
    check_name(as_authority).map_err(|e| usage(format!("--as '{as_authority}': {e}")))?;
    let wanted = parse_ids(cards)?;
    let keys = ctx.card_authority("fleet acl-grant")?;
    let mut members = selected_cards(ctx, source, wanted.as_deref())?;
    let req = GrantRequest {
        object: object.clone(),
        right,
        to: to.clone(),
        as_authority,
        keys: keys.as_ref(),
        level: ctx.security_level(),
    };
    let bar = progress_bar(ctx, members.len());
    bar.set_message("check");
    let mut phase = Phase::Check;
    let report = acl_grant(&mut members, &req, |p| {
        let Progress::Card {
            phase: ph, reader, ..
        } = p;
        if ph != phase {
            phase = ph;
            bar.set_position(0);
            bar.set_message(ph.name());
        }
        bar.set_prefix(reader.to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    print_report(ctx, &report, &object.to_string(), right, &to, as_authority)?;
    Ok(match report.outcome {
        GrantOutcome::Applied => Code::Ok,
        GrantOutcome::Refused => Code::Refused,
        GrantOutcome::RolledBack => Code::NoCard,
        GrantOutcome::Inconsistent => Code::Error,
    })
}

fn print_report(
    ctx: &Ctx,
    r: &GrantReport,
    object: &str,
    right: Right,
    to: &Principal,
    as_authority: &str,
) -> Result<()> {
    let failed_ids: Vec<String> = r
        .failed
        .iter()
        .map(|f| f.card_id.clone().unwrap_or_else(|| f.reader.clone()))
        .collect();
    if ctx.json {
        return print_json(&json!({
            "outcome": r.outcome.name(),
            "object": object,
            "right": right.name(),
            "to": to.acl_name(),
            "as": as_authority,
            "cards": r.cards.iter().map(|c| json!({
                "reader": c.reader,
                "card_id": c.card_id,
                "before": c.before.as_ref().map(|a| a.to_string()),
                "after": c.after.as_ref().map(|a| a.to_string()),
            })).collect::<Vec<_>>(),
            "failed_card_ids": failed_ids,
            "failed": r.failed.iter().map(|f| json!({
                "card_id": f.card_id,
                "reader": f.reader,
                "phase": f.phase.name(),
                "reason": f.reason,
            })).collect::<Vec<_>>(),
            "rolled_back": r.rolled_back,
            "uncertain": r.uncertain.iter().map(|u| json!({
                "card_id": u.card_id,
                "reader": u.reader,
                "last_known_acl": u.last_known.to_string(),
                "maybe_acl": u.maybe.to_string(),
                "restore_to": u.restore_to.to_string(),
                "advice": u.advice(),
            })).collect::<Vec<_>>(),
        }));
    }
    let grant = format!("{right}={} on {object}", to.acl_name());
    match r.outcome {
        GrantOutcome::Applied => {
            println!("granted {grant} on {} cards", r.cards.len());
            for c in &r.cards {
                println!(
                    "  {}  {}",
                    c.card_id.as_deref().unwrap_or("?"),
                    c.after.as_ref().map(|a| a.to_string()).unwrap_or_default()
                );
            }
        }
        GrantOutcome::Refused => {
            println!(
                "refused: no card was changed; {} card(s) failed the check:",
                r.failed.len()
            );
        }
        GrantOutcome::RolledBack => {
            println!(
                "failed during the apply; {} card(s) put back to their previous ACL:",
                r.rolled_back.len()
            );
        }
        GrantOutcome::Inconsistent => {
            println!(
                "INCONSISTENT: failed during the apply and {} card(s) could not be put back; \
                 their ACL is unknown:",
                r.uncertain.len()
            );
            for u in &r.uncertain {
                println!("  unknown  {u}");
            }
        }
    }
    for f in &r.failed {
        println!("  failed  {f}");
    }
    for id in &r.rolled_back {
        println!("  rolled back  {id}");
    }
    if !failed_ids.is_empty() {
        println!("failed card IDs: {}", failed_ids.join(","));
    }
    Ok(())
}

/// Opens the fleet, selects every card and keeps those `wanted` (None: all).
/// Any card that cannot be opened or selected, or a wanted ID not present, is
/// an error before anything is changed.
pub(crate) fn selected_cards(
    ctx: &Ctx,
    source: &FleetSource,
    wanted: Option<&[String]>,
) -> Result<Vec<Member>> {
    let (members, broken) = open_fleet(ctx, source)?;
    if !broken.is_empty() {
        let list: Vec<String> = broken.iter().map(|(r, e)| format!("{r}: {e}")).collect();
        return Err(coded(
            Code::NoCard,
            format!(
                "cannot open every card, nothing was changed: {}",
                list.join("; ")
            ),
        ));
    }
    let mut with_ids = Vec::new();
    for mut m in members {
        let s = m
            .status()
            .with_context(|| format!("selecting the card in {}; nothing was changed", m.reader))?;
        with_ids.push((m, s.card_id));
    }
    let Some(wanted) = wanted else {
        return Ok(with_ids.into_iter().map(|(m, _)| m).collect());
    };
    let present: Vec<&String> = with_ids.iter().map(|(_, id)| id).collect();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !present.contains(w))
        .map(|s| s.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(coded(
            Code::NotFound,
            format!(
                "no card with ID {} (cards present: {}); nothing was changed",
                missing.join(", "),
                present
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(with_ids
        .into_iter()
        .filter(|(_, id)| wanted.contains(id))
        .map(|(m, _)| m)
        .collect())
}

/// Reads `DIR/profile.json` (`dmsc_host::fleet::Profile::load`, docs/fleet.md).
pub fn load_profile(dir: &Path) -> Result<Profile> {
    Profile::load(dir).map_err(|e| usage(e.to_string()))
}

fn provision(ctx: &Ctx, dir: &Path, cards: &str, source: &FleetSource) -> Result<Code> {
    let profile = load_profile(dir)?;
    let wanted = parse_ids(cards)?;
    let keys = ctx.card_authority("fleet provision")?;
    let mut members = selected_cards(ctx, source, wanted.as_deref())?;
    let bar = progress_bar(ctx, members.len());
    bar.set_message("provision");
    let results = dmsc_host::fleet::provision(
        &mut members,
        &profile,
        keys.as_ref(),
        ctx.security_level(),
        &|r| {
            bar.set_prefix(r.reader.clone());
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if ctx.json {
        print_json(&json!({
            "cards": results.iter().map(|r| json!({
                "reader": r.reader,
                "card_id": r.card_id,
                "generation": r.generation,
                "ok": r.result.is_ok(),
                "written": r.result.as_ref().ok(),
                "error": r.result.as_ref().err().map(ToString::to_string),
            })).collect::<Vec<_>>(),
            "failed": failed,
        }))?;
    } else {
        for r in &results {
            let id = r.card_id.as_deref().unwrap_or("card ID unknown");
            match &r.result {
                Ok(n) => println!(
                    "ok      {id} ({})  {n} writes, generation {}",
                    r.reader,
                    r.generation.unwrap_or(0)
                ),
                Err(e) => println!("FAILED  {id} ({})  {e}", r.reader),
            }
        }
        println!(
            "{} of {} cards provisioned",
            results.len() - failed,
            results.len()
        );
    }
    Ok(if failed == 0 { Code::Ok } else { Code::Error })
}
