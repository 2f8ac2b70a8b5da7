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
use std::fmt;

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
    pub error: Option<ImageProblem>,
}

/// Which TLV area of an MCUboot image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvArea {
    /// The protected TLV area (covered by the hash).
    Protected,
    /// The TLV area after it.
    Unprotected,
}

impl fmt::Display for TlvArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlvArea::Protected => "protected TLV area",
            TlvArea::Unprotected => "TLV area",
        })
    }
}

/// A structural problem of an MCUboot image ([`McubootReport::error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageProblem {
    /// The header is shorter than its 32 bytes.
    #[error("truncated header (shorter than 32 bytes)")]
    TruncatedHeader,
    /// The image ends before what the header announces.
    #[error("truncated image: {size} bytes, the header announces at least {announced}")]
    TruncatedImage {
        /// The bytes seen.
        size: u64,
        /// The size the header announces (header and payload).
        announced: u64,
    },
    /// The TLVs are larger than [`MAX_TLV_BYTES`].
    #[error("TLV area larger than {max} bytes")]
    TlvsTooLarge {
        /// The limit.
        max: usize,
    },
    /// A TLV area's info header is missing.
    #[error("{area} missing at offset {at} of the TLVs")]
    AreaMissing {
        /// The area.
        area: TlvArea,
        /// Its offset in the TLVs.
        at: usize,
    },
    /// A TLV area's info header has another magic number.
    #[error("{area}: magic {found:04x}, expected {expected:04x}")]
    Magic {
        /// The area.
        area: TlvArea,
        /// The magic found.
        found: u16,
        /// The area's magic.
        expected: u16,
    },
    /// The protected TLV area's size differs from the header's.
    #[error("{area}: {size} bytes, the header announces {announced}")]
    ProtectedSize {
        /// The area.
        area: TlvArea,
        /// The size its info header gives.
        size: usize,
        /// The size the image header gives.
        announced: usize,
    },
    /// A TLV area shorter than its info header says.
    #[error("{area}: truncated ({size} bytes announced)")]
    AreaTruncated {
        /// The area.
        area: TlvArea,
        /// The size announced.
        size: usize,
    },
    /// A TLV's own header cut short.
    #[error("{area}: truncated TLV at offset {at}")]
    TlvTruncated {
        /// The area.
        area: TlvArea,
        /// The TLV's offset in the area.
        at: usize,
    },
    /// A TLV longer than what is left of its area.
    #[error("{area}: TLV type {tlv_type:02x} overruns the area")]
    TlvOverrun {
        /// The area.
        area: TlvArea,
        /// The TLV's type.
        tlv_type: u8,
    },
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
            report.error = Some(ImageProblem::TruncatedHeader);
            return Some(report);
        }
        let h = &self.header;
        report.version = format!("{}.{}.{}+{}", h[20], h[21], le16(h, 22), le32(h, 24));
        let end = self.hashed_end.unwrap_or(0);
        if self.pos < end || (self.header.len() as u64) > self.tlv_start {
            report.error = Some(ImageProblem::TruncatedImage {
                size: self.pos,
                announced: end,
            });
            return Some(report);
        }
        if self.overflow {
            report.error = Some(ImageProblem::TlvsTooLarge { max: MAX_TLV_BYTES });
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
fn parse_tlv_areas(bytes: &[u8], prot_len: usize) -> Result<Vec<(u8, Vec<u8>)>, ImageProblem> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut areas = Vec::new();
    if prot_len > 0 {
        areas.push((TLV_PROT_INFO_MAGIC, TlvArea::Protected));
    }
    areas.push((TLV_INFO_MAGIC, TlvArea::Unprotected));
    for (magic, area_kind) in areas {
        let info = bytes.get(at..at + 4).ok_or(ImageProblem::AreaMissing {
            area: area_kind,
            at,
        })?;
        if le16(info, 0) != magic {
            return Err(ImageProblem::Magic {
                area: area_kind,
                found: le16(info, 0),
                expected: magic,
            });
        }
        let total = usize::from(le16(info, 2));
        if magic == TLV_PROT_INFO_MAGIC && total != prot_len {
            return Err(ImageProblem::ProtectedSize {
                area: area_kind,
                size: total,
                announced: prot_len,
            });
        }
        let area = bytes
            .get(at + 4..at + total.max(4))
            .ok_or(ImageProblem::AreaTruncated {
                area: area_kind,
                size: total,
            })?;
        let mut i = 0;
        while i < area.len() {
            let head = area.get(i..i + 4).ok_or(ImageProblem::TlvTruncated {
                area: area_kind,
                at: i,
            })?;
            let len = usize::from(le16(head, 2));
            let value = area
                .get(i + 4..i + 4 + len)
                .ok_or(ImageProblem::TlvOverrun {
                    area: area_kind,
                    tlv_type: head[0],
                })?;
            out.push((head[0], value.to_vec()));
            i += 4 + len;
        }
        at += total;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{Signature, SigningKey};

    /// An MCUboot image as imgtool lays it out: header, payload, an optional
    /// protected TLV area, then the TLV area with the hash and the signature.
    fn image(payload: &[u8], protected: bool, key: &SigningKey) -> Vec<u8> {
        let prot: Vec<u8> = if protected {
            // One protected TLV (type 0x50, 4 bytes), behind its info header.
            let mut p = vec![0x08, 0x69, 12, 0];
            p.extend_from_slice(&[0x50, 0, 4, 0, 1, 2, 3, 4]);
            p
        } else {
            Vec::new()
        };
        let mut img = Vec::new();
        img.extend_from_slice(&IMAGE_MAGIC.to_le_bytes());
        img.extend_from_slice(&0u32.to_le_bytes()); // load address
        img.extend_from_slice(&32u16.to_le_bytes()); // header size
        img.extend_from_slice(&(prot.len() as u16).to_le_bytes());
        img.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(&0u32.to_le_bytes()); // flags
        img.extend_from_slice(&[1, 2]);
        img.extend_from_slice(&3u16.to_le_bytes());
        img.extend_from_slice(&4u32.to_le_bytes());
        img.extend_from_slice(&0u32.to_le_bytes()); // pad
        img.extend_from_slice(payload);
        img.extend_from_slice(&prot);
        let hash: [u8; 32] = Sha256::digest(&img).into();
        let sig: Signature = key.sign_prehash(&hash).unwrap();
        let der = sig.to_der();
        let mut tlvs = vec![TLV_SHA256, 0, 32, 0];
        tlvs.extend_from_slice(&hash);
        tlvs.extend_from_slice(&[TLV_ECDSA_SIG, 0, der.as_bytes().len() as u8, 0]);
        tlvs.extend_from_slice(der.as_bytes());
        let total = (tlvs.len() + 4) as u16;
        img.extend_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
        img.extend_from_slice(&total.to_le_bytes());
        img.extend_from_slice(&tlvs);
        img
    }

    fn scan(bytes: &[u8], chunk: usize, key: Option<&PublicKey>) -> Option<McubootReport> {
        let mut s = McubootScanner::new();
        for c in bytes.chunks(chunk) {
            s.update(c);
        }
        s.finish(key)
    }

    #[test]
    fn valid_images_pass_in_any_chunking() {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let public = PublicKey::from(key.verifying_key());
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        for protected in [false, true] {
            let img = image(&payload, protected, &key);
            for chunk in [1, 7, 31, 32, 33, 4096, img.len()] {
                let r = scan(&img, chunk, Some(&public)).unwrap();
                assert_eq!(r.version, "1.2.3+4");
                assert!(r.ok(), "protected {protected} chunk {chunk}: {r:?}");
                assert_eq!(r.signature, Check::Valid);
            }
            let r = scan(&img, 4096, None).unwrap();
            assert_eq!((r.sha256, r.signature), (Check::Valid, Check::NotChecked));
        }
    }

    #[test]
    fn tampered_wrong_key_truncated_and_other_files() {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let other = PublicKey::from(SigningKey::from_slice(&[4; 32]).unwrap().verifying_key());
        let public = PublicKey::from(key.verifying_key());
        let img = image(&[0xA5; 5000], true, &key);
        let mut bad = img.clone();
        bad[100] ^= 1;
        let r = scan(&bad, 512, Some(&public)).unwrap();
        assert_eq!((r.sha256, r.signature), (Check::Invalid, Check::Invalid));
        assert!(!r.ok());
        let r = scan(&img, 512, Some(&other)).unwrap();
        assert_eq!((r.sha256, r.signature), (Check::Valid, Check::Invalid));
        let r = scan(&img[..3000], 512, Some(&public)).unwrap();
        let e = r.error.unwrap();
        assert!(
            matches!(e, ImageProblem::TruncatedImage { size: 3000, .. }),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with("truncated image: 3000 bytes, the header announces at least "));
        let r = scan(&img[..img.len() - 10], 512, Some(&public)).unwrap();
        assert!(r.error.is_some() && !r.ok());
        assert!(scan(b"not an image at all", 4, None).is_none());
        assert!(scan(b"", 4, None).is_none());
    }

    /// Each structural problem is typed and reads as the report printed it.
    #[test]
    fn structural_problems_are_typed_and_read_as_before() {
        let e = parse_tlv_areas(&[0x34, 0x12, 4, 0], 0).unwrap_err();
        assert_eq!(
            e,
            ImageProblem::Magic {
                area: TlvArea::Unprotected,
                found: 0x1234,
                expected: TLV_INFO_MAGIC
            }
        );
        assert_eq!(e.to_string(), "TLV area: magic 1234, expected 6907");
        let e = parse_tlv_areas(&[0x08, 0x69, 12, 0], 12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "protected TLV area: truncated (12 bytes announced)"
        );
        let e = parse_tlv_areas(&[0x08, 0x69, 8, 0], 12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "protected TLV area: 8 bytes, the header announces 12"
        );
        assert_eq!(
            ImageProblem::TlvOverrun {
                area: TlvArea::Unprotected,
                tlv_type: 0x10
            }
            .to_string(),
            "TLV area: TLV type 10 overruns the area"
        );
    }
}
