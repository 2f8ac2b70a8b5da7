//! Standard UICC file access and the bootstrap data a UICC carries.
//!
//! - [`Uicc`]: ISO/IEC 7816-4 / ETSI TS 102 221 file access over any
//!   [`CardCommands`] (a [`Session`](crate::Session) or a transaction):
//!   MANAGE CHANNEL open/close with the class byte of channels 1-19
//!   (ISO/IEC 7816-4 §5.4.1), SELECT by AID, file ID and path (P1 `00`/`04`/
//!   `08`/`09`; P2 `04` with the [`fcp`] returned, or `0C`), READ BINARY past
//!   256 bytes, READ RECORD. `61xx` (a T=0 card after SELECT) and `6Cxx` are
//!   handled by the session, on the command's own channel.
//! - [`pkcs15`]: EF(DIR), EF(ODF), EF(DODF), EF(TokenInfo) (DER, `der` crate).
//! - [`lwm2m`]: the LwM2M bootstrap file and its OMA-TLV.
//! - [`read_lwm2m_bootstrap`] / [`read_info`]: the use cases: what a device
//!   does to find its bootstrap data on the card.
//!
//! The reading sequence is the one of OMA-TS-LightweightM2M_Core appendix G
//! (and of a public modem library that follows it): open a logical channel,
//! select the PKCS#15 application by AID, read EF(ODF) (`5031`), each DODF it
//! lists, and the file of the data object with the wanted OID; close the
//! channel. Paths are selected from the current application (`7FFF` + path,
//! P1 `08`), files read in chunks of [`Uicc::chunk`] bytes.
//!
//! Use a session that has not selected the dmsc applet: a session that did
//! selects the applet again before each command that is not a SELECT.

pub mod fcp;
pub mod lwm2m;
pub mod pkcs15;
#[cfg(feature = "sim")]
pub mod sim;

#[cfg(test)]
mod tests;

use der::asn1::ObjectIdentifier;
use dmsc_card_model::apdu::{Command, Response};
use serde::Serialize;

use crate::error::{check_status, HostError, ProtocolFault};
use crate::session::CardCommands;

pub use dmsc_card_model::commands::Pin;
pub use fcp::{parse_fcp, Fcp, FcpError};
pub use lwm2m::{BootstrapFile, Lwm2mError};
pub use pkcs15::{
    Application, DataObject, OdfEntry, PinObject, PinType, Pkcs15Error, Pkcs15Problem, TokenInfo,
    OID_DM_BOOTSTRAP, OID_LWM2M_BOOTSTRAP, PKCS15_AID,
};

