//! `dmsc uicc`: the standard bootstrap data on a SIM/UICC (docs/standard-cards.md).
//! The use cases live in `dmsc_host::uicc`; this module parses, asks and prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dmsc_host::transport::modem::ModemTransport;
use dmsc_host::uicc::sim::{ProfileJson, VirtualCardTransport};
use dmsc_host::uicc::{self, lwm2m::Value, Pin, UiccError};
use dmsc_host::Transport;
use dmsc_sim_card::uicc::{
    EfBody, Node, PersistentUicc, SimUicc, StateFile, UiccState, UiccStore, ADM1_MAX_TRIES,
    PIN1_MAX_TRIES,
};
use dmsc_sim_card::vpcd::{Power, VirtualCard};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::context::{CardSession, Ctx};
use crate::exit::{coded, usage, Code};
use crate::output::print_json;

/// `dmsc uicc …`.
#[derive(Debug, Args)]
pub struct UiccArgs {
    /// Use a simulated UICC instead of --reader / --sim: a state file made by `dmsc sim
    /// init --uicc` (every change saved to it before the card answers), or a bare JSON
    /// profile (docs/standard-cards.md), whose changes live in memory only and are lost
    /// when the command ends
    #[arg(long, value_name = "FILE", env = "DMSC_SIM_UICC")]
    pub sim_uicc: Option<PathBuf>,
    /// Reach the SIM through a cellular modem's AT+CSIM on this serial device
    /// (opened raw, 115200 8N1, `ATE0` first)
    #[arg(
        long,
        value_name = "PATH",
        env = "DMSC_MODEM",
        conflicts_with = "sim_uicc"
    )]
    pub modem: Option<PathBuf>,
    /// Logical channels through AT+CCHO / AT+CGLA / AT+CCHC instead of MANAGE
    /// CHANNEL inside AT+CSIM
    #[arg(long, requires = "modem")]
    pub modem_cgla: bool,
    /// Seconds to wait for each modem answer
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub modem_timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: UiccCommand,
}

/// The `uicc` subcommands.
#[derive(Debug, Subcommand)]
pub enum UiccCommand {
    /// Applications (EF(DIR)), PKCS#15 token info and data objects (label, OID, path, size)
    Info,
    /// Read and decode the LwM2M bootstrap (OID 2.23.43.9.1) from the PKCS#15 application
    #[command(
        after_help = "Text output lists one resource per line (/object/instance/resource = value); \
        --tree prints the same as the configuration a LwM2M client consumes; --json gives \
        the documented JSON form (docs/standard-cards.md)."
    )]
    Lwm2m {
        /// One `path = value` line per resource, names omitted
        #[arg(long)]
        tree: bool,
    },
    /// Attach the simulated UICC of --sim-uicc to pcscd through vpcd until SIGINT/SIGTERM
    #[command(
        after_help = "Connects to vpcd at 127.0.0.1:PORT (a reader.conf slot; see \
        docs/pcsc-testing.md) and prints `ready: simulated UICC attached (vpcd ADDR)` once \
        pcscd sees the card. With a state file (`dmsc sim init --uicc`) every change is \
        saved to it before the card answers; with a bare profile the card's state lives in \
        memory and updates last until the command ends."
    )]
    Serve {
        /// The vpcd port of the slot
        #[arg(long, default_value_t = 35963)]
        port: u16,
    },
    /// Read the OMA DM bootstrap (OID 2.23.43.7.1), a WBXML DM message: hex, or raw to --out
    DmBootstrap {
        /// Write the raw bytes to this file
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Encode a bootstrap (the JSON form) and write it to EF(LwM2M_Bootstrap) after VERIFY ADM1
    #[command(
        after_help = "The ADM1 key (8 bytes, 16 hex digits) comes from --adm-key-file or \
        DMSC_ADM_KEY, never from the command line. The file is encoded and checked against \
        the EF's size (its FCP) before anything is sent."
    )]
    WriteLwm2m {
        /// The bootstrap in the JSON form of docs/standard-cards.md
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        /// File holding the ADM1 key in hex
        #[arg(long, value_name = "FILE")]
        adm_key_file: Option<PathBuf>,
    },
    /// Apply the card's smartcard bootstrap (OMA DM and LwM2M) to a device tree
    #[command(
        after_help = "The OMA DM bootstrap's Add/Replace items become MOs (as for the HTTP \
        bootstrap), the LwM2M bootstrap the MO ./LwM2M; both are recorded with the ICCID and \
        the bootstrap's digest, and what another card provided goes. A device policy with \
        the resource smartcard-bootstrap disabled (DIR/policy/resources.json) turns it off. \
        See docs/bootstrap.md."
    )]
    Apply {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
        /// The factory bootstrap, applied when the card has no bootstrap
        #[arg(long, value_name = "FILE")]
        factory_bootstrap: Option<PathBuf>,
    },
}

