//! TNDS XML (OMA DM 1.2 `MgmtTree`, namespace `syncml:dmddf1.2`), read with
//! `quick-xml`. Every error names its line and column.

use std::fmt::Write as _;

use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::tree::{MgmtTree, Node, NodeType, RtProperties, MAX_DEPTH};
use super::{MoError, SyntaxProblem};

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
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn syntax(text: &str, offset: usize, problem: SyntaxProblem) -> MoError {
    syntax_in("TNDS XML", text, offset, problem)
}

/// A syntax error of a `format` document at byte `offset`, by line and column.
pub(crate) fn syntax_in(
    format: &'static str,
    text: &str,
    offset: usize,
    problem: SyntaxProblem,
) -> MoError {
    let (line, column) = line_column(text, offset);
    MoError::Syntax {
        format,
        line,
        column,
        problem: Box::new(problem),
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
    namespaces: &'static [&'static str],
    root_name: &'static str,
) -> Result<Element, MoError> {
    let syntax = |text: &str, at: usize, p: SyntaxProblem| syntax_in(format, text, at, p);
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
            syntax(text, at, SyntaxProblem::Xml(e))
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(syntax(text, before, SyntaxProblem::ContentAfterRoot));
            }
            Event::Start(e) => {
                let limit = MAX_DEPTH * 2 + 5;
                if stack.len() >= limit {
                    return Err(syntax(
                        text,
                        before,
                        SyntaxProblem::ElementsTooDeep { limit },
                    ));
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
            Event::End(e) => {
                let el = stack.pop().ok_or_else(|| {
                    let element = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    syntax(text, before, SyntaxProblem::UnmatchedClose { element })
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| syntax(text, before, SyntaxProblem::Xml(e)))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(syntax(text, before, SyntaxProblem::TextOutsideRoot)),
                }
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(&c)
                    .map_err(|e| syntax(text, before, SyntaxProblem::CdataNotUtf8(e)))?
                    .to_string();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None => return Err(syntax(text, before, SyntaxProblem::CdataOutsideRoot)),
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(syntax(
                        text,
                        text.len(),
                        SyntaxProblem::EndsInside {
                            element: open.name.clone(),
                        },
                    ));
                }
                return root.ok_or_else(|| {
                    syntax(
                        text,
                        text.len(),
                        SyntaxProblem::NoRoot {
                            expected: root_name,
                        },
                    )
                });
            }
        }
    }
}

fn check_namespace_in(
    format: &'static str,
    namespaces: &'static [&'static str],
    text: &str,
    at: usize,
    e: &quick_xml::events::BytesStart<'_>,
) -> Result<(), MoError> {
    for attr in e.attributes() {
        let attr =
            attr.map_err(|err| syntax_in(format, text, at, SyntaxProblem::Attribute(err)))?;
        if attr.key.as_ref() == b"xmlns" {
            let v = attr
                .unescape_value()
                .map_err(|err| syntax_in(format, text, at, SyntaxProblem::Xml(err)))?;
            let lower = v.to_ascii_lowercase();
            if !namespaces.contains(&lower.as_str()) {
                let namespace = v.into_owned();
                let problem = if namespaces == [NAMESPACE] {
                    SyntaxProblem::NotTndsNamespace { namespace }
                } else {
                    SyntaxProblem::NamespaceNotAllowed {
                        namespace,
                        allowed: namespaces,
                    }
                };
                return Err(syntax_in(format, text, at, problem));
            }
        }
    }
    Ok(())
}

struct Converter<'a> {
    text: &'a str,
}

