//! A simulated UICC for tests: a small ISO/IEC 7816-4 / ETSI TS 102 221 file
//! system (MF, EF(ICCID), EF(DIR), a PKCS#15 ADF with EF(ODF), EF(TokenInfo),
//! EF(DODF) and the LwM2M and OMA DM bootstrap files), logical channels 1-19,
//! and T=0-style answers (`61xx` after SELECT, then GET RESPONSE).
//!
//! Commands: SELECT (P1 `00` file ID, `04` AID, `08` path from the MF, `09`
//! path from the current DF; P2 `04` FCP or `0C` none), READ BINARY, READ
//! RECORD, UPDATE BINARY (after VERIFY of ADM1, key reference `0A`), MANAGE
//! CHANNEL, GET RESPONSE, and with [`Pin1`] VERIFY of PIN1 (key reference
//! `01`) before reading the data-object files it protects. Anything else is answered with the ISO status word
//! and changes nothing. It plugs into the vpcd bridge as a
//! [`VirtualCard`].
//!
//! # Persistence
//!
//! The card's persistent content (file tree, keys, try counters) is a
//! [`UiccState`]. [`SimUicc::process_saving`] hands it to a [`UiccStore`] at
//! each change, before the answer: after UPDATE BINARY, and for VERIFY
//! once the try counter has gone down and before the comparison decides
//! (then again when a right value restores the counter). A save that fails
//! is answered `6581` (memory failure): an update is undone, and a VERIFY
//! whose counter could not be saved compares nothing. [`PersistentUicc`]
//! is the card with its store, as a [`VirtualCard`]; [`StateFile`] keeps
//! a state document in one owner-only file, locked while in use and
//! replaced atomically at each save, as the applet's
//! [`FileStore`](crate::file_store::FileStore) does.

use alloc::vec;
use alloc::vec::Vec;

use dmsc_card_model::tlv;
use subtle::ConstantTimeEq;

use crate::vpcd::{Power, VirtualCard};

pub mod state_file;

/// The PKCS#15 application identifier.
pub const PKCS15_AID: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
];
/// A plausible UICC ATR (T=0 and T=1 offered).
pub const UICC_ATR: [u8; 9] = [0x3B, 0x9F, 0x96, 0x80, 0x1F, 0xC7, 0x80, 0x31, 0xE0];

const MAX_CHANNELS: usize = 20;
const ADM1: u8 = 0x0A;

/// The secrets VERIFY checks on the simulated UICC.
#[derive(Debug, Clone, Copy)]
enum Secret {
    /// PIN1 (key reference `01`).
    Pin1,
    /// ADM1 (key reference `0A`).
    Adm1,
}
const ADM_TRIES: u8 = 3;
const PIN1: u8 = 0x01;
const PIN1_TRIES: u8 = 3;
/// The ADM1 try limit.
pub const ADM1_MAX_TRIES: u8 = ADM_TRIES;
/// The PIN1 try limit.
pub const PIN1_MAX_TRIES: u8 = PIN1_TRIES;
/// EF(AODF) of the profile when PIN1 protects a file.
const FID_AODF: u16 = 0x6431;

/// PIN1 protection of the profile's data-object files: read access
/// condition PIN1 (TS 102 221 global key reference `01`), 3 tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin1 {
    /// PIN1 as VERIFY carries it: 4 to 8 ASCII digits padded with `FF` to 8 bytes.
    pub value: [u8; 8],
    /// EF(LwM2M_Bootstrap) needs PIN1 to be read.
    pub lwm2m: bool,
    /// EF(DM bootstrap) needs PIN1 to be read.
    pub dm: bool,
}

impl Pin1 {
    /// PIN1 from its digits (4 to 8 ASCII digits), `None` otherwise.
    pub fn from_digits(digits: &[u8], lwm2m: bool, dm: bool) -> Option<Pin1> {
        if !(4..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut value = [0xFF; 8];
        value[..digits.len()].copy_from_slice(digits);
        Some(Pin1 { value, lwm2m, dm })
    }

    fn protected(&self) -> Vec<u16> {
        let mut v = Vec::new();
        if self.lwm2m {
            v.push(0x6432);
        }
        if self.dm {
            v.push(0x6433);
        }
        v
    }
}

/// What an EF holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EfBody {
    /// A transparent EF of fixed size.
    Transparent(Vec<u8>),
    /// A linear fixed EF: records of one length.
    LinearFixed {
        /// Record length.
        record_len: usize,
        /// The records.
        records: Vec<Vec<u8>>,
    },
}

/// A file of the simulated card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A DF (or ADF, with an AID).
    Df {
        /// File ID.
        fid: u16,
        /// The AID of an ADF.
        aid: Option<Vec<u8>>,
        /// Its files.
        children: Vec<Node>,
    },
    /// An EF.
    Ef {
        /// File ID.
        fid: u16,
        /// Content.
        body: EfBody,
        /// Whether UPDATE needs ADM1 (otherwise always allowed).
        adm_update: bool,
    },
}

impl Node {
    fn fid(&self) -> u16 {
        match self {
            Node::Df { fid, .. } | Node::Ef { fid, .. } => *fid,
        }
    }
}

/// Where a channel stands: the DF path (indexes from the MF), the current
/// application, and the current EF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Channel {
    df: Vec<usize>,
    adf: Option<Vec<usize>>,
    ef: Option<usize>,
    /// Data waiting for GET RESPONSE.
    pending: Vec<u8>,
}

/// What the standard profile holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiccProfile {
    /// EF(ICCID) content (BCD, 10 bytes).
    pub iccid: Vec<u8>,
    /// The LwM2M bootstrap file content (padded with FF to `lwm2m_size`).
    pub lwm2m_bootstrap: Option<Vec<u8>>,
    /// EF(LwM2M_Bootstrap) size.
    pub lwm2m_size: usize,
    /// The OMA DM bootstrap (a WBXML DM message), if any.
    pub dm_bootstrap: Option<Vec<u8>>,
    /// Write the LwM2M DODF entry as an `oidDO` with a twice-wrapped OID (as
    /// published cards do), instead of an opaque DO with `applicationOID`.
    pub lwm2m_oid_do: bool,
    /// The ADM1 key (8 bytes).
    pub adm1: [u8; 8],
    /// Answer SELECT with `61xx` (T=0 style) instead of the data.
    pub t0: bool,
}

fn t(tag: u32, value: &[u8]) -> Vec<u8> {
    tlv::encode(tag, value)
}

fn path(fid: u16) -> Vec<u8> {
    t(0x30, &t(0x04, &fid.to_be_bytes()))
}

/// OID 2.23.43.9.1 (LwM2M bootstrap) and 2.23.43.7.1 (OMA DM bootstrap).
const OID_LWM2M: [u8; 4] = [0x67, 0x2B, 0x09, 0x01];
const OID_DM: [u8; 4] = [0x67, 0x2B, 0x07, 0x01];

/// `commonObjectAttributes` with the label (if any) and, for a PIN-protected
/// object, flags `private` and authId `01`.
fn common_attributes(label: Option<&str>, auth: bool) -> Vec<u8> {
    let mut v = label.map(|l| t(0x0C, l.as_bytes())).unwrap_or_default();
    if auth {
        v.extend(t(0x03, &[0x07, 0x80]));
        v.extend(t(0x04, &[PIN1]));
    }
    t(0x30, &v)
}

