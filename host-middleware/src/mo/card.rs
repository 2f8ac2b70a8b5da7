//! MO records on the card: put, get, list, delete, with the TNDS tree in the
//! record's content (compact binary form).

use dmsc_card_model::commands::{MoRecord, ObjectValue};
use dmsc_card_model::objects::{check_uri, Acl, ObjectKind, ObjectRef};

use super::tree::{MgmtTree, Node};
use super::MoError;
use crate::error::HostError;
use crate::session::CardCommands;

/// The MO type recorded when the root node has no `Type`.
pub const DEFAULT_MO_TYPE: &str = "application/vnd.syncml.dmtnds+xml";

/// An MO as read from the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardMo {
    /// The root URI, e.g. `./DMAcc`.
    pub uri: String,
    /// The MO type recorded with it.
    pub mo_type: String,
    /// The card's version of the record (1 on creation, +1 per replace).
    pub version: u32,
    /// The record's ACL on the card.
    pub acl: Acl,
    /// The tree: one top-level node, whose root URI is `uri`.
    pub tree: MgmtTree,
}

/// Why an MO operation on the card failed.
#[derive(Debug, thiserror::Error)]
pub enum MoCardError {
    /// The card refused or could not be reached.
    #[error("{uri}: {source}")]
    Card {
        /// The MO.
        uri: String,
        /// What the card or the transport said.
        #[source]
        source: HostError,
    },
    /// The tree or the card's content is not valid.
    #[error("{uri}: {source}")]
    Format {
        /// The MO.
        uri: String,
        /// What is wrong.
        #[source]
        source: MoError,
    },
    /// The options do not fit the tree (e.g. `--uri` with several top-level nodes).
    #[error("{0}")]
    Usage(String),
}

/// Places a one-node tree at `uri`: the root node's name and path are set
/// from it.
pub fn rooted_at(tree: &MgmtTree, uri: &str) -> Result<MgmtTree, MoCardError> {
    check_uri(uri).map_err(|e| MoCardError::Usage(format!("invalid MO URI '{uri}': {e}")))?;
    let [node] = tree.nodes.as_slice() else {
        return Err(MoCardError::Usage(format!(
            "a URI can be given only for a tree with one top-level node (this one has {})",
            tree.nodes.len()
        )));
    };
    let (parent, name) = uri
        .rsplit_once('/')
        .ok_or_else(|| MoCardError::Usage(format!("MO URI '{uri}' has no '/' (e.g. ./DMAcc)")))?;
    let mut node: Node = node.clone();
    node.name = name.to_string();
    node.path = Some(parent.to_string());
    let mut out = tree.clone();
    out.nodes = vec![node];
    out.validate().map_err(|source| MoCardError::Format {
        uri: uri.to_string(),
        source,
    })?;
    Ok(out)
}

/// Stores every top-level node of `tree` as its own MO record (created or
/// replaced), with `acl` if given (else the card's default ACL for a new
/// record, the current one for a replaced record). Returns the root URIs.
/// The caller needs Add on the card (new) or Replace (existing): in practice
/// an authority session ([`crate::open_secure_channel`]).
pub fn put_mo<C: CardCommands + ?Sized>(
    card: &mut C,
    tree: &MgmtTree,
    acl: Option<&Acl>,
) -> Result<Vec<String>, MoCardError> {
    tree.validate().map_err(|source| MoCardError::Format {
        uri: ".".into(),
        source,
    })?;
    let mut done = Vec::new();
    for (uri, one) in tree.split() {
        let record = record_for(&one);
        card.put_object(&ObjectRef::Mo(uri.clone()), &ObjectValue::Mo(record), acl)
            .map_err(|source| MoCardError::Card {
                uri: uri.clone(),
                source,
            })?;
        done.push(uri);
    }
    Ok(done)
}

/// The MO record that holds a one-node tree.
pub fn record_for(one: &MgmtTree) -> MoRecord {
    MoRecord {
        mo_type: one
            .nodes
            .first()
            .and_then(Node::mo_type)
            .unwrap_or(DEFAULT_MO_TYPE)
            .to_string(),
        version: 0,
        content: one.to_binary(),
    }
}

