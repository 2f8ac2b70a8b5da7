//! The simulated UICC's state file: a JSON document (`"format":
//! "dmsc-uicc-state"`, `"schema_version": 1`) holding a [`SimUicc`]'s file
//! tree, keys and try counters (docs/standard-cards.md, "The simulated
//! UICC's state file").
//!
//! [`state_document`] writes a card's document, [`parse`] reads one back
//! and refuses a truncated, foreign, newer or inconsistent document,
//! naming what is wrong and where. [`create`] makes a new state file,
//! [`open`] opens one as a [`PersistentUicc`] whose [`FileSaver`] saves
//! every change before the card answers. [`SimCard`] is the simulated UICC
//! of a command: in memory or saved in its state file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    EfBody, Node, PersistentUicc, SimUicc, StateFile, StateFileError, UiccState, UiccStateError,
    UiccStore, ADM1_MAX_TRIES, PIN1_MAX_TRIES,
};
use crate::vpcd::{Power, VirtualCard};

/// The `format` marker of a UICC state file.
pub const STATE_FORMAT: &str = "dmsc-uicc-state";
/// The state file schema this build reads and writes.
pub const STATE_SCHEMA_VERSION: u32 = 1;

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

/// Why a state document cannot be read (or written).
#[derive(Debug, thiserror::Error)]
pub enum StateDocError {
    /// Not JSON, or cut short.
    #[error("not a complete JSON document (truncated?)")]
    NotJson(#[source] serde_json::Error),
    /// Another format's marker.
    #[error("format '{found}' is not a UICC state file ('{STATE_FORMAT}' expected)")]
    WrongFormat {
        /// The `format` found.
        found: String,
    },
    /// No `format` string.
    #[error("no format '{STATE_FORMAT}' marker")]
    NoFormat,
    /// Written by a newer build.
    #[error(
        "schema_version {found} is newer than this dmsc reads ({STATE_SCHEMA_VERSION}); \
         use a newer dmsc"
    )]
    NewerSchema {
        /// The `schema_version` found.
        found: u64,
    },
    /// A missing, older or non-numeric `schema_version`.
    #[error("schema_version is not {STATE_SCHEMA_VERSION}, the version this dmsc reads")]
    OtherSchema,
    /// The document does not have the state file's shape (a missing,
    /// unknown or mistyped field).
    #[error("not a UICC state document")]
    Shape(#[source] serde_json::Error),
    /// A field's value is wrong.
    #[error("{at}")]
    Field {
        /// Where: a key (`adm1.value`) or a file path (`3F00/2FE2`).
        at: String,
        /// What is wrong.
        #[source]
        problem: FieldProblem,
    },
    /// The content is not a card that can run (a counter above its limit,
    /// a file in the wrong place…).
    #[error(transparent)]
    Card(#[from] UiccStateError),
    /// The card's document could not be encoded.
    #[error("cannot encode the UICC state")]
    Encode(#[source] serde_json::Error),
}

/// What is wrong with a field of a state document.
#[derive(Debug, thiserror::Error)]
pub enum FieldProblem {
    /// A file ID that is not hex.
    #[error("fid '{text}' is not hex")]
    FidNotHex {
        /// The fid given.
        text: String,
        /// The decoder's complaint.
        #[source]
        source: hex::FromHexError,
    },
    /// A file ID that is not 2 bytes.
    #[error("fid '{text}' is not 2 bytes")]
    FidLength {
        /// The fid given.
        text: String,
    },
    /// A hex field that is not hex.
    #[error("{what} is not hex")]
    NotHex {
        /// Which field.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: hex::FromHexError,
    },
    /// `data_hex` and `size` disagree.
    #[error("data_hex has {have} bytes, size says {size}")]
    DataSize {
        /// Bytes in `data_hex`.
        have: usize,
        /// The `size` given.
        size: usize,
    },
    /// `records_hex` and `records` disagree.
    #[error("records_hex has {have} records, records says {records}")]
    RecordCount {
        /// Records in `records_hex`.
        have: usize,
        /// The `records` given.
        records: usize,
    },
    /// A transparent EF read under ADM1.
    #[error("read is 'always' or 'pin1'")]
    ReadAccess,
    /// An EF updated under PIN1.
    #[error("update is 'always' or 'adm1'")]
    UpdateAccess,
    /// A key's `max_tries` that is not this card's.
    #[error("{found} (this card allows {max} tries)")]
    MaxTries {
        /// The `max_tries` given.
        found: u8,
        /// This card's limit.
        max: u8,
    },
    /// An ADM1 key that is not 8 bytes.
    #[error("the ADM1 key is 8 bytes (16 hex digits)")]
    Adm1Length,
    /// A PIN1 that is not 4 to 8 digits.
    #[error("PIN1 is 4 to 8 digits")]
    Pin1Digits,
    /// `iccid` that is not EF(ICCID)'s content.
    #[error("differs from EF(ICCID) 3F00/2FE2")]
    IccidDiffers,
}

/// Why [`open`] cannot open a state file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be read or locked (the error names it).
    #[error(transparent)]
    File(#[from] StateFileError),
    /// The file is not a state document this build can run.
    #[error("UICC state file {}", .path.display())]
    Bad {
        /// The state file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: StateDocError,
    },
}

/// Why [`create`] made no state file.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Something is at the path and replacing was not asked for.
    #[error("{} already exists; refusing to overwrite a card", .path.display())]
    Exists {
        /// The path given.
        path: PathBuf,
    },
    /// The card's document cannot be encoded.
    #[error("cannot encode the UICC state for {}", .path.display())]
    Encode {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: StateDocError,
    },
    /// The file cannot be written (or is in use).
    #[error("cannot write the UICC state file {}", .path.display())]
    Write {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: StateFileError,
    },
}

/// Why a [`FileSaver`] could not save the card (the card answers `6581`).
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The card's state is not one the state file can hold.
    #[error("the card's state is not valid")]
    Card(#[source] UiccStateError),
    /// The document cannot be encoded.
    #[error(transparent)]
    Encode(StateDocError),
    /// The file cannot be written.
    #[error(transparent)]
    Write(StateFileError),
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

/// EF(ICCID)'s content in hex, if the card has it.
fn iccid_of(state: &UiccState) -> Option<String> {
    match state.file(&[0x2FE2]) {
        Some(EfBody::Transparent(d)) => Some(hex::encode_upper(d)),
        _ => None,
    }
}

/// The state file document of a card (pretty JSON, newline-terminated).
pub fn state_document(card: &SimUicc) -> Result<Zeroizing<Vec<u8>>, StateDocError> {
    let state = card.state();
    let doc = StateDoc {
        format: STATE_FORMAT.into(),
        schema_version: STATE_SCHEMA_VERSION,
        iccid: iccid_of(&state),
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
    let mut text = Zeroizing::new(serde_json::to_vec_pretty(&doc).map_err(StateDocError::Encode)?);
    text.push(b'\n');
    Ok(text)
}

/// A bad field of a state document.
fn field(at: impl Into<String>, problem: FieldProblem) -> StateDocError {
    StateDocError::Field {
        at: at.into(),
        problem,
    }
}

fn fid_of(at: &str, text: &str) -> Result<u16, StateDocError> {
    let bytes = hex::decode(text).map_err(|source| {
        field(
            at,
            FieldProblem::FidNotHex {
                text: text.into(),
                source,
            },
        )
    })?;
    <[u8; 2]>::try_from(bytes.as_slice())
        .map(u16::from_be_bytes)
        .map_err(|_| field(at, FieldProblem::FidLength { text: text.into() }))
}

fn hex_of(at: &str, what: &'static str, text: &str) -> Result<Vec<u8>, StateDocError> {
    hex::decode(text).map_err(|source| field(at, FieldProblem::NotHex { what, source }))
}

fn node_of(doc: &FileDoc, at: &str, pin1_files: &mut Vec<u16>) -> Result<Node, StateDocError> {
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
                    .collect::<Result<_, _>>()?,
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
                    here,
                    FieldProblem::DataSize {
                        have: data.len(),
                        size: *size,
                    },
                ));
            }
            match read {
                Access::Always => {}
                Access::Pin1 => pin1_files.push(fid),
                Access::Adm1 => return Err(field(here, FieldProblem::ReadAccess)),
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
                    here,
                    FieldProblem::RecordCount {
                        have: records_hex.len(),
                        records: *records,
                    },
                ));
            }
            Node::Ef {
                fid,
                body: EfBody::LinearFixed {
                    record_len: *record_len,
                    records: records_hex
                        .iter()
                        .map(|r| hex_of(&here, "a record", r))
                        .collect::<Result<_, _>>()?,
                },
                adm_update: adm_of(&here, *update)?,
            }
        }
    })
}

