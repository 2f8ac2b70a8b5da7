//! `dmsc object list|get|delete`: minimal object access as the device, the
//! user and/or an authority.

use std::path::Path;

use anyhow::{Context, Result};
use dmsc_host::card_model::commands::{ObjectData, ObjectValue};
use dmsc_host::card_model::objects::{ObjectKind, ObjectRef};
use dmsc_host::CardCommands;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::ObjectCommand;
use crate::cmd::audit;
use crate::context::{CardSession, Ctx};
use crate::exit::usage;
use crate::output::{as_text, hex_upper, print_json};

const REF_FORMS: &str = "mo:./URI, policy, bootstrap-key:ID, approver:NAME, approval-rule, \
                         floor:CLASS, identity-key, audit-log, authority:KVN or card";

/// Parses an object reference such as `mo:./DevInfo` or `approver:owner`.
/// An MO URI starting with `./` is the MO object (`mo:./URI`): every command
/// that takes an object accepts both forms.
pub fn parse_ref(s: &str) -> Result<ObjectRef> {
    let full;
    let s = if s.starts_with("./") {
        full = format!("mo:{s}");
        full.as_str()
    } else {
        s
    };
    s.parse::<ObjectRef>().map_err(|e| {
        usage(format!(
            "invalid object reference '{s}' ({e}); use {REF_FORMS}"
        ))
    })
}

/// Parses a kind that has named objects (the kinds `object list` accepts).
pub fn parse_kind(s: &str) -> Result<ObjectKind> {
    let named: Vec<&str> = ObjectKind::ALL
        .iter()
        .filter(|k| k.is_named())
        .map(|k| k.word())
        .collect();
    ObjectKind::ALL
        .into_iter()
        .find(|k| k.word() == s && k.is_named())
        .ok_or_else(|| {
            usage(format!(
                "cannot list '{s}': use one of {} (single objects: dmsc object get REF)",
                named.join(", ")
            ))
        })
}

/// Opens the card as the device, then as an authority (when keys are given)
/// and as the user (with `--user`). Returns the session and who it acts as
/// where (for messages).
pub fn open_as(ctx: &Ctx, user: bool) -> Result<(CardSession, String)> {
    // Secrets first: a missing or malformed one must not cost a try on the card.
    let authority = ctx.authority()?;
    let pin = if user { Some(ctx.user_pin()?) } else { None };
    let mut session = ctx.open_card()?;
    let reader = session.transport().reader_name().to_string();
    session
        .select()
        .with_context(|| format!("selecting the dmsc applet in {reader}"))?;
    // The secure channel first: opening it selects the applet again, which
    // would forget a verified PIN.
    let channel = match &authority {
        Some(a) => Some(ctx.authenticate(&mut session, a)?),
        None => None,
    };
    if let Some(pin) = &pin {
        ctx.verify_user(&mut session, pin)?;
    }
    let who = format!("{} on {reader}", Ctx::principal(channel.as_ref(), user));
    Ok((session, who))
}

/// Runs an `object` subcommand.
pub fn run(ctx: &Ctx, cmd: &ObjectCommand) -> Result<()> {
    match cmd {
        ObjectCommand::List { kind, who } => list(ctx, parse_kind(kind)?, who.user),
        ObjectCommand::Get { object, out, who } => {
            get(ctx, &parse_ref(object)?, out.as_deref(), who.user)
        }
        ObjectCommand::Delete { object, yes, who } => {
            delete(ctx, &parse_ref(object)?, *yes, who.user)
        }
    }
}

#[derive(Serialize)]
struct ListEntryJson {
    #[serde(rename = "ref")]
    object: String,
    size: u32,
}

#[derive(Serialize)]
struct ListJson {
    kind: &'static str,
    objects: Vec<ListEntryJson>,
}

fn list(ctx: &Ctx, kind: ObjectKind, user: bool) -> Result<()> {
    let (mut session, who) = open_as(ctx, user)?;
    let entries = session
        .list(kind)
        .with_context(|| format!("listing {} objects as {who}", kind.word()))?;
    if ctx.json {
        return print_json(&ListJson {
            kind: kind.word(),
            objects: entries
                .iter()
                .map(|e| ListEntryJson {
                    object: e.object.to_string(),
                    size: e.size,
                })
                .collect(),
        });
    }
    if entries.is_empty() {
        println!("no {} objects readable by {who}", kind.word());
    }
    for e in &entries {
        println!("{}  {} bytes", e.object, e.size);
    }
    Ok(())
}

/// The object's value in JSON (secrets are never part of what the card returns).
pub fn value_json(value: &ObjectValue) -> Value {
    let bytes = |b: &[u8]| {
        let mut v = json!({ "hex": hex_upper(b) });
        if let Some(t) = as_text(b) {
            v["text"] = json!(t);
        }
        v
    };
    match value {
        ObjectValue::Card(c) => json!({
            "failure_limit": c.failure_limit,
            "used_memory": c.used_memory,
            "total_memory": c.total_memory,
        }),
        ObjectValue::Mo(m) => {
            let mut content = bytes(&m.content);
            if let Some(t) = mo_text(&m.content) {
                content["text"] = json!(t);
            }
            json!({
                "mo_type": m.mo_type,
                "version": m.version,
                "content": content,
            })
        }
        ObjectValue::Policy(p) => json!({ "content": bytes(p) }),
        ObjectValue::BootstrapKey(k) => json!({ "algorithm": k.algorithm.name() }),
        ObjectValue::Approver(p) | ObjectValue::IdentityKey(p) => {
            json!({ "public_key": hex_upper(p) })
        }
        ObjectValue::ApprovalRule(r) => json!({
            "required": r.required,
            "user_consent_needs_pin": r.user_consent_needs_pin,
        }),
        ObjectValue::Floor(v) => json!({ "version": v.to_string() }),
        ObjectValue::AuditLog(entries) => {
            json!({ "entries": entries.iter().map(audit::entry_json).collect::<Vec<_>>() })
        }
        ObjectValue::Authority(a) => json!({
            "name": a.name,
            "key_length": a.key_length,
            "key_check_values": a.key_check_values.iter().map(|k| hex_upper(k)).collect::<Vec<_>>(),
        }),
    }
}

