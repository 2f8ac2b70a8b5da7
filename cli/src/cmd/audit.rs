//! `dmsc audit`: the card's audit log, read as an authority.

use anyhow::{Context, Result};
use dmsc_host::card_model::commands::{AuditEntry, AuditEvent};
use dmsc_host::CardCommands;
use serde_json::{json, Value};

use crate::context::Ctx;
use crate::exit::usage;
use crate::output::print_json;

/// One audit entry in JSON.
pub fn entry_json(e: &AuditEntry) -> Value {
    let mut v = json!({
        "sequence": e.sequence,
        "event": e.event.name(),
        "principal": e.principal,
        "session": e.session,
        "detail": e.detail,
    });
    if let Some(r) = e.repeats {
        v["count"] = json!(r.count);
        v["first_sequence"] = json!(r.first_sequence);
    }
    v
}

/// One audit entry for people.
pub fn entry_text(e: &AuditEntry) -> String {
    let repeats = match e.repeats {
        Some(r) if r.count > 1 => format!(" ({} times since {})", r.count, r.first_sequence),
        _ => String::new(),
    };
    format!(
        "{:>6}  {:<18} {:<12} {:06X}   {}{repeats}",
        e.sequence,
        e.event.name(),
        e.principal,
        e.session,
        e.detail
    )
}

/// Prints entries as a table.
pub fn print_entries(entries: &[AuditEntry]) {
    if entries.is_empty() {
        println!("no audit entries");
        return;
    }
    println!(
        "{:>6}  {:<18} {:<12} {:<8} detail",
        "seq", "event", "principal", "session"
    );
    for e in entries {
        println!("{}", entry_text(e));
    }
}

fn parse_event(s: &str) -> Result<AuditEvent> {
    AuditEvent::parse(s).ok_or_else(|| {
        let names: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.name()).collect();
        usage(format!(
            "unknown audit event '{s}'; use one of {}",
            names.join(", ")
        ))
    })
}

/// `dmsc audit [--from SEQ] [--event E] [--principal P]`.
pub fn run(
    ctx: &Ctx,
    from: Option<u32>,
    event: Option<&str>,
    principal: Option<&str>,
) -> Result<()> {
    let event = event.map(parse_event).transpose()?;
    let authority = ctx.require_authority("reading the audit log")?;
    let mut session = ctx.open_card()?;
    let reader = session.transport().reader_name().to_string();
    session
        .select()
        .with_context(|| format!("selecting the dmsc applet in {reader}"))?;
    ctx.authenticate(&mut session, &authority)?;
    let filter = dmsc_host::AuditFilter {
        from,
        event,
        principal: principal.map(str::to_string),
    };
    let entries: Vec<AuditEntry> = dmsc_host::Governance::audit(&mut session, &filter)
        .with_context(|| format!("reading the audit log on {reader}"))?;
    if ctx.json {
        return print_json(&json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        }));
    }
    print_entries(&entries);
    Ok(())
}
