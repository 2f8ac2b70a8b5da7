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
    #[error("node {path}: {message}")]
    Invalid {
        /// The node's URI.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The card's binary form does not decode.
    #[error("MO content on the card is not a valid dmsc binary tree: {0}")]
    Binary(#[source] BinaryFault),
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
