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
    rooted_at, within, CardMo, MoCardError, Overlap,
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
    Binary(String),
}
