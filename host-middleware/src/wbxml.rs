//! WBXML-encoded TNDS documents (`application/vnd.syncml.dm+wbxml`) decoded
//! to XML text.
//!
//! WBXML 1.x (WAP-192): version, public identifier, charset (UTF-8 or
//! unspecified), string table, then the body. Tags are the tokens of the OMA
//! DM DDF 1.2 code page (`-//OMA//DTD-DM-DDF 1.2//EN`), which carries every
//! TNDS element (`MgmtTree` `0x20`, `Node` `0x24`, `NodeName` `0x26`, `Value`
//! `0x36`, …); literal tags from the string table are accepted too.
//! Attributes, processing instructions and extensions have no place in TNDS
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
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self
            .b
            .get(self.at)
            .ok_or_else(|| format!("WBXML: unexpected end at byte {}", self.at))?;
        self.at += 1;
        Ok(v)
    }

    fn mb_u32(&mut self) -> Result<u32, String> {
        let mut v: u32 = 0;
        for _ in 0..5 {
            let b = self.byte()?;
            v = v
                .checked_mul(128)
                .ok_or_else(|| format!("WBXML: integer too large at byte {}", self.at))?
                | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("WBXML: integer too long at byte {}", self.at))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| {
                format!(
                    "WBXML: {n} bytes announced at byte {} overrun the document",
                    self.at
                )
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
}

fn table_string(table: &[u8], index: u32) -> Result<&str, String> {
    let i = index as usize;
    let rest = table
        .get(i..)
        .ok_or_else(|| format!("WBXML: string table index {i} out of range"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("WBXML: string at table index {i} is not terminated"))?;
    std::str::from_utf8(&rest[..end])
        .map_err(|_| format!("WBXML: string at table index {i} is not UTF-8"))
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
pub fn decode_tnds(bytes: &[u8]) -> Result<String, String> {
    let mut r = Reader { b: bytes, at: 0 };
    let version = r.byte()?;
    if version > 0x03 {
        return Err(format!("WBXML: unsupported version byte {version:02x}"));
    }
    if r.mb_u32()? == 0 {
        r.mb_u32()?; // public identifier given as a string-table index
    }
    let charset = r.mb_u32()?;
    if charset != 0 && charset != 106 {
        return Err(format!(
            "WBXML: charset MIBenum {charset}; only UTF-8 (106) is supported"
        ));
    }
    let len = r.mb_u32()? as usize;
    let table = r.take(len)?.to_vec();
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
                r.byte()?; // every page is read with the DM DDF tokens
            }
            END => {
                let name = open.pop().ok_or_else(|| {
                    format!("WBXML: END without an open element at byte {}", r.at - 1)
                })?;
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
            }
            ENTITY => {
                let c = char::from_u32(r.mb_u32()?).ok_or("WBXML: invalid character entity")?;
                escape(&mut out, c.encode_utf8(&mut [0; 4]));
            }
            STR_I => {
                let rest = &bytes[r.at..];
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or("WBXML: inline string is not terminated")?;
                let s = std::str::from_utf8(&rest[..end])
                    .map_err(|_| "WBXML: inline string is not UTF-8")?;
                escape(&mut out, s);
                r.at += end + 1;
            }
            STR_T => {
                let i = r.mb_u32()?;
                escape(&mut out, table_string(&table, i)?);
            }
            OPAQUE => {
                let n = r.mb_u32()? as usize;
                let data = r.take(n)?;
                let s = std::str::from_utf8(data)
                    .map_err(|_| "WBXML: opaque data is not UTF-8 text")?;
                escape(&mut out, s);
            }
            _ => {
                let (base, attrs, content) = (t & 0x3F, t & 0x80 != 0, t & 0x40 != 0);
                if attrs {
                    return Err(format!(
                        "WBXML: attributes (tag byte {t:02x}) have no place in TNDS"
                    ));
                }
                let name = match base {
                    LITERAL => table_string(&table, r.mb_u32()?)?.to_string(),
                    0x05..=0x3F => ddf_tag(base)
                        .ok_or_else(|| format!("WBXML: unknown tag token {base:02x}"))?
                        .to_string(),
                    _ => {
                        return Err(format!(
                            "WBXML: unsupported token {t:02x} at byte {}",
                            r.at - 1
                        ))
                    }
                };
                if open.is_empty() {
                    if root_seen {
                        return Err("WBXML: more than one root element".into());
                    }
                    root_seen = true;
                }
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                {
                    return Err(format!("WBXML: invalid element name {name:?}"));
                }
                out.push('<');
                out.push_str(&name);
                if content {
                    if open.len() >= MAX_DEPTH {
                        return Err(format!("WBXML: nesting deeper than {MAX_DEPTH}"));
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
        return Err(format!(
            "WBXML: truncated, {} element(s) not closed",
            open.len()
        ));
    }
    if !root_seen {
        return Err("WBXML: no root element".into());
    }
    out.push('\n');
    Ok(out)
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
        assert!(decode_tnds(&attrs).unwrap_err().contains("attributes"));
        let mut bad_index = good.clone();
        let i = bad_index.iter().position(|&b| b == STR_T).unwrap();
        bad_index[i + 1] = 0x7F;
        assert!(decode_tnds(&bad_index).is_err());
        let mut two_roots = good.clone();
        two_roots.extend_from_slice(&[0x60, END]);
        assert!(decode_tnds(&two_roots).unwrap_err().contains("root"));
        assert!(decode_tnds(&[0x09]).is_err());
        assert!(decode_tnds(&[0x02, 0x01, 0x04, 0x00])
            .unwrap_err()
            .contains("charset"));
    }
}
