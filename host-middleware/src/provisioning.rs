//! Immediate provisioning and MO copy: refresh the device tree from the card,
//! forget a card's MOs when it goes, copy an MO (or part of it) from the
//! device to the card, and compare both copies.

use std::collections::BTreeMap;

use dmsc_card_model::objects::Acl;
use serde::Serialize;

use crate::device_tree::{CardMark, DeviceTree, LastCard, Origin, TreeChange, TreeError};
use crate::error::HostError;
use crate::mo::{self, MgmtTree, MoCardError, Node};
use crate::session::CardCommands;

/// Why a provisioning operation failed. Nothing was changed on the device
/// tree when it did.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// The card refused or went away.
    #[error("card: {0}")]
    Card(#[from] HostError),
    /// An MO operation on the card failed.
    #[error("card MO {0}")]
    Mo(#[from] MoCardError),
    /// The device tree could not be read or changed.
    #[error("device tree: {0}")]
    Tree(#[from] TreeError),
    /// The MO is not in the device tree.
    #[error("device tree has no MO {0}")]
    NotInDevice(String),
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// The card ID, hex.
    pub card_id: String,
    /// The card's generation.
    pub generation: u64,
    /// True when the card was the one of the last refresh, unchanged (one APDU).
    pub unchanged: bool,
    /// MOs new in the device tree.
    pub added: Vec<String>,
    /// MOs whose content or version changed.
    pub updated: Vec<String>,
    /// MOs removed (gone from the card, or from another card).
    pub removed: Vec<String>,
    /// MOs on the card whose content is not a TNDS tree, with the reason;
    /// left out of the device tree.
    pub skipped: Vec<SkippedMo>,
}

/// An MO a refresh left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMo {
    /// The root URI.
    pub uri: String,
    /// Why.
    pub reason: String,
}

/// The mark of a card.
pub fn card_mark(card_id: &[u8], generation: u64) -> CardMark {
    CardMark {
        card_id: hex::encode_upper(card_id),
        generation,
    }
}

/// Refreshes the device tree from the card: one SELECT; when the card ID and
/// generation are those of the last refresh, nothing else. Otherwise every
/// readable MO is read and the device tree is changed in one atomic step:
/// the card's MOs are written, MOs that came from a card and are not on this
/// one are removed. A card removed mid-refresh leaves the tree as it was.
pub fn refresh<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &mut T,
) -> Result<RefreshReport, ProvisioningError> {
    let info = card.select()?;
    let mark = card_mark(&info.card_id, info.generation);
    let index = tree.index()?;
    let mut report = RefreshReport {
        card_id: mark.card_id.clone(),
        generation: mark.generation,
        unchanged: false,
        added: Vec::new(),
        updated: Vec::new(),
        removed: Vec::new(),
        skipped: Vec::new(),
    };
    if index.last_card.as_ref() == Some(&mark) {
        report.unchanged = true;
        return Ok(report);
    }
    let mut mos = Vec::new();
    for m in mo::read_all_mos(card)? {
        match m {
            Ok(m) => mos.push(m),
            Err(MoCardError::Format { uri, source }) => report.skipped.push(SkippedMo {
                uri,
                reason: source.to_string(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    let mut change = TreeChange {
        last_card: LastCard::Set(mark.clone()),
        ..TreeChange::default()
    };
    for m in &mos {
        let origin = Origin::Card {
            card_id: mark.card_id.clone(),
            generation: mark.generation,
            version: m.version,
        };
        match index.mos.get(&m.uri) {
            None => report.added.push(m.uri.clone()),
            Some(entry) => {
                let same_source = matches!(&entry.origin,
                    Origin::Card { card_id, version, .. }
                        if *card_id == mark.card_id && *version == m.version);
                if same_source && tree.read_mo(&m.uri)?.as_ref() == Some(&m.tree) {
                    // Unchanged content: only the origin's generation moves.
                } else {
                    report.updated.push(m.uri.clone());
                }
            }
        }
        change.put.push((m.uri.clone(), m.tree.clone(), origin));
    }
    for (uri, entry) in &index.mos {
        if entry.origin.card_id().is_some() && !mos.iter().any(|m| &m.uri == uri) {
            report.removed.push(uri.clone());
            change.remove.push(uri.clone());
        }
    }
    tree.apply(&change)?;
    Ok(report)
}

/// Removes from the device tree the MOs that came from card `card_id` (hex;
/// every card when `None`) and forgets the last refresh. Returns their URIs.
pub fn forget_card<T: DeviceTree + ?Sized>(
    tree: &mut T,
    card_id: Option<&str>,
) -> Result<Vec<String>, ProvisioningError> {
    let index = tree.index()?;
    let remove: Vec<String> = index
        .mos
        .iter()
        .filter(|(_, e)| match (e.origin.card_id(), card_id) {
            (Some(from), Some(id)) => from.eq_ignore_ascii_case(id),
            (Some(_), None) => true,
            (None, _) => false,
        })
        .map(|(u, _)| u.clone())
        .collect();
    let change = TreeChange {
        put: Vec::new(),
        remove: remove.clone(),
        last_card: LastCard::Clear,
    };
    if !remove.is_empty() || index.last_card.is_some() {
        tree.apply(&change)?;
    }
    Ok(remove)
}

/// What [`copy_to_card`] does with the device copy afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCopy {
    /// Keep it.
    Keep,
    /// Erase it (only when the whole MO was copied).
    Erase,
}

/// Copies MO `uri` (or its part at `subtree`, relative to the MO root) from
/// the device tree to the card, as an MO record rooted at the copied node.
/// The card write needs an authority session. Returns the card MO's URI.
pub fn copy_to_card<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &mut T,
    uri: &str,
    subtree: Option<&str>,
    acl: Option<&Acl>,
    device_copy: DeviceCopy,
) -> Result<String, ProvisioningError> {
    let whole = tree
        .read_mo(uri)?
        .ok_or_else(|| ProvisioningError::NotInDevice(uri.to_string()))?;
    let part = whole
        .subtree(subtree.unwrap_or(""))
        .map_err(|source| MoCardError::Format {
            uri: uri.to_string(),
            source,
        })?;
    let done = mo::put_mo(card, &part, acl)?;
    let card_uri = done.into_iter().next().unwrap_or_else(|| uri.to_string());
    if device_copy == DeviceCopy::Erase {
        let rel = subtree.unwrap_or("").trim_matches('/');
        let mut change = TreeChange::default();
        if rel.is_empty() {
            change.remove.push(uri.to_string());
        } else {
            let mut rest = whole.clone();
            if let Some(root) = rest.nodes.first_mut() {
                remove_node(root, rel);
            }
            let origin = tree
                .index()?
                .mos
                .get(uri)
                .map(|e| e.origin.clone())
                .unwrap_or(Origin::Device);
            change.put.push((uri.to_string(), rest, origin));
        }
        tree.apply(&change)?;
    }
    Ok(card_uri)
}

fn remove_node(node: &mut Node, rel: &str) {
    match rel.split_once('/') {
        None => node.children.retain(|c| c.name != rel),
        Some((head, tail)) => {
            if let Some(c) = node.children.iter_mut().find(|c| c.name == head) {
                remove_node(c, tail);
            }
        }
    }
}

/// How one MO compares between the device and the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoComparison {
    /// The same tree on both.
    Same,
    /// Only on the device.
    DeviceOnly,
    /// Only on the card.
    CardOnly,
    /// On both, with these node URIs differing (present on one side only, or
    /// with other properties or value).
    Differ {
        /// The differing node URIs.
        nodes: Vec<String>,
    },
}

/// The nodes of a tree by URI, with what is compared.
fn flatten(tree: &MgmtTree) -> BTreeMap<String, (Option<String>, String)> {
    fn walk(node: &Node, uri: String, out: &mut BTreeMap<String, (Option<String>, String)>) {
        out.insert(
            uri.clone(),
            (node.value.clone(), format!("{:?}", node.properties)),
        );
        for c in &node.children {
            walk(c, c.uri_under(&uri), out);
        }
    }
    let mut out = BTreeMap::new();
    for n in &tree.nodes {
        walk(n, n.root_uri(), &mut out);
    }
    out
}

/// Compares two trees node by node; the URIs that differ.
pub fn compare_trees(a: &MgmtTree, b: &MgmtTree) -> Vec<String> {
    let (fa, fb) = (flatten(a), flatten(b));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .cloned()
        .collect()
}

/// Compares the device's MOs with the card's, by root URI.
pub fn diff<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &T,
) -> Result<BTreeMap<String, MoComparison>, ProvisioningError> {
    let card_mos = mo::read_all_mos(card)?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let index = tree.index()?;
    let mut out = BTreeMap::new();
    for m in &card_mos {
        let cmp = match tree.read_mo(&m.uri)? {
            None => MoComparison::CardOnly,
            Some(d) => {
                let nodes = compare_trees(&d, &m.tree);
                if nodes.is_empty() {
                    MoComparison::Same
                } else {
                    MoComparison::Differ { nodes }
                }
            }
        };
        out.insert(m.uri.clone(), cmp);
    }
    for uri in index.mos.keys() {
        out.entry(uri.clone()).or_insert(MoComparison::DeviceOnly);
    }
    Ok(out)
}
