//! The TNDS tree model shared by the XML, JSON and binary forms.

use dmsc_card_model::objects::{check_uri, Acl};
use serde::{Deserialize, Serialize};

use super::{MoError, TreeRule};

/// The DTD version this crate writes when a tree has none.
pub const VER_DTD: &str = "1.2";

/// The DM node formats (OMA DM TNDS `Format`).
pub const FORMATS: [&str; 11] = [
    "b64", "bin", "bool", "chr", "int", "node", "null", "xml", "date", "time", "float",
];

/// Deepest nesting accepted in any form (protects the decoders' stacks).
pub const MAX_DEPTH: usize = 64;

/// A TNDS `MgmtTree`: the DTD version, optional manufacturer and model, and
/// the top-level nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgmtTree {
    /// `VerDTD`, e.g. `1.2`.
    pub ver_dtd: String,
    /// `Man`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub man: Option<String>,
    /// `Mod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The top-level `Node`s.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// A TNDS `Node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `NodeName`.
    pub name: String,
    /// `Path`: the URI of the parent (top-level nodes), e.g. `.` or `./Vendor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `RTProperties`, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<RtProperties>,
    /// `Value`, when present (an empty `<Value/>` is `Some("")`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Child `Node`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// A node's run-time properties (`RTProperties`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtProperties {
    /// `ACL` in the DM syntax, kept as written (checked by [`Acl::parse`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
    /// `Format`, e.g. `chr`, `node`, `int` (one of [`FORMATS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `Name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// `Title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `TStamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tstamp: Option<String>,
    /// `Type`: a MIME type or a DDF name.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub node_type: Option<NodeType>,
    /// `VerNo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver_no: Option<String>,
}

/// A node's `Type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum NodeType {
    /// `<MIME>text/plain</MIME>`.
    Mime(String),
    /// `<DDFName>urn:oma:mo:oma-dm-dmacc:1.0</DDFName>`.
    DdfName(String),
}

impl NodeType {
    /// The MIME type or DDF name.
    pub fn text(&self) -> &str {
        match self {
            NodeType::Mime(s) | NodeType::DdfName(s) => s,
        }
    }
}

impl Node {
    /// A node with just a name.
    pub fn named(name: &str) -> Node {
        Node {
            name: name.to_string(),
            path: None,
            properties: None,
            value: None,
            children: Vec::new(),
        }
    }

    /// The node's URI given its parent's URI.
    pub fn uri_under(&self, parent: &str) -> String {
        format!("{parent}/{}", self.name)
    }

    /// The URI of a top-level node: `Path` (default `.`) + `/` + `NodeName`.
    pub fn root_uri(&self) -> String {
        let parent = self.path.as_deref().unwrap_or(".");
        self.uri_under(parent.trim_end_matches('/'))
    }

    /// The MO type: the root node's DDF name or MIME type, if any.
    pub fn mo_type(&self) -> Option<&str> {
        self.properties
            .as_ref()
            .and_then(|p| p.node_type.as_ref())
            .map(NodeType::text)
    }

    /// The descendant at `relative` (`A/B`, relative to this node), if any.
    pub fn find(&self, relative: &str) -> Option<&Node> {
        let mut node = self;
        for segment in relative.split('/').filter(|s| !s.is_empty()) {
            node = node.children.iter().find(|c| c.name == segment)?;
        }
        Some(node)
    }

    fn validate(&self, parent: &str, depth: usize) -> Result<(), MoError> {
        let uri = self.uri_under(parent);
        let invalid = |rule: TreeRule| MoError::Invalid {
            path: uri.clone(),
            rule: Box::new(rule),
        };
        if depth > MAX_DEPTH {
            return Err(invalid(TreeRule::TooDeep { max: MAX_DEPTH }));
        }
        if self.name.is_empty() || self.name.contains('/') || self.name.trim() != self.name {
            return Err(invalid(TreeRule::NodeName {
                name: self.name.clone(),
            }));
        }
        if let Some(p) = &self.properties {
            let tokens = [
                ("ACL", &p.acl),
                ("Format", &p.format),
                ("Size", &p.size),
                ("TStamp", &p.tstamp),
                ("VerNo", &p.ver_no),
            ];
            for (what, v) in tokens {
                if v.as_deref().is_some_and(|v| v.trim() != v) {
                    return Err(invalid(TreeRule::PropertySpaces { property: what }));
                }
            }
            if let Some(t) = &p.node_type {
                if t.text().trim() != t.text() || t.text().is_empty() {
                    return Err(invalid(TreeRule::NodeType));
                }
            }
            if let Some(acl) = &p.acl {
                Acl::parse(acl).map_err(|source| {
                    invalid(TreeRule::Acl {
                        acl: acl.clone(),
                        source,
                    })
                })?;
            }
            if let Some(f) = &p.format {
                if !FORMATS.contains(&f.as_str()) {
                    return Err(invalid(TreeRule::UnknownFormat { format: f.clone() }));
                }
                if f == "node" && self.value.is_some() {
                    return Err(invalid(TreeRule::InteriorWithValue));
                }
            }
        }
        if !self.children.is_empty() && self.value.is_some() {
            return Err(invalid(TreeRule::ChildrenWithValue));
        }
        for (i, c) in self.children.iter().enumerate() {
            if self.children[..i].iter().any(|o| o.name == c.name) {
                return Err(invalid(TreeRule::DuplicateChild {
                    name: c.name.clone(),
                }));
            }
            c.validate(&uri, depth + 1)?;
        }
        Ok(())
    }
}