/// Reads one MO and decodes its tree.
pub fn get_mo<C: CardCommands + ?Sized>(card: &mut C, uri: &str) -> Result<CardMo, MoCardError> {
    let data = card
        .read_object(&ObjectRef::Mo(uri.to_string()))
        .map_err(|source| MoCardError::Card {
            uri: uri.to_string(),
            source,
        })?;
    let ObjectValue::Mo(record) = data.value else {
        return Err(MoCardError::Format {
            uri: uri.to_string(),
            source: MoError::Binary("the card answered with another kind of object".into()),
        });
    };
    let tree = tree_from_content(uri, &record.content)?;
    Ok(CardMo {
        uri: uri.to_string(),
        mo_type: record.mo_type,
        version: record.version,
        acl: data.acl,
        tree,
    })
}

/// Decodes a record's content: the compact binary form, or (records written
/// by other tools) TNDS XML text; the tree is placed at the record's URI.
pub fn tree_from_content(uri: &str, content: &[u8]) -> Result<MgmtTree, MoCardError> {
    let format = |source| MoCardError::Format {
        uri: uri.to_string(),
        source,
    };
    let tree = match content.first() {
        Some(&super::binary::FORMAT_VERSION) | None => {
            MgmtTree::from_binary(content).map_err(format)?
        }
        Some(_) => match std::str::from_utf8(content) {
            Ok(text) if text.trim_start().starts_with('<') => {
                MgmtTree::from_tnds(text).map_err(format)?
            }
            _ => MgmtTree::from_binary(content).map_err(format)?,
        },
    };
    match tree.nodes.as_slice() {
        [node] if node.root_uri() == uri => Ok(tree),
        _ => rooted_at(&tree, uri),
    }
}

/// The MO root URIs the caller may read, with the size of each record.
pub fn list_mos<C: CardCommands + ?Sized>(card: &mut C) -> Result<Vec<(String, u32)>, MoCardError> {
    let entries = card
        .list(ObjectKind::Mo)
        .map_err(|source| MoCardError::Card {
            uri: "(list)".into(),
            source,
        })?;
    Ok(entries
        .into_iter()
        .filter_map(|e| match e.object {
            ObjectRef::Mo(uri) => Some((uri, e.size)),
            _ => None,
        })
        .collect())
}

/// Reads every MO the caller may read: one GET DATA "read all" (plus GET
/// RESPONSE beyond one response); on a card without that command (`6A86`),
/// a list and one GET DATA per MO. Each MO's tree is decoded separately:
/// the outer error is the card's, the inner one an MO whose content is not a tree.
pub fn read_all_mos<C: CardCommands + ?Sized>(
    card: &mut C,
) -> Result<Vec<Result<CardMo, MoCardError>>, MoCardError> {
    match card.read_all(ObjectKind::Mo) {
        Ok(records) => Ok(records
            .into_iter()
            .map(|r| {
                let ObjectRef::Mo(uri) = r.object else {
                    return Err(MoCardError::Usage("the card listed a non-MO object".into()));
                };
                let ObjectValue::Mo(record) = r.data.value else {
                    return Err(MoCardError::Format {
                        uri,
                        source: MoError::Binary("not an MO record".into()),
                    });
                };
                Ok(CardMo {
                    tree: tree_from_content(&uri, &record.content)?,
                    uri,
                    mo_type: record.mo_type,
                    version: record.version,
                    acl: r.data.acl,
                })
            })
            .collect()),
        Err(HostError::IncorrectP1P2 { .. }) => {
            let uris = list_mos(card)?;
            let mut out = Vec::new();
            for (uri, _) in uris {
                match get_mo(card, &uri) {
                    Err(MoCardError::Card { source, uri }) => {
                        return Err(MoCardError::Card { uri, source })
                    }
                    other => out.push(other),
                }
            }
            Ok(out)
        }
        Err(source) => Err(MoCardError::Card {
            uri: "(read all)".into(),
            source,
        }),
    }
}

/// Deletes one MO record.
pub fn delete_mo<C: CardCommands + ?Sized>(card: &mut C, uri: &str) -> Result<(), MoCardError> {
    card.delete(&ObjectRef::Mo(uri.to_string()))
        .map_err(|source| MoCardError::Card {
            uri: uri.to_string(),
            source,
        })
}
