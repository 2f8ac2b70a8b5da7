//! `dmsc acl get|set`: an object's access control list (OMA DM syntax),
//! enforced by the card: only a holder of Replace on the object may change it.

use anyhow::{Context, Result};
use dmsc_host::card_model::objects::{Acl, ObjectRef, Principal, Right};
use dmsc_host::governance::review_acl_change;
use dmsc_host::{CardCommands, Governance};
use serde_json::json;

use crate::cli::AclCommand;
use crate::cmd::object::{open_as, parse_ref};
use crate::context::{confirm, Ctx};
use crate::exit::usage;
use crate::output::print_json;

/// An object reference, or an MO URI starting with `./`.
pub fn parse_object(s: &str) -> Result<ObjectRef> {
    if s.starts_with("./") {
        return parse_ref(&format!("mo:{s}"));
    }
    parse_ref(s)
}

/// Parses an ACL in the OMA DM syntax, naming the offset of an error.
pub fn parse_acl(s: &str) -> Result<Acl> {
    Acl::parse(s).map_err(|e| {
        usage(format!(
            "invalid ACL '{s}': {e}; expected e.g. 'Get=*&Replace=ServerA+ServerB'"
        ))
    })
}

/// Runs an `acl` subcommand.
pub fn run(ctx: &Ctx, cmd: &AclCommand) -> Result<()> {
    match cmd {
        AclCommand::Get { object, who } => {
            let object = parse_object(object)?;
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
            let object = parse_object(object)?;
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
