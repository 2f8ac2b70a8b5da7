//! TNDS XML (OMA DM 1.2 `MgmtTree`, namespace `syncml:dmddf1.2`), read with
//! `quick-xml`. Every error names its line and column.

use std::fmt::Write as _;

use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::tree::{MgmtTree, Node, NodeType, RtProperties, MAX_DEPTH};
use super::MoError;

/// The TNDS namespace.
pub const NAMESPACE: &str = "syncml:dmddf1.2";

/// An element read from the document: name, text, children, where it starts.
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
    pub(crate) at: usize,
}

/// Line and column (1-based, column in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn syntax(text: &str, offset: usize, message: impl Into<String>) -> MoError {
    syntax_in("TNDS XML", text, offset, message)
}

/// A syntax error of a `format` document at byte `offset`, by line and column.
pub(crate) fn syntax_in(
    format: &'static str,
    text: &str,
    offset: usize,
    message: impl Into<String>,
) -> MoError {
    let (line, column) = line_column(text, offset);
    MoError::Syntax {
        format,
        line,
        column,
        message: message.into(),
    }
}

/// Reads the element tree of the document.
fn read_elements(text: &str) -> Result<Element, MoError> {
    read_elements_in(text, "TNDS XML", &[NAMESPACE], "MgmtTree")
}

/// Reads the element tree of a `format` document whose `xmlns` attributes
/// may only name one of `namespaces` (compared case-insensitively, given in
/// lower case); `root` names the element expected when there is none.
pub(crate) fn read_elements_in(
    text: &str,
    format: &'static str,
    namespaces: &[&str],
    root_name: &str,
) -> Result<Element, MoError> {
    let syntax = |text: &str, at: usize, m: String| syntax_in(format, text, at, m);
    let check_namespace = |text: &str, at: usize, e: &quick_xml::events::BytesStart<'_>| {
        check_namespace_in(format, namespaces, text, at, e)
    };
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            let at = reader.error_position() as usize;
            syntax(text, at, e.to_string())
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(syntax(
                    text,
                    before,
                    "content after the root element".into(),
                ));
            }
            Event::Start(e) => {
                if stack.len() > MAX_DEPTH * 2 + 4 {
                    return Err(syntax(text, before, "elements nested too deeply".into()));
                }
                check_namespace(text, before, &e)?;
                stack.push(Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    text: String::new(),
                    children: Vec::new(),
                    at: before,
                });
            }
            Event::Empty(e) => {
                check_namespace(text, before, &e)?;
                let el = Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    text: String::new(),
                    children: Vec::new(),
                    at: before,
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| {
                    syntax(text, before, "closing tag without an opening tag".into())
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| syntax(text, before, e.to_string()))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => {
                        return Err(syntax(text, before, "text outside the root element".into()))
                    }
                }
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(&c)
                    .map_err(|_| syntax(text, before, "CDATA is not UTF-8".into()))?
                    .to_string();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None => {
                        return Err(syntax(
                            text,
                            before,
                            "CDATA outside the root element".into(),
                        ))
                    }
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(syntax(
                        text,
                        text.len(),
                        format!("the document ends inside <{}>", open.name),
                    ));
                }
                return root
                    .ok_or_else(|| syntax(text, text.len(), format!("no {root_name} element")));
            }
        }
    }
}

fn check_namespace_in(
    format: &'static str,
    namespaces: &[&str],
    text: &str,
    at: usize,
    e: &quick_xml::events::BytesStart<'_>,
) -> Result<(), MoError> {
    for attr in e.attributes() {
        let attr = attr.map_err(|err| syntax_in(format, text, at, err.to_string()))?;
        if attr.key.as_ref() == b"xmlns" {
            let v = attr
                .unescape_value()
                .map_err(|err| syntax_in(format, text, at, err.to_string()))?;
            let lower = v.to_ascii_lowercase();
            if !namespaces.contains(&lower.as_str()) {
                let message = if namespaces == [NAMESPACE] {
                    format!("namespace '{v}' is not the TNDS namespace '{NAMESPACE}'")
                } else {
                    format!("namespace '{v}' is not one of {namespaces:?}")
                };
                return Err(syntax_in(format, text, at, message));
            }
        }
    }
    Ok(())
}

