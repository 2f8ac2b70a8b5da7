//! A small PC/SC probe for trying the transport and session by hand.
//!
//! ```text
//! cargo run -p dmsc-host --example pcsc_probe -- list
//! cargo run -p dmsc-host --example pcsc_probe -- watch [SECONDS]
//! cargo run -p dmsc-host --example pcsc_probe -- select READER-PATTERN
//! cargo run -p dmsc-host --example pcsc_probe -- loop READER-PATTERN SECONDS
//! ```
//!
//! `loop` reads a challenge every 100 ms and prints every error: run
//! `.ci/pcsc-env restart DIR` meanwhile to watch the session recover.
//! Set `PCSCLITE_CSOCK_NAME` for a private pcscd (see `docs/pcsc-testing.md`).

use std::error::Error;
use std::time::{Duration, Instant};

use dmsc_host::{find_reader, CardCommands, PcscContext, Session};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let mut ctx = PcscContext::establish()?;
    match arg(0) {
        Some("list") => {
            for r in ctx.list_readers()? {
                let atr = r.atr.as_deref().map(hex::encode_upper).unwrap_or_default();
                println!("{}\tcard={}\t{atr}", r.name, r.card_present);
            }
        }
        Some("watch") => {
            let secs: u64 = arg(1).unwrap_or("10").parse()?;
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                for e in ctx.wait_for_change(Some(end.saturating_duration_since(Instant::now())))? {
                    println!("{e}");
                }
            }
        }
        Some(cmd @ ("select" | "loop")) => {
            let readers = ctx.list_readers()?;
            let reader = find_reader(&readers, arg(1).unwrap_or(""))?;
            let card = ctx.connect(&reader.name)?;
            println!("connected to {} ({:?})", reader.name, card);
            let mut session = Session::new(card);
            if cmd == "select" {
                session.set_trace(Box::new(|e| println!("{e}")));
            }
            let info = session.select()?;
            println!("{info:?}\n{:?}", session.limits());
            if cmd == "loop" {
                let secs: u64 = arg(2).unwrap_or("10").parse()?;
                let end = Instant::now() + Duration::from_secs(secs);
                let (mut ok, mut failed) = (0u32, 0u32);
                while Instant::now() < end {
                    match session.get_challenge(8) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            failed += 1;
                            println!("{:?}: {e}", Instant::now());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                println!("{ok} challenges read, {failed} failed");
            }
        }
        _ => eprintln!("usage: pcsc_probe list | watch [SECS] | select READER | loop READER SECS"),
    }
    Ok(())
}
