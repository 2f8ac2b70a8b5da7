//! The simulated UICC's files, glue only: a state file (the library's
//! `dmsc_sim_card::uicc::state_file`, docs/standard-cards.md, "The
//! simulated UICC's state file") or a bare JSON profile
//! (`dmsc_host::uicc::sim::ProfileJson`), opened as a card for
//! `--sim-uicc`, `uicc serve` and `sim modem`. A leaf module: it imports no
//! command module.

use std::path::Path;

use anyhow::{Context, Result};
use dmsc_host::uicc::sim::ProfileJson;
use dmsc_sim_card::uicc::state_file::{self, CreateError, SaveError, SimCard};
use dmsc_sim_card::uicc::SimUicc;
use serde::Serialize;
use zeroize::Zeroizing;

/// The card of a JSON profile's text.
fn profile_card(path: &Path, text: &str) -> Result<SimUicc> {
    ProfileJson::parse(text)
        .and_then(|p| p.to_card())
        .with_context(|| format!("UICC profile {}", path.display()))
}

/// Says why the card answers `6581`.
fn report_save_error(e: &SaveError) {
    let e = anyhow::Error::msg(
        std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": "),
    );
    eprintln!("error: cannot save the simulated UICC's state: {e}");
}

/// The simulated UICC of `--sim-uicc FILE`: a state file (locked while in
/// use, saved at each change) or a bare profile.
pub fn sim_card(path: &Path) -> Result<SimCard> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read the simulated UICC {}", path.display()))?,
    );
    if bytes.starts_with(&dmsc_sim_card::file_store::MAGIC) {
        return Err(anyhow::anyhow!(
            "{} is a dmsc applet card state (for --sim), not a UICC state file",
            path.display()
        ));
    }
    if !state_file::looks_like_state(&bytes) {
        let text = Zeroizing::new(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| anyhow::anyhow!("UICC profile {}: not UTF-8 text", path.display()))?,
        );
        return profile_card(path, &text).map(|c| SimCard::Memory(Box::new(c)));
    }
    let card = state_file::open(path, report_save_error)?;
    Ok(SimCard::Saved(Box::new(card)))
}

/// What `dmsc sim init --uicc` made.
#[derive(Serialize)]
pub(crate) struct InitUicc {
    pub path: String,
    pub format: &'static str,
    /// The state file's own `schema_version`.
    pub state_schema_version: u32,
    pub iccid: Option<String>,
    pub pin1: bool,
    pub replaced: bool,
}

/// `dmsc sim init --uicc PROFILE FILE`: the profile's card in a new state
/// file (replacing an existing one, atomically and only while nobody uses
/// it, with `replace`).
pub fn init_state_file(profile: &Path, path: &Path, replace: bool) -> Result<InitUicc> {
    let text = Zeroizing::new(
        std::fs::read_to_string(profile)
            .with_context(|| format!("cannot read the UICC profile {}", profile.display()))?,
    );
    let card = profile_card(profile, &text)?;
    let made = state_file::create(&card, path, replace).map_err(|e| match e {
        CreateError::Exists { .. } => anyhow::anyhow!("{e} (use --force to replace it)"),
        e => anyhow::Error::new(e),
    })?;
    Ok(InitUicc {
        path: path.display().to_string(),
        format: state_file::STATE_FORMAT,
        state_schema_version: state_file::STATE_SCHEMA_VERSION,
        iccid: made.iccid,
        pin1: made.pin1,
        replaced: made.replaced,
    })
}
