//! OMA DM bootstrap messages: a SyncML DM 1.2 package (`SyncML` / `SyncHdr` /
//! `SyncBody`) whose `Add` and `Replace` commands carry the bootstrap nodes,
//! as XML (`application/vnd.syncml.dm+xml`) or WBXML
//! (`application/vnd.syncml.dm+wbxml`, decoded by [`crate::bootstrap::wbxml`] first).
//!
//! Every `Item` becomes a node at its `Target/LocURI` with its `Data` as
//! value and the `Meta/Format` and `Meta/Type` of the item (or of its
//! command) as run-time properties; the nodes above it are interior nodes
//! (format `node`). The result is the same [`MgmtTree`] a TNDS bootstrap
//! produces, applied the same way. Any other command (`Delete`, `Exec`,
//! `Get`, `Copy`, `Atomic`, …) is refused, naming the command and where it
//! is. docs/bootstrap.md describes the mapping.

use crate::mo::xml::{read_elements_in, Element};
use crate::mo::{MgmtTree, MoError, Node, NodeType, RtProperties};

/// The SyncML 1.2 namespace (lower case; compared case-insensitively).
pub const NAMESPACE: &str = "syncml:syncml1.2";
/// The MetInf namespace of `Meta` children.
pub const METINF_NAMESPACE: &str = "syncml:metinf";
/// The MIME type of a TNDS document carried in an item's `Data`.
pub const TNDS_TYPE: &str = "application/vnd.syncml.dmtnds+xml";