impl MgmtTree {
    /// A tree with one top-level node.
    pub fn single(node: Node) -> MgmtTree {
        MgmtTree {
            ver_dtd: VER_DTD.to_string(),
            man: None,
            model: None,
            nodes: vec![node],
        }
    }

    /// Checks the TNDS rules: node names, ACL syntax, formats, interior nodes
    /// without values, unique sibling names, root URIs.
    pub fn validate(&self) -> Result<(), MoError> {
        if self.ver_dtd.is_empty() || self.ver_dtd.trim() != self.ver_dtd {
            return Err(MoError::Invalid {
                path: ".".into(),
                rule: Box::new(TreeRule::VerDtd {
                    ver_dtd: self.ver_dtd.clone(),
                }),
            });
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(p) = &n.path {
                if p.trim() != p {
                    return Err(MoError::Invalid {
                        path: n.root_uri(),
                        rule: Box::new(TreeRule::PathSpaces),
                    });
                }
            }
            let parent = n.path.as_deref().unwrap_or(".").trim_end_matches('/');
            n.validate(parent, 1)?;
            let uri = n.root_uri();
            check_uri(&uri).map_err(|source| MoError::Invalid {
                path: uri.clone(),
                rule: Box::new(TreeRule::RootUri { source }),
            })?;
            if self.nodes[..i].iter().any(|o| o.root_uri() == uri) {
                return Err(MoError::Invalid {
                    path: uri,
                    rule: Box::new(TreeRule::DuplicateRoot),
                });
            }
        }
        Ok(())
    }

    /// The MOs of this tree, one per top-level node, keyed by root URI.
    pub fn split(&self) -> Vec<(String, MgmtTree)> {
        self.nodes
            .iter()
            .map(|n| {
                (
                    n.root_uri(),
                    MgmtTree {
                        ver_dtd: self.ver_dtd.clone(),
                        man: self.man.clone(),
                        model: self.model.clone(),
                        nodes: vec![n.clone()],
                    },
                )
            })
            .collect()
    }

    /// The part of a one-MO tree at `subtree` (relative to its root, e.g.
    /// `AppAddr/1`) as a tree of its own, rooted at its own URI.
    pub fn subtree(&self, subtree: &str) -> Result<MgmtTree, MoError> {
        let root = self.nodes.first().ok_or_else(|| MoError::Invalid {
            path: ".".into(),
            rule: Box::new(TreeRule::Empty),
        })?;
        let root_uri = root.root_uri();
        let rel = subtree.trim_matches('/');
        if rel.is_empty() {
            return Ok(self.clone());
        }
        let node = root.find(rel).ok_or_else(|| MoError::Invalid {
            path: format!("{root_uri}/{rel}"),
            rule: Box::new(TreeRule::NoSuchNode),
        })?;
        let full = format!("{root_uri}/{rel}");
        let parent = full.rsplit_once('/').map(|(p, _)| p).unwrap_or(".");
        let mut node = node.clone();
        node.path = Some(parent.to_string());
        Ok(MgmtTree {
            ver_dtd: self.ver_dtd.clone(),
            man: self.man.clone(),
            model: self.model.clone(),
            nodes: vec![node],
        })
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    fn rule_of(tnds: &str) -> (String, TreeRule) {
        match MgmtTree::from_tnds(tnds) {
            Err(MoError::Invalid { path, rule }) => (path, *rule),
            other => panic!("expected a broken TNDS rule, got {other:?}"),
        }
    }

    /// Each broken rule comes back as its own variant, at the node that breaks it.
    #[test]
    fn broken_rules_are_typed_and_placed() {
        let head = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>"#;
        let (path, rule) = rule_of(&format!(
            "{head}<Node><NodeName>A</NodeName><Path>.</Path><RTProperties>\
             <Format><bogus/></Format></RTProperties></Node></MgmtTree>"
        ));
        assert_eq!(path, "./A");
        assert_eq!(
            rule,
            TreeRule::UnknownFormat {
                format: "bogus".into()
            }
        );
        assert!(rule
            .to_string()
            .starts_with("unknown Format 'bogus' (use one of b64, bin,"));

        let (path, rule) = rule_of(&format!(
            "{head}<Node><NodeName>A</NodeName><Path>.</Path>\
             <Node><NodeName>B</NodeName><Value>1</Value></Node>\
             <Node><NodeName>B</NodeName><Value>2</Value></Node></Node></MgmtTree>"
        ));
        assert_eq!(path, "./A");
        assert_eq!(rule, TreeRule::DuplicateChild { name: "B".into() });
        assert_eq!(rule.to_string(), "two children named 'B'");

        let (_, rule) = rule_of(&format!(
            "{head}<Node><NodeName>A</NodeName><Path>.</Path><RTProperties>\
             <ACL>Get=*;</ACL></RTProperties></Node></MgmtTree>"
        ));
        assert!(
            matches!(rule, TreeRule::Acl { ref acl, .. } if acl == "Get=*;"),
            "{rule:?}"
        );
        assert!(std::error::Error::source(&rule).is_some());
    }
}