/// Errors of UICC file access and of decoding what was read.
#[derive(Debug, thiserror::Error)]
pub enum UiccError {
    /// The card or the link failed, or a status word was an error (kept as
    /// the source, so that exit codes and the JSON `sw` see the card's refusal).
    #[error("{0}")]
    Card(#[from] HostError),
    /// The card has no PKCS#15 application (SELECT by its AID: `6A82`).
    #[error("this card has no PKCS#15 application (SELECT A000000063504B43532D3135: SW {sw:04X})")]
    NoPkcs15Application {
        /// The status word of the SELECT.
        sw: u16,
    },
    /// The PKCS#15 application lists no data object with this OID.
    #[error("the card's PKCS#15 application has no data object with OID {oid}")]
    NoDataObject {
        /// The OID looked for.
        oid: String,
    },
    /// A data object needs the user PIN before it can be read, and none was
    /// given.
    #[error("{file} needs the user PIN (authId {auth_id}), and no PIN was given")]
    PinRequired {
        /// The data object and its file.
        file: String,
        /// The authentication object ID, hex.
        auth_id: String,
    },
    /// VERIFY refused the PIN (`63Cx`); nothing was read. The PIN is not
    /// tried again.
    #[error("wrong PIN for {file} (PIN reference {reference:02X}): {tries_left} tries left")]
    WrongPin {
        /// The data object and its file.
        file: String,
        /// The key reference verified (VERIFY P2).
        reference: u8,
        /// What the card says is left.
        tries_left: u8,
    },
    /// The PIN is blocked (`6983`, or `63C0`); nothing was read.
    #[error("the PIN for {file} (PIN reference {reference:02X}) is blocked")]
    PinBlocked {
        /// The data object and its file.
        file: String,
        /// The key reference.
        reference: u8,
    },
    /// The data object names an authId that the card's AODF does not list.
    #[error("{file} names authId {auth_id}, which the card's AODF does not list")]
    NoAuthObject {
        /// The data object and its file.
        file: String,
        /// The authentication object ID, hex.
        auth_id: String,
    },
    /// The PIN given does not fit the card's PIN object (length, type); it
    /// was not sent.
    #[error("the PIN for {file} cannot be used: {problem} (the PIN was not sent)")]
    PinFormat {
        /// The data object and its file.
        file: String,
        /// What is wrong (never the PIN).
        problem: PinProblem,
    },
    /// MANAGE CHANNEL open answered with something other than a channel
    /// number from 1 to 19.
    #[error(
        "MANAGE CHANNEL: the card assigned channel {} (1 to 19 expected)",
        hex::encode_upper(.assigned)
    )]
    BadChannel {
        /// The card's answer (the data of its response).
        assigned: Vec<u8>,
    },
    /// A path that cannot be selected.
    #[error("bad path {path}: a path is a non-empty sequence of 2-byte file IDs")]
    BadPath {
        /// The path, hex.
        path: String,
    },
    /// An FCP that does not parse.
    #[error("SELECT {path}: {source}")]
    Fcp {
        /// What was selected, hex.
        path: String,
        /// The parse error.
        #[source]
        source: FcpError,
    },
    /// A PKCS#15 file that does not parse.
    #[error(transparent)]
    Pkcs15(#[from] Pkcs15Error),
    /// An LwM2M bootstrap file that does not parse.
    #[error(transparent)]
    Lwm2m(#[from] Lwm2mError),
}

/// Why a PIN cannot be used with the card's PIN object ([`UiccError::PinFormat`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinProblem {
    /// The object takes digits only (`asciiNumeric`).
    #[error("the card's PIN object takes digits only")]
    DigitsOnly,
    /// The object takes UTF-8.
    #[error("the card's PIN object takes UTF-8")]
    Utf8Only,
    /// A PIN type this host does not encode (e.g. BCD).
    #[error("PIN type {0:?} of the card's PIN object is not supported")]
    UnsupportedType(PinType),
    /// Too short or too long.
    #[error("{given} characters; the card's PIN object takes {min} to {max}")]
    Length {
        /// The PIN's length.
        given: usize,
        /// The object's minimum.
        min: usize,
        /// The object's maximum (at most its stored length).
        max: usize,
    },
}

/// The class byte of interindustry commands on logical channel `channel`
/// (ISO/IEC 7816-4 §5.4.1): `0x00`-`0x03` for channels 0-3 (first
/// interindustry values), `0x40`-`0x4F` for channels 4-19 (further
/// interindustry values, channel - 4 in b4-b1).
pub fn cla_for_channel(channel: u8) -> Option<u8> {
    match channel {
        0..=3 => Some(channel),
        4..=19 => Some(0x40 | (channel - 4)),
        _ => None,
    }
}