struct Converter<'a> {
    text: &'a str,
}

impl Converter<'_> {
    fn err(&self, el: &Element, message: impl Into<String>) -> MoError {
        syntax(self.text, el.at, message)
    }

    /// The text of a leaf element (no child elements).
    fn leaf(&self, el: &Element) -> Result<String, MoError> {
        if let Some(c) = el.children.first() {
            return Err(self.err(c, format!("<{}> cannot contain <{}>", el.name, c.name)));
        }
        Ok(el.text.clone())
    }

    /// A leaf whose surrounding white space is layout.
    fn trimmed(&self, el: &Element) -> Result<String, MoError> {
        Ok(self.leaf(el)?.trim().to_string())
    }

    fn no_text(&self, el: &Element) -> Result<(), MoError> {
        if !el.text.trim().is_empty() {
            return Err(self.err(el, format!("<{}> cannot contain text", el.name)));
        }
        Ok(())
    }

    fn once<T>(&self, slot: &mut Option<T>, el: &Element, value: T) -> Result<(), MoError> {
        if slot.is_some() {
            return Err(self.err(el, format!("<{}> given twice", el.name)));
        }
        *slot = Some(value);
        Ok(())
    }

    fn tree(&self, el: &Element) -> Result<MgmtTree, MoError> {
        if el.name != "MgmtTree" {
            return Err(self.err(
                el,
                format!("the root element is <{}>, not <MgmtTree>", el.name),
            ));
        }
        self.no_text(el)?;
        let (mut ver, mut man, mut model) = (None, None, None);
        let mut nodes = Vec::new();
        for c in &el.children {
            match c.name.as_str() {
                "VerDTD" => self.once(&mut ver, c, self.trimmed(c)?)?,
                "Man" => self.once(&mut man, c, self.leaf(c)?)?,
                "Mod" => self.once(&mut model, c, self.leaf(c)?)?,
                "Node" => nodes.push(self.node(c, 1)?),
                other => return Err(self.err(c, format!("unexpected <{other}> in <MgmtTree>"))),
            }
        }
        let ver_dtd = ver.ok_or_else(|| self.err(el, "<MgmtTree> has no <VerDTD>"))?;
        Ok(MgmtTree {
            ver_dtd,
            man,
            model,
            nodes,
        })
    }

    fn node(&self, el: &Element, depth: usize) -> Result<Node, MoError> {
        if depth > MAX_DEPTH {
            return Err(self.err(el, format!("nodes nested deeper than {MAX_DEPTH} levels")));
        }
        self.no_text(el)?;
        let (mut name, mut path, mut props, mut value) = (None, None, None, None);
        let mut children = Vec::new();
        for c in &el.children {
            match c.name.as_str() {
                "NodeName" => self.once(&mut name, c, self.trimmed(c)?)?,
                "Path" => self.once(&mut path, c, self.trimmed(c)?)?,
                "RTProperties" => self.once(&mut props, c, self.properties(c)?)?,
                "Value" => self.once(&mut value, c, self.leaf(c)?)?,
                "Node" => children.push(self.node(c, depth + 1)?),
                other => return Err(self.err(c, format!("unexpected <{other}> in <Node>"))),
            }
        }
        let name = name.ok_or_else(|| self.err(el, "<Node> has no <NodeName>"))?;
        Ok(Node {
            name,
            path,
            properties: props,
            value,
            children,
        })
    }

    fn properties(&self, el: &Element) -> Result<RtProperties, MoError> {
        self.no_text(el)?;
        let mut p = RtProperties::default();
        for c in &el.children {
            match c.name.as_str() {
                "ACL" => self.once(&mut p.acl, c, self.trimmed(c)?)?,
                "Format" => self.once(&mut p.format, c, self.one_child(c)?)?,
                "Name" => self.once(&mut p.name, c, self.leaf(c)?)?,
                "Size" => self.once(&mut p.size, c, self.trimmed(c)?)?,
                "Title" => self.once(&mut p.title, c, self.leaf(c)?)?,
                "TStamp" => self.once(&mut p.tstamp, c, self.trimmed(c)?)?,
                "VerNo" => self.once(&mut p.ver_no, c, self.trimmed(c)?)?,
                "Type" => {
                    self.no_text(c)?;
                    let t = match c.children.as_slice() {
                        [t] if t.name == "MIME" => NodeType::Mime(self.trimmed(t)?),
                        [t] if t.name == "DDFName" => NodeType::DdfName(self.trimmed(t)?),
                        _ => return Err(self.err(c, "<Type> must hold one <MIME> or <DDFName>")),
                    };
                    self.once(&mut p.node_type, c, t)?
                }
                other => return Err(self.err(c, format!("unexpected <{other}> in <RTProperties>"))),
            }
        }
        Ok(p)
    }

    /// `<Format><chr/></Format>`: the name of the one empty child.
    fn one_child(&self, el: &Element) -> Result<String, MoError> {
        self.no_text(el)?;
        match el.children.as_slice() {
            [c] if c.children.is_empty() && c.text.trim().is_empty() => Ok(c.name.clone()),
            _ => Err(self.err(el, "<Format> must hold one empty element such as <chr/>")),
        }
    }
}

