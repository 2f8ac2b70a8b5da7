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
    #[error("{format} line {line}, column {column}: {message}")]
    Syntax {
        /// `TNDS XML` or `JSON`.
        format: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
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