/// The AODF entry of PIN1 (ISO/IEC 7816-15 `PinAttributes`): flags
/// initialized and needs-padding, ascii-numeric, 4 to 8 digits stored in 8
/// bytes, reference `01`, padChar `FF`, path `3F00`.
fn pin1_aodf_entry() -> Vec<u8> {
    let common = t(0x30, &[t(0x0C, b"PIN1"), t(0x03, &[0x06, 0x40])].concat());
    let class = t(0x30, &t(0x04, &[PIN1]));
    let attrs = t(
        0x30,
        &[
            t(0x03, &[0x02, 0x0C]),
            t(0x0A, &[0x01]),
            t(0x02, &[0x04]),
            t(0x02, &[0x08]),
            t(0x02, &[0x08]),
            t(0x80, &[PIN1]),
            t(0x04, &[0xFF]),
            t(0x30, &t(0x04, &[0x3F, 0x00])),
        ]
        .concat(),
    );
    t(0x30, &[common, class, t(0xA1, &attrs)].concat())
}

fn opaque_do(label: &str, oid: &[u8], fid: u16, auth: bool) -> Vec<u8> {
    let common = common_attributes(Some(label), auth);
    let class = t(0x30, &t(0x06, oid));
    let ty = t(0xA1, &path(fid));
    t(0x30, &[common, class, ty].concat())
}

fn oid_do_wrapped(label: &str, oid: &[u8], fid: u16, auth: bool) -> Vec<u8> {
    let common = common_attributes(None, auth);
    let class = t(0x30, &t(0x0C, label.as_bytes()));
    let wrapped = t(0x06, &t(0x06, oid));
    let ty = t(0xA1, &t(0x30, &[wrapped, path(fid)].concat()));
    t(0xA1, &[common, class, ty].concat())
}

fn padded(mut v: Vec<u8>, size: usize) -> Vec<u8> {
    if v.len() < size {
        v.resize(size, 0xFF);
    }
    v
}

impl UiccProfile {
    /// The file system of the profile.
    pub fn build(&self) -> Node {
        self.build_with(None)
    }

    /// The file system of the profile, with the data objects `pin1`
    /// protects carrying authId `01` and an EF(AODF) (`6431`, `A8` in the
    /// ODF) describing PIN1.
    pub fn build_with(&self, pin1: Option<&Pin1>) -> Node {
        let (lwm2m_auth, dm_auth) = pin1.map_or((false, false), |p| (p.lwm2m, p.dm));
        let mut dodf = Vec::new();
        if self.lwm2m_bootstrap.is_some() {
            dodf.extend(if self.lwm2m_oid_do {
                oid_do_wrapped("LwM2M Bootstrap", &OID_LWM2M, 0x6432, lwm2m_auth)
            } else {
                opaque_do("LwM2M Bootstrap", &OID_LWM2M, 0x6432, lwm2m_auth)
            });
        }
        if self.dm_bootstrap.is_some() {
            dodf.extend(opaque_do("DM Bootstrap", &OID_DM, 0x6433, dm_auth));
        }
        let mut odf = t(0xA7, &path(0x6430));
        if pin1.is_some() {
            odf.extend(t(0xA8, &path(FID_AODF)));
        }
        let odf = padded(odf, 32);
        let token_info = t(
            0x30,
            &[
                t(0x02, &[0]),
                t(0x04, &self.iccid),
                t(0x0C, b"dmsc simulated UICC"),
                t(0x80, b"dmsc-uicc"),
                t(0x03, &[0x00]),
            ]
            .concat(),
        );
        let ef = |fid: u16, data: Vec<u8>, adm_update: bool| Node::Ef {
            fid,
            body: EfBody::Transparent(data),
            adm_update,
        };
        let mut adf = vec![
            ef(0x5031, odf, true),
            ef(0x5032, padded(token_info, 64), true),
            ef(0x6430, padded(dodf, 128), true),
        ];
        if pin1.is_some() {
            adf.push(ef(FID_AODF, padded(pin1_aodf_entry(), 64), true));
        }
        if let Some(b) = &self.lwm2m_bootstrap {
            adf.push(ef(0x6432, padded(b.clone(), self.lwm2m_size), true));
        }
        if let Some(d) = &self.dm_bootstrap {
            adf.push(ef(0x6433, padded(d.clone(), d.len().max(1)), true));
        }
        let dir_record = |aid: &[u8], label: &str| {
            padded(
                t(0x61, &[t(0x4F, aid), t(0x50, label.as_bytes())].concat()),
                38,
            )
        };
        Node::Df {
            fid: 0x3F00,
            aid: None,
            children: vec![
                ef(0x2FE2, self.iccid.clone(), true),
                Node::Ef {
                    fid: 0x2F00,
                    body: EfBody::LinearFixed {
                        record_len: 38,
                        records: vec![dir_record(&PKCS15_AID, "PKCS15"), vec![0xFF; 38]],
                    },
                    adm_update: true,
                },
                Node::Df {
                    fid: 0x7F50,
                    aid: Some(PKCS15_AID.to_vec()),
                    children: adf,
                },
            ],
        }
    }
}

/// The simulated UICC.
#[derive(Debug, Clone)]
pub struct SimUicc {
    mf: Node,
    channels: Vec<Option<Channel>>,
    adm1: [u8; 8],
    adm_tries: u8,
    adm_verified: bool,
    pin1: Option<[u8; 8]>,
    /// Files whose READ BINARY needs PIN1.
    pin1_files: Vec<u16>,
    pin1_tries: u8,
    pin1_verified: bool,
    t0: bool,
}

fn sw(code: u16) -> Vec<u8> {
    code.to_be_bytes().to_vec()
}

fn ok(mut data: Vec<u8>) -> Vec<u8> {
    data.extend_from_slice(&[0x90, 0x00]);
    data
}

impl SimUicc {
    /// A card with the profile's files.
    pub fn new(profile: &UiccProfile) -> SimUicc {
        SimUicc::with_pin1(profile, None)
    }

    /// A card with the profile's files, `pin1` protecting some of them.
    pub fn with_pin1(profile: &UiccProfile, pin1: Option<Pin1>) -> SimUicc {
        let mut channels = vec![None; MAX_CHANNELS];
        channels[0] = Some(Channel::default());
        SimUicc {
            mf: profile.build_with(pin1.as_ref()),
            channels,
            adm1: profile.adm1,
            adm_tries: ADM_TRIES,
            adm_verified: false,
            pin1_files: pin1.as_ref().map(Pin1::protected).unwrap_or_default(),
            pin1: pin1.map(|p| p.value),
            pin1_tries: PIN1_TRIES,
            pin1_verified: false,
            t0: profile.t0,
        }
    }

    /// PIN1 tries left (3 when PIN1 is not configured).
    pub fn pin1_tries(&self) -> u8 {
        self.pin1_tries
    }

    /// ADM1 tries left.
    pub fn adm1_tries(&self) -> u8 {
        self.adm_tries
    }

    /// The card's persistent content, as a state file keeps it.
    pub fn state(&self) -> UiccState {
        UiccState {
            mf: self.mf.clone(),
            adm1: self.adm1,
            adm1_tries: self.adm_tries,
            pin1: self.pin1,
            pin1_files: self.pin1_files.clone(),
            pin1_tries: self.pin1_tries,
            t0: self.t0,
        }
    }