/// The ADM1 key from its file or `DMSC_ADM_KEY` (hex, 8 bytes).
fn adm_key(file: Option<&std::path::Path>) -> Result<Zeroizing<Vec<u8>>> {
    let text: Zeroizing<String> = match file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the ADM key file {}", path.display()))?,
        ),
        None => match std::env::var("DMSC_ADM_KEY") {
            Ok(v) => Zeroizing::new(v),
            Err(_) => {
                return Err(usage(
                    "the ADM1 key is needed: give --adm-key-file FILE or set DMSC_ADM_KEY",
                ))
            }
        },
    };
    let clean: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let key = Zeroizing::new(
        hex::decode(clean.as_bytes())
            .map_err(|_| usage("the ADM1 key is not hex (16 hex digits expected)"))?,
    );
    if key.len() != 8 {
        return Err(usage(format!(
            "the ADM1 key has {} bytes, 8 expected (16 hex digits)",
            key.len()
        )));
    }
    Ok(key)
}

/// The `format` marker of a UICC state file.
pub(crate) const STATE_FORMAT: &str = "dmsc-uicc-state";
/// The state file schema this build reads and writes.
pub(crate) const STATE_SCHEMA_VERSION: u32 = 1;

/// A UICC state file (docs/standard-cards.md, "The simulated UICC's state file").
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc {
    format: String,
    schema_version: u32,
    /// EF(ICCID) (3F00/2FE2) in hex, as the card stores it.
    iccid: Option<String>,
    /// Answer SELECT with `61xx` like a T=0 UICC.
    t0: bool,
    adm1: KeyDoc,
    #[serde(default)]
    pin1: Option<KeyDoc>,
    /// The MF and everything under it.
    files: FileDoc,
}

/// A key reference: its value (ADM1 in hex, PIN1 as its digits) and counter.
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    value: String,
    tries_left: u8,
    max_tries: u8,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Access {
    Always,
    Pin1,
    Adm1,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "structure", rename_all = "kebab-case", deny_unknown_fields)]
enum FileDoc {
    Df {
        fid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aid: Option<String>,
        children: Vec<FileDoc>,
    },
    Transparent {
        fid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        size: usize,
        read: Access,
        update: Access,
        data_hex: String,
    },
    LinearFixed {
        fid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        record_len: usize,
        records: usize,
        update: Access,
        records_hex: Vec<String>,
    },
}

/// The name of a well-known file, for readers of the state file.
fn file_name(fid: u16) -> Option<String> {
    Some(
        match fid {
            0x3F00 => "MF",
            0x2FE2 => "EF(ICCID)",
            0x2F00 => "EF(DIR)",
            0x7F50 => "ADF PKCS#15",
            0x5031 => "EF(ODF)",
            0x5032 => "EF(TokenInfo)",
            0x6430 => "EF(DODF)",
            0x6431 => "EF(AODF)",
            0x6432 => "EF(LwM2M_Bootstrap)",
            0x6433 => "EF(DM bootstrap)",
            _ => return None,
        }
        .to_string(),
    )
}

