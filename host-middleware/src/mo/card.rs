//! MO records on the card: put, get, list, delete, with the TNDS tree in the
//! record's content (compact binary form).

use dmsc_card_model::commands::{MoRecord, ObjectData, ObjectValue};
use dmsc_card_model::objects::{
    check_uri, Acl, ModelError, ObjectKind, ObjectRef, Principal, Right,
};

use super::tree::{MgmtTree, Node};
use super::{BinaryFault, MoError};
use crate::error::{HostError, Status};
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
    /// The options do not fit the tree (e.g. `--uri` with several top-level
    /// nodes); [`MoUsage`] says how.
    #[error("{0}")]
    Usage(#[source] MoUsage),
    /// The MO's root lies inside or above another MO record: one node would
    /// be held by two records (docs/provisioning.md, "One record per node").
    #[error("{}", overlap_message(uri, existing, *relation))]
    Overlap {
        /// The MO that was to be stored.
        uri: String,
        /// The record it overlaps (on the card, or in the same document).
        existing: String,
        /// Where `uri` lies relative to `existing`.
        relation: Overlap,
    },
    /// No record the caller may read holds this node. The card lists only
    /// what the caller may read and answers alike for a missing record and a
    /// forbidden one, so the host cannot tell which.
    #[error("{uri}: not found or not permitted (no MO record readable by this caller holds it)")]
    NotFoundOrNotPermitted {
        /// The node path asked for.
        uri: String,
    },
    /// The enclosing record is readable but has no such node.
    #[error("{uri}: no such node in the card's MO record {record}")]
    NoSuchNode {
        /// The node path asked for.
        uri: String,
        /// The record that would hold it.
        record: String,
    },
    /// The MOs do not fit in the card's free memory; nothing was stored.
    #[error(
        "not enough free memory on the card: the {count} MO(s) need about {needed} bytes, \
         the card has {free} bytes free (of {total}); nothing was stored"
    )]
    NoSpace {
        /// How many MOs were to be stored.
        count: usize,
        /// Bytes needed (the card's own accounting, estimated on the host).
        needed: u64,
        /// Bytes free on the card.
        free: u64,
        /// The card's object storage in all.
        total: u64,
    },
    /// Storing one MO failed; every MO this run had stored before it was
    /// taken back, so the card holds what it held before.
    #[error(
        "{uri}: {source}; nothing was stored: the {} MO(s) stored before it in this run \
         were rolled back{}",
        undone.len(),
        list_suffix(undone)
    )]
    RolledBack {
        /// The MO whose store failed.
        uri: String,
        /// Why.
        #[source]
        source: Box<HostError>,
        /// The MOs stored and then rolled back.
        undone: Vec<String>,
    },
    /// Storing one MO failed and the rollback failed too: `left` are on the
    /// card in their new form. Rerunning the same put completes it (storing an
    /// MO again is idempotent); deleting them undoes it.
    #[error(
        "{uri}: {source}; the rollback failed as well ({rollback}): the card now holds \
         these MO(s) from this run: {}. Run the same put again to complete it, or delete them",
        left.join(", ")
    )]
    PartlyStored {
        /// The MO whose store failed.
        uri: String,
        /// Why.
        #[source]
        source: Box<HostError>,
        /// The first MO the rollback could not undo, and why.
        rollback: Box<RollbackFailure>,
        /// The MOs of this run left on the card, in their new form.
        left: Vec<String>,
    },
}

/// How the caller's options or the card's listing do not fit an MO operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoUsage {
    /// The MO URI given is not valid.
    #[error("invalid MO URI '{uri}': {source}")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        #[source]
        source: ModelError,
    },
    /// The node path given is not valid.
    #[error("invalid MO path '{path}': {source}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        #[source]
        source: ModelError,
    },
    /// The MO URI has no parent (`./DMAcc`, not `DMAcc`).
    #[error("MO URI '{uri}' has no '/' (e.g. ./DMAcc)")]
    NoParent {
        /// The URI.
        uri: String,
    },
    /// A URI was given for a tree with several (or no) top-level nodes.
    #[error("a URI can be given only for a tree with one top-level node (this one has {nodes})")]
    NotOneTopNode {
        /// How many top-level nodes the tree has.
        nodes: usize,
    },
    /// The card's list of MO records holds another kind of object.
    #[error("the card listed a non-MO object")]
    NonMoListed,
    /// An ACL was given for a node that goes into an existing record, which
    /// keeps its own ACL.
    #[error(
        "{node} goes into the card's MO record {record}, which keeps its ACL: copy without an \
         ACL and set it with `dmsc acl set mo:{record}`"
    )]
    AclInsideRecord {
        /// The node's URI.
        node: String,
        /// The record that holds it.
        record: String,
    },
}