    /// A card with a saved content (powered off: no channel but the basic
    /// one, nothing verified), after checking it is one this card can run.
    pub fn from_state(state: UiccState) -> Result<SimUicc, UiccStateError> {
        state.check()?;
        let mut channels = vec![None; MAX_CHANNELS];
        channels[0] = Some(Channel::default());
        Ok(SimUicc {
            mf: state.mf,
            channels,
            adm1: state.adm1,
            adm_tries: state.adm1_tries,
            adm_verified: false,
            pin1: state.pin1,
            pin1_files: state.pin1_files,
            pin1_tries: state.pin1_tries,
            pin1_verified: false,
            t0: state.t0,
        })
    }

    /// The content of a transparent EF at a path of file IDs under the MF
    /// (for tests).
    pub fn file(&self, fids: &[u16]) -> Option<&[u8]> {
        let mut node = &self.mf;
        for f in fids {
            let Node::Df { children, .. } = node else {
                return None;
            };
            node = children.iter().find(|c| c.fid() == *f)?;
        }
        match node {
            Node::Ef {
                body: EfBody::Transparent(d),
                ..
            } => Some(d),
            _ => None,
        }
    }

    /// Power cycle: channels closed, security state lost (ADM1 and PIN1
    /// verified states; the try counters stay).
    pub fn reset(&mut self) {
        for c in self.channels.iter_mut().skip(1) {
            *c = None;
        }
        self.channels[0] = Some(Channel::default());
        self.adm_verified = false;
        self.pin1_verified = false;
    }

    fn node(&self, idx: &[usize]) -> Option<&Node> {
        let mut node = &self.mf;
        for i in idx {
            let Node::Df { children, .. } = node else {
                return None;
            };
            node = children.get(*i)?;
        }
        Some(node)
    }

    fn node_mut(&mut self, idx: &[usize]) -> Option<&mut Node> {
        let mut node = &mut self.mf;
        for i in idx {
            let Node::Df { children, .. } = node else {
                return None;
            };
            node = children.get_mut(*i)?;
        }
        Some(node)
    }

    fn child(&self, df: &[usize], fid: u16) -> Option<usize> {
        match self.node(df)? {
            Node::Df { children, .. } => children.iter().position(|c| c.fid() == fid),
            Node::Ef { .. } => None,
        }
    }

