//! WBXML-encoded TNDS documents and OMA DM (SyncML 1.2) messages
//! (`application/vnd.syncml.dm+wbxml`) decoded to XML text.
//!
//! WBXML 1.x (WAP-192): version, public identifier, charset (UTF-8 or
//! unspecified), string table, then the body. Tags are the tokens of the OMA
//! DM DDF 1.2 code page (`-//OMA//DTD-DM-DDF 1.2//EN`), which carries every
//! TNDS element (`MgmtTree` `0x20`, `Node` `0x24`, `NodeName` `0x26`, `Value`
//! `0x36`, …); literal tags from the string table are accepted too.
//! A document whose public identifier is SyncML 1.2 (`0x1201`, encoded
//! `A4 01`, or the string `-//SYNCML//DTD SyncML 1.2//EN`) or SyncML 1.1
//! (`0x0FD3`) is read with the SyncML 1.2 code page
//! (page 0: `SyncML` `0x2D`, `SyncHdr` `0x2C`, `Add` `0x05`, `Item` `0x14`,
//! …) and the MetInf code page (page 1: `Format` `0x07`, `Type` `0x13`, …).
//! Attributes, processing instructions and extensions have no place in either
//! and are refused.

/// Tag tokens `0x05..=0x3C` of the DM DDF 1.2 code page.
const DDF_TAGS: [&str; 56] = [
    "AccessType",
    "ACL",
    "Add",
    "b64",
    "bin",
    "bool",
    "chr",
    "CaseSense",
    "CIS",
    "Copy",
    "CS",
    "date",
    "DDFName",
    "DefaultValue",
    "Delete",
    "Description",
    "DFFormat",
    "DFProperties",
    "DFTitle",
    "DFType",
    "Dynamic",
    "Exec",
    "float",
    "Format",
    "Get",
    "int",
    "Man",
    "MgmtTree",
    "MIME",
    "Mod",
    "Name",
    "Node",
    "node",
    "NodeName",
    "null",
    "Occurrence",
    "One",
    "OneOrMore",
    "OneOrN",
    "Path",
    "Permanent",
    "Replace",
    "RTProperties",
    "Scope",
    "Size",
    "time",
    "Title",
    "TStamp",
    "Type",
    "Value",
    "VerDTD",
    "VerNo",
    "xml",
    "ZeroOrMore",
    "ZeroOrN",
    "ZeroOrOne",
];

/// Tag tokens `0x05..=0x3C` of the SyncML 1.2 code page (page 0 of public
/// identifier `0x1201`); `0x30` is reserved.
const SYNCML_TAGS: [&str; 56] = [
    "Add",
    "Alert",
    "Archive",
    "Atomic",
    "Chal",
    "Cmd",
    "CmdID",
    "CmdRef",
    "Copy",
    "Cred",
    "Data",
    "Delete",
    "Exec",
    "Final",
    "Get",
    "Item",
    "Lang",
    "LocName",
    "LocURI",
    "Map",
    "MapItem",
    "Meta",
    "MsgID",
    "MsgRef",
    "NoResp",
    "NoResults",
    "Put",
    "Replace",
    "RespURI",
    "Results",
    "Search",
    "Sequence",
    "SessionID",
    "SftDel",
    "Source",
    "SourceRef",
    "Status",
    "Sync",
    "SyncBody",
    "SyncHdr",
    "SyncML",
    "Target",
    "TargetRef",
    "",
    "VerDTD",
    "VerProto",
    "NumberOfChanges",
    "MoreData",
    "Field",
    "Filter",
    "Record",
    "FilterType",
    "SourceParent",
    "TargetParent",
    "Move",
    "Correlator",
];

/// Tag tokens `0x05..=0x16` of the MetInf code page (page 1 of public
/// identifier `0x1201`).
const METINF_TAGS: [&str; 18] = [
    "Anchor",
    "EMI",
    "Format",
    "FreeID",
    "FreeMem",
    "Last",
    "Mark",
    "MaxMsgSize",
    "Mem",
    "MetInf",
    "Next",
    "NextNonce",
    "SharedMem",
    "Size",
    "Type",
    "Version",
    "MaxObjSize",
    "FieldLevel",
];