fn file_doc(node: &Node, pin1_files: &[u16]) -> FileDoc {
    let update_of = |adm: bool| if adm { Access::Adm1 } else { Access::Always };
    match node {
        Node::Df { fid, aid, children } => FileDoc::Df {
            fid: format!("{fid:04X}"),
            name: file_name(*fid),
            aid: aid.as_deref().map(hex::encode_upper),
            children: children.iter().map(|c| file_doc(c, pin1_files)).collect(),
        },
        Node::Ef {
            fid,
            body: EfBody::Transparent(d),
            adm_update,
        } => FileDoc::Transparent {
            fid: format!("{fid:04X}"),
            name: file_name(*fid),
            size: d.len(),
            read: if pin1_files.contains(fid) {
                Access::Pin1
            } else {
                Access::Always
            },
            update: update_of(*adm_update),
            data_hex: hex::encode_upper(d),
        },
        Node::Ef {
            fid,
            body:
                EfBody::LinearFixed {
                    record_len,
                    records,
                },
            adm_update,
        } => FileDoc::LinearFixed {
            fid: format!("{fid:04X}"),
            name: file_name(*fid),
            record_len: *record_len,
            records: records.len(),
            update: update_of(*adm_update),
            records_hex: records.iter().map(hex::encode_upper).collect(),
        },
    }
}

/// The state file document of a card.
pub(crate) fn state_document(card: &SimUicc) -> Result<Zeroizing<Vec<u8>>> {
    let state = card.state();
    let doc = StateDoc {
        format: STATE_FORMAT.into(),
        schema_version: STATE_SCHEMA_VERSION,
        iccid: match state.file(&[0x2FE2]) {
            Some(EfBody::Transparent(d)) => Some(hex::encode_upper(d)),
            _ => None,
        },
        t0: state.t0,
        adm1: KeyDoc {
            value: hex::encode_upper(state.adm1),
            tries_left: state.adm1_tries,
            max_tries: ADM1_MAX_TRIES,
        },
        pin1: state.pin1.map(|p| KeyDoc {
            value: p
                .iter()
                .take_while(|b| **b != 0xFF)
                .map(|b| char::from(*b))
                .collect(),
            tries_left: state.pin1_tries,
            max_tries: PIN1_MAX_TRIES,
        }),
        files: file_doc(&state.mf, &state.pin1_files),
    };
    let mut text =
        Zeroizing::new(serde_json::to_vec_pretty(&doc).context("cannot encode the UICC state")?);
    text.push(b'\n');
    Ok(text)
}

/// A bad field of a state document.
fn field(at: impl std::fmt::Display, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{at}: {problem}")
}

fn fid_of(at: &str, text: &str) -> Result<u16> {
    let bytes =
        hex::decode(text).map_err(|e| field(at, format!("fid '{text}' is not hex: {e}")))?;
    <[u8; 2]>::try_from(bytes.as_slice())
        .map(u16::from_be_bytes)
        .map_err(|_| field(at, format!("fid '{text}' is not 2 bytes")))
}

fn hex_of(at: &str, what: &str, text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|e| field(at, format!("{what} is not hex: {e}")))
}

fn node_of(doc: &FileDoc, at: &str, pin1_files: &mut Vec<u16>) -> Result<Node> {
    Ok(match doc {
        FileDoc::Df {
            fid, aid, children, ..
        } => {
            let fid = fid_of(at, fid)?;
            let here = if at.is_empty() {
                format!("{fid:04X}")
            } else {
                format!("{at}/{fid:04X}")
            };
            Node::Df {
                fid,
                aid: aid
                    .as_deref()
                    .map(|a| hex_of(&here, "aid", a))
                    .transpose()?,
                children: children
                    .iter()
                    .map(|c| node_of(c, &here, pin1_files))
                    .collect::<Result<_>>()?,
            }
        }
        FileDoc::Transparent {
            fid,
            size,
            read,
            update,
            data_hex,
            ..
        } => {
            let fid = fid_of(at, fid)?;
            let here = format!("{at}/{fid:04X}");
            let data = hex_of(&here, "data_hex", data_hex)?;
            if data.len() != *size {
                return Err(field(
                    &here,
                    format!("data_hex has {} bytes, size says {size}", data.len()),
                ));
            }
            match read {
                Access::Always => {}
                Access::Pin1 => pin1_files.push(fid),
                Access::Adm1 => return Err(field(&here, "read is 'always' or 'pin1'")),
            }
            Node::Ef {
                fid,
                body: EfBody::Transparent(data),
                adm_update: adm_of(&here, *update)?,
            }
        }
        FileDoc::LinearFixed {
            fid,
            record_len,
            records,
            update,
            records_hex,
            ..
        } => {
            let fid = fid_of(at, fid)?;
            let here = format!("{at}/{fid:04X}");
            if records_hex.len() != *records {
                return Err(field(
                    &here,
                    format!(
                        "records_hex has {} records, records says {records}",
                        records_hex.len()
                    ),
                ));
            }
            Node::Ef {
                fid,
                body: EfBody::LinearFixed {
                    record_len: *record_len,
                    records: records_hex
                        .iter()
                        .map(|r| hex_of(&here, "a record", r))
                        .collect::<Result<_>>()?,
                },
                adm_update: adm_of(&here, *update)?,
            }
        }
    })
}

