//! Helpers shared by the command modules: the command-line value parsers,
//! argument groups used by several commands, opening the card as someone,
//! the one confirmation prompt, object references and ACLs, files, and the
//! fleet's cards. A leaf: it imports no command module.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use dmsc_host::card_model::commands::{PIN_REF_PUK, PIN_REF_USER};
use dmsc_host::card_model::objects::{Acl, ObjectRef};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::fleet::select::{select_cards, SelectError};
use dmsc_host::fleet::{FleetCard, Profile};
use dmsc_host::mo::MgmtTree;
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::{CardCommands, PinStatus, Transport};
use dmsc_sim_card::{AuthorityKeys, InitParams};
use indicatif::{ProgressBar, ProgressStyle};
use zeroize::Zeroizing;

use crate::context::{CardSession, Ctx};
use crate::exit::{coded, usage, Code};
use crate::secrets::KeyTriple;

// ---- value parsers -------------------------------------------------------------

/// The SCP03 security levels `--security-level` offers (P1 of EXTERNAL
/// AUTHENTICATE): name, level byte and help.
pub const SECURITY_LEVELS: [(&str, u8, &str); 5] = [
    ("cmac", 0x01, "C-MAC (01)"),
    ("cmac-cdec", 0x03, "C-MAC and C-DECRYPTION (03)"),
    ("cmac-rmac", 0x11, "C-MAC and R-MAC (11)"),
    ("cmac-cdec-rmac", 0x13, "C-MAC, C-DECRYPTION and R-MAC (13)"),
    (
        "all",
        0x33,
        "C-MAC, C-DECRYPTION, R-MAC and R-ENCRYPTION (33)",
    ),
];

/// `--security-level`: a level by name, as the card model's [`SecurityLevel`].
pub fn security_level_parser() -> impl TypedValueParser<Value = SecurityLevel> {
    PossibleValuesParser::new(
        SECURITY_LEVELS
            .iter()
            .map(|(name, _, help)| PossibleValue::new(name).help(help)),
    )
    .try_map(|name: String| {
        let bits = SECURITY_LEVELS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, bits, _)| *bits)
            .ok_or_else(|| format!("unknown security level {name}"))?;
        SecurityLevel::new(bits).map_err(|e| e.to_string())
    })
}

/// A card latency: a whole number with a unit, `15ms`, `800us` or `1s` (at most 10 s).
pub fn parse_latency(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    const HINT: &str = "expected a whole number with a unit, e.g. 15ms, 800us or 1s";
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| HINT.to_string())?;
    let latency = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return Err(HINT.to_string()),
    };
    if latency > Duration::from_secs(10) {
        return Err("at most 10s".to_string());
    }
    Ok(latency)
}

/// `0x30`, `0X30` (hex) or `48` (decimal).
/// A key version number: hex with `0x` (`0x30`) or decimal (`48`). A bare
/// `30` to `39` is refused: dmsc prints key versions in hex (`0x30`), and
/// SCP03 key sets are usually numbered 0x30 to 0x3F, so `30` is most likely
/// the hex version with its `0x` left out, while as a decimal it would mean
/// 0x1E. Those versions are written in hex (`0x1E` … `0x27`).
pub fn parse_key_version(s: &str) -> Result<u8, String> {
    let s = s.trim();
    if s.len() == 2 && s.starts_with('3') && s.bytes().all(|b| b.is_ascii_digit()) {
        let hex = u8::from_str_radix(s, 16).unwrap_or(0);
        let dec: u8 = s.parse().unwrap_or(0);
        return Err(format!(
            "'{s}' is ambiguous: key versions are shown in hex (0x{hex:02X}), and a bare {s} \
             would be decimal (0x{dec:02X}). Write 0x{hex:02X} (or {hex} in decimal), or \
             0x{dec:02X} if you mean decimal {dec}"
        ));
    }
    parse_u8(s).map_err(|_| {
        "expected a key version, hex with 0x (0x30) or decimal (48), 0 to 255".to_string()
    })
}

