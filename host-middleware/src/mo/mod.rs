//! OMA DM management objects (MOs): the TNDS tree model, its three forms
//! (TNDS XML, the equivalent JSON, and the compact binary form stored on the
//! card), and the card operations on MO records.
//!
//! - [`MgmtTree`], [`Node`], [`RtProperties`], [`NodeType`]: one tree model;
//! - [`MgmtTree::from_tnds`] / [`MgmtTree::to_tnds`]: TNDS XML
//!   (`syncml:dmddf1.2`), errors with line and column;
//! - [`MgmtTree::from_json`] / [`MgmtTree::to_json`]: the same tree as JSON;
//! - [`MgmtTree::to_binary`] / [`MgmtTree::from_binary`]: the card form;
//! - [`card`]: put, get, list and delete MOs through a [`crate::CardCommands`] session.

pub mod binary;
pub mod card;
pub mod json;
pub mod tree;
pub mod xml;

pub use card::{
    delete_mo, enclosing, find_overlap, get_mo, get_node, list_mos, put_mo, read_all_mos,
    record_for, rooted_at, within, CardMo, MoCardError, MoUsage, Overlap, RollbackFailure,
    RollbackFault,
};
pub use tree::{MgmtTree, Node, NodeType, RtProperties};

/// What is wrong with an MO document or its card form.
#[derive(Debug, thiserror::Error)]
pub enum MoError {
    /// Malformed XML or JSON, or a document that is not a TNDS tree, at a line
    /// and column (both from 1).
    #[error("{format} line {line}, column {column}: {problem}")]
    Syntax {
        /// `TNDS XML` or `JSON`.
        format: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        #[source]
        problem: Box<SyntaxProblem>,
    },
    /// A well-formed tree that breaks a TNDS rule (bad ACL, unknown format…).
    #[error("node {path}: {rule}")]
    Invalid {
        /// The node's URI.
        path: String,
        /// The rule it breaks.
        #[source]
        rule: Box<TreeRule>,
    },
    /// The card's binary form does not decode.
    #[error("MO content on the card is not a valid dmsc binary tree: {0}")]
    Binary(#[source] BinaryFault),
}

/// What is wrong at the line and column of an [`MoError::Syntax`]: malformed
/// XML or JSON, or XML elements that do not form the expected document.
#[derive(Debug, thiserror::Error)]
pub enum SyntaxProblem {
    /// The XML reader refused the document (malformed markup, a bad escape…).
    #[error("{0}")]
    Xml(#[source] quick_xml::Error),
    /// An attribute of an element does not parse.
    #[error("{0}")]
    Attribute(#[source] quick_xml::events::attributes::AttrError),
    /// The JSON form does not parse or does not describe a tree (the text of
    /// serde_json without its position, which the error gives apart).
    #[error("{}", json_message(.0))]
    Json(#[source] serde_json::Error),
    /// An element after the end of the root element.
    #[error("content after the root element")]
    ContentAfterRoot,
    /// More open elements than the reader accepts.
    #[error("elements nested too deeply")]
    ElementsTooDeep {
        /// How many elements may be open at once.
        limit: usize,
    },
    /// A closing tag with no element open.
    #[error("closing tag without an opening tag")]
    UnmatchedClose {
        /// The name in the closing tag.
        element: String,
    },
    /// Text other than white space outside the root element.
    #[error("text outside the root element")]
    TextOutsideRoot,
    /// A CDATA section whose bytes are not UTF-8.
    #[error("CDATA is not UTF-8")]
    CdataNotUtf8(#[source] std::str::Utf8Error),
    /// A CDATA section outside the root element.
    #[error("CDATA outside the root element")]
    CdataOutsideRoot,
    /// The document ends before an element is closed.
    #[error("the document ends inside <{element}>")]
    EndsInside {
        /// The innermost open element.
        element: String,
    },
    /// A document without any element.
    #[error("no {expected} element")]
    NoRoot {
        /// The root element expected (`MgmtTree`, `SyncML`).
        expected: &'static str,
    },
    /// An `xmlns` other than the TNDS namespace in a TNDS document.
    #[error(
        "namespace '{namespace}' is not the TNDS namespace '{}'",
        xml::NAMESPACE
    )]
    NotTndsNamespace {
        /// The namespace given.
        namespace: String,
    },
    /// An `xmlns` that is none of the namespaces the document may use.
    #[error("namespace '{namespace}' is not one of {allowed:?}")]
    NamespaceNotAllowed {
        /// The namespace given.
        namespace: String,
        /// The namespaces allowed (lower case).
        allowed: &'static [&'static str],
    },
    /// A root element other than the one expected.
    #[error("the root element is <{element}>, not <{expected}>")]
    WrongRoot {
        /// The root element found.
        element: String,
        /// The root element expected.
        expected: &'static str,
    },
    /// An element that does not belong in its parent.
    #[error("unexpected <{element}> in <{parent}>")]
    Unexpected {
        /// The element found.
        element: String,
        /// The parent (`MgmtTree`, `Node`, `RTProperties`).
        parent: &'static str,
    },
    /// A required child element is missing.
    #[error("<{parent}> has no <{missing}>")]
    Missing {
        /// The element that lacks the child.
        parent: &'static str,
        /// The child required (`VerDTD`, `NodeName`).
        missing: &'static str,
    },
    /// An element given twice where it may appear once.
    #[error("<{element}> given twice")]
    Repeated {
        /// The element.
        element: String,
    },
    /// A child element inside an element that only holds text.
    #[error("<{element}> cannot contain <{child}>")]
    ChildInLeaf {
        /// The text-only element.
        element: String,
        /// The first child element found in it.
        child: String,
    },
    /// Text other than white space inside an element that only holds elements.
    #[error("<{element}> cannot contain text")]
    TextInElement {
        /// The element.
        element: String,
    },
    /// `Node` elements nested deeper than the limit.
    #[error("nodes nested deeper than {max} levels")]
    NodesTooDeep {
        /// The limit ([`tree::MAX_DEPTH`]).
        max: usize,
    },
    /// A `Type` without exactly one `MIME` or `DDFName` child.
    #[error("<Type> must hold one <MIME> or <DDFName>")]
    TypeContent,
    /// A `Format` without exactly one empty child element.
    #[error("<Format> must hold one empty element such as <chr/>")]
    FormatContent,
}

/// serde_json's message without its trailing ` at line N column M`.
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((head, _)) => head.to_string(),
        None => text,
    }
}