    /// Processes one command APDU; changes live in memory only.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.process_saving(apdu, &mut InMemory)
    }

    /// Processes one command APDU, saving every change to `store` before
    /// answering (see the module documentation).
    pub fn process_saving(&mut self, apdu: &[u8], store: &mut dyn UiccStore) -> Vec<u8> {
        let Ok(cmd) = dmsc_card_model::apdu::Command::decode(apdu) else {
            return sw(0x6700);
        };
        // ISO/IEC 7816-4 §5.4.1: channel from the class byte.
        let ch = match cmd.cla {
            0x00..=0x3F => usize::from(cmd.cla & 0x03),
            0x40..=0x7F => 4 + usize::from(cmd.cla & 0x0F),
            _ => return sw(0x6E00),
        };
        if self.channels.get(ch).and_then(|c| c.as_ref()).is_none() {
            return sw(0x6881);
        }
        let le = cmd.le.unwrap_or(0);
        match cmd.ins {
            0x70 => self.manage_channel(ch, cmd.p1, cmd.p2),
            0xA4 => self.select(ch, cmd.p1, cmd.p2, &cmd.data),
            0xC0 => self.get_response(ch, le),
            0xB0 => self.read_binary(ch, cmd.p1, cmd.p2, le),
            0xB2 => self.read_record(ch, cmd.p1, cmd.p2, le),
            0xD6 => self.update_binary(ch, cmd.p1, cmd.p2, &cmd.data, store),
            0x20 => self.verify(cmd.p1, cmd.p2, &cmd.data, store),
            _ => sw(0x6D00),
        }
    }

    fn manage_channel(&mut self, ch: usize, p1: u8, p2: u8) -> Vec<u8> {
        match (p1, p2) {
            (0x00, 0x00) => match (1..MAX_CHANNELS).find(|i| self.channels[*i].is_none()) {
                Some(n) => {
                    // The new channel starts where the issuing channel is
                    // (ISO/IEC 7816-4: opened from the basic channel, at the MF).
                    self.channels[n] = Some(if ch == 0 {
                        Channel::default()
                    } else {
                        self.channels[ch].clone().unwrap_or_default()
                    });
                    ok(vec![n as u8])
                }
                None => sw(0x6A81),
            },
            (0x80, n) => {
                let n = usize::from(n);
                if n == 0 || n >= MAX_CHANNELS || self.channels[n].is_none() {
                    return sw(0x6A86);
                }
                self.channels[n] = None;
                sw(0x9000)
            }
            _ => sw(0x6A86),
        }
    }

    fn fcp(&self, idx: &[usize]) -> Vec<u8> {
        let Some(node) = self.node(idx) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        match node {
            Node::Df { fid, aid, .. } => {
                v.extend(t(0x82, &[0x78, 0x21]));
                v.extend(t(0x83, &fid.to_be_bytes()));
                if let Some(a) = aid {
                    v.extend(t(0x84, a));
                }
                v.extend(t(0x8A, &[0x05]));
                v.extend(t(0x8B, &[0x2F, 0x06, 0x01]));
                v.extend(t(0xC6, &[0x90, 0x01, 0x40, 0x83, 0x01, 0x0A]));
            }
            Node::Ef { fid, body, .. } => {
                match body {
                    EfBody::Transparent(_) => v.extend(t(0x82, &[0x41, 0x21])),
                    EfBody::LinearFixed {
                        record_len,
                        records,
                    } => {
                        let [a, b] = (*record_len as u16).to_be_bytes();
                        v.extend(t(0x82, &[0x42, 0x21, a, b, records.len() as u8]));
                    }
                }
                v.extend(t(0x83, &fid.to_be_bytes()));
                v.extend(t(0x8A, &[0x05]));
                v.extend(t(0x8B, &[0x2F, 0x06, 0x03]));
                let size = match body {
                    EfBody::Transparent(d) => d.len(),
                    EfBody::LinearFixed {
                        record_len,
                        records,
                    } => record_len * records.len(),
                };
                v.extend(t(0x80, &(size as u16).to_be_bytes()));
                v.extend(t(0x88, &[]));
            }
        }
        t(0x62, &v)
    }

    fn resolve(&self, ch: usize, p1: u8, data: &[u8]) -> Option<Vec<usize>> {
        let c = self.channels[ch].as_ref()?;
        let fids: Vec<u16> = data
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]))
            .collect();
        if !data.len().is_multiple_of(2) {
            return None;
        }
        let walk = |this: &SimUicc, mut at: Vec<usize>, fids: &[u16]| -> Option<Vec<usize>> {
            for f in fids {
                if *f == 0x7FFF {
                    at = c.adf.clone()?;
                    continue;
                }
                at.push(this.child(&at, *f)?);
            }
            Some(at)
        };
        match p1 {
            0x00 => {
                let [f] = fids.as_slice() else { return None };
                match *f {
                    0x3F00 => Some(Vec::new()),
                    0x7FFF => c.adf.clone(),
                    f => {
                        // A child of the current DF, the current DF's parent,
                        // or a sibling.
                        if let Some(i) = self.child(&c.df, f) {
                            let mut p = c.df.clone();
                            p.push(i);
                            return Some(p);
                        }
                        let mut parent = c.df.clone();
                        parent.pop()?;
                        if self.node(&parent).map(Node::fid) == Some(f) {
                            return Some(parent);
                        }
                        let i = self.child(&parent, f)?;
                        parent.push(i);
                        Some(parent)
                    }
                }
            }
            0x04 => {
                let Node::Df { children, .. } = &self.mf else {
                    return None;
                };
                children
                    .iter()
                    .position(|n| matches!(n, Node::Df { aid: Some(a), .. } if a.starts_with(data) && !data.is_empty()))
                    .map(|i| vec![i])
            }
            0x08 => walk(self, Vec::new(), &fids),
            0x09 => walk(self, c.df.clone(), &fids),
            _ => None,
        }
    }

    fn select(&mut self, ch: usize, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        if !matches!(p2, 0x04 | 0x0C | 0x00) {
            return sw(0x6A86);
        }
        if !matches!(p1, 0x00 | 0x04 | 0x08 | 0x09) {
            return sw(0x6A86);
        }
        let Some(target) = self.resolve(ch, p1, data) else {
            return sw(0x6A82);
        };
        let is_df = matches!(self.node(&target), Some(Node::Df { .. }));
        let is_adf = matches!(self.node(&target), Some(Node::Df { aid: Some(_), .. }));
        let fcp = self.fcp(&target);
        let Some(c) = self.channels[ch].as_mut() else {
            return sw(0x6881);
        };
        if is_df {
            if is_adf {
                c.adf = Some(target.clone());
            }
            c.df = target;
            c.ef = None;
        } else {
            let mut df = target.clone();
            let last = df.pop();
            c.df = df;
            c.ef = last;
        }
        if p2 == 0x0C {
            return sw(0x9000);
        }
        if self.t0 {
            let n = fcp.len();
            c.pending = fcp;
            return vec![0x61, n as u8];
        }
        ok(fcp)
    }

    fn get_response(&mut self, ch: usize, le: usize) -> Vec<u8> {
        let Some(c) = self.channels[ch].as_mut() else {
            return sw(0x6881);
        };
        if c.pending.is_empty() {
            return sw(0x6985);
        }
        let n = if le == 0 { 256 } else { le };
        if n < c.pending.len() {
            // Wrong length: say how many are available.
            return vec![0x6C, c.pending.len() as u8];
        }
        ok(core::mem::take(&mut c.pending))
    }

    fn current_ef(&self, ch: usize) -> Option<Vec<usize>> {
        let c = self.channels[ch].as_ref()?;
        let mut p = c.df.clone();
        p.push(c.ef?);
        Some(p)
    }

    fn read_binary(&mut self, ch: usize, p1: u8, p2: u8, le: usize) -> Vec<u8> {
        if p1 & 0x80 != 0 {
            return sw(0x6A81);
        }
        let Some(ef) = self.current_ef(ch) else {
            return sw(0x6986);
        };
        let Some(Node::Ef {
            body: EfBody::Transparent(d),
            ..
        }) = self.node(&ef)
        else {
            return sw(0x6981);
        };
        if !self.pin1_verified
            && self
                .node(&ef)
                .is_some_and(|n| self.pin1_files.contains(&n.fid()))
        {
            return sw(0x6982);
        }
        let offset = usize::from(u16::from_be_bytes([p1, p2]));
        if offset >= d.len() {
            return sw(0x6B00);
        }
        let ne = if le == 0 { 256 } else { le };
        let end = (offset + ne).min(d.len());
        let mut out = d[offset..end].to_vec();
        if end - offset < ne {
            out.extend_from_slice(&[0x62, 0x82]);
            out
        } else {
            out.extend_from_slice(&[0x90, 0x00]);
            out
        }
    }

    fn read_record(&mut self, ch: usize, p1: u8, p2: u8, le: usize) -> Vec<u8> {
        if p2 != 0x04 {
            return sw(0x6A86);
        }
        let Some(ef) = self.current_ef(ch) else {
            return sw(0x6986);
        };
        let Some(Node::Ef {
            body: EfBody::LinearFixed { records, .. },
            ..
        }) = self.node(&ef)
        else {
            return sw(0x6981);
        };
        let Some(rec) = usize::from(p1).checked_sub(1).and_then(|i| records.get(i)) else {
            return sw(0x6A83);
        };
        if le != 0 && le != rec.len() {
            return vec![0x6C, rec.len() as u8];
        }
        ok(rec.clone())
    }

    fn update_binary(
        &mut self,
        ch: usize,
        p1: u8,
        p2: u8,
        data: &[u8],
        store: &mut dyn UiccStore,
    ) -> Vec<u8> {
        if p1 & 0x80 != 0 {
            return sw(0x6A81);
        }
        let Some(ef) = self.current_ef(ch) else {
            return sw(0x6986);
        };
        let verified = self.adm_verified;
        let Some(Node::Ef {
            body: EfBody::Transparent(d),
            adm_update,
            ..
        }) = self.node_mut(&ef)
        else {
            return sw(0x6981);
        };
        if *adm_update && !verified {
            return sw(0x6982);
        }
        let offset = usize::from(u16::from_be_bytes([p1, p2]));
        let Some(end) = offset.checked_add(data.len()).filter(|e| *e <= d.len()) else {
            return sw(0x6B00);
        };
        let old = d[offset..end].to_vec();
        d[offset..end].copy_from_slice(data);
        if self.save(store) {
            return sw(0x9000);
        }
        // Not saved: the update did not happen.
        if let Some(Node::Ef {
            body: EfBody::Transparent(d),
            ..
        }) = self.node_mut(&ef)
        {
            d[offset..end].copy_from_slice(&old);
        }
        sw(0x6581)
    }

    /// Saves the persistent content; `false` if the store failed.
    fn save(&self, store: &mut dyn UiccStore) -> bool {
        store.save(&self.state()).is_ok()
    }

    /// The try counter and the verified state of `secret`.
    fn secret_state(&mut self, secret: Secret) -> (&mut u8, &mut bool) {
        match secret {
            Secret::Pin1 => (&mut self.pin1_tries, &mut self.pin1_verified),
            Secret::Adm1 => (&mut self.adm_tries, &mut self.adm_verified),
        }
    }

    /// The answer to a VERIFY of `secret` that compares nothing: blocked
    /// (`6983`), or, without data, the verified state or the tries left.
    fn verify_status(&mut self, secret: Secret, data: &[u8]) -> Option<Vec<u8>> {
        let (tries, verified) = self.secret_state(secret);
        if *tries == 0 {
            return Some(sw(0x6983));
        }
        if data.is_empty() {
            return Some(if *verified {
                sw(0x9000)
            } else {
                vec![0x63, 0xC0 | *tries]
            });
        }
        None
    }

    /// VERIFY of `secret` with data: the counter goes down, and is saved,
    /// before the comparison (`matches`, called only then); a match gives the
    /// tries back (saved too) and the verified state.
    fn verify_counted(
        &mut self,
        secret: Secret,
        max_tries: u8,
        store: &mut dyn UiccStore,
        matches: impl FnOnce(&Self) -> bool,
    ) -> Vec<u8> {
        let (tries, verified) = self.secret_state(secret);
        let before = *tries;
        *tries = before.saturating_sub(1);
        *verified = false;
        if !self.save(store) {
            return sw(0x6581);
        }
        if matches(self) {
            *self.secret_state(secret).0 = max_tries;
            if !self.save(store) {
                // The saved counter stays one lower; so does this one.
                *self.secret_state(secret).0 = before.saturating_sub(1);
                return sw(0x6581);
            }
            *self.secret_state(secret).1 = true;
            sw(0x9000)
        } else {
            vec![0x63, 0xC0 | *self.secret_state(secret).0]
        }
    }

    /// VERIFY of PIN1 (`01`): the verified state is card-wide (PIN1 is a
    /// global key reference, TS 102 221 §9.5.1) and ends at reset.
    fn verify_pin1(&mut self, data: &[u8], store: &mut dyn UiccStore) -> Vec<u8> {
        let Some(pin1) = self.pin1 else {
            return sw(0x6A88);
        };
        if let Some(answer) = self.verify_status(Secret::Pin1, data) {
            return answer;
        }
        if data.len() != 8 {
            return sw(0x6700);
        }
        self.verify_counted(Secret::Pin1, PIN1_TRIES, store, |_| {
            bool::from(data.ct_eq(&pin1))
        })
    }

    fn verify(&mut self, p1: u8, p2: u8, data: &[u8], store: &mut dyn UiccStore) -> Vec<u8> {
        if p1 == 0x00 && p2 == PIN1 {
            return self.verify_pin1(data, store);
        }
        if p1 != 0x00 || p2 != ADM1 {
            return sw(0x6A88);
        }
        if let Some(answer) = self.verify_status(Secret::Adm1, data) {
            return answer;
        }
        self.verify_counted(Secret::Adm1, ADM_TRIES, store, |card| {
            data.len() == 8 && bool::from(data.ct_eq(&card.adm1))
        })
    }
}