/// Formats a key version the one way dmsc prints it: `0x30`.
pub fn key_version_text(kvn: u8) -> String {
    format!("0x{kvn:02X}")
}

pub fn parse_u8(s: &str) -> Result<u8, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| "expected 0 to 255, decimal (48) or hex with 0x (0x30)".to_string())
}

// ---- argument groups -----------------------------------------------------------

/// Who the object commands act as, besides the device.
#[derive(Debug, Args)]
pub struct AsUser {
    /// Verify the user PIN first (--pin-file, DMSC_PIN or a prompt)
    #[arg(long)]
    pub user: bool,
}

/// Where the fleet's cards are.
#[derive(Debug, Args)]
pub struct FleetSource {
    /// Simulated cards: every *.state file in DIR is one card (instead of PC/SC readers)
    #[arg(long, value_name = "DIR")]
    pub sim_dir: Option<PathBuf>,
}

// ---- the confirmation prompt ----------------------------------------------------

/// Asks "question [y/N]" on a terminal and returns the answer (default no).
/// Off a terminal nobody can answer: a usage error saying `refusal` needs
/// `--yes`.
pub fn ask(ctx: &Ctx, question: &str, refusal: &str) -> Result<bool> {
    if !ctx.interactive() {
        return Err(usage(format!("{refusal} without confirmation: pass --yes")));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// [`ask`], with "no" an error: declined by the user, nothing changed.
pub fn confirm(ctx: &Ctx, question: &str, refusal: &str) -> Result<()> {
    if ask(ctx, question, refusal)? {
        Ok(())
    } else {
        Err(coded(Code::Declined, "cancelled: nothing was changed"))
    }
}

// ---- the card --------------------------------------------------------------------

/// Opens the card as the device, then as an authority (when keys are given)
/// and as the user (with `--user`). Returns the session and who it acts as
/// where (for messages).
pub fn open_as(ctx: &Ctx, user: bool) -> Result<(CardSession, String)> {
    // Secrets first: a missing or malformed one must not cost a try on the card.
    let authority = ctx.authority()?;
    let pin = if user { Some(ctx.user_pin()?) } else { None };
    let mut session = ctx.open_card()?;
    let reader = session.transport().reader_name().to_string();
    session
        .select()
        .with_context(|| format!("selecting the dmsc applet in {reader}"))?;
    // The secure channel first: opening it selects the applet again, which
    // would forget a verified PIN.
    let channel = match &authority {
        Some(a) => Some(ctx.authenticate(&mut session, a)?),
        None => None,
    };
    if let Some(pin) = &pin {
        ctx.verify_user(&mut session, pin)?;
    }
    let who = format!("{} on {reader}", Ctx::principal(channel.as_ref(), user));
    Ok((session, who))
}

/// Opens the card as an authority (keys required for `what`).
pub fn authority_session(ctx: &Ctx, what: &str) -> Result<CardSession> {
    let authority = ctx.require_authority(what)?;
    let mut session = ctx.open_card()?;
    ctx.authenticate(&mut session, &authority)?;
    Ok(session)
}

/// The tries left of the user PIN and of the PUK (VERIFY without data).
pub fn pin_and_puk(session: &mut impl CardCommands) -> Result<(PinStatus, PinStatus)> {
    let pin = session
        .pin_status(PIN_REF_USER)
        .context("reading the PIN tries left")?;
    let puk = session
        .pin_status(PIN_REF_PUK)
        .context("reading the PUK tries left")?;
    Ok((pin, puk))
}

/// The personalisation of a new card with one authority.
pub fn init_params(
    authority: &str,
    key_version: u8,
    keys: &KeyTriple,
    pin: &[u8],
    puk: &[u8],
) -> InitParams {
    InitParams {
        pin: Zeroizing::new(pin.to_vec()),
        puk: Zeroizing::new(puk.to_vec()),
        ..InitParams::with_authorities(vec![AuthorityKeys {
            key_version,
            name: authority.to_string(),
            enc: keys.enc.clone(),
            mac: keys.mac.clone(),
            dek: keys.dek.clone(),
        }])
    }
}

// ---- objects, ACLs and files ------------------------------------------------------

pub const REF_FORMS: &str = "mo:./URI, policy, bootstrap-key:ID, approver:NAME, approval-rule, \
                         floor:CLASS, identity-key, audit-log, authority:KVN or card";

/// Parses an object reference such as `mo:./DevInfo` or `approver:owner`.
/// An MO URI starting with `./` is the MO object (`mo:./URI`): every command
/// that takes an object accepts both forms.
pub fn parse_ref(s: &str) -> Result<ObjectRef> {
    let full;
    let s = if s.starts_with("./") {
        full = format!("mo:{s}");
        full.as_str()
    } else {
        s
    };
    s.parse::<ObjectRef>().map_err(|e| {
        usage(format!(
            "invalid object reference '{s}' ({e}); use {REF_FORMS}"
        ))
    })
}

/// Parses an ACL in the OMA DM syntax, naming the offset of an error.
pub fn parse_acl(s: &str) -> Result<Acl> {
    Acl::parse(s).map_err(|e| {
        usage(format!(
            "invalid ACL '{s}': {e}; expected e.g. 'Get=*&Replace=ServerA+ServerB'"
        ))
    })
}

/// Reads a TNDS XML or JSON file; a malformed one is a usage error naming
/// the file, line and column.
pub fn read_tree_file(path: &Path) -> Result<MgmtTree> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    MgmtTree::parse_any(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// Writes a file atomically (see [`dmsc_host::files::write_atomically`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(dmsc_host::files::write_atomically(path, bytes)?)
}

// ---- the fleet's cards -----------------------------------------------------------

/// A card of the fleet, over PC/SC or simulated.
pub type Member = FleetCard<Box<dyn Transport>>;

/// Readers whose card could not be opened: (reader, why).
pub type Broken = Vec<(String, String)>;

/// The cards of `--sim-dir DIR` (every `*.state` file, by name), or of every
/// PC/SC reader holding a card. Cards that cannot be opened are returned as
/// (reader, error).
pub fn open_fleet(ctx: &Ctx, source: &FleetSource) -> Result<(Vec<Member>, Broken)> {
    let mut cards = Vec::new();
    let mut broken = Vec::new();
    match &source.sim_dir {
        Some(dir) => {
            for path in state_files(dir)? {
                let name = path.display().to_string();
                match FileSimTransport::open(&path) {
                    Ok(t) => cards.push(FleetCard::new(name, ctx.session(Box::new(t)))),
                    Err(e) => broken.push((name, e.to_string())),
                }
            }
        }
        None => open_readers(ctx, &mut cards, &mut broken)?,
    }
    Ok((cards, broken))
}

fn state_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the card directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "state"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(coded(
            Code::NoCard,
            format!("no simulated cards (*.state) in {}", dir.display()),
        ));
    }
    Ok(files)
}