fn adm_of(at: &str, update: Access) -> Result<bool, StateDocError> {
    match update {
        Access::Always => Ok(false),
        Access::Adm1 => Ok(true),
        Access::Pin1 => Err(field(at, FieldProblem::UpdateAccess)),
    }
}

fn key_of(at: &str, doc: &KeyDoc, max: u8) -> Result<(), StateDocError> {
    if doc.max_tries != max {
        return Err(field(
            format!("{at}.max_tries"),
            FieldProblem::MaxTries {
                found: doc.max_tries,
                max,
            },
        ));
    }
    Ok(())
}

/// The card of a state document. The error says what is wrong and where
/// (the caller names the file).
pub fn parse(bytes: &[u8]) -> Result<SimUicc, StateDocError> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        schema_version: Option<serde_json::Value>,
    }
    let header: Header = serde_json::from_slice(bytes).map_err(StateDocError::NotJson)?;
    match header.format.as_ref().and_then(|f| f.as_str()) {
        Some(STATE_FORMAT) => {}
        Some(other) => {
            return Err(StateDocError::WrongFormat {
                found: other.into(),
            })
        }
        None => return Err(StateDocError::NoFormat),
    }
    match header.schema_version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(STATE_SCHEMA_VERSION) => {}
        Some(v) if v > u64::from(STATE_SCHEMA_VERSION) => {
            return Err(StateDocError::NewerSchema { found: v })
        }
        _ => return Err(StateDocError::OtherSchema),
    }
    let doc: StateDoc = serde_json::from_slice(bytes).map_err(StateDocError::Shape)?;
    key_of("adm1", &doc.adm1, ADM1_MAX_TRIES)?;
    let adm1 = <[u8; 8]>::try_from(hex_of("adm1", "value", &doc.adm1.value)?.as_slice())
        .map_err(|_| field("adm1.value", FieldProblem::Adm1Length))?;
    let pin1 = match &doc.pin1 {
        Some(p) => {
            key_of("pin1", p, PIN1_MAX_TRIES)?;
            let digits = p.value.as_bytes();
            if !(4..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
                return Err(field("pin1.value", FieldProblem::Pin1Digits));
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
    if doc.iccid.as_deref().map(str::to_ascii_uppercase) != iccid_of(&state) {
        return Err(field("iccid", FieldProblem::IccidDiffers));
    }
    Ok(SimUicc::from_state(state)?)
}

/// Whether `bytes` look like a UICC state file rather than a profile: a
/// JSON object with a `format` field, or text naming the state format
/// (a damaged state file).
pub fn looks_like_state(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v.get("format").is_some(),
        Err(_) => bytes
            .windows(STATE_FORMAT.len())
            .any(|w| w == STATE_FORMAT.as_bytes()),
    }
}

/// Saves the card's state to its state file before each answer.
#[derive(Debug)]
pub struct FileSaver {
    file: StateFile,
    report: fn(&SaveError),
}

impl FileSaver {
    /// The state file this saver writes.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    fn save_state(&mut self, state: &UiccState) -> Result<(), SaveError> {
        let card = SimUicc::from_state(state.clone()).map_err(SaveError::Card)?;
        let bytes = state_document(&card).map_err(SaveError::Encode)?;
        self.file.save(&bytes).map_err(SaveError::Write)
    }
}

