//! `dmsc acl get|set`: an object's access control list (OMA DM syntax),
//! enforced by the card: only a holder of Replace on the object may change it.

use anyhow::{Context, Result};
use dmsc_host::card_model::objects::{Acl, ObjectRef, Right};
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

/// The holders `new` no longer has compared with `old`, as `Right=id` strings.
pub fn taken_away(old: &Acl, new: &Acl) -> Vec<String> {
    let mut out = Vec::new();
    for right in Right::ALL {
        for p in old.holders(right) {
            if !new.names(right, p) {
                out.push(format!("{right}={}", p.acl_name()));
            }
        }
    }
    out
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
            who,
        } => {
            let object = parse_object(object)?;
            let new = parse_acl(acl)?;
            let (mut session, who) = open_as(ctx, who.user)?;
            let old = session
                .acl(&object)
                .with_context(|| format!("reading the ACL of {object} as {who}"))?;
            let lost = taken_away(&old, &new);
            if !lost.is_empty() && !yes {
                confirm(
                    ctx,
                    &format!(
                        "The new ACL of {object} takes away {}. Change it?",
                        lost.join(", ")
                    ),
                    &format!("refusing to take away {} on {object}", lost.join(", ")),
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
