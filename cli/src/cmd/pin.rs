//! `dmsc pin status|verify|change|unblock`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use dmsc_host::{CardCommands, HostError};
use serde::Serialize;

use crate::common::pin_and_puk;
use crate::context::{CardSession, Ctx};
use crate::exit::{coded, Code};
use crate::output::{pin_text, print_json, PinJson};
use crate::secrets::{read_pin, PinKind};

#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Tries left of the user PIN and the PUK
    Status,
    /// Check the user PIN (from --pin-file, DMSC_PIN or a prompt)
    #[command(
        after_help = "The PIN stays verified only in this card session, so this \
        mainly checks a PIN; commands that need the user (e.g. `object get --user`) take \
        the same PIN options."
    )]
    Verify,
    /// Change the user PIN (old: --pin-file/DMSC_PIN/prompt; new: --new-pin-file/DMSC_NEW_PIN/prompt)
    Change {
        /// Read the new PIN from this file instead of DMSC_NEW_PIN or a prompt
        #[arg(long, value_name = "FILE")]
        new_pin_file: Option<PathBuf>,
    },
    /// Unblock the user PIN with the PUK and set a new PIN
    Unblock {
        /// Read the PUK from this file instead of DMSC_PUK or a prompt
        #[arg(long, value_name = "FILE")]
        puk_file: Option<PathBuf>,
        /// Read the new PIN from this file instead of DMSC_NEW_PIN or a prompt
        #[arg(long, value_name = "FILE")]
        new_pin_file: Option<PathBuf>,
    },
}

#[derive(Serialize)]
struct StatusJson {
    pin: PinJson,
    puk: PinJson,
}

#[derive(Serialize)]
struct DoneJson {
    result: &'static str,
}

/// Runs a `pin` subcommand.
pub fn run(ctx: &Ctx, cmd: &PinCommand) -> Result<Code> {
    execute(ctx, cmd).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, cmd: &PinCommand) -> Result<()> {
    // Secrets are gathered before the card is touched, so a typo costs no try.
    let done = match cmd {
        PinCommand::Status => return status(ctx),
        PinCommand::Verify => {
            let pin = read_pin(PinKind::Pin, ctx.pin_file.as_deref())?;
            let mut session = ctx.open_card()?;
            let reader = reader_of(&session);
            session
                .verify_pin(&pin)
                .with_context(|| format!("verifying the user PIN on {reader}"))?;
            "verified"
        }
        PinCommand::Change { new_pin_file } => {
            let old = read_pin(PinKind::Pin, ctx.pin_file.as_deref())?;
            let new = read_pin(PinKind::NewPin, new_pin_file.as_deref())?;
            let mut session = ctx.open_card()?;
            session
                .change_pin(&old, &new)
                .with_context(|| format!("changing the user PIN on {}", reader_of(&session)))?;
            "changed"
        }
        PinCommand::Unblock {
            puk_file,
            new_pin_file,
        } => {
            let puk = read_pin(PinKind::Puk, puk_file.as_deref())?;
            let new = read_pin(PinKind::NewPin, new_pin_file.as_deref())?;
            let mut session = ctx.open_card()?;
            let reader = reader_of(&session);
            session.unblock_pin(&puk, &new).map_err(|e| match e {
                // The card answers 63Cx for the PUK here; say so.
                HostError::Card {
                    status: dmsc_host::Status::RemainingRetries(tries_left),
                    ..
                } => coded(
                    Code::WrongPin,
                    format!(
                        "unblocking the user PIN on {reader}: wrong PUK, {tries_left} tries left"
                    ),
                ),
                e => anyhow::Error::new(e)
                    .context(format!("unblocking the user PIN with the PUK on {reader}")),
            })?;
            "unblocked"
        }
    };
    if ctx.json {
        print_json(&DoneJson { result: done })
    } else {
        println!("user PIN {done}");
        Ok(())
    }
}

fn reader_of(session: &CardSession) -> String {
    session.transport().reader_name().to_string()
}

fn status(ctx: &Ctx) -> Result<()> {
    let mut session = ctx.open_card()?;
    let (pin, puk) = pin_and_puk(&mut session)?;
    if ctx.json {
        return print_json(&StatusJson {
            pin: pin.into(),
            puk: puk.into(),
        });
    }
    println!("user PIN  {}", pin_text(pin));
    println!("PUK       {}", pin_text(puk));
    Ok(())
}