/// The first MO that a rollback could not undo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri}: {cause}")]
pub struct RollbackFailure {
    /// The MO.
    pub uri: String,
    /// Why it stays.
    #[source]
    pub cause: RollbackFault,
}

/// Why a rollback left an MO as stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackFault {
    /// Restoring, reading or deleting it failed on the card.
    #[error("{0}")]
    Card(#[source] HostError),
    /// The caller cannot read it, so it may have existed before.
    #[error("not readable by this caller, so it may have existed before: left as stored")]
    NotReadable,
    /// It existed before without being readable by the caller.
    #[error("it existed before without being readable by this caller: left as stored")]
    ExistedUnreadable,
}

/// Where an MO root lies relative to an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Below the existing record's root.
    Inside,
    /// Above it: the existing record would be part of the new one.
    Above,
}

fn overlap_message(uri: &str, existing: &str, relation: Overlap) -> String {
    match relation {
        Overlap::Inside => format!(
            "{uri} lies inside the MO record {existing}: its nodes would be held by two \
             records. Store the change as part of {existing} instead (`dmsc mo get {existing}`, \
             edit, `dmsc mo put`; `dmsc mo copy` does this itself), or delete {existing} first"
        ),
        Overlap::Above => format!(
            "{uri} encloses the MO record {existing}: its nodes would be held by two records. \
             Delete {existing} first (its nodes then come with {uri}), or store {uri} without \
             that part"
        ),
    }
}

fn list_suffix(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({})", items.join(", "))
    }
}

/// Whether `path` is `root` or a node below it.
pub fn within(path: &str, root: &str) -> bool {
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The first of `records` whose root lies inside or above `uri` (an equal
/// root is no overlap: storing it replaces the record).
pub fn find_overlap<'a>(
    records: impl IntoIterator<Item = &'a str>,
    uri: &str,
) -> Option<(&'a str, Overlap)> {
    records.into_iter().find_map(|r| {
        if r == uri {
            None
        } else if within(uri, r) {
            Some((r, Overlap::Inside))
        } else if within(r, uri) {
            Some((r, Overlap::Above))
        } else {
            None
        }
    })
}

/// The record among `records` that holds node `path` (the innermost one, if
/// records overlap), with the node's path relative to the record's root
/// (empty for the root itself).
pub fn enclosing<'a>(
    records: impl IntoIterator<Item = &'a str>,
    path: &str,
) -> Option<(&'a str, String)> {
    records
        .into_iter()
        .filter(|r| within(path, r))
        .max_by_key(|r| r.len())
        .map(|r| (r, path[r.len()..].trim_start_matches('/').to_string()))
}