fn adm_of(at: &str, update: Access) -> Result<bool> {
    match update {
        Access::Always => Ok(false),
        Access::Adm1 => Ok(true),
        Access::Pin1 => Err(field(at, "update is 'always' or 'adm1'")),
    }
}

fn key_of(at: &str, doc: &KeyDoc, max: u8) -> Result<()> {
    if doc.max_tries != max {
        return Err(field(
            format!("{at}.max_tries"),
            format!("{} (this card allows {max} tries)", doc.max_tries),
        ));
    }
    Ok(())
}

/// The card of a state document; the error says what is wrong and where
/// (the caller names the file).
fn state_of(bytes: &[u8]) -> Result<SimUicc> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        schema_version: Option<serde_json::Value>,
    }
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("not a complete JSON document (truncated?): {e}"))?;
    match header.format.as_ref().and_then(|f| f.as_str()) {
        Some(STATE_FORMAT) => {}
        Some(other) => {
            return Err(anyhow::anyhow!(
                "format '{other}' is not a UICC state file ('{STATE_FORMAT}' expected)"
            ))
        }
        None => return Err(anyhow::anyhow!("no format '{STATE_FORMAT}' marker")),
    }
    match header.schema_version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(STATE_SCHEMA_VERSION) => {}
        Some(v) if v > u64::from(STATE_SCHEMA_VERSION) => {
            return Err(anyhow::anyhow!(
                "schema_version {v} is newer than this dmsc reads ({STATE_SCHEMA_VERSION}); \
                 use a newer dmsc"
            ))
        }
        _ => {
            return Err(anyhow::anyhow!(
                "schema_version is not {STATE_SCHEMA_VERSION}, the version this dmsc reads"
            ))
        }
    }
    let doc: StateDoc = serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    key_of("adm1", &doc.adm1, ADM1_MAX_TRIES)?;
    let adm1 = <[u8; 8]>::try_from(hex_of("adm1", "value", &doc.adm1.value)?.as_slice())
        .map_err(|_| field("adm1.value", "the ADM1 key is 8 bytes (16 hex digits)"))?;
    let pin1 = match &doc.pin1 {
        Some(p) => {
            key_of("pin1", p, PIN1_MAX_TRIES)?;
            let digits = p.value.as_bytes();
            if !(4..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
                return Err(field("pin1.value", "PIN1 is 4 to 8 digits"));
            }
            let mut v = [0xFF; 8];
            v[..digits.len()].copy_from_slice(digits);
            Some((v, p.tries_left))
        }
        None => None,
    };
    let mut pin1_files = Vec::new();
    let mf = node_of(&doc.files, "", &mut pin1_files)?;
    let state = UiccState {
        mf,
        adm1,
        adm1_tries: doc.adm1.tries_left,
        pin1: pin1.map(|p| p.0),
        pin1_files,
        pin1_tries: pin1.map_or(PIN1_MAX_TRIES, |p| p.1),
        t0: doc.t0,
    };
    let iccid = match state.file(&[0x2FE2]) {
        Some(EfBody::Transparent(d)) => Some(hex::encode_upper(d)),
        _ => None,
    };
    if doc.iccid.as_deref().map(str::to_ascii_uppercase) != iccid {
        return Err(field("iccid", "differs from EF(ICCID) 3F00/2FE2"));
    }
    SimUicc::from_state(state).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Saves the card's state to its state file before each answer.