/// The WBXML public identifier of SyncML 1.2 (multi-byte `A4 01`).
pub const SYNCML_12_PUBLIC_ID: u32 = 0x1201;

/// The WBXML public identifier of SyncML 1.1 (multi-byte `9F 53`).
pub const SYNCML_11_PUBLIC_ID: u32 = 0x0FD3;

/// The formal public identifier of SyncML 1.2 (when the identifier is given
/// as a string-table entry).
pub const SYNCML_12_FPI: &str = "-//SYNCML//DTD SyncML 1.2//EN";

/// The tag vocabulary a document is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// DM DDF 1.2 (TNDS), on every page.
    DmDdf,
    /// SyncML 1.2 (page 0) and MetInf (page 1): an OMA DM message.
    SyncMl,
}

impl Vocabulary {
    fn tag(self, page: u8, token: u8) -> Option<&'static str> {
        let i = usize::from(token).checked_sub(5)?;
        match (self, page) {
            (Vocabulary::DmDdf, _) => DDF_TAGS.get(i).copied(),
            (Vocabulary::SyncMl, 0) => SYNCML_TAGS.get(i).copied().filter(|t| !t.is_empty()),
            (Vocabulary::SyncMl, 1) => METINF_TAGS.get(i).copied(),
            _ => None,
        }
    }
}

/// A decoded WBXML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The vocabulary its public identifier names.
    pub vocabulary: Vocabulary,
    /// The document as XML text (without an XML declaration).
    pub xml: String,
}

/// The tag name of a token of the DM DDF code page.
pub fn ddf_tag(token: u8) -> Option<&'static str> {
    DDF_TAGS.get(usize::from(token).checked_sub(5)?).copied()
}

/// The token of a DM DDF tag name.
pub fn ddf_token(name: &str) -> Option<u8> {
    DDF_TAGS
        .iter()
        .position(|t| *t == name)
        .map(|i| i as u8 + 5)
}

/// Why a WBXML TNDS document does not decode; positions are byte offsets
/// into the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WbxmlError {
    /// The document ends inside a token.
    #[error("WBXML: unexpected end at byte {at}")]
    UnexpectedEnd {
        /// Where more was expected.
        at: usize,
    },
    /// A multi-byte integer does not fit 32 bits.
    #[error("WBXML: integer too large at byte {at}")]
    IntegerTooLarge {
        /// Where.
        at: usize,
    },
    /// A multi-byte integer is longer than 5 bytes.
    #[error("WBXML: integer too long at byte {at}")]
    IntegerTooLong {
        /// Where.
        at: usize,
    },
    /// A length runs past the end of the document.
    #[error("WBXML: {len} bytes announced at byte {at} overrun the document")]
    Overrun {
        /// The length announced.
        len: usize,
        /// Where the data begins.
        at: usize,
    },
    /// A string table index is past the table.
    #[error("WBXML: string table index {index} out of range")]
    TableIndex {
        /// The index.
        index: usize,
    },
    /// A string in the table has no terminating zero.
    #[error("WBXML: string at table index {index} is not terminated")]
    TableUnterminated {
        /// The index.
        index: usize,
    },
    /// A string in the table is not UTF-8.
    #[error("WBXML: string at table index {index} is not UTF-8")]
    TableNotUtf8 {
        /// The index.
        index: usize,
    },
    /// The version byte is not WBXML 1.0 to 1.3.
    #[error("WBXML: unsupported version byte {0:02x}")]
    Version(u8),
    /// The charset is not UTF-8.
    #[error("WBXML: charset MIBenum {0}; only UTF-8 (106) is supported")]
    Charset(u32),
    /// END with no element open.
    #[error("WBXML: END without an open element at byte {at}")]
    UnmatchedEnd {
        /// Where.
        at: usize,
    },
    /// An ENTITY that is not a Unicode scalar value.
    #[error("WBXML: invalid character entity at byte {at}")]
    Entity {
        /// Where the entity's value begins.
        at: usize,
    },
    /// An inline string (STR_I) has no terminating zero.
    #[error("WBXML: inline string at byte {at} is not terminated")]
    InlineUnterminated {
        /// Where the string begins.
        at: usize,
    },
    /// An inline string (STR_I) is not UTF-8.
    #[error("WBXML: inline string at byte {at} is not UTF-8")]
    InlineNotUtf8 {
        /// Where the string begins.
        at: usize,
    },
    /// OPAQUE data is not UTF-8 text.
    #[error("WBXML: opaque data at byte {at} is not UTF-8 text")]
    OpaqueNotUtf8 {
        /// Where the data begins.
        at: usize,
    },
    /// A tag with attributes.
    #[error("WBXML: attributes (tag byte {tag:02x}) have no place in TNDS")]
    Attributes {
        /// The tag byte.
        tag: u8,
    },
    /// A tag token the code page does not define.
    #[error("WBXML: unknown tag token {token:02x} on code page {page} at byte {at}")]
    UnknownTag {
        /// The token (without the content and attribute bits).
        token: u8,
        /// The code page in force.
        page: u8,
        /// Where.
        at: usize,
    },
    /// A global token TNDS does not use (PI, extensions, …).
    #[error("WBXML: unsupported token {token:02x} at byte {at}")]
    UnsupportedToken {
        /// The token.
        token: u8,
        /// Where.
        at: usize,
    },
    /// A second root element.
    #[error("WBXML: more than one root element (byte {at})")]
    SecondRoot {
        /// Where the second root begins.
        at: usize,
    },
    /// An element name with characters XML names cannot have here.
    #[error("WBXML: invalid element name {0:?}")]
    ElementName(String),
    /// Elements nested deeper than the decoder allows.
    #[error("WBXML: nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The document ends with elements still open.
    #[error("WBXML: truncated, {0} element(s) not closed")]
    Unclosed(usize),
    /// The document has no element.
    #[error("WBXML: no root element")]
    NoRoot,
}