/// The TNDS rule a tree breaks ([`MoError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeRule {
    /// Nested deeper than the limit.
    #[error("nested deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// An empty node name, one with a `/`, or with surrounding spaces.
    #[error("NodeName '{name}' must be non-empty, without '/' or surrounding spaces")]
    NodeName {
        /// The name.
        name: String,
    },
    /// A property (ACL, Format, Size, TStamp, VerNo) with surrounding white space.
    #[error("{property} has surrounding white space")]
    PropertySpaces {
        /// The property.
        property: &'static str,
    },
    /// An empty Type, or one with surrounding white space.
    #[error("Type is empty or has surrounding white space")]
    NodeType,
    /// An ACL that does not parse.
    #[error("ACL '{acl}': {source}")]
    Acl {
        /// The ACL text.
        acl: String,
        /// Why.
        source: dmsc_card_model::objects::ModelError,
    },
    /// A Format outside the TNDS list.
    #[error("unknown Format '{format}' (use one of {})", tree::FORMATS.join(", "))]
    UnknownFormat {
        /// The format given.
        format: String,
    },
    /// An interior node (`Format node`) with a Value.
    #[error("an interior node (Format node) has a Value")]
    InteriorWithValue,
    /// A node with children and a Value.
    #[error("a node with children has a Value")]
    ChildrenWithValue,
    /// Two siblings with one name.
    #[error("two children named '{name}'")]
    DuplicateChild {
        /// The name.
        name: String,
    },
    /// An empty VerDTD or one with surrounding white space.
    #[error("VerDTD '{ver_dtd}' is empty or has surrounding white space")]
    VerDtd {
        /// The VerDTD given.
        ver_dtd: String,
    },
    /// A Path with surrounding white space.
    #[error("Path has surrounding white space")]
    PathSpaces,
    /// A top-level node whose URI is not a valid MO root.
    #[error("not a valid MO root URI: {source}")]
    RootUri {
        /// Why.
        source: dmsc_card_model::objects::ModelError,
    },
    /// Two top-level nodes with one URI.
    #[error("two top-level nodes with this URI")]
    DuplicateRoot,
    /// A tree without any node.
    #[error("the tree has no node")]
    Empty,
    /// A subtree path that names no node.
    #[error("no such node in the tree")]
    NoSuchNode,
}

/// Where the card's binary form of an MO tree is wrong ([`MoError::Binary`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryFault {
    /// The TLV structure is broken or has unexpected fields.
    #[error("{0}")]
    Tlv(#[source] dmsc_card_model::tlv::TlvError),
    /// A text field is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Nodes nested deeper than [`tree::MAX_DEPTH`].
    #[error("nodes nested deeper than {} levels", tree::MAX_DEPTH)]
    TooDeep,
    /// A node without a name.
    #[error("a node without a name")]
    NoName,
    /// A node with both MIME and DDFName.
    #[error("a node with both MIME and DDFName")]
    MimeAndDdfName,
    /// No bytes at all.
    #[error("empty")]
    Empty,
    /// A format version this code does not read.
    #[error("unknown format version {0:02X}")]
    UnknownVersion(u8),
    /// No tree inside.
    #[error("no tree")]
    NoTree,
    /// The tree has no VerDTD.
    #[error("no VerDTD")]
    NoVerDtd,
    /// The card answered with another kind of object than an MO record.
    #[error("the card answered with another kind of object")]
    OtherKind,
    /// The object listed as an MO is not an MO record.
    #[error("not an MO record")]
    NotMoRecord,
}