/// Why a SyncML DM bootstrap message does not decode. Positions are line and
/// column in the XML (for WBXML, in the XML the WBXML decoded to).
#[derive(Debug, thiserror::Error)]
pub enum SyncmlError {
    /// Malformed XML, or a namespace that is not SyncML's or MetInf's.
    #[error("{0}")]
    Syntax(#[source] MoError),
    /// A command a bootstrap message cannot carry.
    #[error(
        "{format} line {line}, column {column}: <{command}> is not allowed in a bootstrap \
         message (only Add and Replace are)"
    )]
    Command {
        /// The command (`Delete`, `Exec`, `Get`, …).
        command: String,
        /// Where the message was read from.
        format: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An element that is missing, misplaced, repeated or malformed.
    #[error("{format} line {line}, column {column}: <{element}>: {problem}")]
    Element {
        /// The element.
        element: String,
        /// What is wrong with it.
        problem: ElementProblem,
        /// Where the message was read from.
        format: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A TNDS document carried in an item does not parse.
    #[error("{format} line {line}, column {column}: the TNDS document in <Data>: {source}")]
    EmbeddedTnds {
        /// The TNDS error.
        #[source]
        source: MoError,
        /// Where the message was read from.
        format: &'static str,
        /// 1-based line of the item's `Data`.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The message has no `Add` or `Replace` item.
    #[error("the message has no Add or Replace item")]
    NoItem,
    /// The items do not form a valid management tree.
    #[error("the nodes of the message do not form a valid tree: {0}")]
    Tree(#[source] MoError),
}

/// What is wrong with an element of a SyncML DM bootstrap message
/// ([`SyncmlError::Element`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementProblem {
    /// The root element is not `SyncML`.
    #[error("the root element is not <SyncML>")]
    NotSyncmlRoot,
    /// An element its parent cannot contain.
    #[error("unexpected in <{parent}>")]
    Unexpected {
        /// The parent element (`SyncML`, `Add`, `Item`, `Meta`, …).
        parent: String,
    },
    /// An element inside one that holds text only.
    #[error("not allowed inside <{parent}>")]
    InsideText {
        /// The text-only parent element (`LocURI`, `Data`, `Format`, …).
        parent: String,
    },
    /// A required child element is absent.
    #[error("has no <{child}>")]
    Missing {
        /// The missing child (`SyncHdr`, `SyncBody`, `VerDTD`, `Item`,
        /// `Target`, `LocURI`).
        child: &'static str,
    },
    /// An element that may appear once is repeated.
    #[error("given twice")]
    Repeated,
    /// A `VerDTD` other than 1.1 or 1.2.
    #[error("version {version:?} is not 1.1 or 1.2")]
    VerDtd {
        /// The version given (trimmed).
        version: String,
    },
    /// An item of type TNDS without `Data`.
    #[error("a TNDS item has no <Data>")]
    TndsWithoutData,
    /// The target is the root `.` itself.
    #[error("the root '.' cannot be a bootstrap target")]
    RootTarget,
    /// A target that is not a relative node URI.
    #[error("{uri:?} is not a node URI such as ./DMAcc/w7")]
    NotNodeUri {
        /// The URI given.
        uri: String,
    },
    /// An item of format `node` that carries a value.
    #[error("interior node {uri} has <Data>")]
    InteriorWithData {
        /// The item's target URI.
        uri: String,
    },
    /// A node on the way to the target already has a value.
    #[error("{path} has a value and cannot hold nodes")]
    LeafOnPath {
        /// The path of the leaf node, relative to the root.
        path: String,
    },
    /// A node of an embedded TNDS document that is already in the tree.
    #[error("node {name} given twice")]
    DuplicateNode {
        /// The node name.
        name: String,
    },
    /// An interior node (format `node`) targeted at a node that has a value.
    #[error("{name} has a value")]
    LeafMadeInterior {
        /// The node name.
        name: String,
    },
    /// A value for a node that already has children.
    #[error("{path} is an interior node and cannot take a value")]
    ValueForInterior {
        /// The path of the interior node, relative to the root.
        path: String,
    },
}

/// Whether `text` is an XML document whose root element is `SyncML`.
pub fn is_syncml_xml(text: &str) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                return e.local_name().as_ref() == b"SyncML"
            }
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Decodes a SyncML DM bootstrap message (XML text) into the management
/// tree its `Add` and `Replace` items describe. `format` names the source in
/// errors (e.g. `SyncML DM XML`).
pub fn bootstrap_tree(text: &str, format: &'static str) -> Result<MgmtTree, SyncmlError> {
    let root = read_elements_in(text, format, &[NAMESPACE, METINF_NAMESPACE], "SyncML")
        .map_err(SyncmlError::Syntax)?;
    let r = Reader { text, format };
    if root.name != "SyncML" {
        return Err(r.element(&root, ElementProblem::NotSyncmlRoot));
    }
    let (mut hdr, mut body) = (None, None);
    for c in &root.children {
        match c.name.as_str() {
            "SyncHdr" => r.once(&mut hdr, c)?,
            "SyncBody" => r.once(&mut body, c)?,
            _ => return Err(r.element(c, ElementProblem::unexpected(&root))),
        }
    }
    let hdr = hdr.ok_or_else(|| r.element(&root, ElementProblem::Missing { child: "SyncHdr" }))?;
    let body =
        body.ok_or_else(|| r.element(&root, ElementProblem::Missing { child: "SyncBody" }))?;
    let ver = hdr
        .children
        .iter()
        .find(|c| c.name == "VerDTD")
        .ok_or_else(|| r.element(hdr, ElementProblem::Missing { child: "VerDTD" }))?;
    let ver_dtd = ver.text.trim().to_string();
    if !matches!(ver_dtd.as_str(), "1.1" | "1.2") {
        return Err(r.element(ver, ElementProblem::VerDtd { version: ver_dtd }));
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut items = 0usize;
    for cmd in &body.children {
        match cmd.name.as_str() {
            "Add" | "Replace" => items += r.command(cmd, &mut nodes)?,
            "Final" => {}
            other => {
                let (line, column) = r.position(cmd);
                return Err(SyncmlError::Command {
                    command: other.to_string(),
                    format,
                    line,
                    column,
                });
            }
        }
    }
    if items == 0 {
        return Err(SyncmlError::NoItem);
    }
    let tree = MgmtTree {
        ver_dtd: "1.2".into(),
        man: None,
        model: None,
        nodes,
    };
    tree.validate().map_err(SyncmlError::Tree)?;
    Ok(tree)
}

impl ElementProblem {
    fn unexpected(parent: &Element) -> ElementProblem {
        ElementProblem::Unexpected {
            parent: parent.name.clone(),
        }
    }
}

/// `Meta` of a command or an item.
#[derive(Debug, Clone, Default)]
struct Meta {
    format: Option<String>,
    mime: Option<String>,
}

struct Reader<'a> {
    text: &'a str,
    format: &'static str,
}

impl Reader<'_> {
    fn position(&self, el: &Element) -> (usize, usize) {
        crate::mo::xml::line_column(self.text, el.at)
    }

    fn element(&self, el: &Element, problem: ElementProblem) -> SyncmlError {
        let (line, column) = self.position(el);
        SyncmlError::Element {
            element: el.name.clone(),
            problem,
            format: self.format,
            line,
            column,
        }
    }

    fn once<'e>(&self, slot: &mut Option<&'e Element>, el: &'e Element) -> Result<(), SyncmlError> {
        if slot.is_some() {
            return Err(self.element(el, ElementProblem::Repeated));
        }
        *slot = Some(el);
        Ok(())
    }

    fn leaf(&self, el: &Element) -> Result<String, SyncmlError> {
        if let Some(c) = el.children.first() {
            return Err(self.element(
                c,
                ElementProblem::InsideText {
                    parent: el.name.clone(),
                },
            ));
        }
        Ok(el.text.clone())
    }

    fn meta(&self, el: &Element, inherited: &Meta) -> Result<Meta, SyncmlError> {
        let mut m = inherited.clone();
        for c in &el.children {
            match c.name.as_str() {
                "Format" => m.format = Some(self.leaf(c)?.trim().to_string()),
                "Type" => m.mime = Some(self.leaf(c)?.trim().to_string()),
                "Size" | "Version" | "MaxObjSize" => {}
                _ => return Err(self.element(c, ElementProblem::unexpected(el))),
            }
        }
        Ok(m)
    }

    /// Adds the items of an `Add` or `Replace`; returns how many.
    fn command(&self, cmd: &Element, nodes: &mut Vec<Node>) -> Result<usize, SyncmlError> {
        let mut meta = Meta::default();
        let mut items = 0;
        for c in &cmd.children {
            match c.name.as_str() {
                "CmdID" | "NoResp" | "Cred" => {}
                "Meta" => meta = self.meta(c, &Meta::default())?,
                "Item" => {
                    self.item(c, &meta, nodes)?;
                    items += 1;
                }
                _ => {
                    return Err(self.element(c, ElementProblem::unexpected(cmd)));
                }
            }
        }
        if items == 0 {
            return Err(self.element(cmd, ElementProblem::Missing { child: "Item" }));
        }
        Ok(items)
    }

    fn item(
        &self,
        item: &Element,
        inherited: &Meta,
        nodes: &mut Vec<Node>,
    ) -> Result<(), SyncmlError> {
        let (mut target, mut meta_el, mut data) = (None, None, None);
        for c in &item.children {
            match c.name.as_str() {
                "Target" => self.once(&mut target, c)?,
                "Meta" => self.once(&mut meta_el, c)?,
                "Data" => self.once(&mut data, c)?,
                "Source" => {}
                _ => return Err(self.element(c, ElementProblem::unexpected(item))),
            }
        }
        let target = target
            .ok_or_else(|| self.element(item, ElementProblem::Missing { child: "Target" }))?;
        let loc = target
            .children
            .iter()
            .find(|c| c.name == "LocURI")
            .ok_or_else(|| self.element(target, ElementProblem::Missing { child: "LocURI" }))?;
        let uri = self.leaf(loc)?.trim().to_string();
        let meta = match meta_el {
            Some(m) => self.meta(m, inherited)?,
            None => inherited.clone(),
        };
        let value = data.map(|d| self.leaf(d)).transpose()?;
        if meta.mime.as_deref() == Some(TNDS_TYPE) {
            let d = data.ok_or_else(|| self.element(item, ElementProblem::TndsWithoutData))?;
            let text = value.unwrap_or_default();
            let tnds = MgmtTree::from_tnds(&text).map_err(|source| {
                let (line, column) = self.position(d);
                SyncmlError::EmbeddedTnds {
                    source,
                    format: self.format,
                    line,
                    column,
                }
            })?;
            for n in tnds.nodes {
                let parent = n.path.clone().unwrap_or_else(|| ".".into());
                let segs = self.segments(loc, &parent)?;
                let mut n = n;
                n.path = None;
                self.put(loc, nodes, &segs, Some(n), None)?;
            }
            return Ok(());
        }
        let segs = self.segments(loc, &uri)?;
        if segs.is_empty() {
            return Err(self.element(loc, ElementProblem::RootTarget));
        }
        let format = meta.format.clone().unwrap_or_else(|| "chr".into());
        if format == "node" && value.as_deref().is_some_and(|v| !v.trim().is_empty()) {
            return Err(self.element(loc, ElementProblem::InteriorWithData { uri }));
        }
        let props = RtProperties {
            format: Some(format.clone()),
            node_type: meta.mime.clone().map(NodeType::Mime),
            ..RtProperties::default()
        };
        let value = if format == "node" { None } else { value };
        self.put(loc, nodes, &segs, None, Some((props, value)))
    }

    /// The node names of a URI (`./A/B`, `A/B` or `.`).
    fn segments(&self, loc: &Element, uri: &str) -> Result<Vec<String>, SyncmlError> {
        let rel = uri.strip_prefix("./").unwrap_or(uri);
        if rel == "." || rel.is_empty() {
            return Ok(Vec::new());
        }
        let segs: Vec<String> = rel
            .trim_end_matches('/')
            .split('/')
            .map(String::from)
            .collect();
        if rel.starts_with('/') || segs.iter().any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(self.element(
                loc,
                ElementProblem::NotNodeUri {
                    uri: uri.to_string(),
                },
            ));
        }
        Ok(segs)
    }

    /// Puts a node at `segs` (interior nodes created with format `node`):
    /// either a whole subtree `node` under `segs`, or properties and value at
    /// `segs` itself.
    fn put(
        &self,
        loc: &Element,
        nodes: &mut Vec<Node>,
        segs: &[String],
        subtree: Option<Node>,
        leaf: Option<(RtProperties, Option<String>)>,
    ) -> Result<(), SyncmlError> {
        let mut level = nodes;
        let mut i = 0;
        let interior = || RtProperties {
            format: Some("node".into()),
            ..RtProperties::default()
        };
        let last = if subtree.is_some() {
            segs.len()
        } else {
            segs.len() - 1
        };
        while i < last {
            let name = &segs[i];
            let pos = match level.iter().position(|n| &n.name == name) {
                Some(p) => p,
                None => {
                    level.push(Node {
                        name: name.clone(),
                        path: None,
                        properties: Some(interior()),
                        value: None,
                        children: Vec::new(),
                    });
                    level.len() - 1
                }
            };
            let n = &mut level[pos];
            if n.value.is_some() {
                return Err(self.element(
                    loc,
                    ElementProblem::LeafOnPath {
                        path: segs[..=i].join("/"),
                    },
                ));
            }
            level = &mut n.children;
            i += 1;
        }
        if let Some(node) = subtree {
            if level.iter().any(|n| n.name == node.name) {
                return Err(self.element(
                    loc,
                    ElementProblem::DuplicateNode {
                        name: node.name.clone(),
                    },
                ));
            }
            level.push(node);
            return Ok(());
        }
        let Some((props, value)) = leaf else {
            return Ok(());
        };
        let name = &segs[segs.len() - 1];
        match level.iter_mut().find(|n| &n.name == name) {
            Some(n) if props.format.as_deref() == Some("node") => {
                if n.value.is_some() {
                    return Err(
                        self.element(loc, ElementProblem::LeafMadeInterior { name: name.clone() })
                    );
                }
                n.properties = Some(props);
            }
            Some(n) if !n.children.is_empty() => {
                return Err(self.element(
                    loc,
                    ElementProblem::ValueForInterior {
                        path: segs.join("/"),
                    },
                ));
            }
            Some(n) => {
                n.properties = Some(props);
                n.value = value;
            }
            None => level.push(Node {
                name: name.clone(),
                path: None,
                properties: Some(props),
                value,
                children: Vec::new(),
            }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "SyncML DM XML";

    fn message(hdr: &str, body: &str) -> String {
        format!(
            "<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n<SyncHdr>{hdr}</SyncHdr>\n<SyncBody>\n{body}\n</SyncBody></SyncML>"
        )
    }

    fn add(item: &str) -> String {
        message(
            "<VerDTD>1.2</VerDTD>",
            &format!("<Add><CmdID>1</CmdID><Item>{item}</Item></Add>"),
        )
    }

    fn problem(text: &str) -> (ElementProblem, String) {
        let e = bootstrap_tree(text, F).unwrap_err();
        let shown = e.to_string();
        match e {
            SyncmlError::Element { problem, .. } => (problem, shown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn element_problems_are_typed_and_read_as_before() {
        let leaf = "<Target><LocURI>./A/B</LocURI></Target><Data>x</Data>";
        let cases: Vec<(String, ElementProblem, &str)> = vec![
            (
                message("", "<Final/>"),
                ElementProblem::Missing { child: "VerDTD" },
                "SyncML DM XML line 2, column 1: <SyncHdr>: has no <VerDTD>",
            ),
            (
                message("<VerDTD> 1.0 </VerDTD>", "<Final/>"),
                ElementProblem::VerDtd {
                    version: "1.0".into(),
                },
                "SyncML DM XML line 2, column 10: <VerDTD>: version \"1.0\" is not 1.1 or 1.2",
            ),
            (
                message("<VerDTD>1.2</VerDTD>", "<Add><CmdID>1</CmdID></Add>"),
                ElementProblem::Missing { child: "Item" },
                "SyncML DM XML line 4, column 1: <Add>: has no <Item>",
            ),
            (
                message(
                    "<VerDTD>1.2</VerDTD>",
                    "<Replace><CmdID>1</CmdID><Bogus/></Replace>",
                ),
                ElementProblem::Unexpected {
                    parent: "Replace".into(),
                },
                "SyncML DM XML line 4, column 26: <Bogus>: unexpected in <Replace>",
            ),
            (
                add("<Target><LocURI>./A</LocURI></Target><Target/>"),
                ElementProblem::Repeated,
                "SyncML DM XML line 4, column 65: <Target>: given twice",
            ),
            (
                add("<Target><LocURI>./A<b/></LocURI></Target>"),
                ElementProblem::InsideText {
                    parent: "LocURI".into(),
                },
                "SyncML DM XML line 4, column 47: <b>: not allowed inside <LocURI>",
            ),
            (
                add("<Target><LocURI>./A/../B</LocURI></Target>"),
                ElementProblem::NotNodeUri {
                    uri: "./A/../B".into(),
                },
                "SyncML DM XML line 4, column 36: <LocURI>: \"./A/../B\" is not a node URI such as ./DMAcc/w7",
            ),
            (
                add("<Target><LocURI>.</LocURI></Target>"),
                ElementProblem::RootTarget,
                "SyncML DM XML line 4, column 36: <LocURI>: the root '.' cannot be a bootstrap target",
            ),
            (
                add(
                    "<Target><LocURI>./A</LocURI></Target>\
                     <Meta><Format xmlns=\"syncml:metinf\">node</Format></Meta><Data>x</Data>",
                ),
                ElementProblem::InteriorWithData { uri: "./A".into() },
                "SyncML DM XML line 4, column 36: <LocURI>: interior node ./A has <Data>",
            ),
            (
                add(&format!(
                    "{leaf}</Item><Item><Target><LocURI>./A/B/C</LocURI></Target><Data>y</Data>"
                )),
                ElementProblem::LeafOnPath { path: "A/B".into() },
                "SyncML DM XML line 4, column 102: <LocURI>: A/B has a value and cannot hold nodes",
            ),
            (
                add(&format!(
                    "{leaf}</Item><Item><Target><LocURI>./A</LocURI></Target><Data>y</Data>"
                )),
                ElementProblem::ValueForInterior { path: "A".into() },
                "SyncML DM XML line 4, column 102: <LocURI>: A is an interior node and cannot take a value",
            ),
            (
                add(&format!(
                    "{leaf}</Item><Item><Target><LocURI>./A/B</LocURI></Target>\
                     <Meta><Format xmlns=\"syncml:metinf\">node</Format></Meta>"
                )),
                ElementProblem::LeafMadeInterior { name: "B".into() },
                "SyncML DM XML line 4, column 102: <LocURI>: B has a value",
            ),
            (
                add(
                    "<Target><LocURI>./A</LocURI></Target>\
                     <Meta><Type xmlns=\"syncml:metinf\">application/vnd.syncml.dmtnds+xml</Type></Meta>",
                ),
                ElementProblem::TndsWithoutData,
                "SyncML DM XML line 4, column 22: <Item>: a TNDS item has no <Data>",
            ),
        ];
        for (text, want, shown) in cases {
            let (got, got_text) = problem(&text);
            assert_eq!(got, want, "{text}");
            assert_eq!(got_text, shown, "{text}");
        }
        let e = bootstrap_tree(&message("", "<Final/>"), F).unwrap_err();
        assert!(
            matches!(
                &e,
                SyncmlError::Element {
                    problem: ElementProblem::Missing { child: "VerDTD" },
                    line: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_message_needs_a_syncml_root_a_header_and_a_body() {
        let (p, text) = problem("<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncBody/></SyncML>");
        assert_eq!(p, ElementProblem::Missing { child: "SyncHdr" });
        assert_eq!(
            text,
            "SyncML DM XML line 1, column 1: <SyncML>: has no <SyncHdr>"
        );
        let (p, text) =
            problem("<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr/><SyncHdr/><SyncBody/></SyncML>");
        assert_eq!(p, ElementProblem::Repeated);
        assert_eq!(
            text,
            "SyncML DM XML line 1, column 44: <SyncHdr>: given twice"
        );
        let (p, text) = problem("<SyncML xmlns=\"SYNCML:SYNCML1.2\"><Other/></SyncML>");
        assert_eq!(
            p,
            ElementProblem::Unexpected {
                parent: "SyncML".into()
            }
        );
        assert_eq!(
            text,
            "SyncML DM XML line 1, column 34: <Other>: unexpected in <SyncML>"
        );
    }
}
