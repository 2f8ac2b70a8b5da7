//! `dmsc acl get|set`: an object's access control list (OMA DM syntax),
//! enforced by the card: only a holder of Replace on the object may change it.

use anyhow::{Context, Result};
use clap::Subcommand;
use dmsc_host::card_model::objects::{Acl, Principal, Right};
use dmsc_host::governance::review_acl_change;
use dmsc_host::{CardCommands, Governance};
use serde_json::json;

use crate::common::{confirm, open_as, parse_acl, parse_ref, AsUser};
use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Show an object's ACL
    #[command(
        after_help = "OBJECT: an object reference (mo:./URI, policy, …) or an MO URI \
        starting with ./ . Acts as the device; as an authority with SCP03 keys; as the user \
        too with --user."
    )]
    Get {
        /// The object, e.g. ./DMAcc/Gw or policy
        #[arg(value_name = "OBJECT")]
        object: String,
        #[command(flatten)]
        who: AsUser,
    },
    /// Replace an object's ACL (needs Replace on it); asks for confirmation when
    /// the new ACL takes rights away
    #[command(after_help = "Example: dmsc acl set ./DMAcc/Gw 'Get=*&Replace=ServerA+ServerB'")]
    Set {
        /// The object
        #[arg(value_name = "OBJECT")]
        object: String,
        /// The new ACL, e.g. 'Get=*&Replace=ServerA+ServerB' ('' grants nothing)
        #[arg(value_name = "ACL")]
        acl: String,
        /// Do not ask for confirmation when rights are taken away
        #[arg(long, short = 'y')]
        yes: bool,
        /// Allow an ACL that leaves no authority (and not `*`) with Replace: nobody
        /// could ever change it again
        #[arg(long)]
        allow_lockout: bool,
        #[command(flatten)]
        who: AsUser,
    },
}

/// Runs an `acl` subcommand.
pub fn run(ctx: &Ctx, cmd: &AclCommand) -> Result<Code> {
    execute(ctx, cmd).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, cmd: &AclCommand) -> Result<()> {
    match cmd {
        AclCommand::Get { object, who } => {
            let object = parse_ref(object)?;
            let (mut session, who) = open_as(ctx, who.user)?;
            let acl = session
                .acl(&object)
                .with_context(|| format!("reading the ACL of {object} as {who}"))?;
            if ctx.json {
                return print_json(&json!({ "ref": object.to_string(), "acl": acl.to_string() }));
            }
            println!("{object}  {}", display(&acl));
            Ok(())
        }
        AclCommand::Set {
            object,
            acl,
            yes,
            allow_lockout,
            who,
        } => {
            let object = parse_ref(object)?;
            let new = parse_acl(acl)?;
            let (mut session, who) = open_as(ctx, who.user)?;
            let old = session
                .acl(&object)
                .with_context(|| format!("reading the ACL of {object} as {who}"))?;
            let review = review_acl_change(&object, &old, &new);
            if review.lockout && old != new && !allow_lockout {
                return Err(usage(format!(
                    "refusing ACL '{}' on {object}: no authority would hold Replace on it, so \
                     no authority could ever change this ACL again; keep an authority's \
                     Replace (e.g. 'Get=*&Replace={}'), or pass --allow-lockout if that is \
                     really meant",
                    new,
                    who_name(&old)
                )));
            }
            for p in &review.untrusted_policy_writers {
                eprintln!(
                    "warning: granting Replace on the policy to {} : devices refuse a policy \
                     that the user or anyone can replace (docs/policy.md)",
                    p.acl_name()
                );
            }
            if review.needs_confirmation() && !yes {
                let mut what = Vec::new();
                let lost = review.taken_away_names();
                if !lost.is_empty() {
                    what.push(format!("takes away {}", lost.join(", ")));
                }
                if !review.untrusted_policy_writers.is_empty() {
                    let names: Vec<&str> = review
                        .untrusted_policy_writers
                        .iter()
                        .map(|p| p.acl_name())
                        .collect();
                    what.push(format!(
                        "gives {} Replace on the policy (devices will refuse it)",
                        names.join(" and ")
                    ));
                }
                confirm(
                    ctx,
                    &format!("The new ACL of {object} {}. Change it?", what.join(" and ")),
                    &format!(
                        "refusing to change the ACL of {object} ({})",
                        what.join("; ")
                    ),
                )?;
            }
            if old != new {
                session
                    .set_acl(&object, &new)
                    .with_context(|| format!("changing the ACL of {object} as {who}"))?;
            }
            if ctx.json {
                return print_json(&json!({
                    "ref": object.to_string(),
                    "before": old.to_string(),
                    "acl": new.to_string(),
                    "changed": old != new,
                }));
            }
            if old == new {
                println!("{object}  unchanged: {}", display(&new));
            } else {
                println!("{object}  {} (was {})", display(&new), display(&old));
            }
            if acl.trim() != new.to_string() && new != Acl::empty() {
                ctx.note(&format!(
                    "note: the card keeps ACLs in one canonical form (rights in the order \
                     Add, Delete, Exec, Get, Replace; identifiers `*`, `user`, then \
                     authorities by name): '{acl}' is stored as '{new}', the same rights"
                ));
            }
            Ok(())
        }
    }
}

/// An ACL for people: the empty ACL says so.
pub fn display(acl: &Acl) -> String {
    if *acl == Acl::empty() {
        "(empty: no rights for anyone)".into()
    } else {
        acl.to_string()
    }
}

/// An authority holding Replace in `acl` (for the hint), or `ServerA`.
fn who_name(acl: &Acl) -> String {
    acl.holders(Right::Replace)
        .iter()
        .find_map(|p| match p {
            Principal::Authority(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "ServerA".into())
}