#[derive(Debug)]
struct FileSaver {
    file: StateFile,
}

impl UiccStore for FileSaver {
    fn save(&mut self, state: &UiccState) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let result = SimUicc::from_state(state.clone())
            .map_err(anyhow::Error::new)
            .and_then(|card| state_document(&card))
            .and_then(|bytes| self.file.save(&bytes).map_err(anyhow::Error::new));
        if let Err(e) = &result {
            // The card answers 6581; say why.
            eprintln!("error: cannot save the simulated UICC's state: {e:#}");
        }
        result.map_err(|e| e.into())
    }
}

/// A simulated UICC: from a bare profile (in memory) or a state file
/// (saved at each change).
#[derive(Debug)]
enum SimCard {
    Memory(Box<SimUicc>),
    Saved(Box<PersistentUicc<FileSaver>>),
}

impl VirtualCard for SimCard {
    fn atr(&self) -> Vec<u8> {
        match self {
            SimCard::Memory(c) => c.atr(),
            SimCard::Saved(c) => c.atr(),
        }
    }

    fn power(&mut self, event: Power) {
        match self {
            SimCard::Memory(c) => c.power(event),
            SimCard::Saved(c) => c.power(event),
        }
    }

    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        match self {
            SimCard::Memory(c) => c.transmit(apdu),
            SimCard::Saved(c) => c.transmit(apdu),
        }
    }
}

/// Whether `bytes` look like a UICC state file rather than a profile: a
/// JSON object with a `format` field, or text naming the state format.
fn looks_like_state(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v.get("format").is_some(),
        Err(_) => bytes
            .windows(STATE_FORMAT.len())
            .any(|w| w == STATE_FORMAT.as_bytes()),
    }
}

/// The simulated UICC of `--sim-uicc FILE`: a state file (locked while in
/// use, saved at each change) or a bare profile.
fn sim_card(path: &std::path::Path) -> Result<SimCard> {
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
    if !looks_like_state(&bytes) {
        let text = Zeroizing::new(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| anyhow::anyhow!("UICC profile {}: not UTF-8 text", path.display()))?,
        );
        return ProfileJson::parse(&text)
            .and_then(|p| p.to_card())
            .map(|c| SimCard::Memory(Box::new(c)))
            .with_context(|| format!("UICC profile {}", path.display()));
    }
    let (file, bytes) = StateFile::open(path)?;
    let bytes = Zeroizing::new(bytes);
    let card = state_of(&bytes).with_context(|| format!("UICC state file {}", path.display()))?;
    Ok(SimCard::Saved(Box::new(PersistentUicc::new(
        card,
        FileSaver { file },
    ))))
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
pub(crate) fn init_state_file(
    profile: &std::path::Path,
    path: &std::path::Path,
    replace: bool,
) -> Result<InitUicc> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("cannot read the UICC profile {}", profile.display()))?;
    let card = ProfileJson::parse(&text)
        .and_then(|p| p.to_card())
        .with_context(|| format!("UICC profile {}", profile.display()))?;
    let bytes = state_document(&card)?;
    let exists = std::fs::symlink_metadata(path).is_ok();
    if exists && !replace {
        return Err(anyhow::anyhow!(
            "{} already exists; refusing to overwrite a card (use --force to replace it)",
            path.display()
        ));
    }
    StateFile::create(path, &bytes, replace)
        .with_context(|| format!("cannot write the UICC state file {}", path.display()))?;
    let state = card.state();
    Ok(InitUicc {
        path: path.display().to_string(),
        format: STATE_FORMAT,
        state_schema_version: STATE_SCHEMA_VERSION,
        iccid: match state.file(&[0x2FE2]) {
            Some(EfBody::Transparent(d)) => Some(hex::encode_upper(d)),
            _ => None,
        },
        pin1: state.pin1.is_some(),
        replaced: exists,
    })
}