#[cfg(feature = "pcsc")]
fn open_readers(
    ctx: &Ctx,
    cards: &mut Vec<Member>,
    broken: &mut Vec<(String, String)>,
) -> Result<()> {
    let mut pcsc = dmsc_host::PcscContext::establish()?;
    let readers = pcsc.list_readers()?;
    for r in readers.iter().filter(|r| r.card_present) {
        match pcsc.connect(&r.name) {
            Ok(card) => cards.push(FleetCard::new(r.name.clone(), ctx.session(Box::new(card)))),
            Err(e) => broken.push((r.name.clone(), e.to_string())),
        }
    }
    if cards.is_empty() && broken.is_empty() {
        return Err(coded(Code::NoCard, "no reader holds a card"));
    }
    Ok(())
}

#[cfg(not(feature = "pcsc"))]
fn open_readers(_: &Ctx, _: &mut Vec<Member>, _: &mut Vec<(String, String)>) -> Result<()> {
    Err(crate::context::no_pcsc())
}

pub fn parse_ids(s: &str) -> Result<Option<Vec<String>>> {
    if s == "all" {
        return Ok(None);
    }
    let ids: Vec<String> = s
        .split(',')
        .map(|i| i.trim().to_ascii_uppercase())
        .collect();
    for id in &ids {
        if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(usage(format!(
                "--cards: '{id}' is not a card ID (32 hex digits); use all or ID,ID,…"
            )));
        }
    }
    Ok(Some(ids))
}