/// Places a one-node tree at `uri`: the root node's name and path are set
/// from it.
pub fn rooted_at(tree: &MgmtTree, uri: &str) -> Result<MgmtTree, MoCardError> {
    check_uri(uri).map_err(|source| {
        MoCardError::Usage(MoUsage::InvalidUri {
            uri: uri.to_string(),
            source,
        })
    })?;
    let [node] = tree.nodes.as_slice() else {
        return Err(MoCardError::Usage(MoUsage::NotOneTopNode {
            nodes: tree.nodes.len(),
        }));
    };
    let (parent, name) = uri.rsplit_once('/').ok_or_else(|| {
        MoCardError::Usage(MoUsage::NoParent {
            uri: uri.to_string(),
        })
    })?;
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
///
/// All or nothing:
/// - a root inside or above another record (on the card or in `tree`) is
///   refused before anything is stored ([`MoCardError::Overlap`]);
/// - the card's free memory is checked first ([`MoCardError::NoSpace`]);
/// - when a store still fails, the MOs stored before it in this run are
///   deleted (new) or put back (replaced): [`MoCardError::RolledBack`]; if
///   that fails too, [`MoCardError::PartlyStored`] names what is left.
///
/// The card has no multi-object transaction: a power cut between two stores
/// leaves a prefix of the MOs stored. Storing is idempotent, so running the
/// same put again completes it.
pub fn put_mo<C: CardCommands + ?Sized>(
    card: &mut C,
    tree: &MgmtTree,
    acl: Option<&Acl>,
) -> Result<Vec<String>, MoCardError> {
    tree.validate().map_err(|source| MoCardError::Format {
        uri: ".".into(),
        source,
    })?;
    let parts = tree.split();
    for (i, (uri, _)) in parts.iter().enumerate() {
        if let Some((other, relation)) =
            find_overlap(parts[..i].iter().map(|(u, _)| u.as_str()), uri)
        {
            return Err(MoCardError::Overlap {
                uri: uri.clone(),
                existing: other.to_string(),
                relation,
            });
        }
    }
    let listed = list_mos(card)?;
    for (uri, _) in &parts {
        if let Some((existing, relation)) =
            find_overlap(listed.iter().map(|(u, _)| u.as_str()), uri)
        {
            return Err(MoCardError::Overlap {
                uri: uri.clone(),
                existing: existing.to_string(),
                relation,
            });
        }
    }
    let records: Vec<(String, MoRecord)> = parts
        .iter()
        .map(|(uri, one)| (uri.clone(), record_for(one)))
        .collect();
    check_free_space(card, &records, &listed, acl)?;
    // What a rollback puts back: the replaced records as they are now.
    let mut previous: Vec<(String, Option<ObjectData>)> = Vec::new();
    for (uri, _) in &records {
        let old = if listed.iter().any(|(u, _)| u == uri) {
            Some(
                card.read_object(&ObjectRef::Mo(uri.clone()))
                    .map_err(|source| MoCardError::Card {
                        uri: uri.clone(),
                        source,
                    })?,
            )
        } else {
            None
        };
        previous.push((uri.clone(), old));
    }
    let mut done: Vec<String> = Vec::new();
    for (i, (uri, record)) in records.iter().enumerate() {
        if let Err(source) = card.put_object(
            &ObjectRef::Mo(uri.clone()),
            &ObjectValue::Mo(record.clone()),
            acl,
        ) {
            if done.is_empty() {
                return Err(MoCardError::Card {
                    uri: uri.clone(),
                    source,
                });
            }
            return Err(roll_back(card, uri, source, &previous[..i]));
        }
        done.push(uri.clone());
    }
    Ok(done)
}

/// Takes back the stores of `stored` (in reverse order): puts the replaced
/// records back with their ACL, and deletes the new ones. A record that was
/// not listed before the put is deleted only when it can now be read and its
/// version is 1 (created by this put): one the caller could replace but not
/// read may have existed, and is then left and named rather than deleted.
fn roll_back<C: CardCommands + ?Sized>(
    card: &mut C,
    failed: &str,
    source: HostError,
    stored: &[(String, Option<ObjectData>)],
) -> MoCardError {
    let mut undone = Vec::new();
    let mut left = Vec::new();
    let mut first_error: Option<RollbackFailure> = None;
    let now = list_mos(card).ok();
    for (uri, old) in stored.iter().rev() {
        let object = ObjectRef::Mo(uri.clone());
        let result = match old {
            Some(data) => card
                .put_object(&object, &data.value, Some(&data.acl))
                .map_err(RollbackFault::Card),
            None => {
                let readable = now
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|(u, _)| u == uri));
                if !readable {
                    Err(RollbackFault::NotReadable)
                } else {
                    match card.read_object(&object) {
                        Ok(ObjectData {
                            value: ObjectValue::Mo(m),
                            ..
                        }) if m.version == 1 => card.delete(&object).map_err(RollbackFault::Card),
                        Ok(_) => Err(RollbackFault::ExistedUnreadable),
                        Err(e) => Err(RollbackFault::Card(e)),
                    }
                }
            }
        };
        match result {
            Ok(()) => undone.push(uri.clone()),
            Err(e) => {
                first_error.get_or_insert(RollbackFailure {
                    uri: uri.clone(),
                    cause: e,
                });
                left.push(uri.clone());
            }
        }
    }
    undone.reverse();
    left.reverse();
    match first_error {
        None => MoCardError::RolledBack {
            uri: failed.to_string(),
            source: Box::new(source),
            undone,
        },
        Some(rollback) => MoCardError::PartlyStored {
            uri: failed.to_string(),
            source: Box::new(source),
            rollback: Box::new(rollback),
            left,
        },
    }
}

