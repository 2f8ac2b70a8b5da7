//! `dmsc object list|get|delete`: minimal object access as the device, the
//! user and/or an authority.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use dmsc_host::card_model::commands::{ObjectData, ObjectValue};
use dmsc_host::card_model::objects::{ObjectKind, ObjectRef};
use dmsc_host::CardCommands;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{confirm, open_as, parse_ref, write_atomically, AsUser};
use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::{as_text, entry_json, hex_upper, print_entries, print_json};

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// List the objects of a kind that the caller may read
    #[command(
        after_help = "Acts as the device; as an authority when SCP03 keys are given \
        (--scp-keys, --scp-key-file, DMSC_SCP_KEYS); as the user too with --user."
    )]
    List {
        /// mo, bootstrap-key, approver, floor or authority
        #[arg(value_name = "KIND")]
        kind: String,
        #[command(flatten)]
        who: AsUser,
    },
    /// Read one object: its value and ACL
    #[command(
        after_help = "REF: mo:./URI, policy, bootstrap-key:ID, approver:NAME, \
        approval-rule, floor:CLASS, identity-key, audit-log, authority:KVN, card.\n\
        Acts as the device; as an authority when SCP03 keys are given; as the user too \
        with --user."
    )]
    Get {
        /// The object reference, e.g. mo:./DevInfo, policy, approver:owner
        #[arg(value_name = "REF")]
        object: String,
        /// Write the raw value to FILE (MO content, policy blob, SEC1 public key;
        /// other kinds: the value's TLV encoding)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        who: AsUser,
    },
    /// Delete one object (asks for confirmation on a terminal)
    Delete {
        /// The object reference
        #[arg(value_name = "REF")]
        object: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        who: AsUser,
    },
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

/// Runs an `object` subcommand.
pub fn run(ctx: &Ctx, cmd: &ObjectCommand) -> Result<Code> {
    execute(ctx, cmd).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, cmd: &ObjectCommand) -> Result<()> {
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
            json!({ "entries": entries.iter().map(entry_json).collect::<Vec<_>>() })
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
        ObjectValue::AuditLog(entries) => print_entries(entries),
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

fn confirm_delete(ctx: &Ctx, object: &ObjectRef) -> Result<()> {
    confirm(
        ctx,
        &format!("Delete {object} from the card?"),
        &format!("refusing to delete {object}"),
    )
}

fn delete(ctx: &Ctx, object: &ObjectRef, yes: bool, user: bool) -> Result<()> {
    if !yes {
        confirm_delete(ctx, object)?;
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