/// The user PIN for PIN-protected data objects, when one was given
/// (`--pin-file` or `DMSC_PIN`); never from the command line.
pub(crate) fn given_pin(ctx: &Ctx) -> Result<Option<Pin>> {
    if ctx.pin_file.is_some() || std::env::var_os("DMSC_PIN").is_some() {
        return ctx.user_pin().map(Some);
    }
    Ok(None)
}

const PIN_HINT: &str = "give it with --pin-file FILE or DMSC_PIN (PINs are never taken on the \
                        command line), or run on a terminal to be prompted";

/// The PIN errors of a UICC read inside refresh, watch or apply: a PIN
/// required and not given says how to give it (exit 2), a wrong PIN exits 7,
/// a blocked one 5; other errors are unchanged.
pub(crate) fn pin_hint(err: anyhow::Error) -> anyhow::Error {
    let uicc_error = err.chain().find_map(|c| {
        c.downcast_ref::<UiccError>().or_else(|| {
            match c.downcast_ref::<dmsc_host::provisioning::ProvisioningError>() {
                Some(dmsc_host::provisioning::ProvisioningError::Uicc(u)) => Some(u),
                _ => None,
            }
        })
    });
    match uicc_error {
        Some(UiccError::PinRequired { .. }) => usage(format!("{err:#}: {PIN_HINT}")),
        Some(UiccError::WrongPin { .. }) => coded(Code::WrongPin, format!("{err:#}")),
        Some(UiccError::PinBlocked { .. }) => coded(Code::Blocked, format!("{err:#}")),
        _ => err,
    }
}

/// Runs a read with the PIN given (if any). A protected object without a
/// PIN is asked for on a terminal (and the read done again with it, once);
/// elsewhere the error says how to give it. A wrong or blocked PIN is
/// reported, never tried again.
fn with_pin<T>(ctx: &Ctx, mut read: impl FnMut(Option<&Pin>) -> Result<T, UiccError>) -> Result<T> {
    use std::io::IsTerminal;
    let pin = given_pin(ctx)?;
    let result = match read(pin.as_ref()) {
        Err(UiccError::PinRequired { .. }) if pin.is_none() && std::io::stdin().is_terminal() => {
            let pin = ctx.user_pin()?;
            read(Some(&pin))
        }
        other => other,
    };
    result.map_err(|e| match e {
        UiccError::PinRequired { .. } => usage(format!("{e}: {PIN_HINT}")),
        UiccError::WrongPin { .. } => coded(Code::WrongPin, e.to_string()),
        UiccError::PinBlocked { .. } => coded(Code::Blocked, e.to_string()),
        UiccError::PinFormat { .. } | UiccError::NoAuthObject { .. } => usage(e.to_string()),
        other => other.into(),
    })
}

/// `dmsc uicc serve`: the simulated UICC on a vpcd slot.
fn serve(ctx: &Ctx, profile: &std::path::Path, port: u16) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use dmsc_sim_card::vpcd::{self, BridgeEvent, Endpoint};

    let card: Box<dyn VirtualCard> = Box::new(sim_card(profile)?);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(sig, shutdown.clone()))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let quiet = ctx.quiet;
    let mut ready = false;
    vpcd::serve(
        vec![(card, Endpoint::Connect(addr))],
        shutdown,
        move |event| match &event {
            BridgeEvent::Attached { .. } if !ready => {
                ready = true;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ready: simulated UICC attached (vpcd {addr})");
                let _ = out.flush();
            }
            BridgeEvent::Attached { .. } | BridgeEvent::Stopped => {}
            other if !quiet => eprintln!("{other}"),
            _ => {}
        },
    )
    .map_err(|e| anyhow::anyhow!("vpcd bridge: {e}"))
}