/// Checks that `records` fit in the card's free memory, counted the card's
/// way: per object, its reference, its value and its ACL text
/// (docs/card-model.md). The free memory comes from the card object when the
/// caller may read it, else from the SELECT answer. The ACL of a new record
/// without `acl` is estimated from the default ACL; a store can still fail
/// later, and is then rolled back.
fn check_free_space<C: CardCommands + ?Sized>(
    card: &mut C,
    records: &[(String, MoRecord)],
    listed: &[(String, u32)],
    acl: Option<&Acl>,
) -> Result<(), MoCardError> {
    let card_listed = card
        .list(ObjectKind::Card)
        .map(|l| !l.is_empty())
        .unwrap_or(false);
    let from_card = if card_listed {
        match card.read_object(&ObjectRef::Card) {
            Ok(ObjectData {
                value: ObjectValue::Card(c),
                ..
            }) => Some((
                u64::from(c.total_memory.saturating_sub(c.used_memory)),
                u64::from(c.total_memory),
            )),
            _ => None,
        }
    } else {
        None
    };
    let Some((free, total)) = from_card.or_else(|| {
        card.select_info()
            .map(|i| (u64::from(i.free_memory), u64::from(i.total_memory)))
    }) else {
        return Ok(());
    };
    let default_acl_len = {
        let mut a = Acl::empty();
        for right in [Right::Get, Right::Replace, Right::Delete] {
            a.grant(right, Principal::Authority(String::new()));
        }
        a.grant(Right::Get, Principal::Anyone);
        a.to_string().len()
    } as u64;
    let mut needed: u64 = 0;
    let mut released: u64 = 0;
    for (uri, record) in records {
        let object = ObjectRef::Mo(uri.clone());
        let value = ObjectValue::Mo(record.clone()).encode().len() as u64;
        match listed.iter().find(|(u, _)| u == uri) {
            Some((_, old_size)) => {
                needed += value;
                released += u64::from(*old_size);
            }
            None => {
                needed += object.encode().len() as u64
                    + value
                    + acl.map_or(default_acl_len, |a| a.to_string().len() as u64);
            }
        }
    }
    let needed = needed.saturating_sub(released);
    if needed > free {
        return Err(MoCardError::NoSpace {
            count: records.len(),
            needed,
            free,
            total,
        });
    }
    Ok(())
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
            source: MoError::Binary(BinaryFault::OtherKind),
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

/// Reads the node at `path`, which may be an MO record's root or any node
/// inside a record: the caller's readable records are listed first, then the
/// record that holds `path` is read and the node taken out of it (as a tree
/// rooted at `path`; type, version and ACL are the record's). No command
/// the card would refuse is sent: a path no readable record holds gives
/// [`MoCardError::NotFoundOrNotPermitted`] without asking the card for it, so
/// nothing is audited as a denial. Returns the node and the record's root.
pub fn get_node<C: CardCommands + ?Sized>(
    card: &mut C,
    path: &str,
) -> Result<(CardMo, String), MoCardError> {
    check_uri(path).map_err(|source| {
        MoCardError::Usage(MoUsage::InvalidPath {
            path: path.to_string(),
            source,
        })
    })?;
    let listed = list_mos(card)?;
    let Some((record, rel)) = enclosing(listed.iter().map(|(u, _)| u.as_str()), path) else {
        return Err(MoCardError::NotFoundOrNotPermitted {
            uri: path.to_string(),
        });
    };
    let record = record.to_string();
    let mut m = get_mo(card, &record)?;
    if !rel.is_empty() {
        m.tree = m.tree.subtree(&rel).map_err(|_| MoCardError::NoSuchNode {
            uri: path.to_string(),
            record: record.clone(),
        })?;
        m.uri = path.to_string();
    }
    Ok((m, record))
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
                    return Err(MoCardError::Usage(MoUsage::NonMoListed));
                };
                let ObjectValue::Mo(record) = r.data.value else {
                    return Err(MoCardError::Format {
                        uri,
                        source: MoError::Binary(BinaryFault::NotMoRecord),
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
        Err(HostError::Card {
            status: Status::IncorrectP1OrP2Parameter,
            ..
        }) => {
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

#[cfg(test)]
mod error_tests {
    use super::*;
    use std::error::Error as _;

    /// The typed causes read as the messages did, and keep their sources.
    #[test]
    fn typed_causes_read_well_and_keep_their_sources() {
        let Err(source) = check_uri("") else {
            panic!("an empty URI is not valid")
        };
        let e = MoCardError::Usage(MoUsage::InvalidUri {
            uri: String::new(),
            source,
        });
        assert!(e.to_string().starts_with("invalid MO URI '': "), "{e}");
        assert!(e.source().and_then(|u| u.source()).is_some());
        assert_eq!(
            MoUsage::NotOneTopNode { nodes: 2 }.to_string(),
            "a URI can be given only for a tree with one top-level node (this one has 2)"
        );
        let e = MoCardError::PartlyStored {
            uri: "./A".into(),
            source: Box::new(HostError::card("PUT DATA", 0x6A84)),
            rollback: Box::new(RollbackFailure {
                uri: "./B".into(),
                cause: RollbackFault::NotReadable,
            }),
            left: vec!["./B".into()],
        };
        let text = e.to_string();
        assert!(
            text.contains(
                "the rollback failed as well (./B: not readable by this caller, so it may \
                 have existed before: left as stored)"
            ),
            "{text}"
        );
        let failure = RollbackFailure {
            uri: "./B".into(),
            cause: RollbackFault::Card(HostError::card("DELETE", 0x6982)),
        };
        assert!(failure.source().and_then(|c| c.source()).is_some());
    }
}
