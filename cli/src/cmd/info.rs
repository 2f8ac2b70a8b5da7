//! `dmsc info` and `dmsc readers`.

use anyhow::{Context, Result};
use dmsc_host::card_model::commands::{SelectInfo, AID};
use dmsc_host::card_model::scp03::SMode;
use dmsc_host::CardCommands;
use serde::Serialize;

use crate::common::pin_and_puk;
use crate::context::Ctx;
use crate::output::{algorithm_names, hex_upper, pin_text, print_json, PinJson};

#[derive(Serialize)]
struct InfoJson {
    reader: String,
    card_id: String,
    aid: String,
    applet_version: String,
    generation: u64,
    capabilities: Capabilities,
    free_memory: u32,
    total_memory: u32,
    pin: PinJson,
    puk: PinJson,
}

#[derive(Serialize)]
struct Capabilities {
    max_command: u32,
    max_response: u32,
    extended_length: bool,
    algorithms: Vec<&'static str>,
    /// The SCP03 `i` parameter, a number (as in `ota request`).
    scp_i: u8,
    scp03_mode: &'static str,
}

fn mode_name(i: u8) -> &'static str {
    match SMode::from_i(i) {
        SMode::S8 => "S8",
        SMode::S16 => "S16",
    }
}

/// `dmsc info`.
pub fn info(ctx: &Ctx) -> Result<()> {
    let mut session = ctx.open_card()?;
    let reader = session.transport().reader_name().to_string();
    let info: SelectInfo = session
        .select()
        .with_context(|| format!("selecting the dmsc applet in {reader}"))?;
    let (pin, puk) = pin_and_puk(&mut session)?;
    if ctx.json {
        return print_json(&InfoJson {
            reader,
            card_id: hex_upper(&info.card_id),
            aid: hex_upper(&AID),
            applet_version: format!("{}.{}", info.applet_version.0, info.applet_version.1),
            generation: info.generation,
            capabilities: Capabilities {
                max_command: info.max_command,
                max_response: info.max_response,
                extended_length: info.extended_length,
                algorithms: algorithm_names(info.algorithms),
                scp_i: info.scp_i,
                scp03_mode: mode_name(info.scp_i),
            },
            free_memory: info.free_memory,
            total_memory: info.total_memory,
            pin: pin.into(),
            puk: puk.into(),
        });
    }
    println!("reader          {reader}");
    println!("card ID         {}", hex_upper(&info.card_id));
    println!("AID             {}", hex_upper(&AID));
    println!(
        "applet version  {}.{}",
        info.applet_version.0, info.applet_version.1
    );
    println!("generation      {}", info.generation);
    println!(
        "APDU sizes      command {} bytes, response {} bytes, extended length {}",
        info.max_command,
        info.max_response,
        if info.extended_length { "yes" } else { "no" }
    );
    println!(
        "algorithms      {}",
        algorithm_names(info.algorithms).join(", ")
    );
    println!(
        "SCP03           i=0x{:02X} ({})",
        info.scp_i,
        mode_name(info.scp_i)
    );
    println!(
        "memory          {} of {} bytes free",
        info.free_memory, info.total_memory
    );
    println!("user PIN        {}", pin_text(pin));
    println!("PUK             {}", pin_text(puk));
    Ok(())
}

#[derive(Serialize)]
struct ReaderJson {
    name: String,
    card_present: bool,
    atr: Option<String>,
}

#[derive(Serialize)]
struct ReadersJson {
    readers: Vec<ReaderJson>,
}

/// `dmsc readers`.
pub fn readers(ctx: &Ctx) -> Result<()> {
    let readers: Vec<ReaderJson> = match &ctx.sim {
        Some(path) => {
            let t = dmsc_host::transport::sim::FileSimTransport::open(path)
                .with_context(|| format!("cannot open the simulated card {}", path.display()))?;
            use dmsc_host::Transport;
            vec![ReaderJson {
                name: t.reader_name().to_string(),
                card_present: true,
                atr: Some(hex_upper(&t.atr())),
            }]
        }
        None => pcsc_readers()?,
    };
    if ctx.json {
        return print_json(&ReadersJson { readers });
    }
    if readers.is_empty() {
        println!("no readers");
    }
    for r in &readers {
        match &r.atr {
            Some(atr) => println!("{}  card present, ATR {atr}", r.name),
            None if r.card_present => println!("{}  card present", r.name),
            None => println!("{}  no card", r.name),
        }
    }
    Ok(())
}

#[cfg(feature = "pcsc")]
fn pcsc_readers() -> Result<Vec<ReaderJson>> {
    let mut pcsc = dmsc_host::PcscContext::establish()?;
    Ok(pcsc
        .list_readers()?
        .into_iter()
        .map(|r| ReaderJson {
            name: r.name,
            card_present: r.card_present,
            atr: r.atr.map(|a| hex_upper(&a)),
        })
        .collect())
}

#[cfg(not(feature = "pcsc"))]
fn pcsc_readers() -> Result<Vec<ReaderJson>> {
    Err(crate::context::no_pcsc())
}
