//! `dmsc fleet list|acl-grant`: every reader holding a card at once.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use dmsc_host::card_model::objects::{check_name, Principal, Right};
use dmsc_host::fleet::{acl_grant, GrantOutcome, GrantReport, GrantRequest, Phase, Progress};
use serde_json::json;

use crate::common::{
    load_profile, open_fleet, parse_ids, parse_ref, progress_bar, selected_cards, FleetSource,
};
use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::print_json;

// `fleet provision --job` and `fleet records` (the provisioning records)
// are the fleet's: a submodule (cmd/fleet/records.rs) that imports no other
// command module.
pub mod records;

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Every reader with a card: reader, card ID, generation
    List {
        #[command(flatten)]
        source: FleetSource,
    },
    /// Grant a right on an object's ACL on every card, or on none
    #[command(
        after_help = "First every card's ACL is read and checked (the --as authority \
        must hold Replace on it); if any card fails, nothing changes on any card and the \
        failed card IDs are reported (exit 4). Otherwise the grant is applied to every card; \
        a card lost during the apply is reported and the cards already changed are put back \
        to their previous ACL (exit 3). The --as authority's keys: --scp-key-file, \
        DMSC_SCP_KEYS or --scp-keys, with --key-version."
    )]
    AclGrant {
        /// `all`, or card IDs (hex) separated by commas
        #[arg(long, value_name = "all|ID,…")]
        cards: String,
        /// The object, e.g. ./DMAcc/Gw or policy
        #[arg(long, value_name = "URI")]
        object: String,
        /// The right: Add, Delete, Exec, Get or Replace
        #[arg(long, value_name = "RIGHT")]
        right: String,
        /// The principal granted the right: an authority name, user or *
        #[arg(long, value_name = "PRINCIPAL")]
        to: String,
        /// The requesting authority (it must hold Replace on every card's ACL)
        #[arg(long = "as", value_name = "AUTHORITY")]
        as_authority: String,
        #[command(flatten)]
        source: FleetSource,
    },
    /// Provision every card in parallel (one worker per reader) from a profile
    #[command(
        after_help = "DIR holds profile.json: {\"objects\": [{\"ref\": \"mo:./DMAcc/Gw\", \
        \"mo_type\": \"urn:oma:mo:oma-dm-dmacc:1.0\", \"file\": \"dmacc.xml\", \"acl\": \
        \"Get=*&Replace=admin\"}, {\"ref\": \"policy\", \"file\": \"policy.bin\"}], \
        \"failure_limit\": 6}; files are relative to DIR. The authority's keys: \
        --scp-key-file, DMSC_SCP_KEYS or --scp-keys. Exit 1 when any card failed."
    )]
    Provision {
        /// The profile directory (with profile.json)
        #[arg(long, value_name = "DIR")]
        profile: PathBuf,
        /// `all`, or card IDs (hex) separated by commas
        #[arg(long, value_name = "all|ID,…")]
        cards: String,
        #[command(flatten)]
        source: FleetSource,
        #[command(flatten)]
        record: records::RecordOptions,
    },
    /// The provisioning records of a job (or of every job): --json, --csv or a table
    #[command(
        after_help = "CSV columns: card_id,job,station,status,key_version,kcv_enc,\
        kcv_mac,kcv_dek,started,finished,attempt,profile_digest,error (docs/records.md)."
    )]
    Records(records::RecordsArgs),
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
            Some(job) => records::provision(ctx, profile, cards, source, job, record),
            None => provision(ctx, profile, cards, source),
        },
        FleetCommand::Records(args) => records::run(ctx, args),
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
    let object = parse_ref(object)?;
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
                "reason": f.reason.to_string(),
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
