//! `dmsc authority list|add|rotate|remove` (GlobalPlatform PUT KEY under
//! SCP03) and `dmsc failure-limit`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dmsc_host::card_model::commands::MIN_FAILURE_LIMIT;
use dmsc_host::card_model::scp03::StaticKeys;
use dmsc_host::{AuthorityEntry, Governance};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::common::{confirm, key_version_text, open_as, parse_key_version};
use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::{hex_upper, print_json};
use crate::secrets::KeySource;

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// The key sets the authority may read: key version, name, key length, key check values
    List,
    /// Add an authority's key set (needs Add on the card object)
    #[command(after_help = "The new keys come from --new-key-file (same formats as \
        --scp-key-file) or DMSC_NEW_SCP_KEYS (ENC:MAC:DEK); they travel encrypted with the \
        session authority's DEK and are never printed.")]
    Add {
        /// The new authority's name (its ACL identifier)
        #[arg(value_name = "NAME")]
        name: String,
        /// Key version number of the new key set (01 to FE)
        #[arg(long, value_name = "N", value_parser = parse_key_version)]
        new_key_version: u8,
        #[command(flatten)]
        keys: NewKeys,
    },
    /// Replace a key set's keys (by its administrators or the authority itself)
    Rotate {
        /// The key version to rotate
        #[arg(value_name = "KVN", value_parser = parse_key_version)]
        kvn: u8,
        /// Key version of the new keys [default: the same]
        #[arg(long, value_name = "N", value_parser = parse_key_version)]
        new_key_version: Option<u8>,
        #[command(flatten)]
        keys: NewKeys,
    },
    /// Remove a key set (the card refuses to remove its last one)
    Remove {
        /// The key version to remove
        #[arg(value_name = "KVN", value_parser = parse_key_version)]
        kvn: u8,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Where new authority keys come from.
#[derive(Debug, Args)]
pub struct NewKeys {
    /// File with the new keys: one line ENC:MAC:DEK (hex), or JSON {"enc", "mac", "dek"}
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    /// The new keys ENC:MAC:DEK (prefer --new-key-file)
    #[arg(
        long,
        env = "DMSC_NEW_SCP_KEYS",
        hide_env_values = true,
        value_name = "ENC:MAC:DEK",
        conflicts_with = "new_key_file"
    )]
    pub new_keys: Option<String>,
}

/// `dmsc failure-limit [N]`.
#[derive(Debug, Args)]
pub struct FailureLimitArgs {
    /// The new limit (4 to 255); without it, show the current one
    #[arg(value_name = "N", value_parser = clap::value_parser!(u8).range(i64::from(MIN_FAILURE_LIMIT)..))]
    pub limit: Option<u8>,
}

fn new_keys(k: &NewKeys) -> Result<StaticKeys> {
    let source = match (&k.new_key_file, &k.new_keys) {
        (Some(file), _) => KeySource::File(file.clone()),
        (None, Some(text)) => KeySource::Inline {
            text: Zeroizing::new(text.clone()),
            what: "--new-keys/DMSC_NEW_SCP_KEYS",
        },
        (None, None) => {
            return Err(usage(
                "the new keys are missing: give --new-key-file FILE or DMSC_NEW_SCP_KEYS",
            ))
        }
    };
    source.load()?.static_keys()
}

fn check_kvn(kvn: u8, what: &str) -> Result<()> {
    if kvn == 0 || kvn == 0xFF {
        return Err(usage(format!(
            "{what} must be 0x01 to 0xFE, not 0x{kvn:02X}"
        )));
    }
    Ok(())
}

fn entry_json(a: &AuthorityEntry) -> Value {
    json!({
        "key_version": a.key_version,
        "name": a.name,
        "key_length": a.key_length,
        "key_check_values": a.key_check_values.iter().map(|k| hex_upper(k)).collect::<Vec<_>>(),
        "acl": a.acl.to_string(),
    })
}

fn kcvs(k: &[[u8; 3]; 3]) -> String {
    k.iter().map(|k| hex_upper(k)).collect::<Vec<_>>().join(" ")
}