impl Converter<'_> {
    fn err(&self, el: &Element, problem: SyntaxProblem) -> MoError {
        syntax(self.text, el.at, problem)
    }

    fn unexpected(&self, el: &Element, parent: &'static str) -> MoError {
        let element = el.name.clone();
        self.err(el, SyntaxProblem::Unexpected { element, parent })
    }

    fn missing(&self, el: &Element, parent: &'static str, missing: &'static str) -> MoError {
        self.err(el, SyntaxProblem::Missing { parent, missing })
    }

    /// The text of a leaf element (no child elements).
    fn leaf(&self, el: &Element) -> Result<String, MoError> {
        if let Some(c) = el.children.first() {
            return Err(self.err(
                c,
                SyntaxProblem::ChildInLeaf {
                    element: el.name.clone(),
                    child: c.name.clone(),
                },
            ));
        }
        Ok(el.text.clone())
    }

    /// A leaf whose surrounding white space is layout.
    fn trimmed(&self, el: &Element) -> Result<String, MoError> {
        Ok(self.leaf(el)?.trim().to_string())
    }

    fn no_text(&self, el: &Element) -> Result<(), MoError> {
        if !el.text.trim().is_empty() {
            return Err(self.err(
                el,
                SyntaxProblem::TextInElement {
                    element: el.name.clone(),
                },
            ));
        }
        Ok(())
    }

    fn once<T>(&self, slot: &mut Option<T>, el: &Element, value: T) -> Result<(), MoError> {
        if slot.is_some() {
            return Err(self.err(
                el,
                SyntaxProblem::Repeated {
                    element: el.name.clone(),
                },
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    fn tree(&self, el: &Element) -> Result<MgmtTree, MoError> {
        if el.name != "MgmtTree" {
            return Err(self.err(
                el,
                SyntaxProblem::WrongRoot {
                    element: el.name.clone(),
                    expected: "MgmtTree",
                },
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
                _ => return Err(self.unexpected(c, "MgmtTree")),
            }
        }
        let ver_dtd = ver.ok_or_else(|| self.missing(el, "MgmtTree", "VerDTD"))?;
        Ok(MgmtTree {
            ver_dtd,
            man,
            model,
            nodes,
        })
    }

    fn node(&self, el: &Element, depth: usize) -> Result<Node, MoError> {
        if depth > MAX_DEPTH {
            return Err(self.err(el, SyntaxProblem::NodesTooDeep { max: MAX_DEPTH }));
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
                _ => return Err(self.unexpected(c, "Node")),
            }
        }
        let name = name.ok_or_else(|| self.missing(el, "Node", "NodeName"))?;
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
                        _ => return Err(self.err(c, SyntaxProblem::TypeContent)),
                    };
                    self.once(&mut p.node_type, c, t)?
                }
                _ => return Err(self.unexpected(c, "RTProperties")),
            }
        }
        Ok(p)
    }

    /// `<Format><chr/></Format>`: the name of the one empty child.
    fn one_child(&self, el: &Element) -> Result<String, MoError> {
        self.no_text(el)?;
        match el.children.as_slice() {
            [c] if c.children.is_empty() && c.text.trim().is_empty() => Ok(c.name.clone()),
            _ => Err(self.err(el, SyntaxProblem::FormatContent)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `text` fails, why, and the message.
    fn failure(text: &str) -> ((&'static str, usize, usize), SyntaxProblem, String) {
        match MgmtTree::from_tnds(text) {
            Err(e) => {
                let message = e.to_string();
                match e {
                    MoError::Syntax {
                        format,
                        line,
                        column,
                        problem,
                    } => ((format, line, column), *problem, message),
                    other => panic!("{text}: {other:?}"),
                }
            }
            Ok(tree) => panic!("{text} parsed: {tree:?}"),
        }
    }

    #[test]
    fn syntax_problems_are_typed_and_read_as_before() {
        let (at, problem, message) = failure(
            "<MgmtTree xmlns=\"syncml:dmddf1.2\">\n <VerDTD>1.2</VerDTD>\n <Bogus/>\n</MgmtTree>",
        );
        assert_eq!(at, ("TNDS XML", 3, 2));
        assert!(
            matches!(
                &problem,
                SyntaxProblem::Unexpected { element, parent: "MgmtTree" } if element == "Bogus"
            ),
            "{problem:?}"
        );
        assert_eq!(
            message,
            "TNDS XML line 3, column 2: unexpected <Bogus> in <MgmtTree>"
        );

        let (at, problem, message) = failure("<MgmtTree>\n<VerDTD>1.2</VerDTD>\n<Node>\n");
        assert_eq!(at, ("TNDS XML", 4, 1));
        assert!(
            matches!(&problem, SyntaxProblem::EndsInside { element } if element == "Node"),
            "{problem:?}"
        );
        assert_eq!(
            message,
            "TNDS XML line 4, column 1: the document ends inside <Node>"
        );

        let (at, problem, message) =
            failure("<MgmtTree><Node><NodeName>a</NodeName></Node></MgmtTree>");
        assert_eq!(at, ("TNDS XML", 1, 1));
        assert!(
            matches!(
                problem,
                SyntaxProblem::Missing {
                    parent: "MgmtTree",
                    missing: "VerDTD"
                }
            ),
            "{problem:?}"
        );
        assert_eq!(
            message,
            "TNDS XML line 1, column 1: <MgmtTree> has no <VerDTD>"
        );

        let (at, problem, message) =
            failure("<MgmtTree xmlns=\"urn:other\"><VerDTD>1.2</VerDTD></MgmtTree>");
        assert_eq!(at, ("TNDS XML", 1, 1));
        assert!(
            matches!(
                &problem,
                SyntaxProblem::NotTndsNamespace { namespace } if namespace == "urn:other"
            ),
            "{problem:?}"
        );
        assert_eq!(
            message,
            "TNDS XML line 1, column 1: namespace 'urn:other' is not the TNDS namespace \
             'syncml:dmddf1.2'"
        );
    }
}
