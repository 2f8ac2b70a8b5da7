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
//! [`VirtualCard`](crate::vpcd::VirtualCard).

use alloc::vec;
use alloc::vec::Vec;

use dmsc_card_model::tlv;
use subtle::ConstantTimeEq;

use crate::vpcd::{Power, VirtualCard};

/// The PKCS#15 application identifier.
pub const PKCS15_AID: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
];
/// A plausible UICC ATR (T=0 and T=1 offered).
pub const UICC_ATR: [u8; 9] = [0x3B, 0x9F, 0x96, 0x80, 0x1F, 0xC7, 0x80, 0x31, 0xE0];

const MAX_CHANNELS: usize = 20;
const ADM1: u8 = 0x0A;
const ADM_TRIES: u8 = 3;
const PIN1: u8 = 0x01;
const PIN1_TRIES: u8 = 3;
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

    /// Processes one command APDU.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
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
            0xD6 => self.update_binary(ch, cmd.p1, cmd.p2, &cmd.data),
            0x20 => self.verify(cmd.p1, cmd.p2, &cmd.data),
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

    fn update_binary(&mut self, ch: usize, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
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
        d[offset..end].copy_from_slice(data);
        sw(0x9000)
    }

    /// VERIFY of PIN1 (`01`): the verified state is card-wide (PIN1 is a
    /// global key reference, TS 102 221 §9.5.1) and ends at reset.
    fn verify_pin1(&mut self, data: &[u8]) -> Vec<u8> {
        let Some(pin1) = self.pin1 else {
            return sw(0x6A88);
        };
        if self.pin1_tries == 0 {
            return sw(0x6983);
        }
        if data.is_empty() {
            return if self.pin1_verified {
                sw(0x9000)
            } else {
                vec![0x63, 0xC0 | self.pin1_tries]
            };
        }
        if data.len() != 8 {
            return sw(0x6700);
        }
        // The counter goes down before the comparison.
        self.pin1_tries -= 1;
        if bool::from(data.ct_eq(&pin1)) {
            self.pin1_tries = PIN1_TRIES;
            self.pin1_verified = true;
            sw(0x9000)
        } else {
            self.pin1_verified = false;
            vec![0x63, 0xC0 | self.pin1_tries]
        }
    }

    fn verify(&mut self, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        if p1 == 0x00 && p2 == PIN1 {
            return self.verify_pin1(data);
        }
        if p1 != 0x00 || p2 != ADM1 {
            return sw(0x6A88);
        }
        if self.adm_tries == 0 {
            return sw(0x6983);
        }
        if data.is_empty() {
            return if self.adm_verified {
                sw(0x9000)
            } else {
                vec![0x63, 0xC0 | self.adm_tries]
            };
        }
        // The counter goes down before the comparison.
        self.adm_tries -= 1;
        if data.len() == 8 && bool::from(data.ct_eq(&self.adm1)) {
            self.adm_tries = ADM_TRIES;
            self.adm_verified = true;
            sw(0x9000)
        } else {
            self.adm_verified = false;
            vec![0x63, 0xC0 | self.adm_tries]
        }
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
}
