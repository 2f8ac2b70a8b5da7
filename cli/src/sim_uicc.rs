//! The simulated UICC's files: a state file made by `dmsc sim init --uicc`
//! (docs/standard-cards.md, "The simulated UICC's state file"), or a bare
//! JSON profile, opened as a card for `--sim-uicc`, `uicc serve` and
//! `sim modem`. A leaf module: it imports no command module.

use anyhow::{Context, Result};
use dmsc_host::uicc::sim::ProfileJson;
use dmsc_sim_card::uicc::{
    EfBody, Node, PersistentUicc, SimUicc, StateFile, UiccState, UiccStore, ADM1_MAX_TRIES,
    PIN1_MAX_TRIES,
};
use dmsc_sim_card::vpcd::{Power, VirtualCard};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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
pub fn state_document(card: &SimUicc) -> Result<Zeroizing<Vec<u8>>> {
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
pub struct FileSaver {
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
pub enum SimCard {
    /// From a bare profile: changes are lost at the end.
    Memory(Box<SimUicc>),
    /// From a state file: every change saved before the card answers.
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
pub fn sim_card(path: &std::path::Path) -> Result<SimCard> {
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
pub fn init_state_file(
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
