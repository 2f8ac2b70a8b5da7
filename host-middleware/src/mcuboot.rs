//! MCUboot images: the image's own SHA-256 and ECDSA P-256 signature TLVs,
//! checked while the package streams through ([`McubootScanner`]).
//!
//! Layout (MCUboot `image.h`): a 32-byte little-endian header (`ih_magic`
//! `0x96f3b83d`, `ih_hdr_size`, `ih_protect_tlv_size`, `ih_img_size`, version
//! `major.minor.revision+build`), the image, then the protected TLV area
//! (magic `0x6908`, if any) and the TLV area (magic `0x6907`). The image hash
//! TLV (type `0x10`) is SHA-256 over header, image and protected TLVs; the
//! ECDSA P-256 TLV (type `0x22`) signs that hash (DER).

use p256::PublicKey;
use sha2::{Digest, Sha256};

/// `ih_magic`.
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// Magic of the unprotected TLV area.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// Magic of the protected TLV area.
pub const TLV_PROT_INFO_MAGIC: u16 = 0x6908;
/// TLV type of the image's SHA-256.
pub const TLV_SHA256: u8 = 0x10;
/// TLV type of the ECDSA P-256 signature.
pub const TLV_ECDSA_SIG: u8 = 0x22;
/// The most TLV bytes kept in memory (the TLV areas of real images are small).
pub const MAX_TLV_BYTES: usize = 64 * 1024;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Present and correct.
    Valid,
    /// Present and wrong.
    Invalid,
    /// Not in the image.
    Missing,
    /// Present, but no key was given to check it.
    NotChecked,
}

/// What the MCUboot checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McubootReport {
    /// `major.minor.revision+build` from the header.
    pub version: String,
    /// The image hash TLV against the computed hash.
    pub sha256: Check,
    /// The ECDSA P-256 signature TLV against the given key.
    pub signature: Check,
    /// A structural problem (bad TLV magic, truncated image…), if any.
    pub error: Option<String>,
}

impl McubootReport {
    /// Whether the image passed: hash valid, signature valid (or not checked
    /// for lack of a key), no structural problem.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.sha256 == Check::Valid
            && matches!(self.signature, Check::Valid | Check::NotChecked)
    }
}

/// Follows a package as it streams; [`McubootScanner::finish`] reports.
#[derive(Debug)]
pub struct McubootScanner {
    header: Vec<u8>,
    /// Bytes seen so far.
    pos: u64,
    /// End of the hashed region (header + image + protected TLVs), once known.
    hashed_end: Option<u64>,
    /// Start of the TLV areas (header + image).
    tlv_start: u64,
    hasher: Sha256,
    tlvs: Vec<u8>,
    not_mcuboot: bool,
    overflow: bool,
}

