//! BER-TLV (ISO/IEC 8825-1 as used by ISO/IEC 7816-4): multi-byte tags,
//! definite long-form lengths, constructed objects. Decoding is strict:
//! indefinite lengths, non-minimal lengths, truncated values and trailing
//! bytes are errors.

use alloc::vec::Vec;
use core::fmt;

/// Why bytes are not well-formed BER-TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvError {
    /// The input ended inside a tag, a length or a value; `at` is the offset.
    Truncated {
        /// Byte offset in the data.
        at: usize,
    },
    /// A tag longer than 3 bytes, or a continuation byte of zero value bits.
    InvalidTag {
        /// Byte offset in the data.
        at: usize,
    },
    /// Indefinite (`80`), reserved (`FF`), non-minimal or over-long length.
    InvalidLength {
        /// Byte offset in the data.
        at: usize,
    },
    /// A required tag is missing.
    Missing {
        /// The tag concerned.
        tag: u32,
    },
    /// A tag that does not belong where it is.
    Unexpected {
        /// The tag concerned.
        tag: u32,
        /// Byte offset in the data.
        at: usize,
    },
    /// A value whose content is not what its tag requires.
    InvalidValue {
        /// The tag concerned.
        tag: u32,
    },
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlvError::Truncated { at } => write!(f, "TLV truncated at offset {at}"),
            TlvError::InvalidTag { at } => write!(f, "invalid TLV tag at offset {at}"),
            TlvError::InvalidLength { at } => write!(f, "invalid TLV length at offset {at}"),
            TlvError::Missing { tag } => write!(f, "required TLV tag {tag:02X} missing"),
            TlvError::Unexpected { tag, at } => {
                write!(f, "unexpected TLV tag {tag:02X} at offset {at}")
            }
            TlvError::InvalidValue { tag } => write!(f, "invalid value for TLV tag {tag:02X}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TlvError {}

/// A tag as the bytes read, packed big-endian into a `u32` (e.g. `0x9F7F`).
pub type Tag = u32;

/// Whether the tag's first byte marks a constructed object.
pub fn is_constructed(tag: Tag) -> bool {
    first_byte(tag) & 0x20 != 0
}

fn first_byte(tag: Tag) -> u8 {
    let bytes = tag.to_be_bytes();
    bytes.iter().copied().find(|b| *b != 0).unwrap_or(0)
}

/// One decoded object, borrowing its value from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value bytes.
    pub value: &'a [u8],
    /// Offset of the tag in the buffer the object was read from.
    pub offset: usize,
}

impl<'a> Tlv<'a> {
    /// The children of a constructed object.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, TlvError> {
        parse_all(self.value)
    }
}

/// Reads a tag at `pos`, returning it and the position after it.
fn read_tag(input: &[u8], pos: usize) -> Result<(Tag, usize), TlvError> {
    let first = *input.get(pos).ok_or(TlvError::Truncated { at: pos })?;
    if first == 0x00 || first == 0xFF {
        return Err(TlvError::InvalidTag { at: pos });
    }
    let mut tag = first as u32;
    let mut p = pos + 1;
    if first & 0x1F == 0x1F {
        loop {
            let b = *input.get(p).ok_or(TlvError::Truncated { at: p })?;
            // The first subsequent byte has no leading zero bits (not `80`), and
            // a two-byte tag encodes a number of 31 or more (ISO/IEC 7816-4
            // §5.2.2.1): every tag has exactly one encoding.
            if p == pos + 1 && (b == 0x80 || (b & 0x80 == 0 && b < 0x1F)) {
                return Err(TlvError::InvalidTag { at: pos });
            }
            tag = (tag << 8) | b as u32;
            p += 1;
            if b & 0x80 == 0 {
                break;
            }
            if p - pos >= 3 {
                return Err(TlvError::InvalidTag { at: pos });
            }
        }
    }
    Ok((tag, p))
}

/// Reads a definite length at `pos`; at most 3 length bytes after `8x` (16 MiB).
fn read_length(input: &[u8], pos: usize) -> Result<(usize, usize), TlvError> {
    let first = *input.get(pos).ok_or(TlvError::Truncated { at: pos })?;
    if first < 0x80 {
        return Ok((first as usize, pos + 1));
    }
    let n = (first & 0x7F) as usize;
    if n == 0 || n > 3 {
        return Err(TlvError::InvalidLength { at: pos });
    }
    let bytes = input
        .get(pos + 1..pos + 1 + n)
        .ok_or(TlvError::Truncated { at: pos + 1 })?;
    let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    // Minimal encoding only: no leading zero byte, no long form below 128.
    if bytes[0] == 0 || len < 0x80 {
        return Err(TlvError::InvalidLength { at: pos });
    }
    Ok((len, pos + 1 + n))
}

/// Decodes one object at the start of `input`, returning it and the bytes after it.
pub fn parse_one(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    parse_at(input, 0).map(|(tlv, next)| (tlv, &input[next..]))
}

fn parse_at(input: &[u8], pos: usize) -> Result<(Tlv<'_>, usize), TlvError> {
    let (tag, p) = read_tag(input, pos)?;
    let (len, p) = read_length(input, p)?;
    let end = p
        .checked_add(len)
        .ok_or(TlvError::InvalidLength { at: p })?;
    let value = input
        .get(p..end)
        .ok_or(TlvError::Truncated { at: input.len() })?;
    Ok((
        Tlv {
            tag,
            value,
            offset: pos,
        },
        end,
    ))
}