/// The persistent content of a [`SimUicc`]: what survives a power cycle
/// and what a state file keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiccState {
    /// The file tree from the MF.
    pub mf: Node,
    /// The ADM1 key (key reference `0A`).
    pub adm1: [u8; 8],
    /// ADM1 tries left (0: blocked).
    pub adm1_tries: u8,
    /// PIN1 (key reference `01`) as VERIFY carries it, if the card has one.
    pub pin1: Option<[u8; 8]>,
    /// The EFs (by file ID) whose READ BINARY needs PIN1.
    pub pin1_files: Vec<u16>,
    /// PIN1 tries left (0: blocked).
    pub pin1_tries: u8,
    /// Answer SELECT with `61xx` (T=0 style).
    pub t0: bool,
}

/// A saved content the card cannot run; names where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct UiccStateError {
    /// Where: a file path such as `3F00/7F50/6432`, or a field name.
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> UiccStateError {
    UiccStateError {
        at: at.into(),
        problem: problem.into(),
    }
}

impl UiccState {
    /// The content of the EF at a path of file IDs under the MF.
    pub fn file(&self, fids: &[u16]) -> Option<&EfBody> {
        let mut node = &self.mf;
        for f in fids {
            let Node::Df { children, .. } = node else {
                return None;
            };
            node = children.iter().find(|c| c.fid() == *f)?;
        }
        match node {
            Node::Ef { body, .. } => Some(body),
            Node::Df { .. } => None,
        }
    }

    /// Checks that the card can run this content: an MF `3F00`, file IDs
    /// unique in each DF, AIDs of 1 to 16 bytes, transparent EFs of 1 to
    /// 65535 bytes, 1 to 254 records of one length (1 to 255) in a linear
    /// fixed EF, try counters within their limits, PIN1 of 4 to 8 digits.
    pub fn check(&self) -> Result<(), UiccStateError> {
        fn walk(node: &Node, at: &str, depth: usize) -> Result<(), UiccStateError> {
            if depth > 8 {
                return Err(invalid(at, "DFs nested deeper than 8 levels"));
            }
            match node {
                Node::Df { aid, children, .. } => {
                    if let Some(a) = aid {
                        if a.is_empty() || a.len() > 16 {
                            return Err(invalid(
                                at,
                                format!("an AID of {} bytes (1 to 16)", a.len()),
                            ));
                        }
                    }
                    let mut seen = Vec::new();
                    for c in children {
                        let here = alloc::format!("{at}/{:04X}", c.fid());
                        if seen.contains(&c.fid()) {
                            return Err(invalid(here, "file ID used twice in one DF"));
                        }
                        if matches!(c.fid(), 0x3F00 | 0x7FFF | 0xFFFF) {
                            return Err(invalid(here, "a reserved file ID"));
                        }
                        seen.push(c.fid());
                        walk(c, &here, depth + 1)?;
                    }
                    Ok(())
                }
                Node::Ef { body, .. } => match body {
                    EfBody::Transparent(d) if d.is_empty() || d.len() > 0xFFFF => Err(invalid(
                        at,
                        format!("a transparent EF of {} bytes (1 to 65535)", d.len()),
                    )),
                    EfBody::Transparent(_) => Ok(()),
                    EfBody::LinearFixed {
                        record_len,
                        records,
                    } => {
                        if !(1..=255).contains(record_len) {
                            return Err(invalid(
                                at,
                                format!("record length {record_len} (1 to 255)"),
                            ));
                        }
                        if records.is_empty() || records.len() > 254 {
                            return Err(invalid(
                                at,
                                format!("{} records (1 to 254)", records.len()),
                            ));
                        }
                        match records.iter().position(|r| r.len() != *record_len) {
                            Some(i) => Err(invalid(
                                at,
                                format!(
                                    "record {} has {} bytes, not the record length {record_len}",
                                    i + 1,
                                    records[i].len()
                                ),
                            )),
                            None => Ok(()),
                        }
                    }
                },
            }
        }
        match &self.mf {
            Node::Df {
                fid: 0x3F00,
                aid: None,
                ..
            } => walk(&self.mf, "3F00", 0)?,
            _ => {
                return Err(invalid(
                    "mf",
                    "the root is not the MF (a DF 3F00 without AID)",
                ))
            }
        }
        if self.adm1_tries > ADM_TRIES {
            return Err(invalid(
                "adm1.tries_left",
                format!("{} is more than the limit {ADM_TRIES}", self.adm1_tries),
            ));
        }
        if self.pin1_tries > PIN1_TRIES {
            return Err(invalid(
                "pin1.tries_left",
                format!("{} is more than the limit {PIN1_TRIES}", self.pin1_tries),
            ));
        }
        if let Some(p) = &self.pin1 {
            let digits = p.iter().take_while(|b| **b != 0xFF).count();
            if !(4..=8).contains(&digits)
                || !p[..digits].iter().all(u8::is_ascii_digit)
                || p[digits..].iter().any(|b| *b != 0xFF)
            {
                return Err(invalid("pin1.value", "PIN1 is 4 to 8 digits"));
            }
        } else if !self.pin1_files.is_empty() {
            return Err(invalid("pin1", "files need PIN1 but the card has none"));
        }
        Ok(())
    }
}

/// Where a [`SimUicc`] saves its persistent content.
pub trait UiccStore {
    /// Makes `state` durable; the card answers only once this returned
    /// `Ok` (an `Err` is answered `6581`).
    fn save(&mut self, state: &UiccState) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// No store: the content lives as long as the card object.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl UiccStore for InMemory {
    fn save(&mut self, _: &UiccState) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// A [`SimUicc`] saving each change to its store before it answers.
#[derive(Debug)]
pub struct PersistentUicc<S> {
    card: SimUicc,
    store: S,
}

impl<S: UiccStore> PersistentUicc<S> {
    /// The card and where it saves.
    pub fn new(card: SimUicc, store: S) -> Self {
        PersistentUicc { card, store }
    }