impl MgmtTree {
    /// Parses a TNDS XML document and checks the TNDS rules.
    pub fn from_tnds(text: &str) -> Result<MgmtTree, MoError> {
        let root = read_elements(text)?;
        let tree = Converter { text }.tree(&root)?;
        tree.validate()?;
        Ok(tree)
    }

    /// Writes the tree as a TNDS XML document (indented, values as written).
    pub fn to_tnds(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(out, "<MgmtTree xmlns=\"{NAMESPACE}\">");
        leaf(&mut out, 1, "VerDTD", &self.ver_dtd);
        if let Some(m) = &self.man {
            leaf(&mut out, 1, "Man", m);
        }
        if let Some(m) = &self.model {
            leaf(&mut out, 1, "Mod", m);
        }
        for n in &self.nodes {
            write_node(&mut out, 1, n);
        }
        out.push_str("</MgmtTree>\n");
        out
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn leaf(out: &mut String, depth: usize, name: &str, text: &str) {
    indent(out, depth);
    let _ = writeln!(out, "<{name}>{}</{name}>", escape(text));
}

fn write_node(out: &mut String, depth: usize, node: &Node) {
    indent(out, depth);
    out.push_str("<Node>\n");
    leaf(out, depth + 1, "NodeName", &node.name);
    if let Some(p) = &node.path {
        leaf(out, depth + 1, "Path", p);
    }
    if let Some(p) = &node.properties {
        indent(out, depth + 1);
        out.push_str("<RTProperties>\n");
        let d = depth + 2;
        if let Some(v) = &p.acl {
            leaf(out, d, "ACL", v);
        }
        if let Some(v) = &p.format {
            indent(out, d);
            let _ = writeln!(out, "<Format><{}/></Format>", v);
        }
        if let Some(v) = &p.name {
            leaf(out, d, "Name", v);
        }
        if let Some(v) = &p.size {
            leaf(out, d, "Size", v);
        }
        if let Some(v) = &p.title {
            leaf(out, d, "Title", v);
        }
        if let Some(v) = &p.tstamp {
            leaf(out, d, "TStamp", v);
        }
        if let Some(t) = &p.node_type {
            let (tag, v) = match t {
                NodeType::Mime(v) => ("MIME", v),
                NodeType::DdfName(v) => ("DDFName", v),
            };
            indent(out, d);
            let _ = writeln!(out, "<Type><{tag}>{}</{tag}></Type>", escape(v.as_str()));
        }
        if let Some(v) = &p.ver_no {
            leaf(out, d, "VerNo", v);
        }
        indent(out, depth + 1);
        out.push_str("</RTProperties>\n");
    }
    if let Some(v) = &node.value {
        leaf(out, depth + 1, "Value", v);
    }
    for c in &node.children {
        write_node(out, depth + 1, c);
    }
    indent(out, depth);
    out.push_str("</Node>\n");
}
