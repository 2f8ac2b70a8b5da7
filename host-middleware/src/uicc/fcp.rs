//! File control parameters (FCP, tag `62`) returned by SELECT with P2 `04`:
//! ISO/IEC 7816-4 (the FCP template) and ETSI TS 102 221 §11.1.1.3.
//!
//! The parser is strict: the template must be well-formed BER-TLV filling the
//! response exactly, each known tag must have its specified length, and every
//! error names the tag and the offset in the response where it went wrong.

use dmsc_card_model::tlv::{self, Tlv, TlvError};
use serde::Serialize;

/// Why an FCP template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FcpError {
    /// The bytes are not well-formed BER-TLV.
    #[error("FCP: malformed BER-TLV: {0}")]
    Tlv(TlvError),
    /// The response is not one `62` template.
    #[error("FCP: expected one template with tag 62 at offset 0, found {found}")]
    NotFcp {
        /// What was found instead.
        found: NotFcp,
    },
    /// A known tag with a value of the wrong length or content.
    #[error("FCP: tag {tag:02X} at offset {offset}: {problem}")]
    BadField {
        /// The tag.
        tag: u32,
        /// Offset of the tag in the response.
        offset: usize,
        /// What is wrong with the value.
        problem: FieldProblem,
    },
    /// A tag that appears twice.
    #[error("FCP: tag {tag:02X} at offset {offset} appears twice")]
    Duplicate {
        /// The tag.
        tag: u32,
        /// Offset of the second occurrence.
        offset: usize,
    },
}

/// What a response that is not one FCP template holds ([`FcpError::NotFcp`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFcp {
    /// A template with another tag.
    #[error("tag {0:02X}")]
    Tag(u32),
    /// Bytes after the `62` template.
    #[error("{len} bytes after the template at offset {offset}")]
    TrailingBytes {
        /// How many bytes follow the template.
        len: usize,
        /// Offset of the first of them.
        offset: usize,
    },
}

/// What is wrong with the value of a known FCP tag ([`FcpError::BadField`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// A big-endian number (tags `80`, `81`) of no byte or too many bytes.
    #[error("{len} bytes, expected 1 to {max}")]
    NumberLength {
        /// The length of the value.
        len: usize,
        /// The most bytes the number may have.
        max: usize,
    },
    /// A value whose length is none of the lengths its tag allows.
    #[error("{len} bytes, expected {allowed:?}")]
    Length {
        /// The length of the value.
        len: usize,
        /// The lengths the tag allows.
        allowed: &'static [usize],
    },
    /// The file descriptor byte (tag `82`) has the RFU bit b8 set.
    #[error("file descriptor byte {descriptor:02X} has b8 set (RFU)")]
    DescriptorRfu {
        /// The file descriptor byte.
        descriptor: u8,
    },
    /// A DF name (tag `84`) that is empty or longer than 16 bytes.
    #[error("DF name of {len} bytes, expected 1 to 16")]
    DfNameLength {
        /// The length of the DF name.
        len: usize,
    },
    /// Referenced security attributes (tag `8B`) too short to hold an
    /// EF(ARR) file ID and a record number.
    #[error("{len} bytes, expected an EF(ARR) file ID and a record number")]
    ArrReference {
        /// The length of the value.
        len: usize,
    },
}

/// The kind of file (file descriptor byte, ISO/IEC 7816-4 table 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A dedicated file (DF, ADF, MF).
    Df,
    /// Transparent EF.
    Transparent,
    /// Linear fixed EF.
    LinearFixed,
    /// Linear variable EF.
    LinearVariable,
    /// Cyclic EF.
    Cyclic,
    /// BER-TLV structured EF.
    BerTlv,
    /// Any other structure (the descriptor byte's low bits).
    Other(u8),
}

/// Life cycle status (tag `8A`, ISO/IEC 7816-4 table 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifeCycle {
    /// `01`: creation state.
    Creation,
    /// `03`: initialisation state.
    Initialisation,
    /// `05`/`07`: operational, activated.
    Activated,
    /// `04`/`06`: operational, deactivated.
    Deactivated,
    /// `0C`-`0F`: termination state.
    Terminated,
    /// Any other (proprietary or RFU) value.
    Other(u8),
}

