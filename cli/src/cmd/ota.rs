//! `dmsc ota request|build|apply`: over-the-air updates relayed by the device.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use dmsc_host::ota::{self, OtaError, OtaOperation, OtaRequest, OtaScript};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::common::{open_as, parse_acl, read_tree_file, write_atomically};
use crate::context::Ctx;
use crate::exit::{coded, usage, Code};
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub enum OtaCommand {
    /// Device side: the card ID and SCP03 sequence counter the authority needs (uses
    /// up one counter value)
    Request {
        /// Write the request JSON to FILE instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Authority side: build a protected script for the card of a request (SCP03 keys
    /// of that card needed)
    Build {
        /// The request from `dmsc ota request`
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Store the MOs of this TNDS/JSON file (repeatable)
        #[arg(long = "put", value_name = "FILE")]
        put: Vec<PathBuf>,
        /// Delete this MO (repeatable)
        #[arg(long = "delete", value_name = "URI")]
        delete: Vec<String>,
        /// Card ACL for the MOs put
        #[arg(long, value_name = "ACL")]
        acl: Option<String>,
        /// Replace the enterprise policy with this policy file (signed with --sign-key)
        #[arg(long, value_name = "FILE", requires = "sign_key")]
        policy: Option<PathBuf>,
        /// The enterprise administrator's P-256 private key that signs --policy (its
        /// public key must be the one on the card)
        #[arg(long, value_name = "KEY", requires = "policy")]
        sign_key: Option<PathBuf>,
        /// The script file to write
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
    /// Device side: relay a script to the card (status words checked, nothing else)
    Apply {
        /// The script from `dmsc ota build`
        #[arg(value_name = "FILE")]
        script: PathBuf,
    },
}

/// Runs an `ota` subcommand.
pub fn run(ctx: &Ctx, cmd: &OtaCommand) -> Result<Code> {
    execute(ctx, cmd).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, cmd: &OtaCommand) -> Result<()> {
    match cmd {
        OtaCommand::Request { out } => request(ctx, out.as_deref()),
        OtaCommand::Build {
            request,
            put,
            delete,
            acl,
            policy,
            sign_key,
            out,
        } => {
            let policy = match (policy, sign_key) {
                (Some(p), Some(k)) => Some(signed_policy(p, k)?),
                _ => None,
            };
            build(ctx, request, put, delete, acl.as_deref(), policy, out)
        }
        OtaCommand::Apply { script } => apply(ctx, script),
    }
}

/// Reads a JSON document; malformed → usage error with line and column.
fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        usage(format!(
            "{}: not a valid {what}: line {}, column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

fn request(ctx: &Ctx, out: Option<&Path>) -> Result<()> {
    let (mut session, _) = open_as(ctx, false)?;
    let req = ota::read_request(&mut session, ctx.key_version.unwrap_or(0))
        .context("reading the card ID and SCP03 sequence counter")?;
    let text = serde_json::to_string_pretty(&req)? + "\n";
    match out {
        Some(path) => {
            write_atomically(path, text.as_bytes())?;
            ctx.note(&format!(
                "wrote the OTA request for card {} (counter {}) to {}",
                req.card_id,
                req.sequence_counter,
                path.display()
            ));
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// A policy file validated and signed into the envelope the card stores.
fn signed_policy(policy: &Path, key: &Path) -> Result<Vec<u8>> {
    use dmsc_host::policy::signing::{load_signing_key, SignedPolicy};
    let text = std::fs::read(policy)
        .with_context(|| format!("cannot read the policy {}", policy.display()))?;
    let utf8 = std::str::from_utf8(&text)
        .map_err(|_| usage(format!("{}: the policy is not UTF-8", policy.display())))?;
    dmsc_host::policy::Policy::parse(utf8)
        .map_err(|e| usage(format!("{}: {e}", policy.display())))?;
    let key_bytes = zeroize::Zeroizing::new(
        std::fs::read(key).with_context(|| format!("cannot read the key {}", key.display()))?,
    );
    let key = load_signing_key(&key_bytes).map_err(|e| usage(format!("{}: {e}", key.display())))?;
    Ok(SignedPolicy::sign(&text, &key).encode())
}

fn build(
    ctx: &Ctx,
    request: &Path,
    put: &[std::path::PathBuf],
    delete: &[String],
    acl: Option<&str>,
    policy: Option<Vec<u8>>,
    out: &Path,
) -> Result<()> {
    let req: OtaRequest = read_json(request, "OTA request")?;
    if put.is_empty() && delete.is_empty() && policy.is_none() {
        return Err(usage(
            "nothing to do: give --put FILE, --delete URI and/or --policy FILE --sign-key KEY",
        ));
    }
    let acl = acl.map(parse_acl).transpose()?;
    let mut ops = Vec::new();
    for file in put {
        ops.push(OtaOperation::PutMo(read_tree_file(file)?, acl.clone()));
    }
    for uri in delete {
        ops.push(OtaOperation::DeleteMo(uri.clone()));
    }
    if let Some(envelope) = policy {
        ops.push(OtaOperation::PutPolicy(envelope));
    }
    let authority = ctx.card_authority("building an OTA script")?;
    let script =
        dmsc_host::ota::build_ota_script(authority.as_ref(), &req, ctx.security_level(), &ops)
            .map_err(|e| match e {
                OtaError::Invalid { .. } => usage(e.to_string()),
                other => anyhow::Error::new(other),
            })?;
    let text = serde_json::to_string_pretty(&script)? + "\n";
    write_atomically(out, text.as_bytes())?;
    if ctx.json {
        return print_json(&json!({
            "card_id": script.card_id,
            "sequence_counter": script.sequence_counter,
            "operations": script.operations,
            "apdus": script.apdus.len(),
            "script": out.display().to_string(),
        }));
    }
    println!(
        "wrote {} ({} APDUs) for card {} at sequence counter {}: {}",
        out.display(),
        script.apdus.len(),
        script.card_id,
        script.sequence_counter,
        script.operations.join(", ")
    );
    Ok(())
}

fn apply(ctx: &Ctx, path: &Path) -> Result<()> {
    let script: OtaScript = read_json(path, "OTA script")?;
    let (mut session, _) = open_as(ctx, false)?;
    let outcome = ota::apply_script(&mut session, &script).map_err(|e| match e {
        OtaError::OtherCard { .. } | OtaError::Refused { .. } => {
            coded(Code::Refused, format!("{}: {e}", path.display()))
        }
        OtaError::Invalid { .. } => usage(format!("{}: {e}", path.display())),
        other => anyhow::Error::new(other).context(format!("relaying {}", path.display())),
    })?;
    if ctx.json {
        return print_json(&outcome);
    }
    println!(
        "card {} accepted the script ({} APDUs): {}",
        outcome.card_id,
        outcome.apdus,
        outcome.operations.join(", ")
    );
    Ok(())
}