/// Decodes a sequence of objects that must fill `input` exactly.
pub fn parse_all(input: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let (tlv, next) = parse_at(input, pos)?;
        out.push(tlv);
        pos = next;
    }
    Ok(out)
}

/// Appends a tag in its minimal big-endian byte form.
pub fn write_tag(out: &mut Vec<u8>, tag: Tag) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends a definite length in minimal form.
pub fn write_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => {
            out.push(0x82);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x83);
            out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        }
    }
}

/// Appends one object.
pub fn write(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    write_tag(out, tag);
    write_length(out, value.len());
    out.extend_from_slice(value);
}

/// One object as a new vector.
pub fn encode(tag: Tag, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    write(&mut out, tag, value);
    out
}

/// A view over a list of sibling objects with lookups by tag.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    /// The TLVs, in order.
    pub items: Vec<Tlv<'a>>,
}

impl<'a> Fields<'a> {
    /// Parses `input` as a sequence of siblings.
    pub fn parse(input: &'a [u8]) -> Result<Self, TlvError> {
        Ok(Fields {
            items: parse_all(input)?,
        })
    }

    /// The value of the first object with `tag`, if any.
    pub fn get(&self, tag: Tag) -> Option<&'a [u8]> {
        self.items.iter().find(|t| t.tag == tag).map(|t| t.value)
    }

    /// The value of the first object with `tag`, or [`TlvError::Missing`].
    pub fn require(&self, tag: Tag) -> Result<&'a [u8], TlvError> {
        self.get(tag).ok_or(TlvError::Missing { tag })
    }

    /// All values with `tag`, in order.
    pub fn all(&self, tag: Tag) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.items
            .iter()
            .filter(move |t| t.tag == tag)
            .map(|t| t.value)
    }

    /// Fails on any tag outside `allowed`, or on a repeated tag outside `repeatable`.
    pub fn only(&self, allowed: &[Tag], repeatable: &[Tag]) -> Result<(), TlvError> {
        for (i, t) in self.items.iter().enumerate() {
            let repeated = self.items[..i].iter().any(|prev| prev.tag == t.tag);
            if !allowed.contains(&t.tag) || (repeated && !repeatable.contains(&t.tag)) {
                return Err(TlvError::Unexpected {
                    tag: t.tag,
                    at: t.offset,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn multi_byte_tags_and_long_lengths() {
        let mut out = Vec::new();
        write(&mut out, 0x9F7F, &[1, 2]);
        write(&mut out, 0x5F2D, &[0xAB; 200]);
        write(&mut out, 0x53, &vec![0xCD; 70_000]);
        let items = parse_all(&out).unwrap();
        assert_eq!(items[0].tag, 0x9F7F);
        assert_eq!(items[0].value, [1, 2]);
        assert_eq!(items[1].tag, 0x5F2D);
        assert_eq!(items[1].value.len(), 200);
        assert_eq!(&out[3 + 2..3 + 2 + 4], [0x5F, 0x2D, 0x81, 200]);
        assert_eq!(items[2].value.len(), 70_000);
    }

    #[test]
    fn constructed_children() {
        let inner = [encode(0x84, &[0xA0, 0x00]), encode(0xC1, &[1])].concat();
        let outer = encode(0x6F, &inner);
        let (tlv, rest) = parse_one(&outer).unwrap();
        assert!(rest.is_empty());
        assert!(is_constructed(tlv.tag));
        let kids = tlv.children().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1].tag, 0xC1);
    }

    #[test]
    fn strict_on_malformed() {
        assert_eq!(parse_all(&[0x53]), Err(TlvError::Truncated { at: 1 }));
        assert_eq!(
            parse_all(&[0x53, 0x80]),
            Err(TlvError::InvalidLength { at: 1 })
        );
        assert_eq!(
            parse_all(&[0x53, 0x81, 0x05, 0]),
            Err(TlvError::InvalidLength { at: 1 })
        );
        assert_eq!(
            parse_all(&[0x53, 0x82, 0x00, 0x90]),
            Err(TlvError::InvalidLength { at: 1 })
        );
        assert_eq!(
            parse_all(&[0x53, 0x03, 1, 2]),
            Err(TlvError::Truncated { at: 4 })
        );
        assert_eq!(
            parse_all(&[0x1F, 0x80, 0x01, 0]),
            Err(TlvError::InvalidTag { at: 0 })
        );
        assert_eq!(
            parse_all(&[0x1F, 0x81, 0x81, 0x81, 0x01, 0]),
            Err(TlvError::InvalidTag { at: 0 })
        );
        assert_eq!(
            parse_all(&[0x00, 0x00]),
            Err(TlvError::InvalidTag { at: 0 })
        );
        assert_eq!(
            parse_all(&[0x53, 0x84, 0, 0, 0, 1]),
            Err(TlvError::InvalidLength { at: 1 })
        );
    }

    #[test]
    fn fields_lookup_and_only() {
        let bytes = [encode(0x80, &[1]), encode(0x81, &[2]), encode(0x81, &[3])].concat();
        let f = Fields::parse(&bytes).unwrap();
        assert_eq!(f.require(0x80).unwrap(), [1]);
        assert_eq!(f.all(0x81).count(), 2);
        assert!(f.only(&[0x80, 0x81], &[0x81]).is_ok());
        assert!(f.only(&[0x80, 0x81], &[]).is_err());
        assert!(f.only(&[0x80], &[]).is_err());
        assert_eq!(f.require(0x99), Err(TlvError::Missing { tag: 0x99 }));
    }
}