impl UiccStore for FileSaver {
    fn save(&mut self, state: &UiccState) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.save_state(state).map_err(|e| {
            // The card answers 6581; its user learns why.
            (self.report)(&e);
            e.into()
        })
    }
}

/// Opens the state file at `path` (locked while the card is in use) as a
/// card that saves every change before it answers. `report` hears why a
/// save failed (the card then answers `6581`).
pub fn open(path: &Path, report: fn(&SaveError)) -> Result<PersistentUicc<FileSaver>, OpenError> {
    let (file, bytes) = StateFile::open(path)?;
    let bytes = Zeroizing::new(bytes);
    let card = parse(&bytes).map_err(|source| OpenError::Bad {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(PersistentUicc::new(card, FileSaver { file, report }))
}

/// What [`create`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// EF(ICCID) in hex, if the card has it.
    pub iccid: Option<String>,
    /// Whether the card has a PIN1.
    pub pin1: bool,
    /// Whether a file was replaced.
    pub replaced: bool,
}

/// Writes `card` to a new state file at `path`. Something already there is
/// refused unless `replace`; then it is replaced atomically, and only while
/// no process holds it.
pub fn create(card: &SimUicc, path: &Path, replace: bool) -> Result<Created, CreateError> {
    let bytes = state_document(card).map_err(|source| CreateError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let exists = std::fs::symlink_metadata(path).is_ok();
    if exists && !replace {
        return Err(CreateError::Exists {
            path: path.to_path_buf(),
        });
    }
    StateFile::create(path, &bytes, replace).map_err(|source| CreateError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let state = card.state();
    Ok(Created {
        iccid: iccid_of(&state),
        pin1: state.pin1.is_some(),
        replaced: exists,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uicc::{Pin1, UiccProfile};

    fn card(pin1: bool) -> SimUicc {
        let profile = UiccProfile {
            iccid: vec![0x98, 0x10, 0x32, 0x54, 0x76, 0x98, 0x10, 0x32, 0x54, 0xF6],
            lwm2m_bootstrap: Some(vec![0x00, 0x01, 0x02, 0x03]),
            lwm2m_size: 16,
            dm_bootstrap: Some(vec![0x03, 0x01]),
            lwm2m_oid_do: false,
            adm1: *b"12345678",
            t0: true,
        };
        SimUicc::with_pin1(
            &profile,
            pin1.then(|| Pin1::from_digits(b"2468", true, false).unwrap()),
        )
    }

    fn text(pin1: bool) -> String {
        String::from_utf8(state_document(&card(pin1)).unwrap().to_vec()).unwrap()
    }

    fn refusal(doc: &str) -> String {
        // Not `unwrap_err`: a card accepted by mistake is not printed.
        let Err(e) = parse(doc.as_bytes()) else {
            panic!("accepted");
        };
        let mut out = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    #[test]
    fn a_card_survives_its_state_document() {
        for pin1 in [false, true] {
            let card = card(pin1);
            let doc = state_document(&card).unwrap();
            assert!(doc.ends_with(b"\n"));
            assert!(looks_like_state(&doc));
            let back = parse(&doc).unwrap();
            assert_eq!(back.state(), card.state());
            assert_eq!(*state_document(&back).unwrap(), *doc);
        }
        assert!(!looks_like_state(br#"{"iccid": "98"}"#));
        assert!(looks_like_state(b"{\"format\": \"dmsc-uicc-state\", \"sch"));
    }

    #[test]
    fn a_truncated_document_is_refused() {
        let good = text(false);
        let e = parse(&good.as_bytes()[..good.len() / 2]).unwrap_err();
        assert!(matches!(e, StateDocError::NotJson(_)), "{e:?}");
        assert!(refusal(&good[..good.len() / 2]).contains("truncated"));
    }

    #[test]
    fn another_format_or_a_newer_schema_is_refused() {
        let good = text(false);
        let other = good.replacen("dmsc-uicc-state", "dmsc-card-state", 1);
        assert_eq!(
            refusal(&other),
            "format 'dmsc-card-state' is not a UICC state file ('dmsc-uicc-state' expected)"
        );
        let none = good.replacen("\"format\"", "\"formats\"", 1);
        assert!(matches!(
            parse(none.as_bytes()),
            Err(StateDocError::NoFormat)
        ));
        let newer = good.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1);
        assert!(refusal(&newer).contains("schema_version 2 is newer than this dmsc reads (1)"));
        let older = good.replacen("\"schema_version\": 1", "\"schema_version\": 0", 1);
        assert!(matches!(
            parse(older.as_bytes()),
            Err(StateDocError::OtherSchema)
        ));
        let unknown = good.replacen("\"t0\"", "\"extra\": 1, \"t0\"", 1);
        assert!(matches!(
            parse(unknown.as_bytes()),
            Err(StateDocError::Shape(_))
        ));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let good = text(true);
        let cases = [
            (
                good.replacen("\"size\": 10,", "\"size\": 12,", 1),
                "3F00/2FE2: data_hex has 10 bytes, size says 12",
            ),
            (
                good.replacen("\"tries_left\": 3", "\"tries_left\": 9", 1),
                "adm1.tries_left: 9 is more than the limit 3",
            ),
            (
                good.replacen("\"max_tries\": 3", "\"max_tries\": 5", 1),
                "adm1.max_tries: 5 (this card allows 3 tries)",
            ),
            (
                good.replacen("3132333435363738", "31323334", 1),
                "adm1.value: the ADM1 key is 8 bytes (16 hex digits)",
            ),
            (
                good.replacen("\"2468\"", "\"24x8\"", 1),
                "pin1.value: PIN1 is 4 to 8 digits",
            ),
            (
                good.replacen("\"fid\": \"2FE2\"", "\"fid\": \"2FE\"", 1),
                "3F00: fid '2FE' is not hex",
            ),
            (
                good.replacen("\"fid\": \"2FE2\"", "\"fid\": \"2FE200\"", 1),
                "3F00: fid '2FE200' is not 2 bytes",
            ),
            (
                good.replacen("\"read\": \"always\"", "\"read\": \"adm1\"", 1),
                "3F00/2FE2: read is 'always' or 'pin1'",
            ),
            (
                good.replacen("\"update\": \"adm1\"", "\"update\": \"pin1\"", 1),
                ": update is 'always' or 'adm1'",
            ),
            (
                good.replacen("\"iccid\": \"98", "\"iccid\": \"99", 1),
                "iccid: differs from EF(ICCID) 3F00/2FE2",
            ),
        ];
        for (doc, problem) in cases {
            assert_ne!(doc, good, "{problem}: the case changes nothing");
            let got = refusal(&doc);
            assert!(got.contains(problem), "{problem}: {got}");
        }
    }

    #[test]
    fn a_state_file_is_created_once_opened_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.uicc");
        let made = create(&card(true), &path, false).unwrap();
        assert_eq!(
            made,
            Created {
                iccid: Some("981032547698103254F6".into()),
                pin1: true,
                replaced: false,
            }
        );
        assert!(matches!(
            create(&card(false), &path, false),
            Err(CreateError::Exists { .. })
        ));
        {
            let mut uicc = open(&path, |_| {}).unwrap();
            // A wrong PIN1 is counted in the file before the card answers.
            let mut verify = vec![0x00, 0x20, 0x00, 0x01, 0x08];
            verify.extend_from_slice(b"1357\xFF\xFF\xFF\xFF");
            let answer = uicc.transmit(&verify);
            assert_eq!(answer, Some(vec![0x63, 0xC2]));
            assert!(matches!(
                open(&path, |_| {}),
                Err(OpenError::File(StateFileError::InUse { .. }))
            ));
        }
        let again = open(&path, |_| {}).unwrap();
        assert_eq!(again.card().pin1_tries(), 2);
        drop(again);
        assert!(create(&card(false), &path, true).unwrap().replaced);
        std::fs::write(&path, "{\"format\": \"dmsc-uicc-state\"").unwrap();
        let e = open(&path, |_| {}).unwrap_err();
        assert!(
            e.to_string().starts_with("UICC state file ") && e.to_string().contains("card.uicc"),
            "{e}"
        );
        assert!(matches!(
            e,
            OpenError::Bad {
                source: StateDocError::NotJson(_),
                ..
            }
        ));
    }
}