/// An MO's content (the compact binary form of its TNDS) as TNDS XML text.
fn mo_text(content: &[u8]) -> Option<String> {
    if content.first() != Some(&dmsc_host::mo::binary::FORMAT_VERSION) {
        return None;
    }
    dmsc_host::mo::MgmtTree::from_binary(content)
        .ok()
        .map(|t| t.to_tnds())
}

fn print_bytes(label: &str, b: &[u8]) {
    match as_text(b) {
        Some(t) => {
            println!("{label} ({} bytes, text):", b.len());
            for line in t.lines() {
                println!("  {line}");
            }
        }
        None => println!("{label} ({} bytes): {}", b.len(), hex_upper(b)),
    }
}

/// Prints an object's value and ACL for people.
pub fn print_object(object: &ObjectRef, data: &ObjectData) {
    println!("object   {object}");
    println!("ACL      {}", data.acl);
    match &data.value {
        ObjectValue::Card(c) => {
            println!("failure limit  {}", c.failure_limit);
            println!(
                "memory         {} of {} bytes used",
                c.used_memory, c.total_memory
            );
        }
        ObjectValue::Mo(m) => {
            println!("MO type  {}", m.mo_type);
            println!("version  {}", m.version);
            match mo_text(&m.content) {
                Some(t) => {
                    println!("content ({} bytes, shown as TNDS XML):", m.content.len());
                    for line in t.lines() {
                        println!("  {line}");
                    }
                }
                None => print_bytes("content", &m.content),
            }
        }
        ObjectValue::Policy(p) => print_bytes("policy", p),
        ObjectValue::BootstrapKey(k) => {
            println!(
                "algorithm  {} (the key itself never leaves the card)",
                k.algorithm.name()
            )
        }
        ObjectValue::Approver(p) | ObjectValue::IdentityKey(p) => {
            println!("public key (P-256, SEC1)  {}", hex_upper(p))
        }
        ObjectValue::ApprovalRule(r) => {
            println!("required approvers  {}", r.required.join(", "));
            println!("user consent needs PIN  {}", r.user_consent_needs_pin);
        }
        ObjectValue::Floor(v) => println!("anti-rollback floor  {v}"),
        ObjectValue::AuditLog(entries) => audit::print_entries(entries),
        ObjectValue::Authority(a) => {
            println!("authority   {}", a.name);
            println!("key length  {} bytes", a.key_length);
            let kcv: Vec<String> = a.key_check_values.iter().map(|k| hex_upper(k)).collect();
            println!("KCV ENC/MAC/DEK  {}", kcv.join(" "));
        }
    }
}

/// The raw bytes `--out` writes.
fn raw_value(value: &ObjectValue) -> Vec<u8> {
    match value {
        ObjectValue::Mo(m) => m.content.clone(),
        ObjectValue::Policy(p) => p.clone(),
        ObjectValue::Approver(p) | ObjectValue::IdentityKey(p) => p.clone(),
        other => other.encode(),
    }
}

/// Writes a file atomically (see [`dmsc_host::files::write_atomically`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(dmsc_host::files::write_atomically(path, bytes)?)
}

fn get(ctx: &Ctx, object: &ObjectRef, out: Option<&Path>, user: bool) -> Result<()> {
    let (mut session, who) = open_as(ctx, user)?;
    let data = session
        .read_object(object)
        .with_context(|| format!("reading {object} as {who}"))?;
    if let Some(path) = out {
        write_atomically(path, &raw_value(&data.value))?;
        ctx.note(&format!(
            "wrote the value of {object} to {}",
            path.display()
        ));
    }
    if ctx.json {
        return print_json(&json!({
            "ref": object.to_string(),
            "kind": object.kind().word(),
            "acl": data.acl.to_string(),
            "value": value_json(&data.value),
        }));
    }
    if out.is_none() {
        print_object(object, &data);
    }
    Ok(())
}

fn confirm(ctx: &Ctx, object: &ObjectRef) -> Result<()> {
    crate::context::confirm(
        ctx,
        &format!("Delete {object} from the card?"),
        &format!("refusing to delete {object}"),
    )
}

fn delete(ctx: &Ctx, object: &ObjectRef, yes: bool, user: bool) -> Result<()> {
    if !yes {
        confirm(ctx, object)?;
    }
    let (mut session, who) = open_as(ctx, user)?;
    session
        .delete(object)
        .with_context(|| format!("deleting {object} as {who}"))?;
    if ctx.json {
        return print_json(&json!({ "ref": object.to_string(), "result": "deleted" }));
    }
    println!("deleted {object}");
    Ok(())
}