    /// The card.
    pub fn card(&self) -> &SimUicc {
        &self.card
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: UiccStore + Send> VirtualCard for PersistentUicc<S> {
    fn atr(&self) -> Vec<u8> {
        UICC_ATR.to_vec()
    }

    fn power(&mut self, _event: Power) {
        self.card.reset();
    }

    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        Some(self.card.process_saving(apdu, &mut self.store))
    }
}

/// Why a UICC state file cannot be opened, created or saved; names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Another process (or handle) holds the file's lock.
    #[error("{}: in use by another process (it holds the state file's lock); stop it first", .path.display())]
    InUse {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The file was replaced or linked by someone else while held.
    #[error("{}: the state file was replaced or linked by another process; nothing was written", .path.display())]
    Replaced {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A file-system operation failed.
    #[error("{}: cannot {step}: {source}", .path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What was being done.
        step: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// One state document in one file: owner-only (0600), locked exclusively
/// while this handle lives (the lock on the file itself, as
/// [`FileStore`](crate::file_store::FileStore) does), and replaced at each
/// save by a new file that is written, synced and locked before it is
/// renamed over the old one (then the directory is synced), so the file
/// holds the old document or the new one after a crash at any point.
#[derive(Debug)]
pub struct StateFile {
    disk: crate::disk::OsDisk,
    path: std::path::PathBuf,
    real: std::path::PathBuf,
    tmp: std::path::PathBuf,
    dir: std::path::PathBuf,
}

const STATE_LOCK_ATTEMPTS: usize = 3;

impl StateFile {
    fn at(path: &std::path::Path) -> Result<StateFile, StateFileError> {
        use crate::disk::Disk;
        let mut disk = crate::disk::OsDisk::default();
        let real = disk.resolve(path).map_err(|source| StateFileError::Io {
            path: path.to_path_buf(),
            step: "resolve the path of",
            source,
        })?;
        let dir = match real.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let mut tmp = real.clone().into_os_string();
        tmp.push(".tmp");
        Ok(StateFile {
            disk,
            path: path.to_path_buf(),
            real,
            tmp: tmp.into(),
            dir,
        })
    }

    fn io(&self, step: &'static str) -> impl FnOnce(std::io::Error) -> StateFileError + '_ {
        move |source| StateFileError::Io {
            path: self.path.clone(),
            step,
            source,
        }
    }

    /// Locks the existing file (its content is not read).
    fn lock(&mut self) -> Result<(), StateFileError> {
        use crate::disk::Disk;
        for _ in 0..STATE_LOCK_ATTEMPTS {
            let held = match self.disk.lock(&self.real) {
                Ok(h) => h,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(StateFileError::InUse {
                        path: self.path.clone(),
                    })
                }
                Err(source) => {
                    return Err(StateFileError::Io {
                        path: self.path.clone(),
                        step: "open and lock",
                        source,
                    })
                }
            };
            // Replaced between the open and the lock: lock the new one.
            if self.disk.identity(&self.real).ok() == Some(held.id) {
                if held.links != 1 {
                    return Err(StateFileError::Replaced {
                        path: self.path.clone(),
                    });
                }
                let _ = self.disk.remove(&self.tmp);
                return Ok(());
            }
        }
        Err(StateFileError::InUse {
            path: self.path.clone(),
        })
    }

    /// Opens and locks an existing state file and reads it.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<(StateFile, Vec<u8>), StateFileError> {
        use crate::disk::Disk;
        let mut file = StateFile::at(path.as_ref())?;
        file.lock()?;
        let bytes = file.disk.read(&file.real).map_err(file.io("read"))?;
        Ok((file, bytes))
    }

    /// Writes a new state file with `bytes`. An existing file is refused
    /// unless `replace`; then it is locked first (refused while in use) and
    /// replaced atomically, whatever it held.
    pub fn create(
        path: impl AsRef<std::path::Path>,
        bytes: &[u8],
        replace: bool,
    ) -> Result<StateFile, StateFileError> {
        use crate::disk::Disk;
        let mut file = StateFile::at(path.as_ref())?;
        let exists = file.disk.exists(&file.real).map_err(file.io("check"))?;
        if exists {
            if !replace {
                return Err(StateFileError::Io {
                    path: file.path.clone(),
                    step: "create",
                    source: std::io::ErrorKind::AlreadyExists.into(),
                });
            }
            file.lock()?;
        }
        file.write(bytes, exists)?;
        Ok(file)
    }

    /// Replaces the held file's content with `bytes` (see [`StateFile`]).
    pub fn save(&mut self, bytes: &[u8]) -> Result<(), StateFileError> {
        self.write(bytes, true)
    }

    fn write(&mut self, bytes: &[u8], held: bool) -> Result<(), StateFileError> {
        use crate::disk::Disk;
        let _ = self.disk.remove(&self.tmp);
        let tmp = self.tmp.clone();
        let result = (|| {
            self.disk
                .create_new(&tmp)
                .map_err(self.io("create the temporary file of"))?;
            self.disk.write_all(&tmp, bytes).map_err(self.io("write"))?;
            self.disk.sync_file(&tmp).map_err(self.io("sync"))?;
            if held {
                let now = self.disk.held().map_err(self.io("check"))?;
                if self.disk.identity(&self.real).ok() != Some(now.id) || now.links != 1 {
                    return Err(StateFileError::Replaced {
                        path: self.path.clone(),
                    });
                }
            } else if self.disk.exists(&self.real).map_err(self.io("check"))? {
                return Err(StateFileError::Io {
                    path: self.path.clone(),
                    step: "create",
                    source: std::io::ErrorKind::AlreadyExists.into(),
                });
            }
            self.disk
                .rename(&tmp, &self.real)
                .map_err(self.io("rename the new state over"))?;
            self.disk
                .sync_dir(&self.dir)
                .map_err(self.io("sync the directory of"))?;
            self.disk.hold_new().map_err(self.io("hold"))
        })();
        if result.is_err() {
            let _ = self.disk.remove(&tmp);
        }
        result
    }

    /// The file as named when opened.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl VirtualCard for SimUicc {
    fn atr(&self) -> Vec<u8> {
        UICC_ATR.to_vec()
    }

    fn power(&mut self, _event: Power) {
        self.reset();
    }

    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        Some(self.process(apdu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(t0: bool) -> SimUicc {
        SimUicc::new(&UiccProfile {
            iccid: vec![0x98, 0x10, 0x32, 0x54, 0x76, 0x98, 0x10, 0x32, 0x54, 0xF6],
            lwm2m_bootstrap: Some(vec![0x00, 0x00, 0x00, 0x00]),
            lwm2m_size: 64,
            dm_bootstrap: Some(vec![0x03, 0x01]),
            lwm2m_oid_do: true,
            adm1: *b"12345678",
            t0,
        })
    }

    fn hexs(v: &[u8]) -> String {
        v.iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn channels_select_and_read() {
        let mut c = card(false);
        assert_eq!(hexs(&c.process(&[0x00, 0x70, 0x00, 0x00, 0x01])), "019000");
        let mut sel = vec![0x01, 0xA4, 0x04, 0x04, 0x0C];
        sel.extend_from_slice(&PKCS15_AID);
        sel.push(0x00);
        let r = c.process(&sel);
        assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
        // Path 7FFF/6432 on channel 1.
        let r = c.process(&[0x01, 0xA4, 0x08, 0x0C, 0x04, 0x7F, 0xFF, 0x64, 0x32]);
        assert_eq!(r, vec![0x90, 0x00]);
        let r = c.process(&[0x01, 0xB0, 0x00, 0x00, 0x80]);
        // 64-byte file: all of it and 6282.
        assert_eq!(r.len(), 66);
        assert_eq!(&r[64..], &[0x62, 0x82]);
        // The basic channel has no current EF.
        assert_eq!(c.process(&[0x00, 0xB0, 0x00, 0x00, 0x10]), vec![0x69, 0x86]);
        // Channel 2 is not open.
        assert_eq!(c.process(&[0x02, 0xB0, 0x00, 0x00, 0x10]), vec![0x68, 0x81]);
        assert_eq!(c.process(&[0x01, 0x70, 0x80, 0x01]), vec![0x90, 0x00]);
        assert_eq!(c.process(&[0x01, 0xB0, 0x00, 0x00, 0x10]), vec![0x68, 0x81]);
    }

    #[test]
    fn pin1_guards_reads_counts_down_first_and_blocks() {
        let profile = UiccProfile {
            iccid: vec![0x98; 10],
            lwm2m_bootstrap: Some(vec![0x00, 0x00, 0x00, 0x00]),
            lwm2m_size: 16,
            dm_bootstrap: Some(vec![0x03, 0x01]),
            lwm2m_oid_do: false,
            adm1: *b"12345678",
            t0: false,
        };
        let pin = Pin1::from_digits(b"1234", true, false).unwrap();
        assert!(Pin1::from_digits(b"12a4", true, false).is_none());
        let mut c = SimUicc::with_pin1(&profile, Some(pin));
        let sel = |f: u8| [0x00, 0xA4, 0x08, 0x0C, 0x04, 0x7F, 0x50, 0x64, f];
        let read = [0x00, 0xB0, 0x00, 0x00, 0x04];
        let verify = |p: &[u8; 8]| {
            let mut v = vec![0x00, 0x20, 0x00, 0x01, 0x08];
            v.extend_from_slice(p);
            v
        };
        let right = *b"1234\xFF\xFF\xFF\xFF";
        let wrong = *b"9999\xFF\xFF\xFF\xFF";
        assert_eq!(c.process(&sel(0x32)), vec![0x90, 0x00]);
        assert_eq!(c.process(&read), vec![0x69, 0x82]);
        // The DM file is not protected.
        assert_eq!(c.process(&sel(0x33)), vec![0x90, 0x00]);
        assert_eq!(&c.process(&read)[2..], &[0x62, 0x82]);
        // Status without data, then a wrong PIN: counted before the comparison.
        assert_eq!(c.process(&[0x00, 0x20, 0x00, 0x01]), vec![0x63, 0xC3]);
        assert_eq!(c.process(&verify(&wrong)), vec![0x63, 0xC2]);
        assert_eq!(c.pin1_tries(), 2);
        assert_eq!(c.process(&verify(&right)), vec![0x90, 0x00]);
        assert_eq!(c.pin1_tries(), 3);
        assert_eq!(c.process(&sel(0x32)), vec![0x90, 0x00]);
        assert_eq!(&c.process(&read)[4..], &[0x90, 0x00]);
        // Reset ends the verified state.
        c.power(Power::Reset);
        assert_eq!(c.process(&sel(0x32)), vec![0x90, 0x00]);
        assert_eq!(c.process(&read), vec![0x69, 0x82]);
        for left in [0xC2, 0xC1, 0xC0] {
            assert_eq!(c.process(&verify(&wrong)), vec![0x63, left]);
        }
        // Blocked: even the right PIN is refused.
        assert_eq!(c.process(&verify(&right)), vec![0x69, 0x83]);
        assert_eq!(c.process(&read), vec![0x69, 0x82]);
        // The AODF is listed in the ODF (A8 -> 6431).
        let odf = c.file(&[0x7F50, 0x5031]).unwrap_or_default();
        assert_eq!(
            &odf[8..16],
            &[0xA8, 0x06, 0x30, 0x04, 0x04, 0x02, 0x64, 0x31]
        );
    }

    /// The safety checks of PIN1 on any card behaviour: a protected file is
    /// not read without PIN1, and three wrong PINs block it (the right one is
    /// then refused too). `Err` names the first check that fails.
    fn pin1_safety(card: &mut dyn FnMut(&[u8]) -> Vec<u8>) -> Result<(), &'static str> {
        let sel = [0x00, 0xA4, 0x08, 0x0C, 0x04, 0x7F, 0x50, 0x64, 0x32];
        let read = [0x00, 0xB0, 0x00, 0x00, 0x04];
        let verify = |pin: &[u8; 4], card: &mut dyn FnMut(&[u8]) -> Vec<u8>| {
            let mut v = vec![0x00, 0x20, 0x00, 0x01, 0x08];
            v.extend_from_slice(pin);
            v.extend_from_slice(&[0xFF; 4]);
            card(&v)
        };
        card(&sel);
        if card(&read) != [0x69, 0x82] {
            return Err("a protected file was read without PIN1");
        }
        for _ in 0..3 {
            verify(b"9999", card);
        }
        if verify(b"1234", card) != [0x69, 0x83] {
            return Err("three wrong PINs did not block PIN1");
        }
        card(&sel);
        if card(&read) != [0x69, 0x82] {
            return Err("a protected file was read with PIN1 blocked");
        }
        Ok(())
    }

    #[test]
    fn pin1_safety_checks_hold_and_catch_broken_variants() {
        let profile = UiccProfile {
            iccid: vec![0x98; 10],
            lwm2m_bootstrap: Some(vec![0x00; 4]),
            lwm2m_size: 16,
            dm_bootstrap: None,
            lwm2m_oid_do: true,
            adm1: *b"12345678",
            t0: false,
        };
        let new = || SimUicc::with_pin1(&profile, Pin1::from_digits(b"1234", true, true));
        let mut c = new();
        assert_eq!(pin1_safety(&mut |a| c.process(a)), Ok(()));
        // Broken: no read access condition on the file.
        let mut c = new();
        c.pin1_files.clear();
        assert_eq!(
            pin1_safety(&mut |a| c.process(a)),
            Err("a protected file was read without PIN1")
        );
        // Broken: the try counter is never committed (restored after each command).
        let mut c = new();
        assert_eq!(
            pin1_safety(&mut |a| {
                let r = c.process(a);
                c.pin1_tries = PIN1_TRIES;
                r
            }),
            Err("three wrong PINs did not block PIN1")
        );
    }

    #[test]
    fn t0_answers_61xx_and_update_needs_adm() {
        let mut c = card(true);
        let r = c.process(&[0x00, 0xA4, 0x08, 0x04, 0x04, 0x7F, 0x50, 0x64, 0x32, 0x00]);
        assert_eq!(r[0], 0x61);
        let r = c.process(&[0x00, 0xC0, 0x00, 0x00, r[1]]);
        assert_eq!(r[0], 0x62);
        let upd = [0x00, 0xD6, 0x00, 0x00, 0x02, 0xAA, 0xBB];
        assert_eq!(c.process(&upd), vec![0x69, 0x82]);
        assert_eq!(
            c.process(&[
                0x00, 0x20, 0x00, 0x0A, 0x08, b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0'
            ]),
            vec![0x63, 0xC2]
        );
        let mut v = vec![0x00, 0x20, 0x00, 0x0A, 0x08];
        v.extend_from_slice(b"12345678");
        assert_eq!(c.process(&v), vec![0x90, 0x00]);
        assert_eq!(c.process(&upd), vec![0x90, 0x00]);
        assert_eq!(
            &c.file(&[0x7F50, 0x6432]).unwrap_or_default()[..2],
            &[0xAA, 0xBB]
        );
    }

    /// Records every saved state; fails every save while `fail`.
    #[derive(Default)]
    struct Log {
        saved: Vec<UiccState>,
        fail: bool,
    }

    impl UiccStore for Log {
        fn save(
            &mut self,
            state: &UiccState,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            if self.fail {
                return Err("disk full".into());
            }
            self.saved.push(state.clone());
            Ok(())
        }
    }

    fn protected() -> SimUicc {
        let profile = UiccProfile {
            iccid: vec![0x98; 10],
            lwm2m_bootstrap: Some(vec![0x00; 4]),
            lwm2m_size: 16,
            dm_bootstrap: None,
            lwm2m_oid_do: true,
            adm1: *b"12345678",
            t0: false,
        };
        SimUicc::with_pin1(&profile, Pin1::from_digits(b"1234", true, true))
    }

    /// The persistence checks on any card behaviour: what the card answers
    /// is already in the store (a wrong PIN's lower counter, an update's
    /// data), and a VERIFY whose counter cannot be saved decides nothing.
    /// `Err` names the first check that fails.
    fn saved_before_answer(
        card: &mut dyn FnMut(&[u8], &mut Log) -> Vec<u8>,
    ) -> Result<(), &'static str> {
        let mut log = Log::default();
        let mut pin = vec![0x00, 0x20, 0x00, 0x01, 0x08];
        pin.extend_from_slice(b"9999\xFF\xFF\xFF\xFF");
        if card(&pin, &mut log) != [0x63, 0xC2] {
            return Err("a wrong PIN was not counted");
        }
        if log.saved.last().map(|s| s.pin1_tries) != Some(2) {
            return Err("a wrong PIN was answered before its counter was saved");
        }
        let mut adm = vec![0x00, 0x20, 0x00, 0x0A, 0x08];
        adm.extend_from_slice(b"12345678");
        card(&adm, &mut log);
        card(
            &[0x00, 0xA4, 0x08, 0x0C, 0x04, 0x7F, 0x50, 0x64, 0x32],
            &mut log,
        );
        if card(&[0x00, 0xD6, 0x00, 0x00, 0x02, 0xAA, 0xBB], &mut log) != [0x90, 0x00] {
            return Err("the update was refused");
        }
        let saved = log
            .saved
            .last()
            .and_then(|s| match s.file(&[0x7F50, 0x6432]) {
                Some(EfBody::Transparent(d)) => Some(d[..2].to_vec()),
                _ => None,
            });
        if saved != Some(vec![0xAA, 0xBB]) {
            return Err("an update was answered before it was saved");
        }
        log.fail = true;
        pin[5..9].copy_from_slice(b"1234");
        if card(&pin, &mut log) == [0x90, 0x00] {
            return Err("a VERIFY was decided although its counter could not be saved");
        }
        Ok(())
    }

    #[test]
    fn changes_are_saved_before_the_answer_and_broken_variants_are_caught() {
        let mut c = protected();
        assert_eq!(
            saved_before_answer(&mut |a, log| c.process_saving(a, log)),
            Ok(())
        );
        // Broken: write-back, the store gets a change only with the next command.
        let mut c = protected();
        let mut pending: Option<UiccState> = None;
        assert_eq!(
            saved_before_answer(&mut |a, log| {
                if let Some(s) = pending.take() {
                    let _ = log.save(&s);
                }
                let r = c.process(a);
                pending = Some(c.state());
                r
            }),
            Err("a wrong PIN was answered before its counter was saved")
        );
        // Broken: saved after processing, a failed save ignored.
        let mut c = protected();
        assert_eq!(
            saved_before_answer(&mut |a, log| {
                let r = c.process(a);
                let _ = log.save(&c.state());
                r
            }),
            Err("a VERIFY was decided although its counter could not be saved")
        );
    }

    #[test]
    fn a_failed_save_undoes_the_update_and_keeps_the_lower_counter() {
        let mut c = protected();
        let mut log = Log::default();
        let mut adm = vec![0x00, 0x20, 0x00, 0x0A, 0x08];
        adm.extend_from_slice(b"12345678");
        assert_eq!(c.process_saving(&adm, &mut log), vec![0x90, 0x00]);
        c.process(&[0x00, 0xA4, 0x08, 0x0C, 0x04, 0x7F, 0x50, 0x64, 0x32]);
        log.fail = true;
        let upd = [0x00, 0xD6, 0x00, 0x00, 0x02, 0xAA, 0xBB];
        assert_eq!(c.process_saving(&upd, &mut log), vec![0x65, 0x81]);
        assert_eq!(&c.file(&[0x7F50, 0x6432]).unwrap()[..2], &[0x00, 0x00]);
        // A right ADM1 whose counter cannot be saved is not verified.
        c.reset();
        assert_eq!(c.process_saving(&adm, &mut log), vec![0x65, 0x81]);
        assert_eq!(c.adm1_tries(), 2);
        c.process(&[0x00, 0xA4, 0x08, 0x0C, 0x04, 0x7F, 0x50, 0x64, 0x32]);
        assert_eq!(c.process(&upd), vec![0x69, 0x82]);
    }

    #[test]
    fn a_state_round_trips_and_bad_states_are_named() {
        let mut c = protected();
        let mut wrong = vec![0x00, 0x20, 0x00, 0x01, 0x08];
        wrong.extend_from_slice(b"9999\xFF\xFF\xFF\xFF");
        c.process(&wrong);
        let again = SimUicc::from_state(c.state()).unwrap();
        assert_eq!(again.state(), c.state());
        assert_eq!(again.pin1_tries(), 2);
        let mut s = c.state();
        s.pin1_tries = 4;
        assert_eq!(
            SimUicc::from_state(s).unwrap_err().to_string(),
            "pin1.tries_left: 4 is more than the limit 3"
        );
        let mut s = c.state();
        if let Node::Df { children, .. } = &mut s.mf {
            children.push(children[0].clone());
        }
        assert_eq!(
            SimUicc::from_state(s).unwrap_err().to_string(),
            "3F00/2FE2: file ID used twice in one DF"
        );
        let mut s = c.state();
        s.mf = Node::Df {
            fid: 0x7F10,
            aid: None,
            children: vec![],
        };
        assert!(SimUicc::from_state(s)
            .unwrap_err()
            .to_string()
            .starts_with("mf: "));
        let mut s = c.state();
        s.pin1 = None;
        assert!(SimUicc::from_state(s).is_err());
    }

    #[test]
    fn a_state_file_is_owner_only_locked_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uicc.state");
        let mut f = StateFile::create(&path, b"one", false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            StateFile::open(&path),
            Err(StateFileError::InUse { .. })
        ));
        assert!(StateFile::create(&path, b"x", false).is_err());
        assert!(matches!(
            StateFile::create(&path, b"x", true),
            Err(StateFileError::InUse { .. })
        ));
        f.save(b"two").unwrap();
        // Still held after the save replaced the file.
        assert!(matches!(
            StateFile::open(&path),
            Err(StateFileError::InUse { .. })
        ));
        drop(f);
        let (_g, bytes) = StateFile::open(&path).unwrap();
        assert_eq!(bytes, b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        let e = StateFile::open(dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