impl Default for McubootScanner {
    fn default() -> Self {
        Self::new()
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl McubootScanner {
    /// A scanner at the start of a package.
    pub fn new() -> McubootScanner {
        McubootScanner {
            header: Vec::with_capacity(32),
            pos: 0,
            hashed_end: None,
            tlv_start: 0,
            hasher: Sha256::new(),
            tlvs: Vec::new(),
            not_mcuboot: false,
            overflow: false,
        }
    }

    /// The next bytes of the package.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.not_mcuboot {
            return;
        }
        if self.hashed_end.is_none() {
            let take = (32 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            if self.header.len() >= 4 && le32(&self.header, 0) != IMAGE_MAGIC {
                self.not_mcuboot = true;
                return;
            }
            if self.header.len() == 32 {
                let h = &self.header;
                let hdr_size = u64::from(le16(h, 8));
                let prot = u64::from(le16(h, 10));
                let img = u64::from(le32(h, 12));
                self.tlv_start = hdr_size + img;
                self.hashed_end = Some(hdr_size + img + prot);
                self.hasher.update(&self.header);
                self.pos = 32;
                data = &data[take..];
            } else {
                return;
            }
        }
        let Some(end) = self.hashed_end else { return };
        let start = self.pos;
        let stop = start + data.len() as u64;
        if start < end {
            let n = (end.min(stop) - start) as usize;
            self.hasher.update(&data[..n]);
        }
        if stop > self.tlv_start {
            let from = self.tlv_start.saturating_sub(start) as usize;
            let room = MAX_TLV_BYTES.saturating_sub(self.tlvs.len());
            let bytes = &data[from..];
            if bytes.len() > room {
                self.overflow = true;
            }
            self.tlvs.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        self.pos = stop;
    }

    /// The report, or `None` when the package is not an MCUboot image.
    pub fn finish(self, key: Option<&PublicKey>) -> Option<McubootReport> {
        if self.not_mcuboot || self.header.len() < 4 {
            return None;
        }
        let mut report = McubootReport {
            version: String::new(),
            sha256: Check::Missing,
            signature: Check::Missing,
            error: None,
        };
        if self.header.len() < 32 {
            report.error = Some("truncated header (shorter than 32 bytes)".into());
            return Some(report);
        }
        let h = &self.header;
        report.version = format!("{}.{}.{}+{}", h[20], h[21], le16(h, 22), le32(h, 24));
        let end = self.hashed_end.unwrap_or(0);
        if self.pos < end || (self.header.len() as u64) > self.tlv_start {
            report.error = Some(format!(
                "truncated image: {} bytes, the header announces at least {end}",
                self.pos
            ));
            return Some(report);
        }
        if self.overflow {
            report.error = Some(format!("TLV area larger than {MAX_TLV_BYTES} bytes"));
            return Some(report);
        }
        let hash: [u8; 32] = self.hasher.finalize().into();
        let tlvs = match parse_tlv_areas(&self.tlvs, (end - self.tlv_start) as usize) {
            Ok(t) => t,
            Err(e) => {
                report.error = Some(e);
                return Some(report);
            }
        };
        for (ty, value) in &tlvs {
            match *ty {
                TLV_SHA256 => {
                    report.sha256 = if value.as_slice() == hash {
                        Check::Valid
                    } else {
                        Check::Invalid
                    }
                }
                TLV_ECDSA_SIG => {
                    report.signature = match key {
                        None => Check::NotChecked,
                        Some(k) if crate::p256_keys::verify_prehash(k, &hash, value) => {
                            Check::Valid
                        }
                        Some(_) => Check::Invalid,
                    }
                }
                _ => {}
            }
        }
        Some(report)
    }
}

/// The TLVs of the protected area (`prot_len` bytes, if non-zero) and the
/// unprotected area that follows it.
fn parse_tlv_areas(bytes: &[u8], prot_len: usize) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut areas = Vec::new();
    if prot_len > 0 {
        areas.push((TLV_PROT_INFO_MAGIC, "protected TLV area"));
    }
    areas.push((TLV_INFO_MAGIC, "TLV area"));
    for (magic, what) in areas {
        let info = bytes
            .get(at..at + 4)
            .ok_or_else(|| format!("{what} missing at offset {at} of the TLVs"))?;
        if le16(info, 0) != magic {
            return Err(format!(
                "{what}: magic {:04x}, expected {magic:04x}",
                le16(info, 0)
            ));
        }
        let total = usize::from(le16(info, 2));
        if magic == TLV_PROT_INFO_MAGIC && total != prot_len {
            return Err(format!(
                "{what}: {total} bytes, the header announces {prot_len}"
            ));
        }
        let area = bytes
            .get(at + 4..at + total.max(4))
            .ok_or_else(|| format!("{what}: truncated ({total} bytes announced)"))?;
        let mut i = 0;
        while i < area.len() {
            let head = area
                .get(i..i + 4)
                .ok_or_else(|| format!("{what}: truncated TLV at offset {i}"))?;
            let len = usize::from(le16(head, 2));
            let value = area
                .get(i + 4..i + 4 + len)
                .ok_or_else(|| format!("{what}: TLV type {:02x} overruns the area", head[0]))?;
            out.push((head[0], value.to_vec()));
            i += 4 + len;
        }
        at += total;
    }
    Ok(out)
}
