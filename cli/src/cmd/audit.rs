//! `dmsc audit`: the card's audit log, read as an authority.

use anyhow::{Context, Result};
use clap::Args;
use dmsc_host::card_model::commands::{AuditEntry, AuditEvent};
use dmsc_host::CardCommands;
use serde_json::json;

use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::{entry_json, print_entries, print_json};

fn parse_event(s: &str) -> Result<AuditEvent> {
    AuditEvent::parse(s).ok_or_else(|| {
        let names: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.name()).collect();
        usage(format!(
            "unknown audit event '{s}'; use one of {}",
            names.join(", ")
        ))
    })
}

/// `dmsc audit` options.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries with this sequence number or later
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u32>,
    /// Only this event (e.g. alarm, access-denied, auth-failure, object-created)
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// Only this principal (`*`, `user` or an authority name)
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: Option<String>,
}

/// `dmsc audit [--from SEQ] [--event E] [--principal P]`.
pub fn run(ctx: &Ctx, args: &AuditArgs) -> Result<Code> {
    let (from, event, principal) = (args.from, args.event.as_deref(), args.principal.as_deref());
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
        print_json(&json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        }))?;
        return Ok(Code::Ok);
    }
    print_entries(&entries);
    Ok(Code::Ok)
}