/// Runs an `authority` subcommand (always as an authority).
pub fn run(ctx: &Ctx, cmd: &AuthorityCommand) -> Result<Code> {
    execute(ctx, cmd).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, cmd: &AuthorityCommand) -> Result<()> {
    // Every input is checked before the card is touched.
    let session_keys = ctx.require_authority("managing authority key sets")?;
    let new = match cmd {
        AuthorityCommand::Add {
            keys,
            new_key_version,
            ..
        } => {
            check_kvn(*new_key_version, "--new-key-version")?;
            Some(new_keys(keys)?)
        }
        AuthorityCommand::Rotate {
            keys,
            kvn: key_version,
            new_key_version,
        } => {
            check_kvn(*key_version, "KVN")?;
            check_kvn(new_key_version.unwrap_or(*key_version), "--new-key-version")?;
            Some(new_keys(keys)?)
        }
        AuthorityCommand::Remove {
            kvn: key_version,
            yes,
        } => {
            check_kvn(*key_version, "KVN")?;
            if !yes {
                confirm(
                    ctx,
                    &format!("Remove the key set 0x{key_version:02X} from the card?"),
                    &format!("refusing to remove key set 0x{key_version:02X}"),
                )?;
            }
            None
        }
        AuthorityCommand::List => None,
    };
    let (mut session, who) = open_as(ctx, false)?;
    match (cmd, new) {
        (AuthorityCommand::List, _) => {
            let list = session
                .authorities()
                .with_context(|| format!("listing the key sets as {who}"))?;
            if ctx.json {
                return print_json(&json!({
                    "authorities": list.iter().map(entry_json).collect::<Vec<_>>(),
                }));
            }
            println!(
                "{:<4} {:<16} {:<6} {:<20} ACL",
                "KVN", "name", "bits", "KCV ENC MAC DEK"
            );
            for a in &list {
                println!(
                    "{:<4} {:<16} {:<6} {:<20} {}",
                    key_version_text(a.key_version),
                    a.name,
                    a.key_length as usize * 8,
                    kcvs(&a.key_check_values),
                    a.acl
                );
            }
        }
        (
            AuthorityCommand::Add {
                name,
                new_key_version,
                ..
            },
            Some(keys),
        ) => {
            let rsp = session
                .add_authority(&session_keys, name, *new_key_version, &keys)
                .with_context(|| format!("adding authority {name} as {who}"))?;
            report(ctx, "added", name, rsp.key_version, &rsp.kcvs)?;
        }
        (
            AuthorityCommand::Rotate {
                kvn: key_version,
                new_key_version,
                ..
            },
            Some(keys),
        ) => {
            let to = new_key_version.unwrap_or(*key_version);
            let rsp = session
                .rotate_authority(&session_keys, *key_version, to, &keys)
                .with_context(|| format!("rotating key set 0x{key_version:02X} as {who}"))?;
            report(
                ctx,
                "rotated",
                &key_version_text(*key_version),
                rsp.key_version,
                &rsp.kcvs,
            )?;
        }
        (
            AuthorityCommand::Remove {
                kvn: key_version, ..
            },
            _,
        ) => {
            session
                .remove_authority(*key_version)
                .with_context(|| format!("removing key set 0x{key_version:02X} as {who}"))?;
            if ctx.json {
                return print_json(&json!({ "key_version": key_version, "result": "removed" }));
            }
            println!("removed key set 0x{key_version:02X}");
        }
        _ => anyhow::bail!("the new keys were not loaded"),
    }
    Ok(())
}

fn report(ctx: &Ctx, what: &str, name: &str, kvn: u8, k: &[[u8; 3]; 3]) -> Result<()> {
    if ctx.json {
        return print_json(&json!({
            "result": what,
            "authority": name,
            "key_version": kvn,
            "key_check_values": k.iter().map(|k| hex_upper(k)).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{what} {name}: key version 0x{kvn:02X}, KCV ENC/MAC/DEK {}",
        kcvs(k)
    );
    Ok(())
}

/// `dmsc failure-limit [N]`.
pub fn failure_limit(ctx: &Ctx, args: &FailureLimitArgs) -> Result<Code> {
    show_or_set_failure_limit(ctx, args.limit).map(|()| Code::Ok)
}

fn show_or_set_failure_limit(ctx: &Ctx, limit: Option<u8>) -> Result<()> {
    let (mut session, who) = open_as(ctx, false)?;
    if let Some(n) = limit {
        session
            .set_failure_limit(n)
            .with_context(|| format!("setting the failure limit as {who}"))?;
    }
    let now = session
        .failure_limit()
        .with_context(|| format!("reading the failure limit as {who}"))?;
    if ctx.json {
        return print_json(&json!({ "failure_limit": now, "changed": limit.is_some() }));
    }
    println!("failure limit {now}");
    Ok(())
}
