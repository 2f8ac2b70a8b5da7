//! A simulated UICC for tests: a small ISO/IEC 7816-4 / ETSI TS 102 221 file
//! system (MF, EF(ICCID), EF(DIR), a PKCS#15 ADF with EF(ODF), EF(TokenInfo),
//! EF(DODF) and the LwM2M and OMA DM bootstrap files), logical channels 1-19,
//! and T=0-style answers (`61xx` after SELECT, then GET RESPONSE).
//!
//! Commands: SELECT (P1 `00` file ID, `04` AID, `08` path from the MF, `09`
//! path from the current DF; P2 `04` FCP or `0C` none), READ BINARY, READ
//! RECORD, UPDATE BINARY (after VERIFY of ADM1, key reference `0A`), MANAGE
//! CHANNEL, GET RESPONSE. Anything else is answered with the ISO status word
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

fn opaque_do(label: &str, oid: &[u8], fid: u16) -> Vec<u8> {
    let common = t(0x30, &t(0x0C, label.as_bytes()));
    let class = t(0x30, &t(0x06, oid));
    let ty = t(0xA1, &path(fid));
    t(0x30, &[common, class, ty].concat())
}

fn oid_do_wrapped(label: &str, oid: &[u8], fid: u16) -> Vec<u8> {
    let common = t(0x30, &[]);
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
        let mut dodf = Vec::new();
        if self.lwm2m_bootstrap.is_some() {
            dodf.extend(if self.lwm2m_oid_do {
                oid_do_wrapped("LwM2M Bootstrap", &OID_LWM2M, 0x6432)
            } else {
                opaque_do("LwM2M Bootstrap", &OID_LWM2M, 0x6432)
            });
        }
        if self.dm_bootstrap.is_some() {
            dodf.extend(opaque_do("DM Bootstrap", &OID_DM, 0x6433));
        }
        let odf = padded(t(0xA7, &path(0x6430)), 32);
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
        let mut channels = vec![None; MAX_CHANNELS];
        channels[0] = Some(Channel::default());
        SimUicc {
            mf: profile.build(),
            channels,
            adm1: profile.adm1,
            adm_tries: ADM_TRIES,
            adm_verified: false,
            t0: profile.t0,
        }
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

    /// Power cycle: channels closed, security state lost.
    pub fn reset(&mut self) {
        for c in self.channels.iter_mut().skip(1) {
            *c = None;
        }
        self.channels[0] = Some(Channel::default());
        self.adm_verified = false;
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

    fn verify(&mut self, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
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