impl LifeCycle {
    fn from_byte(b: u8) -> LifeCycle {
        match b {
            0x01 => LifeCycle::Creation,
            0x03 => LifeCycle::Initialisation,
            0x05 | 0x07 => LifeCycle::Activated,
            0x04 | 0x06 => LifeCycle::Deactivated,
            0x0C..=0x0F => LifeCycle::Terminated,
            b => LifeCycle::Other(b),
        }
    }
}

/// Security attributes as the FCP gives them (kept as bytes: their meaning
/// refers to EF(ARR) records or proprietary coding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "kebab-case")]
pub enum SecurityAttributes {
    /// `8B`: referenced to EF(ARR): its file ID and record number(s)
    /// (TS 102 221 §11.1.1.4.7.3).
    Referenced {
        /// The EF(ARR) file ID.
        arr_fid: u16,
        /// The record number(s) (one per SE, or one).
        records: Vec<u8>,
    },
    /// `8C`: compact format (access mode byte and conditions), hex.
    Compact {
        /// The value, hex.
        hex: String,
    },
    /// `AB`: expanded format, hex.
    Expanded {
        /// The value, hex.
        hex: String,
    },
}

/// A record-structured EF's record geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Records {
    /// Length of one record.
    pub length: u16,
    /// Number of records.
    pub count: u8,
}

/// The typed content of an FCP template.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Fcp {
    /// The file kind (tag `82`), when given.
    pub kind: Option<FileKind>,
    /// Whether the file may be shared between logical channels (`82` b7).
    pub shareable: bool,
    /// Record length and count of record EFs (`82`, 5 bytes).
    pub records: Option<Records>,
    /// File identifier (tag `83`).
    pub fid: Option<u16>,
    /// DF name / AID (tag `84`), hex.
    pub df_name: Option<String>,
    /// Size of the data (tag `80`, EF).
    pub size: Option<u32>,
    /// Total file size including structural overhead (tag `81`).
    pub total_size: Option<u32>,
    /// Short EF identifier (tag `88`; `None` when absent or empty).
    pub sfi: Option<u8>,
    /// Life cycle status (tag `8A`).
    pub life_cycle: Option<LifeCycle>,
    /// Security attributes (`8B`, `8C` or `AB`).
    pub security: Vec<SecurityAttributes>,
    /// The PIN status template (tag `C6`, UICC DFs), hex.
    pub pin_status: Option<String>,
}