const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const ENTITY: u8 = 0x02;
const STR_I: u8 = 0x03;
const LITERAL: u8 = 0x04;
const STR_T: u8 = 0x83;
const OPAQUE: u8 = 0xC3;
const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, WbxmlError> {
        let v = *self
            .b
            .get(self.at)
            .ok_or(WbxmlError::UnexpectedEnd { at: self.at })?;
        self.at += 1;
        Ok(v)
    }

    fn mb_u32(&mut self) -> Result<u32, WbxmlError> {
        let mut v: u32 = 0;
        for _ in 0..5 {
            let b = self.byte()?;
            v = v
                .checked_mul(128)
                .ok_or(WbxmlError::IntegerTooLarge { at: self.at })?
                | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WbxmlError::IntegerTooLong { at: self.at })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WbxmlError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(WbxmlError::Overrun {
                len: n,
                at: self.at,
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
}

fn table_string(table: &[u8], index: u32) -> Result<&str, WbxmlError> {
    let i = index as usize;
    let rest = table.get(i..).ok_or(WbxmlError::TableIndex { index: i })?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(WbxmlError::TableUnterminated { index: i })?;
    std::str::from_utf8(&rest[..end]).map_err(|_| WbxmlError::TableNotUtf8 { index: i })
}

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Decodes a WBXML TNDS document to XML text (without an XML declaration).
/// A SyncML 1.2 document decodes too (see [`decode`]); its root is `SyncML`.
pub fn decode_tnds(bytes: &[u8]) -> Result<String, WbxmlError> {
    Ok(decode(bytes)?.xml)
}

/// Decodes a WBXML document with the vocabulary its public identifier names:
/// SyncML ([`SYNCML_12_PUBLIC_ID`], [`SYNCML_11_PUBLIC_ID`] or
/// [`SYNCML_12_FPI`]) or else DM DDF.
pub fn decode(bytes: &[u8]) -> Result<Decoded, WbxmlError> {
    let mut r = Reader { b: bytes, at: 0 };
    let version = r.byte()?;
    if version > 0x03 {
        return Err(WbxmlError::Version(version));
    }
    let public_id = r.mb_u32()?;
    let fpi_index = if public_id == 0 {
        Some(r.mb_u32()?) // public identifier given as a string-table index
    } else {
        None
    };
    let charset = r.mb_u32()?;
    if charset != 0 && charset != 106 {
        return Err(WbxmlError::Charset(charset));
    }
    let len = r.mb_u32()? as usize;
    let table = r.take(len)?.to_vec();
    let syncml = match fpi_index {
        Some(i) => table_string(&table, i)?.eq_ignore_ascii_case(SYNCML_12_FPI),
        None => public_id == SYNCML_12_PUBLIC_ID || public_id == SYNCML_11_PUBLIC_ID,
    };
    let vocabulary = if syncml {
        Vocabulary::SyncMl
    } else {
        Vocabulary::DmDdf
    };
    let mut page: u8 = 0;
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut root_seen = false;
    loop {
        if r.at == bytes.len() {
            break;
        }
        let t = r.byte()?;
        match t {
            SWITCH_PAGE => {
                page = r.byte()?;
            }
            END => {
                let name = open
                    .pop()
                    .ok_or(WbxmlError::UnmatchedEnd { at: r.at - 1 })?;
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
            }
            ENTITY => {
                let at = r.at;
                let c = char::from_u32(r.mb_u32()?).ok_or(WbxmlError::Entity { at })?;
                escape(&mut out, c.encode_utf8(&mut [0; 4]));
            }
            STR_I => {
                let rest = &bytes[r.at..];
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(WbxmlError::InlineUnterminated { at: r.at })?;
                let s = std::str::from_utf8(&rest[..end])
                    .map_err(|_| WbxmlError::InlineNotUtf8 { at: r.at })?;
                escape(&mut out, s);
                r.at += end + 1;
            }
            STR_T => {
                let i = r.mb_u32()?;
                escape(&mut out, table_string(&table, i)?);
            }
            OPAQUE => {
                let n = r.mb_u32()? as usize;
                let at = r.at;
                let data = r.take(n)?;
                let s = std::str::from_utf8(data).map_err(|_| WbxmlError::OpaqueNotUtf8 { at })?;
                escape(&mut out, s);
            }
            _ => {
                let at = r.at - 1;
                let (base, attrs, content) = (t & 0x3F, t & 0x80 != 0, t & 0x40 != 0);
                if attrs {
                    return Err(WbxmlError::Attributes { tag: t });
                }
                let name = match base {
                    LITERAL => table_string(&table, r.mb_u32()?)?.to_string(),
                    0x05..=0x3F => vocabulary
                        .tag(page, base)
                        .ok_or(WbxmlError::UnknownTag {
                            token: base,
                            page,
                            at,
                        })?
                        .to_string(),
                    _ => return Err(WbxmlError::UnsupportedToken { token: t, at }),
                };
                if open.is_empty() {
                    if root_seen {
                        return Err(WbxmlError::SecondRoot { at });
                    }
                    root_seen = true;
                }
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                {
                    return Err(WbxmlError::ElementName(name));
                }
                out.push('<');
                out.push_str(&name);
                if content {
                    if open.len() >= MAX_DEPTH {
                        return Err(WbxmlError::TooDeep);
                    }
                    out.push('>');
                    open.push(name);
                } else {
                    out.push_str("/>");
                }
            }
        }
    }
    if !open.is_empty() {
        return Err(WbxmlError::Unclosed(open.len()));
    }
    if !root_seen {
        return Err(WbxmlError::NoRoot);
    }
    out.push('\n');
    Ok(Decoded {
        vocabulary,
        xml: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(out: &mut Vec<u8>, name: &str) {
        out.push(ddf_token(name).unwrap() | 0x40);
    }

    fn str_i(out: &mut Vec<u8>, s: &str) {
        out.push(STR_I);
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A TNDS document with a public id, UTF-8, a string table, a literal
    /// tag, inline and table strings, an entity and opaque data.
    fn sample() -> Vec<u8> {
        let table = b"net.example\0X-Vendor\0";
        let mut b = vec![0x02, 0x00, 0x00, 0x6A, table.len() as u8];
        b.extend_from_slice(table);
        tag(&mut b, "MgmtTree");
        tag(&mut b, "VerDTD");
        str_i(&mut b, "1.2");
        b.push(END);
        tag(&mut b, "Node");
        tag(&mut b, "NodeName");
        str_i(&mut b, "DMAcc");
        b.push(END);
        tag(&mut b, "Node");
        tag(&mut b, "NodeName");
        str_i(&mut b, "ServerID");
        b.push(END);
        tag(&mut b, "Value");
        b.extend_from_slice(&[STR_T, 0]);
        b.push(END);
        b.extend_from_slice(&[0x40 | LITERAL, 12]); // <X-Vendor>
        b.extend_from_slice(&[ENTITY, 0x26]); // &
        b.extend_from_slice(&[OPAQUE, 3, b'a', b'<', b'b']);
        b.push(END);
        b.push(ddf_token("Node").unwrap()); // empty <Node/>
        b.extend_from_slice(&[END, END, END]);
        b
    }

    #[test]
    fn decodes_tnds() {
        let xml = decode_tnds(&sample()).unwrap();
        assert_eq!(
            xml,
            "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName><Node><NodeName>\
             ServerID</NodeName><Value>net.example</Value><X-Vendor>&amp;a&lt;b</X-Vendor>\
             <Node/></Node></Node></MgmtTree>\n"
        );
        assert_eq!(ddf_tag(0x20), Some("MgmtTree"));
        assert_eq!(ddf_tag(0x26), Some("NodeName"));
        assert_eq!(ddf_tag(0x36), Some("Value"));
    }

    #[test]
    fn refuses_malformed_documents() {
        let good = sample();
        for cut in 1..good.len() {
            assert!(decode_tnds(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut attrs = good.clone();
        let root = attrs.iter().position(|&b| b == 0x60).unwrap();
        attrs[root] |= 0x80;
        assert!(decode_tnds(&attrs)
            .unwrap_err()
            .to_string()
            .contains("attributes"));
        let mut bad_index = good.clone();
        let i = bad_index.iter().position(|&b| b == STR_T).unwrap();
        bad_index[i + 1] = 0x7F;
        assert!(decode_tnds(&bad_index).is_err());
        let mut two_roots = good.clone();
        two_roots.extend_from_slice(&[0x60, END]);
        assert!(decode_tnds(&two_roots)
            .unwrap_err()
            .to_string()
            .contains("root"));
        assert!(decode_tnds(&[0x09]).is_err());
        assert!(decode_tnds(&[0x02, 0x01, 0x04, 0x00])
            .unwrap_err()
            .to_string()
            .contains("charset"));
    }

    #[test]
    fn syncml_public_id_selects_the_syncml_and_metinf_pages() {
        // <SyncML><SyncBody><Add><Item><Meta><Format>chr</Format></Meta>
        // </Item></Add></SyncBody></SyncML>, MetInf on page 1.
        let mut b = vec![0x03, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x6B, 0x45, 0x54, 0x5A];
        b.extend_from_slice(&[SWITCH_PAGE, 1, 0x47, STR_I, b'c', b'h', b'r', 0, END]);
        b.extend_from_slice(&[SWITCH_PAGE, 0, END, END, END, END, END]);
        let d = decode(&b).unwrap();
        assert_eq!(d.vocabulary, Vocabulary::SyncMl);
        assert_eq!(
            d.xml,
            "<SyncML><SyncBody><Add><Item><Meta><Format>chr</Format></Meta></Item></Add>\
             </SyncBody></SyncML>\n"
        );
        // The same bytes with another public id read as DM DDF.
        let mut ddf = b.clone();
        ddf[1..3].copy_from_slice(&[0x01, 0x01]);
        ddf.remove(2);
        assert!(decode(&ddf).unwrap().xml.starts_with("<Permanent>"));
        // A page SyncML does not define names the page and the offset.
        let mut page2 = b.clone();
        page2[11] = 2;
        assert_eq!(
            decode(&page2).unwrap_err(),
            WbxmlError::UnknownTag {
                token: 0x07,
                page: 2,
                at: 12
            }
        );
    }
}