/// How a SELECT names its target (P1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// P1 `00`: a file ID (`3F00` for the MF).
    Fid(u16),
    /// P1 `04`: a DF name (AID).
    Aid(&'a [u8]),
    /// P1 `08`: a path from the MF (without `3F00`).
    PathFromMf(&'a [u8]),
    /// P1 `09`: a path from the current DF.
    PathFromCurrent(&'a [u8]),
}

/// ISO/IEC 7816-4 file access on one logical channel of a UICC.
pub struct Uicc<'c, C: CardCommands + ?Sized> {
    card: &'c mut C,
    channel: u8,
    /// READ BINARY chunk (Le); 128 as modem libraries use, up to 256.
    pub chunk: usize,
}

impl<'c, C: CardCommands + ?Sized> Uicc<'c, C> {
    /// File access on the basic channel.
    pub fn new(card: &'c mut C) -> Self {
        Uicc {
            card,
            channel: 0,
            chunk: 128,
        }
    }

    /// The logical channel commands go to.
    pub fn channel(&self) -> u8 {
        self.channel
    }

    fn cla(&self) -> u8 {
        cla_for_channel(self.channel).unwrap_or(0)
    }

    fn transmit(&mut self, cmd: &Command) -> Result<Response, UiccError> {
        Ok(self.card.transmit(cmd)?)
    }

    /// MANAGE CHANNEL open (`00 70 00 00 01`): the card assigns a channel, and
    /// the following commands go to it.
    pub fn open_channel(&mut self) -> Result<u8, UiccError> {
        let cmd = Command::new(0x00, 0x70, 0x00, 0x00).with_le(1);
        let resp = self.transmit(&cmd)?;
        let data = check_status(&cmd, resp)?;
        match data.as_slice() {
            [n] if (1..=19).contains(n) => {
                self.channel = *n;
                Ok(*n)
            }
            other => Err(UiccError::BadChannel {
                assigned: other.to_vec(),
            }),
        }
    }

    /// MANAGE CHANNEL close of the current channel (`7x 70 80 nn`), back to
    /// the basic channel. Closing the basic channel does nothing.
    pub fn close_channel(&mut self) -> Result<(), UiccError> {
        if self.channel == 0 {
            return Ok(());
        }
        let cmd = Command::new(self.cla(), 0x70, 0x80, self.channel);
        let resp = self.transmit(&cmd)?;
        self.channel = 0;
        check_status(&cmd, resp)?;
        Ok(())
    }

    /// SELECT with the FCP returned (P2 `04`); `Ok(None)` when the card
    /// returns no data.
    pub fn select(&mut self, target: &Target<'_>) -> Result<Option<Fcp>, UiccError> {
        let (cmd, name) = self.select_command(target, true);
        let resp = self.transmit(&cmd)?;
        let data = check_status(&cmd, resp)?;
        if data.is_empty() {
            return Ok(None);
        }
        parse_fcp(&data)
            .map(Some)
            .map_err(|source| UiccError::Fcp { path: name, source })
    }

    /// SELECT without data returned (P2 `0C`).
    pub fn select_no_fcp(&mut self, target: &Target<'_>) -> Result<(), UiccError> {
        let (cmd, _) = self.select_command(target, false);
        let resp = self.transmit(&cmd)?;
        check_status(&cmd, resp)?;
        Ok(())
    }

    fn select_command(&self, target: &Target<'_>, fcp: bool) -> (Command, String) {
        let (p1, data) = match target {
            Target::Fid(f) => (0x00, f.to_be_bytes().to_vec()),
            Target::Aid(a) => (0x04, a.to_vec()),
            Target::PathFromMf(p) => (0x08, p.to_vec()),
            Target::PathFromCurrent(p) => (0x09, p.to_vec()),
        };
        let name = hex::encode_upper(&data);
        let cmd = Command::new(self.cla(), 0xA4, p1, if fcp { 0x04 } else { 0x0C }).with_data(data);
        let cmd = if fcp { cmd.with_le(256) } else { cmd };
        (cmd, name)
    }

    /// Selects a PKCS#15 `Path`: from the MF when it starts with `3F00`, else
    /// relative to the current application (`7FFF` + path, TS 102 221 §8.4.2).
    pub fn select_path(&mut self, path: &[u8]) -> Result<Option<Fcp>, UiccError> {
        if path.is_empty() || !path.len().is_multiple_of(2) {
            return Err(UiccError::BadPath {
                path: hex::encode_upper(path),
            });
        }
        let full: Vec<u8> = if path.starts_with(&[0x3F, 0x00]) {
            if path.len() == 2 {
                return self.select(&Target::Fid(0x3F00));
            }
            path[2..].to_vec()
        } else if path.starts_with(&[0x7F, 0xFF]) {
            path.to_vec()
        } else {
            [&[0x7F, 0xFF][..], path].concat()
        };
        self.select(&Target::PathFromMf(&full))
    }

    /// READ BINARY of the current EF from `offset`, at most `max` bytes. The
    /// first command asks for [`chunk`](Uicc::chunk) bytes (a short answer is
    /// taken as the end of the file, as modem libraries do), the following
    /// ones for the rest up to `max` in chunks; `6282` (end of file) and,
    /// past the first chunk, `6B00` (offset beyond the end) end the read. A
    /// card answering `6700` to an Le beyond `max` is asked again for
    /// exactly what is left.
    /// Offsets up to 32 767 (P1 b8 = 0).
    pub fn read_binary(&mut self, offset: usize, max: usize) -> Result<Vec<u8>, UiccError> {
        let chunk = self.chunk.clamp(1, 256);
        let mut out = Vec::new();
        let mut pos = offset;
        while out.len() < max {
            if pos > 0x7FFF {
                return Err(UiccError::Card(HostError::Protocol {
                    command: "READ BINARY",
                    fault: ProtocolFault::OffsetTooLarge { offset: pos },
                }));
            }
            let [p1, p2] = (pos as u16).to_be_bytes();
            let le = if pos == offset {
                chunk
            } else {
                chunk.min(max - out.len())
            };
            let mut cmd = Command::new(self.cla(), 0xB0, p1, p2).with_le(le);
            let mut resp = self.transmit(&cmd)?;
            let rest = max - out.len();
            if resp.sw == 0x6700 && le > rest {
                // A card that refuses an Le beyond the end of the file (size
                // from its FCP): ask for exactly what is left.
                cmd.le = Some(rest);
                resp = self.transmit(&cmd)?;
            }
            let le = cmd.le.unwrap_or(le);
            let end = match resp.sw {
                0x9000 => resp.data.len() < le,
                0x6282 => true,
                0x6B00 if pos > offset => break,
                _ => {
                    check_status(&cmd, resp)?;
                    break;
                }
            };
            if resp.data.is_empty() {
                break;
            }
            pos += resp.data.len();
            out.extend_from_slice(&resp.data);
            if end {
                break;
            }
        }
        out.truncate(max);
        Ok(out)
    }

    /// Reads a whole transparent EF: selects it by path and reads up to its
    /// FCP size (or until the card says the file ended).
    pub fn read_file(&mut self, path: &[u8]) -> Result<(Option<Fcp>, Vec<u8>), UiccError> {
        let fcp = self.select_path(path)?;
        let max = fcp
            .as_ref()
            .and_then(|f| f.size)
            .map_or(lwm2m::MAX_FILE_SIZE, |s| s as usize);
        let data = self.read_binary(0, max)?;
        Ok((fcp, data))
    }

    /// READ RECORD `number` of the current EF (P2 `04`), `len` bytes (0: up to 256).
    pub fn read_record(&mut self, number: u8, len: usize) -> Result<Vec<u8>, UiccError> {
        let le = if len == 0 { 256 } else { len.min(256) };
        let cmd = Command::new(self.cla(), 0xB2, number, 0x04).with_le(le);
        let resp = self.transmit(&cmd)?;
        Ok(check_status(&cmd, resp)?)
    }
}

/// A data object found in a DODF, with the file it came from.
#[derive(Debug, Clone, Serialize)]
pub struct FoundObject {
    /// The DODF's path, hex.
    pub dodf: String,
    /// The entry.
    #[serde(flatten)]
    pub object: DataObject,
    /// The size of the object's file from its FCP, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

/// What [`read_info`] finds on a card.
#[derive(Debug, Clone, Serialize)]
pub struct UiccInfo {
    /// Applications listed in EF(DIR).
    pub applications: Vec<Application>,
    /// The PKCS#15 token info, when the application has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_info: Option<TokenInfo>,
    /// Whether the card has a PKCS#15 application.
    pub pkcs15: bool,
    /// The data objects of every DODF.
    pub data_objects: Vec<FoundObject>,
    /// The PIN objects of every AODF (`A8` in the ODF).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pin_objects: Vec<PinObject>,
    /// Whether a PIN was given and verified (for the objects with an authId).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pin_verified: bool,
}

/// Runs `f` on a fresh logical channel and always closes it. A card (or
/// reader) without logical channels (`6881`, `6D00`, `6E00`, `6A81` to
/// MANAGE CHANNEL) is used on the basic channel instead.
fn on_channel<C: CardCommands + ?Sized, R>(
    card: &mut C,
    f: impl FnOnce(&mut Uicc<'_, C>) -> Result<R, UiccError>,
) -> Result<R, UiccError> {
    let mut u = Uicc::new(card);
    match u.open_channel() {
        Ok(_) => {}
        Err(UiccError::Card(e)) if matches!(e.sw(), Some(0x6881 | 0x6D00 | 0x6E00 | 0x6A81)) => {
            tracing::debug!("no logical channel ({e}); using the basic channel");
        }
        Err(e) => return Err(e),
    }
    let result = f(&mut u);
    let closed = u.close_channel();
    let r = result?;
    closed?;
    Ok(r)
}

/// Selects the PKCS#15 application on the current channel.
fn select_pkcs15<C: CardCommands + ?Sized>(u: &mut Uicc<'_, C>) -> Result<(), UiccError> {
    match u.select(&Target::Aid(&PKCS15_AID)) {
        Ok(_) => Ok(()),
        Err(UiccError::Card(e)) if matches!(e.sw(), Some(0x6A82 | 0x6A88)) => {
            Err(UiccError::NoPkcs15Application {
                sw: e.sw().unwrap_or(0x6A82),
            })
        }
        Err(e) => Err(e),
    }
}

/// Reads EF(ODF) and every DODF it lists.
fn data_objects<C: CardCommands + ?Sized>(
    u: &mut Uicc<'_, C>,
) -> Result<Vec<FoundObject>, UiccError> {
    let (_, odf) = u.read_file(&pkcs15::FID_ODF.to_be_bytes())?;
    let mut out = Vec::new();
    for entry in pkcs15::parse_odf(&odf)? {
        if entry.kind != pkcs15::OdfKind::DataObjects {
            continue;
        }
        let (_, dodf) = u.read_file(&entry.path.bytes())?;
        for object in pkcs15::parse_dodf(&dodf)? {
            out.push(FoundObject {
                dodf: entry.path.path.clone(),
                object,
                size: None,
            });
        }
    }
    Ok(out)
}

/// The PIN objects of every AODF the ODF lists.
fn pin_objects<C: CardCommands + ?Sized>(u: &mut Uicc<'_, C>) -> Result<Vec<PinObject>, UiccError> {
    let (_, odf) = u.read_file(&pkcs15::FID_ODF.to_be_bytes())?;
    let mut out = Vec::new();
    for entry in pkcs15::parse_odf(&odf)? {
        if entry.kind == pkcs15::OdfKind::AuthObjects {
            let (_, aodf) = u.read_file(&entry.path.bytes())?;
            out.extend(pkcs15::parse_aodf(&aodf)?);
        }
    }
    Ok(out)
}

/// Reads the value of the first data object with `oid` (either DODF form,
/// twice-wrapped OIDs included).
fn read_object<C: CardCommands + ?Sized>(
    u: &mut Uicc<'_, C>,
    oid: ObjectIdentifier,
    pin: Option<&Pin>,
) -> Result<Vec<u8>, UiccError> {
    let objects = data_objects(u)?;
    let found = objects
        .into_iter()
        .find(|o| o.object.oid == Some(oid))
        .ok_or_else(|| UiccError::NoDataObject {
            oid: oid.to_string(),
        })?;
    if let Some(direct) = &found.object.direct {
        return Ok(hex::decode(direct).unwrap_or_default());
    }
    let path = found
        .object
        .path
        .as_ref()
        .ok_or_else(|| UiccError::NoDataObject {
            oid: oid.to_string(),
        })?;
    let file = format!("data object {oid} (file {})", path.path);
    if let (Some(auth), Some(pin)) = (&found.object.auth_id, pin) {
        // Once, before reading; a refusal is reported, never retried.
        let pin_object = pin_object_for(u, auth, &file)?;
        u.verify_pin(&pin_object, pin, &file)?;
    }
    let result = u.read_file(&path.bytes());
    let (_, mut data) = match (result, &found.object.auth_id) {
        (Err(UiccError::Card(e)), Some(auth)) if e.sw() == Some(0x6982) && pin.is_none() => {
            return Err(UiccError::PinRequired {
                file,
                auth_id: auth.clone(),
            })
        }
        (r, _) => r?,
    };
    if let Some(index) = path.index {
        let start = (index as usize).min(data.len());
        data.drain(..start);
    }
    if let Some(len) = path.length {
        data.truncate(len as usize);
    }
    Ok(data)
}

/// The PIN object a data object's `authId` names: from the AODFs the ODF
/// lists (`A8`); without an AODF, the TS 102 221 default (PIN1, global key
/// reference `01`, 8 bytes `FF` padded).
fn pin_object_for<C: CardCommands + ?Sized>(
    u: &mut Uicc<'_, C>,
    auth_id: &str,
    file: &str,
) -> Result<PinObject, UiccError> {
    let (_, odf) = u.read_file(&pkcs15::FID_ODF.to_be_bytes())?;
    let aodfs: Vec<OdfEntry> = pkcs15::parse_odf(&odf)?
        .into_iter()
        .filter(|e| e.kind == pkcs15::OdfKind::AuthObjects)
        .collect();
    if aodfs.is_empty() {
        return Ok(PinObject::ts102221_pin1(auth_id));
    }
    for entry in aodfs {
        let (_, aodf) = u.read_file(&entry.path.bytes())?;
        if let Some(p) = pkcs15::parse_aodf(&aodf)?
            .into_iter()
            .find(|p| p.auth_id == auth_id)
        {
            return Ok(p);
        }
    }
    Err(UiccError::NoAuthObject {
        file: file.to_string(),
        auth_id: auth_id.to_string(),
    })
}

/// Reads the raw LwM2M bootstrap file (OID 2.23.43.9.1) from the PKCS#15
/// application, on a logical channel that is closed afterwards.
pub fn read_lwm2m_bootstrap_raw<C: CardCommands + ?Sized>(
    card: &mut C,
) -> Result<Vec<u8>, UiccError> {
    read_lwm2m_bootstrap_raw_with_pin(card, None)
}

/// [`read_lwm2m_bootstrap_raw`], verifying `pin` first when the data object
/// has an `authId` (see [`Uicc::verify_pin`]).
pub fn read_lwm2m_bootstrap_raw_with_pin<C: CardCommands + ?Sized>(
    card: &mut C,
    pin: Option<&Pin>,
) -> Result<Vec<u8>, UiccError> {
    on_channel(card, |u| {
        select_pkcs15(u)?;
        read_object(u, OID_LWM2M_BOOTSTRAP, pin)
    })
}

/// Reads and decodes the LwM2M bootstrap file.
pub fn read_lwm2m_bootstrap<C: CardCommands + ?Sized>(
    card: &mut C,
) -> Result<BootstrapFile, UiccError> {
    read_lwm2m_bootstrap_with_pin(card, None)
}

/// [`read_lwm2m_bootstrap`] with the user PIN for a protected object.
pub fn read_lwm2m_bootstrap_with_pin<C: CardCommands + ?Sized>(
    card: &mut C,
    pin: Option<&Pin>,
) -> Result<BootstrapFile, UiccError> {
    let raw = read_lwm2m_bootstrap_raw_with_pin(card, pin)?;
    Ok(BootstrapFile::decode(&raw)?)
}

/// Reads the raw OMA DM bootstrap (OID 2.23.43.7.1): a WBXML OMA DM message.
pub fn read_dm_bootstrap_raw<C: CardCommands + ?Sized>(card: &mut C) -> Result<Vec<u8>, UiccError> {
    read_dm_bootstrap_raw_with_pin(card, None)
}

/// [`read_dm_bootstrap_raw`] with the user PIN for a protected object.
pub fn read_dm_bootstrap_raw_with_pin<C: CardCommands + ?Sized>(
    card: &mut C,
    pin: Option<&Pin>,
) -> Result<Vec<u8>, UiccError> {
    on_channel(card, |u| {
        select_pkcs15(u)?;
        read_object(u, OID_DM_BOOTSTRAP, pin)
    })
}

/// Lists the card's applications (EF(DIR) on the basic channel) and the
/// PKCS#15 token info and data objects (on a logical channel). A card
/// without EF(DIR) or without PKCS#15 gives empty lists, not an error.
pub fn read_info<C: CardCommands + ?Sized>(card: &mut C) -> Result<UiccInfo, UiccError> {
    read_info_with_pin(card, None)
}

/// [`read_info`]; with `pin`, the PIN of the first data object that has an
/// `authId` is verified once (a wrong PIN is an error, not retried).
pub fn read_info_with_pin<C: CardCommands + ?Sized>(
    card: &mut C,
    pin: Option<&Pin>,
) -> Result<UiccInfo, UiccError> {
    let applications = read_dir(card)?;
    let pk = on_channel(card, |u| match select_pkcs15(u) {
        Ok(()) => {
            let token_info = match u.read_file(&pkcs15::FID_TOKEN_INFO.to_be_bytes()) {
                Ok((_, data)) => Some(pkcs15::parse_token_info(&data)?),
                Err(UiccError::Card(e)) if e.sw() == Some(0x6A82) => None,
                Err(e) => return Err(e),
            };
            let mut objects = data_objects(u)?;
            for o in &mut objects {
                if let Some(p) = &o.object.path {
                    if let Ok(Some(fcp)) = u.select_path(&p.bytes()) {
                        o.size = fcp.size;
                    }
                }
            }
            let pins = pin_objects(u)?;
            let mut verified = false;
            let protected = objects
                .iter()
                .find_map(|o| o.object.auth_id.clone().map(|a| (a, o)));
            if let (Some(pin), Some((auth, o))) = (pin, protected) {
                let file = format!(
                    "data object {} (file {})",
                    o.object
                        .oid
                        .map_or_else(|| "-".to_string(), |x| x.to_string()),
                    o.object.path.as_ref().map_or("-", |p| p.path.as_str())
                );
                let pin_object = pin_object_for(u, &auth, &file)?;
                u.verify_pin(&pin_object, pin, &file)?;
                verified = true;
            }
            Ok(Some((token_info, objects, pins, verified)))
        }
        Err(UiccError::NoPkcs15Application { .. }) => Ok(None),
        Err(e) => Err(e),
    })?;
    let (pkcs15, token_info, data_objects, pin_objects, pin_verified) = match pk {
        Some((t, o, p, v)) => (true, t, o, p, v),
        None => (false, None, Vec::new(), Vec::new(), false),
    };
    Ok(UiccInfo {
        applications,
        token_info,
        pkcs15,
        data_objects,
        pin_objects,
        pin_verified,
    })
}

/// The application templates of EF(DIR) (linear fixed, under the MF).
pub fn read_dir<C: CardCommands + ?Sized>(card: &mut C) -> Result<Vec<Application>, UiccError> {
    let mut u = Uicc::new(card);
    let fcp = match u.select(&Target::PathFromMf(&pkcs15::FID_DIR.to_be_bytes())) {
        Ok(f) => f,
        Err(UiccError::Card(e)) if e.sw() == Some(0x6A82) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let records = fcp.and_then(|f| f.records);
    let mut out = Vec::new();
    let count = records.map_or(254, |r| r.count);
    for n in 1..=count {
        let rec = match u.read_record(n, records.map_or(0, |r| usize::from(r.length))) {
            Ok(r) => r,
            Err(UiccError::Card(e)) if records.is_none() && e.sw() == Some(0x6A83) => break,
            Err(e) => return Err(e),
        };
        if let Some(app) = pkcs15::parse_dir_record(&rec)? {
            out.push(app);
        }
    }
    Ok(out)
}

/// Writes an LwM2M bootstrap file for personalisation: encodes it, checks it
/// fits the EF (size from its FCP), VERIFY of ADM1 (key reference `0A`) when
/// `adm_key` is given, then UPDATE BINARY of the whole EF (the encoding, `FF`
/// padded) in chunks of 255 bytes.
///
/// Nothing is sent to the card if the file does not encode or does not fit.
/// A UICC's UPDATE BINARY is not transactional across chunks: if the link
/// breaks between chunks the EF holds part of the new file; write again.
pub fn write_lwm2m_bootstrap<C: CardCommands + ?Sized>(
    card: &mut C,
    file: &BootstrapFile,
    adm_key: Option<&[u8]>,
) -> Result<(), UiccError> {
    // Refuse what does not encode before any APDU.
    file.encode()?;
    on_channel(card, |u| {
        select_pkcs15(u)?;
        let objects = data_objects(u)?;
        let found = objects
            .into_iter()
            .find(|o| o.object.oid == Some(OID_LWM2M_BOOTSTRAP))
            .ok_or_else(|| UiccError::NoDataObject {
                oid: OID_LWM2M_BOOTSTRAP.to_string(),
            })?;
        let path = found.object.path.ok_or_else(|| UiccError::NoDataObject {
            oid: OID_LWM2M_BOOTSTRAP.to_string(),
        })?;
        let fcp = u.select_path(&path.bytes())?;
        let size = fcp.and_then(|f| f.size).ok_or_else(|| {
            UiccError::Card(HostError::Protocol {
                command: "SELECT",
                fault: ProtocolFault::NoFileSize {
                    path: path.path.clone(),
                },
            })
        })?;
        let bytes = file.encode_padded(size as usize)?;
        if let Some(key) = adm_key {
            u.verify_adm(key)?;
        }
        u.update_binary(0, &bytes)
    })
}

impl<C: CardCommands + ?Sized> Uicc<'_, C> {
    /// VERIFY of ADM1 (`00 20 00 0A 08 key`). ADM1 is a global key reference
    /// (TS 102 221 §9.5.1), so it is verified on the basic channel, where the
    /// session's trace redacts VERIFY data: the key never appears in a trace.
    pub fn verify_adm(&mut self, key: &[u8]) -> Result<(), UiccError> {
        let mut cmd = Command::new(0x00, 0x20, 0x00, 0x0A).with_data(key.to_vec());
        let resp = self.transmit(&cmd);
        zeroize::Zeroize::zeroize(&mut cmd.data);
        check_status(&cmd, resp?)?;
        Ok(())
    }

    /// VERIFY of a user PIN (ISO/IEC 7816-4 / TS 102 221 §11.1.9): `CLA 20 00
    /// ref Lc data` on this channel, the PIN encoded as the PIN object says
    /// (ASCII digits or UTF-8, padded with its pad character, `FF` for a
    /// TS 102 221 PIN, to its stored length). Sent once: `63Cx` is
    /// [`UiccError::WrongPin`] with the tries left, `6983` (or `63C0`)
    /// [`UiccError::PinBlocked`]. A PIN that does not fit the object's lengths
    /// or type is refused before anything is sent. The session's trace
    /// redacts VERIFY data on every channel; the buffer is zeroized.
    pub fn verify_pin(
        &mut self,
        object: &PinObject,
        pin: &Pin,
        file: &str,
    ) -> Result<(), UiccError> {
        let bad = |problem: PinProblem| UiccError::PinFormat {
            file: file.to_string(),
            problem,
        };
        match object.pin_type {
            PinType::AsciiNumeric => {
                if !pin.as_bytes().iter().all(u8::is_ascii_digit) {
                    return Err(bad(PinProblem::DigitsOnly));
                }
            }
            PinType::Utf8 => {
                if std::str::from_utf8(pin.as_bytes()).is_err() {
                    return Err(bad(PinProblem::Utf8Only));
                }
            }
            other => return Err(bad(PinProblem::UnsupportedType(other))),
        }
        let len = pin.as_bytes().len();
        let max = object
            .max_length
            .unwrap_or(object.stored_length)
            .min(object.stored_length) as usize;
        if len < object.min_length as usize || len > max {
            return Err(bad(PinProblem::Length {
                given: len,
                min: object.min_length as usize,
                max,
            }));
        }
        let mut data = zeroize::Zeroizing::new(pin.as_bytes().to_vec());
        data.resize(object.stored_length as usize, object.pad_char);
        let mut cmd =
            Command::new(self.cla(), 0x20, 0x00, object.reference).with_data(data.to_vec());
        let resp = self.transmit(&cmd);
        zeroize::Zeroize::zeroize(&mut cmd.data);
        let resp = resp?;
        match resp.sw {
            0x9000 => Ok(()),
            0x63C0 | 0x6983 => Err(UiccError::PinBlocked {
                file: file.to_string(),
                reference: object.reference,
            }),
            sw if sw & 0xFFF0 == 0x63C0 => Err(UiccError::WrongPin {
                file: file.to_string(),
                reference: object.reference,
                tries_left: (sw & 0x0F) as u8,
            }),
            _ => {
                check_status(&cmd, resp)?;
                Ok(())
            }
        }
    }

    /// UPDATE BINARY of the current EF from `offset`, 255 bytes per command.
    pub fn update_binary(&mut self, offset: usize, data: &[u8]) -> Result<(), UiccError> {
        for (i, chunk) in data.chunks(255).enumerate() {
            let pos = offset + i * 255;
            if pos > 0x7FFF {
                return Err(UiccError::Card(HostError::Protocol {
                    command: "UPDATE BINARY",
                    fault: ProtocolFault::OffsetTooLarge { offset: pos },
                }));
            }
            let [p1, p2] = (pos as u16).to_be_bytes();
            let cmd = Command::new(self.cla(), 0xD6, p1, p2).with_data(chunk.to_vec());
            let resp = self.transmit(&cmd)?;
            check_status(&cmd, resp)?;
        }
        Ok(())
    }
}
