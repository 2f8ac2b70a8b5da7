//! The compact binary form of a TNDS tree, stored as the content of an MO
//! record on the card. It is BER-TLV (the card model's strict codec):
//!
//! ```text
//! 01                         format version
//! E0 L  tree
//!    C0 L VerDTD   C1 L Man (opt)   C2 L Mod (opt)
//!    A0 L node (repeatable)
//!       80 L NodeName   81 L Path (opt)
//!       A1 L RTProperties (opt)
//!          82 ACL  83 Format  84 Name  85 Size  86 Title  87 TStamp
//!          88 MIME | 89 DDFName  8A VerNo          (each optional)
//!       8B L Value (opt)
//!       A0 L child node (repeatable)
//! ```
//!
//! Texts are UTF-8. Decoding is strict: unknown or repeated tags, trailing
//! bytes and nesting deeper than [`MAX_DEPTH`] are errors.

use dmsc_card_model::tlv::{self, Fields, Tag, Tlv};

use super::tree::{MgmtTree, Node, NodeType, RtProperties, MAX_DEPTH};
use super::{BinaryFault, MoError};

/// The first byte of the binary form.
pub const FORMAT_VERSION: u8 = 0x01;

const TREE: Tag = 0xE0;
const VER_DTD: Tag = 0xC0;
const MAN: Tag = 0xC1;
const MODEL: Tag = 0xC2;
const NODE: Tag = 0xA0;
const NAME: Tag = 0x80;
const PATH: Tag = 0x81;
const PROPS: Tag = 0xA1;
const ACL: Tag = 0x82;
const FORMAT: Tag = 0x83;
const P_NAME: Tag = 0x84;
const SIZE: Tag = 0x85;
const TITLE: Tag = 0x86;
const TSTAMP: Tag = 0x87;
const MIME: Tag = 0x88;
const DDF_NAME: Tag = 0x89;
const VER_NO: Tag = 0x8A;
const VALUE: Tag = 0x8B;

fn opt(out: &mut Vec<u8>, tag: Tag, v: &Option<String>) {
    if let Some(v) = v {
        tlv::write(out, tag, v.as_bytes());
    }
}

fn encode_node(node: &Node) -> Vec<u8> {
    let mut body = Vec::new();
    tlv::write(&mut body, NAME, node.name.as_bytes());
    opt(&mut body, PATH, &node.path);
    if let Some(p) = &node.properties {
        let mut pb = Vec::new();
        opt(&mut pb, ACL, &p.acl);
        opt(&mut pb, FORMAT, &p.format);
        opt(&mut pb, P_NAME, &p.name);
        opt(&mut pb, SIZE, &p.size);
        opt(&mut pb, TITLE, &p.title);
        opt(&mut pb, TSTAMP, &p.tstamp);
        match &p.node_type {
            Some(NodeType::Mime(v)) => tlv::write(&mut pb, MIME, v.as_bytes()),
            Some(NodeType::DdfName(v)) => tlv::write(&mut pb, DDF_NAME, v.as_bytes()),
            None => {}
        }
        opt(&mut pb, VER_NO, &p.ver_no);
        tlv::write(&mut body, PROPS, &pb);
    }
    opt(&mut body, VALUE, &node.value);
    for c in &node.children {
        body.extend_from_slice(&encode_node(c));
    }
    tlv::encode(NODE, &body)
}

fn bad(fault: BinaryFault) -> MoError {
    MoError::Binary(fault)
}

fn text(bytes: &[u8], what: &'static str) -> Result<String, MoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(BinaryFault::NotUtf8(what)))
}

fn opt_text(f: &Fields<'_>, tag: Tag, what: &'static str) -> Result<Option<String>, MoError> {
    f.get(tag).map(|b| text(b, what)).transpose()
}

fn fields<'a>(value: &'a [u8], allowed: &[Tag], repeatable: &[Tag]) -> Result<Fields<'a>, MoError> {
    let f = Fields::parse(value).map_err(|e| bad(BinaryFault::Tlv(e)))?;
    f.only(allowed, repeatable)
        .map_err(|e| bad(BinaryFault::Tlv(e)))?;
    Ok(f)
}

