//! `dmsc apdu HEX…`: raw command APDUs after SELECT.

use anyhow::{Context, Result};
use clap::Args;
use dmsc_host::card_model::apdu::Command;
use dmsc_host::card_model::commands::command_carries_secret;
use dmsc_host::error::sw_meaning;
use dmsc_host::CardCommands;
use serde::Serialize;

use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::{hex_upper, print_json};

#[derive(Serialize)]
struct Exchange {
    command: String,
    data: String,
    sw: String,
    meaning: &'static str,
}

#[derive(Serialize)]
struct ApduJson {
    secured: bool,
    responses: Vec<Exchange>,
}

/// Parses one APDU argument: hex, with spaces and colons ignored.
fn parse_apdu(arg: &str, index: usize) -> Result<Command> {
    let clean: String = arg
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    let bytes = hex::decode(&clean)
        .map_err(|e| usage(format!("APDU {index} ('{arg}') is not valid hex: {e}")))?;
    Command::decode(&bytes).map_err(|e| usage(format!("APDU {index} ('{arg}'): {e}")))
}

/// `dmsc apdu` options.
#[derive(Debug, Args)]
pub struct ApduArgs {
    /// Command APDUs, each as hex (CLA INS P1 P2 [Lc data] [Le])
    #[arg(required = true, value_name = "HEX")]
    pub apdus: Vec<String>,
    /// Open an authority session first (SCP03 keys needed) and send the APDUs in it
    #[arg(long)]
    pub secure: bool,
}

/// `dmsc apdu [--secure] HEX…`.
pub fn run(ctx: &Ctx, args: &ApduArgs) -> Result<Code> {
    let (apdus, secure) = (&args.apdus, args.secure);
    // Every argument is checked before anything is sent.
    let commands = apdus
        .iter()
        .enumerate()
        .map(|(i, a)| parse_apdu(a, i + 1))
        .collect::<Result<Vec<_>>>()?;
    let authority = if secure {
        Some(ctx.require_authority("--secure")?)
    } else {
        None
    };
    let mut session = ctx.open_card()?;
    let reader = session.transport().reader_name().to_string();
    session
        .select()
        .with_context(|| format!("selecting the dmsc applet in {reader}"))?;
    if let Some(authority) = &authority {
        ctx.authenticate(&mut session, authority)?;
    }
    let mut responses = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let resp = session
            .transmit(cmd)
            .with_context(|| format!("sending APDU {}", i + 1))?;
        let exchange = Exchange {
            // PINs and keys are not echoed: the same redaction as --trace.
            command: if command_carries_secret(cmd) {
                dmsc_host::session::trace::format_command(cmd, true, true)
            } else {
                hex_upper(&cmd.to_bytes().unwrap_or_default())
            },
            data: hex_upper(&resp.data),
            sw: format!("{:04X}", resp.sw),
            meaning: sw_meaning(resp.sw),
        };
        if !ctx.json {
            if exchange.data.is_empty() {
                println!("{} ({})", exchange.sw, exchange.meaning);
            } else {
                println!("{} {} ({})", exchange.data, exchange.sw, exchange.meaning);
            }
        }
        responses.push(exchange);
    }
    if ctx.json {
        print_json(&ApduJson {
            secured: secure,
            responses,
        })?;
    }
    Ok(Code::Ok)
}
