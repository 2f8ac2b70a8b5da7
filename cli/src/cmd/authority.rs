//! `dmsc authority list|add|rotate|remove` (GlobalPlatform PUT KEY under
//! SCP03) and `dmsc failure-limit`.

use anyhow::{Context, Result};
use dmsc_host::card_model::scp03::StaticKeys;
use dmsc_host::{AuthorityEntry, Governance};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::cli::{key_version_text, AuthorityCommand, NewKeys};
use crate::cmd::object::open_as;
use crate::context::confirm;
use crate::context::Ctx;
use crate::exit::usage;
use crate::output::{hex_upper, print_json};
use crate::secrets::KeySource;

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
pub fn run(ctx: &Ctx, cmd: &AuthorityCommand) -> Result<()> {
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
pub fn failure_limit(ctx: &Ctx, limit: Option<u8>) -> Result<()> {
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