fn decode_node(t: &Tlv<'_>, depth: usize) -> Result<Node, MoError> {
    if depth > MAX_DEPTH {
        return Err(bad(BinaryFault::TooDeep));
    }
    let f = fields(t.value, &[NAME, PATH, PROPS, VALUE, NODE], &[NODE])?;
    let name = text(
        f.get(NAME).ok_or_else(|| bad(BinaryFault::NoName))?,
        "a node name",
    )?;
    let properties = match f.get(PROPS) {
        None => None,
        Some(pb) => {
            let p = fields(
                pb,
                &[
                    ACL, FORMAT, P_NAME, SIZE, TITLE, TSTAMP, MIME, DDF_NAME, VER_NO,
                ],
                &[],
            )?;
            let node_type = match (p.get(MIME), p.get(DDF_NAME)) {
                (Some(_), Some(_)) => return Err(bad(BinaryFault::MimeAndDdfName)),
                (Some(m), None) => Some(NodeType::Mime(text(m, "MIME")?)),
                (None, Some(d)) => Some(NodeType::DdfName(text(d, "DDFName")?)),
                (None, None) => None,
            };
            Some(RtProperties {
                acl: opt_text(&p, ACL, "ACL")?,
                format: opt_text(&p, FORMAT, "Format")?,
                name: opt_text(&p, P_NAME, "Name")?,
                size: opt_text(&p, SIZE, "Size")?,
                title: opt_text(&p, TITLE, "Title")?,
                tstamp: opt_text(&p, TSTAMP, "TStamp")?,
                node_type,
                ver_no: opt_text(&p, VER_NO, "VerNo")?,
            })
        }
    };
    let children = f
        .items
        .iter()
        .filter(|c| c.tag == NODE)
        .map(|c| decode_node(c, depth + 1))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Node {
        name,
        path: opt_text(&f, PATH, "Path")?,
        properties,
        value: opt_text(&f, VALUE, "Value")?,
        children,
    })
}

impl MgmtTree {
    /// The compact binary form (module documentation).
    pub fn to_binary(&self) -> Vec<u8> {
        let mut body = Vec::new();
        tlv::write(&mut body, VER_DTD, self.ver_dtd.as_bytes());
        opt(&mut body, MAN, &self.man);
        opt(&mut body, MODEL, &self.model);
        for n in &self.nodes {
            body.extend_from_slice(&encode_node(n));
        }
        let mut out = vec![FORMAT_VERSION];
        tlv::write(&mut out, TREE, &body);
        out
    }

    /// Decodes the compact binary form and checks the TNDS rules.
    pub fn from_binary(bytes: &[u8]) -> Result<MgmtTree, MoError> {
        let (version, rest) = bytes.split_first().ok_or_else(|| bad(BinaryFault::Empty))?;
        if *version != FORMAT_VERSION {
            return Err(bad(BinaryFault::UnknownVersion(*version)));
        }
        let top = fields(rest, &[TREE], &[])?;
        let body = top.get(TREE).ok_or_else(|| bad(BinaryFault::NoTree))?;
        let f = fields(body, &[VER_DTD, MAN, MODEL, NODE], &[NODE])?;
        let tree = MgmtTree {
            ver_dtd: text(
                f.get(VER_DTD).ok_or_else(|| bad(BinaryFault::NoVerDtd))?,
                "VerDTD",
            )?,
            man: opt_text(&f, MAN, "Man")?,
            model: opt_text(&f, MODEL, "Mod")?,
            nodes: f
                .items
                .iter()
                .filter(|c| c.tag == NODE)
                .map(|c| decode_node(c, 1))
                .collect::<Result<Vec<_>, _>>()?,
        };
        tree.validate()?;
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary tree that does not decode says where, as a typed fault.
    #[test]
    fn binary_faults_are_typed() {
        let fault = |bytes: &[u8]| match MgmtTree::from_binary(bytes) {
            Err(MoError::Binary(f)) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(fault(&[]), BinaryFault::Empty);
        assert_eq!(fault(&[0x7F]), BinaryFault::UnknownVersion(0x7F));
        assert!(matches!(
            fault(&[FORMAT_VERSION, 0xFF]),
            BinaryFault::Tlv(_)
        ));
        let e = MgmtTree::from_binary(&[0x7F]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MO content on the card is not a valid dmsc binary tree: unknown format version 7F"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