fn be_uint(t: &Tlv<'_>, offset: usize, max: usize) -> Result<u32, FcpError> {
    if t.value.is_empty() || t.value.len() > max {
        return Err(FcpError::BadField {
            tag: t.tag,
            offset,
            problem: FieldProblem::NumberLength {
                len: t.value.len(),
                max,
            },
        });
    }
    Ok(t.value.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

fn exact<'a>(t: &Tlv<'a>, offset: usize, lens: &'static [usize]) -> Result<&'a [u8], FcpError> {
    if lens.contains(&t.value.len()) {
        Ok(t.value)
    } else {
        Err(FcpError::BadField {
            tag: t.tag,
            offset,
            problem: FieldProblem::Length {
                len: t.value.len(),
                allowed: lens,
            },
        })
    }
}

/// Parses an FCP template (the data of a SELECT with P2 `04`).
pub fn parse_fcp(bytes: &[u8]) -> Result<Fcp, FcpError> {
    let (outer, rest) = tlv::parse_one(bytes).map_err(FcpError::Tlv)?;
    if outer.tag != 0x62 {
        return Err(FcpError::NotFcp {
            found: NotFcp::Tag(outer.tag),
        });
    }
    if !rest.is_empty() {
        return Err(FcpError::NotFcp {
            found: NotFcp::TrailingBytes {
                len: rest.len(),
                offset: bytes.len() - rest.len(),
            },
        });
    }
    // The value starts after the tag and the length bytes.
    let base = bytes.len() - outer.value.len();
    let children = tlv::parse_all(outer.value).map_err(|e| {
        FcpError::Tlv(match e {
            TlvError::Truncated { at } => TlvError::Truncated { at: at + base },
            TlvError::InvalidTag { at } => TlvError::InvalidTag { at: at + base },
            TlvError::InvalidLength { at } => TlvError::InvalidLength { at: at + base },
            other => other,
        })
    })?;
    let mut fcp = Fcp::default();
    let mut seen: Vec<u32> = Vec::new();
    for t in &children {
        let offset = base + t.offset;
        if seen.contains(&t.tag) && !matches!(t.tag, 0x8B | 0x8C | 0xAB) {
            return Err(FcpError::Duplicate { tag: t.tag, offset });
        }
        seen.push(t.tag);
        match t.tag {
            0x82 => {
                let v = exact(t, offset, &[2, 5])?;
                let d = v[0];
                if d & 0x80 != 0 {
                    return Err(FcpError::BadField {
                        tag: t.tag,
                        offset,
                        problem: FieldProblem::DescriptorRfu { descriptor: d },
                    });
                }
                fcp.shareable = d & 0x40 != 0;
                fcp.kind = Some(match d & 0x3F {
                    0x38 => FileKind::Df,
                    0x01 | 0x09 => FileKind::Transparent,
                    0x02 | 0x03 | 0x0A | 0x0B => FileKind::LinearFixed,
                    0x04 | 0x05 | 0x0C | 0x0D => FileKind::LinearVariable,
                    0x06 | 0x07 | 0x0E | 0x0F => FileKind::Cyclic,
                    0x39 => FileKind::BerTlv,
                    other => FileKind::Other(other),
                });
                if v.len() == 5 {
                    fcp.records = Some(Records {
                        length: u16::from_be_bytes([v[2], v[3]]),
                        count: v[4],
                    });
                }
            }
            0x83 => {
                let v = exact(t, offset, &[2])?;
                fcp.fid = Some(u16::from_be_bytes([v[0], v[1]]));
            }
            0x84 => {
                if t.value.is_empty() || t.value.len() > 16 {
                    return Err(FcpError::BadField {
                        tag: t.tag,
                        offset,
                        problem: FieldProblem::DfNameLength { len: t.value.len() },
                    });
                }
                fcp.df_name = Some(hex::encode_upper(t.value));
            }
            0x80 => fcp.size = Some(be_uint(t, offset, 4)?),
            0x81 => fcp.total_size = Some(be_uint(t, offset, 4)?),
            0x88 => {
                let v = exact(t, offset, &[0, 1])?;
                fcp.sfi = v.first().map(|b| b >> 3);
            }
            0x8A => {
                let v = exact(t, offset, &[1])?;
                fcp.life_cycle = Some(LifeCycle::from_byte(v[0]));
            }
            0x8B => {
                let v = t.value;
                if v.len() < 3 {
                    return Err(FcpError::BadField {
                        tag: t.tag,
                        offset,
                        problem: FieldProblem::ArrReference { len: v.len() },
                    });
                }
                fcp.security.push(SecurityAttributes::Referenced {
                    arr_fid: u16::from_be_bytes([v[0], v[1]]),
                    records: v[2..].to_vec(),
                });
            }
            0x8C => fcp.security.push(SecurityAttributes::Compact {
                hex: hex::encode_upper(t.value),
            }),
            0xAB => fcp.security.push(SecurityAttributes::Expanded {
                hex: hex::encode_upper(t.value),
            }),
            0xC6 => fcp.pin_status = Some(hex::encode_upper(t.value)),
            // Proprietary information (A5) and others: skipped.
            _ => {}
        }
    }
    Ok(fcp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::scripted::h;

    #[test]
    fn parses_a_uicc_adf_fcp() {
        // The PKCS#15 ADF as a UICC answers it (modem vendor test transcript).
        let f = parse_fcp(&h(
            "622582027821840CA000000063504B43532D31358A01058B032F060CC609900140830101830\
             10A",
        ))
        .unwrap();
        assert_eq!(f.kind, Some(FileKind::Df));
        assert!(f.shareable);
        assert_eq!(f.df_name.as_deref(), Some("A000000063504B43532D3135"));
        assert_eq!(f.life_cycle, Some(LifeCycle::Activated));
        assert_eq!(
            f.security,
            vec![SecurityAttributes::Referenced {
                arr_fid: 0x2F06,
                records: vec![0x0C]
            }]
        );
        assert!(f.pin_status.is_some());
    }

    #[test]
    fn parses_ef_fcps() {
        let f = parse_fcp(&h("621682024121830250318A01058B036F06028002002088 00")).unwrap();
        assert_eq!(f.kind, Some(FileKind::Transparent));
        assert_eq!(f.fid, Some(0x5031));
        assert_eq!(f.size, Some(0x20));
        assert_eq!(f.sfi, None);
        let dir = parse_fcp(&h(
            "62228205422100260583022f00a506c00100de01008a01058b032f0604800200be8801f0",
        ))
        .unwrap();
        assert_eq!(dir.kind, Some(FileKind::LinearFixed));
        assert_eq!(
            dir.records,
            Some(Records {
                length: 0x26,
                count: 5
            })
        );
        assert_eq!(dir.sfi, Some(0x1E));
    }

    #[test]
    fn malformed_fcps_name_tag_and_offset() {
        let e = parse_fcp(&h("6F03820141")).unwrap_err();
        assert!(e.to_string().contains("tag 6F"), "{e}");
        // FID of 3 bytes at offset 2.
        let e = parse_fcp(&h("620583035031FF")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "FCP: tag 83 at offset 2: 3 bytes, expected [2]"
        );
        // Truncated inner TLV: the offset is in the response.
        let e = parse_fcp(&h("6204820241")).unwrap_err();
        assert!(matches!(e, FcpError::Tlv(_)), "{e:?}");
        let e = parse_fcp(&h("620482024121")).unwrap();
        assert_eq!(e.kind, Some(FileKind::Transparent));
        let e = parse_fcp(&h("62088202412182024121")).unwrap_err();
        assert_eq!(e.to_string(), "FCP: tag 82 at offset 6 appears twice");
        let e = parse_fcp(&h("620382014100")).unwrap_err();
        assert!(
            e.to_string().contains("after the template at offset 5"),
            "{e}"
        );
    }

    #[test]
    fn a_response_that_is_not_one_fcp_template_says_what_it_holds() {
        let e = parse_fcp(&h("6F03820141")).unwrap_err();
        assert_eq!(
            e,
            FcpError::NotFcp {
                found: NotFcp::Tag(0x6F)
            }
        );
        assert_eq!(
            e.to_string(),
            "FCP: expected one template with tag 62 at offset 0, found tag 6F"
        );
        let e = parse_fcp(&h("62038201410000")).unwrap_err();
        assert!(
            matches!(
                e,
                FcpError::NotFcp {
                    found: NotFcp::TrailingBytes { len: 2, offset: 5 }
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "FCP: expected one template with tag 62 at offset 0, found 2 bytes after the \
             template at offset 5"
        );
    }

    #[test]
    fn bad_fields_are_typed_and_read_as_before() {
        let cases: [(&str, FcpError, &str); 5] = [
            (
                "620583035031FF",
                FcpError::BadField {
                    tag: 0x83,
                    offset: 2,
                    problem: FieldProblem::Length {
                        len: 3,
                        allowed: &[2],
                    },
                },
                "FCP: tag 83 at offset 2: 3 bytes, expected [2]",
            ),
            (
                "6207800500000000FF",
                FcpError::BadField {
                    tag: 0x80,
                    offset: 2,
                    problem: FieldProblem::NumberLength { len: 5, max: 4 },
                },
                "FCP: tag 80 at offset 2: 5 bytes, expected 1 to 4",
            ),
            (
                "620482028121",
                FcpError::BadField {
                    tag: 0x82,
                    offset: 2,
                    problem: FieldProblem::DescriptorRfu { descriptor: 0x81 },
                },
                "FCP: tag 82 at offset 2: file descriptor byte 81 has b8 set (RFU)",
            ),
            (
                "62028400",
                FcpError::BadField {
                    tag: 0x84,
                    offset: 2,
                    problem: FieldProblem::DfNameLength { len: 0 },
                },
                "FCP: tag 84 at offset 2: DF name of 0 bytes, expected 1 to 16",
            ),
            (
                "62048B022F06",
                FcpError::BadField {
                    tag: 0x8B,
                    offset: 2,
                    problem: FieldProblem::ArrReference { len: 2 },
                },
                "FCP: tag 8B at offset 2: 2 bytes, expected an EF(ARR) file ID and a record number",
            ),
        ];
        for (input, want, text) in cases {
            let e = parse_fcp(&h(input)).unwrap_err();
            assert_eq!(e, want, "{input}");
            assert_eq!(e.to_string(), text, "{input}");
        }
        let e = parse_fcp(&h("620583035031FF")).unwrap_err();
        assert!(
            matches!(
                e,
                FcpError::BadField {
                    tag: 0x83,
                    problem: FieldProblem::Length { len: 3, .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