fn open(ctx: &Ctx, args: &UiccArgs) -> Result<CardSession> {
    match &args.sim_uicc {
        Some(path) => {
            let t: Box<dyn Transport> = Box::new(VirtualCardTransport::new(
                sim_card(path)?,
                format!("simulated UICC {}", path.display()),
            ));
            Ok(ctx.session(t))
        }
        None => match &args.modem {
            Some(path) => {
                let t = ModemTransport::open(path, Duration::from_secs(args.modem_timeout.max(1)))?
                    .with_cgla(args.modem_cgla);
                Ok(ctx.session(Box::new(t)))
            }
            None => ctx.open_card(),
        },
    }
}

#[derive(Serialize)]
struct Lwm2mJson<'a> {
    bootstrap: &'a uicc::BootstrapFile,
    entries: Vec<Entry>,
    /// Secret resources, emptied in this output.
    redacted: Vec<String>,
}

#[derive(Serialize)]
struct Entry {
    path: String,
    value: Value,
}

/// Runs `dmsc uicc`.
pub fn run(ctx: &Ctx, args: &UiccArgs) -> Result<Code> {
    execute(ctx, args).map(|()| Code::Ok)
}

fn execute(ctx: &Ctx, args: &UiccArgs) -> Result<()> {
    // Bad input is refused before the card is opened.
    let write = match &args.command {
        UiccCommand::WriteLwm2m { file, adm_key_file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let bootstrap: uicc::BootstrapFile = serde_json::from_str(&text).map_err(|e| {
                usage(format!(
                    "{}: not the bootstrap JSON form: {e}",
                    file.display()
                ))
            })?;
            bootstrap
                .encode()
                .map_err(|e| usage(format!("{}: {e}", file.display())))?;
            Some((bootstrap, adm_key(adm_key_file.as_deref())?))
        }
        _ => None,
    };
    if let UiccCommand::Serve { port } = &args.command {
        let profile = args
            .sim_uicc
            .as_deref()
            .ok_or_else(|| usage("uicc serve needs --sim-uicc FILE (a state file or a profile)"))?;
        return serve(ctx, profile, *port);
    }
    let options = match &args.command {
        UiccCommand::Apply {
            device,
            factory_bootstrap,
            ..
        } => {
            let mut o = dmsc_host::provisioning::RefreshOptions::for_device(
                device,
                factory_bootstrap.as_deref(),
            )
            .map_err(|e| usage(e.to_string()))?;
            o.uicc_pin = given_pin(ctx)?;
            Some(o)
        }
        _ => None,
    };
    let mut session = open(ctx, args)?;
    match &args.command {
        UiccCommand::Serve { .. } => {}
        UiccCommand::Apply { device, init, .. } => {
            use dmsc_host::device_tree::{DirectoryTree, TreeError};
            let opened = if *init {
                DirectoryTree::init(device)
            } else {
                DirectoryTree::open_existing(device)
            };
            let mut tree = opened.map_err(|e| match e {
                TreeError::NotATree { .. } => usage(format!("--device {e}")),
                other => anyhow::Error::new(other)
                    .context(format!("cannot open the device tree {}", device.display())),
            })?;
            let options = options.unwrap_or_default();
            let r = dmsc_host::provisioning::uicc::refresh_uicc(&mut session, &mut tree, &options)
                .with_context(|| format!("applying the UICC's bootstrap to {}", device.display()))
                .map_err(pin_hint)?;
            if ctx.json {
                return print_json(&r);
            }
            let state = if r.unchanged { " (unchanged)" } else { "" };
            match (&r.bootstrap_digest, r.smartcard_bootstrap_disabled) {
                (_, true) => println!(
                    "UICC {}: smartcard bootstrap disabled by the device policy",
                    r.card_id
                ),
                (Some(d), _) if !r.bootstrap.is_empty() => {
                    println!(
                        "UICC {}: bootstrap {} ({d}){state}",
                        r.card_id,
                        r.bootstrap.join(", ")
                    )
                }
                _ => println!("UICC {}: no bootstrap{state}", r.card_id),
            }
            for (label, list) in [
                ("added", &r.added),
                ("updated", &r.updated),
                ("removed", &r.removed),
            ] {
                for uri in list {
                    println!("  {label:8} {uri}");
                }
            }
            for s in &r.skipped {
                println!("  skipped  {} ({})", s.uri, s.reason);
            }
            if r.factory {
                println!("  the factory bootstrap is in force");
            }
        }
        UiccCommand::WriteLwm2m { file, .. } => {
            if let Some((bootstrap, key)) = &write {
                uicc::write_lwm2m_bootstrap(&mut session, bootstrap, Some(key.as_slice()))?;
                ctx.note(&format!("wrote {} to EF(LwM2M_Bootstrap)", file.display()));
            }
        }
        UiccCommand::DmBootstrap { out } => {
            let raw = with_pin(ctx, |pin| {
                uicc::read_dm_bootstrap_raw_with_pin(&mut session, pin)
            })?;
            match out {
                Some(path) => std::fs::write(path, &raw)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None if ctx.json => {
                    #[derive(Serialize)]
                    struct Dm {
                        wbxml_hex: String,
                        length: usize,
                    }
                    return print_json(&Dm {
                        wbxml_hex: hex::encode_upper(&raw),
                        length: raw.len(),
                    });
                }
                None => println!("{}", hex::encode_upper(&raw)),
            }
        }
        UiccCommand::Info => {
            let info = with_pin(ctx, |pin| uicc::read_info_with_pin(&mut session, pin))?;
            if ctx.json {
                return print_json(&info);
            }
            println!("applications:");
            if info.applications.is_empty() {
                println!("  (none: no EF(DIR))");
            }
            for a in &info.applications {
                println!("  {}  {}", a.aid, a.label.as_deref().unwrap_or(""));
            }
            if !info.pkcs15 {
                println!("this card has no PKCS#15 application");
                return Ok(());
            }
            if let Some(t) = &info.token_info {
                println!(
                    "token: {} ({})",
                    t.label.as_deref().unwrap_or("-"),
                    t.manufacturer.as_deref().unwrap_or("-")
                );
            }
            println!("data objects:");
            for o in &info.data_objects {
                let d = &o.object;
                println!(
                    "  {:<20} oid {:<14} path {:<6} size {:<6} {}{}",
                    d.label
                        .as_deref()
                        .or(d.application.as_deref())
                        .unwrap_or("-"),
                    d.oid.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                    d.path.as_ref().map(|p| p.path.as_str()).unwrap_or("-"),
                    o.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    if d.auth_id.is_some() { "PIN " } else { "" },
                    if d.oid_wrapped {
                        "(OID wrapped twice)"
                    } else {
                        ""
                    },
                );
            }
            for p in &info.pin_objects {
                println!(
                    "PIN object {:<13} authId {} reference {:02X}, {} to {} characters{}",
                    p.label.as_deref().unwrap_or("-"),
                    p.auth_id,
                    p.reference,
                    p.min_length,
                    p.max_length.unwrap_or(p.stored_length),
                    if info.pin_verified { " (verified)" } else { "" }
                );
            }
        }
        UiccCommand::Lwm2m { tree } => {
            let read = with_pin(ctx, |pin| {
                uicc::read_lwm2m_bootstrap_with_pin(&mut session, pin)
            })?;
            // Secret keys are never printed.
            let (file, redacted) = read.redacted();
            drop(read);
            let entries = file.entries();
            if ctx.json {
                return print_json(&Lwm2mJson {
                    bootstrap: &file,
                    entries: entries
                        .into_iter()
                        .map(|(path, value)| Entry { path, value })
                        .collect(),
                    redacted,
                });
            }
            for (path, value) in &entries {
                if redacted.contains(path) {
                    println!("{path} = (secret, not shown)");
                    continue;
                }
                if *tree {
                    println!("{path} = {value}");
                    continue;
                }
                let mut parts = path.trim_start_matches('/').split('/');
                let name = match (parts.next(), parts.nth(1)) {
                    (Some(o), Some(r)) => o
                        .parse()
                        .ok()
                        .zip(r.parse().ok())
                        .and_then(|(o, r)| uicc::lwm2m::registry(o, r))
                        .map(|(n, _)| n),
                    _ => None,
                };
                match name {
                    Some(n) => println!("{path} = {value}  ({n})"),
                    None => println!("{path} = {value}"),
                }
            }
        }
    }
    Ok(())
}