pub fn progress_bar(ctx: &Ctx, len: usize) -> ProgressBar {
    if ctx.json || ctx.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:8} [{bar:30}] {pos}/{len} {prefix}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Opens the fleet, selects every card and keeps those `wanted` (None: all).
/// Any card that cannot be opened or selected, or a wanted ID not present, is
/// an error before anything is changed.
pub fn selected_cards(
    ctx: &Ctx,
    source: &FleetSource,
    wanted: Option<&[String]>,
) -> Result<Vec<Member>> {
    let (members, broken) = open_fleet(ctx, source)?;
    if !broken.is_empty() {
        let list: Vec<String> = broken.iter().map(|(r, e)| format!("{r}: {e}")).collect();
        return Err(coded(
            Code::NoCard,
            format!(
                "cannot open every card, nothing was changed: {}",
                list.join("; ")
            ),
        ));
    }
    select_cards(members, wanted).map_err(|e| match e {
        SelectError::Missing { .. } => coded(Code::NotFound, e.to_string()),
        select => anyhow::Error::new(select),
    })
}

/// Reads `DIR/profile.json` (`dmsc_host::fleet::Profile::load`, docs/fleet.md).
pub fn load_profile(dir: &Path) -> Result<Profile> {
    Profile::load(dir).map_err(|e| usage(e.to_string()))
}

// ---- PINs of a UICC's data objects ---------------------------------------------

/// The user PIN for PIN-protected data objects, when one was given
/// (`--pin-file` or `DMSC_PIN`); never from the command line.
pub fn given_pin(ctx: &Ctx) -> Result<Option<dmsc_host::card_model::commands::Pin>> {
    if ctx.pin_file.is_some() || std::env::var_os("DMSC_PIN").is_some() {
        return ctx.user_pin().map(Some);
    }
    Ok(None)
}

pub const PIN_HINT: &str = "give it with --pin-file FILE or DMSC_PIN (PINs are never taken on the \
                        command line), or run on a terminal to be prompted";

/// The PIN errors of a UICC read inside refresh, watch or apply: a PIN
/// required and not given says how to give it (exit 2), a wrong PIN exits 7,
/// a blocked one 5; other errors are unchanged.
pub fn pin_hint(err: anyhow::Error) -> anyhow::Error {
    let uicc_error = err.chain().find_map(|c| {
        c.downcast_ref::<dmsc_host::uicc::UiccError>().or_else(|| {
            match c.downcast_ref::<dmsc_host::provisioning::ProvisioningError>() {
                Some(dmsc_host::provisioning::ProvisioningError::Uicc(u)) => Some(u),
                _ => None,
            }
        })
    });
    match uicc_error {
        Some(dmsc_host::uicc::UiccError::PinRequired { .. }) => {
            usage(format!("{err:#}: {PIN_HINT}"))
        }
        Some(dmsc_host::uicc::UiccError::WrongPin { .. }) => {
            coded(Code::WrongPin, format!("{err:#}"))
        }
        Some(dmsc_host::uicc::UiccError::PinBlocked { .. }) => {
            coded(Code::Blocked, format!("{err:#}"))
        }
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_latency;
    use std::time::Duration;

    #[test]
    fn latencies_with_units_and_bad_ones() {
        assert_eq!(parse_latency("15ms"), Ok(Duration::from_millis(15)));
        assert_eq!(parse_latency("800us"), Ok(Duration::from_micros(800)));
        assert_eq!(parse_latency("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_latency("0ms"), Ok(Duration::ZERO));
        for bad in ["15", "ms", "1.5ms", "-1ms", "15 ms", "15min"] {
            assert!(parse_latency(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_latency("11s"), Err("at most 10s".to_string()));
    }
}
