//! Immediate provisioning and MO copy: refresh the device tree from the card,
//! forget a card's MOs when it goes, copy an MO (or part of it) from the
//! device to the card, and compare both copies.

pub mod uicc;
#[cfg(feature = "pcsc")]
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use dmsc_card_model::objects::Acl;
use serde::Serialize;

use crate::device_tree::{CardMark, DeviceTree, LastCard, Origin, TreeChange, TreeError};
use crate::error::HostError;
use crate::mo::{self, MgmtTree, MoCardError, MoError, Node};
use crate::session::CardCommands;

pub use uicc::{CardKind, FactoryBootstrap, RefreshOptions};

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
    /// Reading a UICC, or decoding its LwM2M bootstrap, failed.
    #[error("UICC: {0}")]
    Uicc(#[from] crate::uicc::UiccError),
    /// A bootstrap message (a UICC's DM bootstrap, the factory bootstrap)
    /// is not one the device can apply.
    #[error("{what}: {source}")]
    Bootstrap {
        /// Which bootstrap.
        what: &'static str,
        /// What is wrong with it.
        #[source]
        source: crate::bootstrap::BootstrapError,
    },
    /// The card has neither the dmsc applet nor an ICCID (EF(ICCID) empty).
    #[error("the card has neither the dmsc applet nor an ICCID (EF(ICCID) 2FE2 is empty)")]
    NoIccid,
    /// The factory bootstrap file could not be read.
    #[error("cannot read the factory bootstrap {path}: {source}")]
    Factory {
        /// The file.
        path: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The device's policy state could not be read.
    #[error("{path}: {problem}")]
    Policy {
        /// The file.
        path: String,
        /// What is wrong.
        #[source]
        problem: PolicyStateProblem,
    },
}

/// Why the device's policy state could not be read
/// ([`ProvisioningError::Policy`]).
#[derive(Debug, thiserror::Error)]
pub enum PolicyStateProblem {
    /// The file could not be read.
    #[error("{0}")]
    Read(#[source] crate::policy::PolicyError),
    /// The file is not the JSON of the resource states.
    #[error("not the resource states: {0}")]
    NotResourceStates(#[source] serde_json::Error),
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// `dmsc` (the applet answered) or `uicc` (a plain UICC).
    pub kind: CardKind,
    /// The card ID, hex; a UICC's ICCID.
    pub card_id: String,
    /// The card's generation (0 for a UICC: its content is known by
    /// `bootstrap_digest`).
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
    /// A UICC's bootstrap data found: `dm`, `lwm2m`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bootstrap: Vec<String>,
    /// `sha256:` digest of a UICC's bootstrap data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_digest: Option<String>,
    /// The device policy disabled the smartcard bootstrap.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub smartcard_bootstrap_disabled: bool,
    /// The factory bootstrap is in force after the refresh (no card
    /// provides anything).
    pub factory: bool,
}

impl RefreshReport {
    fn new(card_id: String, generation: u64, kind: CardKind) -> RefreshReport {
        RefreshReport {
            kind,
            card_id,
            generation,
            unchanged: false,
            added: Vec::new(),
            updated: Vec::new(),
            removed: Vec::new(),
            skipped: Vec::new(),
            bootstrap: Vec::new(),
            bootstrap_digest: None,
            smartcard_bootstrap_disabled: false,
            factory: false,
        }
    }
}

/// An MO a refresh left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMo {
    /// The root URI.
    pub uri: String,
    /// Why (serialised as its text).
    pub reason: SkipReason,
}

/// Why a refresh left an MO out ([`SkippedMo::reason`]). It serialises as
/// its text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SkipReason {
    /// The MO's content on the card is not a valid tree.
    #[error("{0}")]
    Content(#[source] Arc<MoError>),
    /// A card's MO record overlaps an MO already in the device tree or
    /// another record of the card.
    #[error(
        "{uri} {} {owner} {other}: one node would have two values",
        placement(*.relation)
    )]
    CardOverlap {
        /// The record's root URI.
        uri: String,
        /// Where the record lies relative to `other`.
        relation: mo::Overlap,
        /// Whose MO `other` is.
        owner: MoOwner,
        /// The root URI of the MO it overlaps.
        other: String,
    },
    /// An MO of a UICC's bootstrap overlaps an MO already in the device tree
    /// or another MO of the bootstrap.
    #[error("{uri} overlaps {owner} {other}: one node would have two values")]
    BootstrapOverlap {
        /// The MO's root URI.
        uri: String,
        /// Whose MO `other` is.
        owner: MoOwner,
        /// The root URI of the MO it overlaps.
        other: String,
    },
    /// An MO of the factory bootstrap overlaps one of the device's own MOs.
    #[error("the factory bootstrap's {uri} overlaps the device's own MO {other}")]
    FactoryOverlap {
        /// The factory MO's root URI.
        uri: String,
        /// The root URI of the device's MO.
        other: String,
    },
}

fn placement(relation: mo::Overlap) -> &'static str {
    match relation {
        mo::Overlap::Inside => "lies inside",
        mo::Overlap::Above => "encloses",
    }
}

impl PartialEq for SkipReason {
    /// Content errors compare by their text (the parser errors they hold
    /// have no equality); the other reasons field by field.
    fn eq(&self, other: &SkipReason) -> bool {
        use SkipReason::*;
        match (self, other) {
            (Content(a), Content(b)) => Arc::ptr_eq(a, b) || a.to_string() == b.to_string(),
            (
                CardOverlap {
                    uri,
                    relation,
                    owner,
                    other,
                },
                CardOverlap {
                    uri: u,
                    relation: r,
                    owner: o,
                    other: x,
                },
            ) => uri == u && relation == r && owner == o && other == x,
            (
                BootstrapOverlap { uri, owner, other },
                BootstrapOverlap {
                    uri: u,
                    owner: o,
                    other: x,
                },
            ) => uri == u && owner == o && other == x,
            (FactoryOverlap { uri, other }, FactoryOverlap { uri: u, other: x }) => {
                uri == u && other == x
            }
            _ => false,
        }
    }
}

impl Eq for SkipReason {}

impl Serialize for SkipReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Whose MO another one overlaps ([`SkipReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoOwner {
    /// The device's own MO (origin `device`).
    #[error("the device's own MO")]
    Device,
    /// A record of the card being read.
    #[error("the card's MO record")]
    CardRecord,
    /// Another MO of the same UICC bootstrap.
    #[error("another MO of the bootstrap")]
    Bootstrap,
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
///
/// A card without the dmsc applet (its SELECT answers `6A82`) is read as a
/// plain UICC ([`uicc::refresh_uicc`]): one SELECT failure at most.
pub fn refresh<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &mut T,
) -> Result<RefreshReport, ProvisioningError> {
    refresh_with(card, tree, &RefreshOptions::default())
}

/// [`refresh`] with the factory bootstrap and the smartcard bootstrap switch
/// (docs/bootstrap.md §7): the factory MOs leave the tree when a card provides
/// anything, and come back when nothing from a card is left.
pub fn refresh_with<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &mut T,
    options: &RefreshOptions,
) -> Result<RefreshReport, ProvisioningError> {
    let info = match card.select() {
        Ok(info) => info,
        Err(e) if e.sw() == Some(0x6A82) => return uicc::refresh_uicc(card, tree, options),
        Err(e) => return Err(e.into()),
    };
    let mark = card_mark(&info.card_id, info.generation);
    let index = tree.index()?;
    let mut report = RefreshReport::new(mark.card_id.clone(), mark.generation, CardKind::Dmsc);
    if index.last_card.as_ref() == Some(&mark) {
        report.unchanged = true;
        // A tree whose MO files still have the earlier hidden names
        // (`mo/.%2FDMAcc.xml`) gets them renamed by an empty change; the
        // card is not asked for more.
        if index.mos.values().any(|e| e.file.starts_with("mo/.")) {
            tree.apply(&TreeChange::default())?;
        }
        return Ok(report);
    }
    let mut mos = Vec::new();
    for m in mo::read_all_mos(card)? {
        match m {
            Ok(m) => mos.push(m),
            Err(MoCardError::Format { uri, source }) => report.skipped.push(SkippedMo {
                uri,
                reason: SkipReason::Content(Arc::new(source)),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    // One record per node in the device tree as well: the device's own MOs
    // come first, then the card's from the outermost; an MO overlapping one
    // already taken is left out and reported (cards written before the rule,
    // or a card MO inside one of the device's own).
    let mut taken: Vec<String> = index
        .mos
        .iter()
        .filter(|(uri, e)| e.origin == Origin::Device && !mos.iter().any(|m| &m.uri == *uri))
        .map(|(uri, _)| uri.clone())
        .collect();
    let device_own = taken.len();
    mos.sort_by_key(|m| (m.uri.matches('/').count(), m.uri.clone()));
    let mut kept = Vec::new();
    for m in mos {
        match mo::find_overlap(taken.iter().map(String::as_str), &m.uri) {
            Some((other, relation)) => {
                let owner = if taken.iter().position(|t| t == other) < Some(device_own) {
                    MoOwner::Device
                } else {
                    MoOwner::CardRecord
                };
                report.skipped.push(SkippedMo {
                    reason: SkipReason::CardOverlap {
                        uri: m.uri.clone(),
                        relation,
                        owner,
                        other: other.to_string(),
                    },
                    uri: m.uri,
                });
            }
            None => {
                taken.push(m.uri.clone());
                kept.push(m);
            }
        }
    }
    let mut mos = kept;
    mos.sort_by(|a, b| a.uri.cmp(&b.uri));
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
    report.factory = uicc::settle_factory(
        &*tree,
        &index,
        options.factory.as_ref(),
        &mut change,
        &mut report,
    )?;
    tree.apply(&change)?;
    Ok(report)
}

/// Removes from the device tree the MOs that came from card `card_id` (hex;
/// every card when `None`) and forgets the last refresh. Returns their URIs.
pub fn forget_card<T: DeviceTree + ?Sized>(
    tree: &mut T,
    card_id: Option<&str>,
) -> Result<Vec<String>, ProvisioningError> {
    forget_card_with(tree, card_id, None).map(|(removed, _)| removed)
}

/// [`forget_card`], then the factory rule in the same atomic change: when
/// nothing from a card is left, `factory` (if given) is put in force.
/// Returns the URIs removed and those of the factory bootstrap added.
pub fn forget_card_with<T: DeviceTree + ?Sized>(
    tree: &mut T,
    card_id: Option<&str>,
    factory: Option<&FactoryBootstrap>,
) -> Result<(Vec<String>, Vec<String>), ProvisioningError> {
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
    let mut change = TreeChange {
        put: Vec::new(),
        remove: remove.clone(),
        last_card: LastCard::Clear,
    };
    let mut report = RefreshReport::new(String::new(), 0, CardKind::Dmsc);
    uicc::settle_factory(&*tree, &index, factory, &mut change, &mut report)?;
    report.removed.retain(|u| !remove.contains(u));
    let mut removed = remove;
    removed.extend(report.removed);
    if !change.put.is_empty() || !change.remove.is_empty() || index.last_card.is_some() {
        tree.apply(&change)?;
    }
    let mut added = report.added;
    added.extend(report.updated);
    Ok((removed, added))
}

/// What [`copy_to_card`] does with the device copy afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCopy {
    /// Keep it.
    Keep,
    /// Erase it (only when the whole MO was copied).
    Erase,
}

/// Copies node `uri` of the device tree (an MO root or any node inside a
/// device MO), or its part at `subtree` (relative to `uri`), to the card. The
/// card write needs an authority session. Returns the card record that now
/// holds the copied node. One record per node (docs/provisioning.md):
/// - a card record rooted at the copied node is replaced;
/// - a card record that encloses the node takes it in (the record is read,
///   the node replaced or added in it, the record stored again, keeping its
///   ACL: `acl` is then refused);
/// - a card record inside the copied node makes the copy refused
///   ([`MoCardError::Overlap`]);
/// - otherwise a new record is rooted at the node.
pub fn copy_to_card<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &mut T,
    uri: &str,
    subtree: Option<&str>,
    acl: Option<&Acl>,
    device_copy: DeviceCopy,
) -> Result<String, ProvisioningError> {
    let index = tree.index()?;
    let (mo_uri, rel_in_mo) = mo::enclosing(index.mos.keys().map(String::as_str), uri)
        .map(|(m, r)| (m.to_string(), r))
        .ok_or_else(|| ProvisioningError::NotInDevice(uri.to_string()))?;
    let whole = tree
        .read_mo(&mo_uri)?
        .ok_or_else(|| ProvisioningError::NotInDevice(mo_uri.clone()))?;
    let rel = [rel_in_mo.as_str(), subtree.unwrap_or("").trim_matches('/')]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let part = whole.subtree(&rel).map_err(|source| MoCardError::Format {
        uri: mo_uri.clone(),
        source,
    })?;
    let node_uri = part.nodes.first().map(Node::root_uri).unwrap_or_default();
    let listed = mo::list_mos(card)?;
    let records: Vec<&str> = listed.iter().map(|(u, _)| u.as_str()).collect();
    let card_uri = match mo::enclosing(records.iter().copied(), &node_uri) {
        Some((record, inner)) if !inner.is_empty() => {
            if acl.is_some() {
                return Err(MoCardError::Usage(mo::MoUsage::AclInsideRecord {
                    node: node_uri,
                    record: record.to_string(),
                })
                .into());
            }
            let record = record.to_string();
            let mut on_card = mo::get_mo(card, &record)?;
            let node = part
                .nodes
                .first()
                .cloned()
                .unwrap_or_else(|| Node::named(""));
            if let Some(root) = on_card.tree.nodes.first_mut() {
                graft(root, &inner, node);
            }
            mo::put_mo(card, &on_card.tree, None)?;
            record
        }
        _ => {
            if let Some((existing, relation)) = mo::find_overlap(records.iter().copied(), &node_uri)
            {
                return Err(MoCardError::Overlap {
                    uri: node_uri,
                    existing: existing.to_string(),
                    relation,
                }
                .into());
            }
            let done = mo::put_mo(card, &part, acl)?;
            done.into_iter().next().unwrap_or(node_uri)
        }
    };
    if device_copy == DeviceCopy::Erase {
        let mut change = TreeChange::default();
        if rel.is_empty() {
            change.remove.push(mo_uri.clone());
        } else {
            let mut rest = whole.clone();
            if let Some(root) = rest.nodes.first_mut() {
                remove_node(root, &rel);
            }
            let origin = index
                .mos
                .get(&mo_uri)
                .map(|e| e.origin.clone())
                .unwrap_or(Origin::Device);
            change.put.push((mo_uri.clone(), rest, origin));
        }
        tree.apply(&change)?;
    }
    Ok(card_uri)
}

/// Puts `node` at `rel` (relative, non-empty) below `root`, replacing the
/// node there or adding it (with interior nodes for missing parents).
fn graft(root: &mut Node, rel: &str, mut node: Node) {
    match rel.split_once('/') {
        None => {
            node.name = rel.to_string();
            node.path = None;
            match root.children.iter_mut().find(|c| c.name == rel) {
                Some(slot) => *slot = node,
                None => root.children.push(node),
            }
        }
        Some((head, tail)) => {
            if !root.children.iter().any(|c| c.name == head) {
                root.children.push(Node::named(head));
            }
            if let Some(c) = root.children.iter_mut().find(|c| c.name == head) {
                graft(c, tail, node);
            }
        }
    }
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

/// The part of a tree set at `path`: the tree whose root is `path`, or the
/// node at `path` inside the tree that encloses it.
fn node_in(
    trees: &BTreeMap<String, MgmtTree>,
    path: &str,
) -> Result<Option<MgmtTree>, ProvisioningError> {
    let Some((root, rel)) = mo::enclosing(trees.keys().map(String::as_str), path) else {
        return Ok(None);
    };
    let Some(t) = trees.get(root) else {
        return Ok(None);
    };
    if rel.is_empty() {
        return Ok(Some(t.clone()));
    }
    Ok(t.subtree(&rel).ok())
}

fn compare(device: Option<MgmtTree>, card: Option<MgmtTree>) -> MoComparison {
    match (device, card) {
        (None, None) | (Some(_), None) => MoComparison::DeviceOnly,
        (None, Some(_)) => MoComparison::CardOnly,
        (Some(d), Some(c)) => {
            let nodes = compare_trees(&d, &c);
            if nodes.is_empty() {
                MoComparison::Same
            } else {
                MoComparison::Differ { nodes }
            }
        }
    }
}

/// Compares the device's MOs with the card's, by root URI: every card record
/// and every device MO is compared with the same node on the other side,
/// whether that side holds it as a record of its own or inside an enclosing
/// one.
pub fn diff<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &T,
) -> Result<BTreeMap<String, MoComparison>, ProvisioningError> {
    let card_mos: BTreeMap<String, MgmtTree> = mo::read_all_mos(card)?
        .into_iter()
        .map(|m| m.map(|m| (m.uri, m.tree)))
        .collect::<Result<_, _>>()?;
    let mut device_mos = BTreeMap::new();
    for uri in tree.index()?.mos.keys() {
        if let Some(t) = tree.read_mo(uri)? {
            device_mos.insert(uri.clone(), t);
        }
    }
    let mut out = BTreeMap::new();
    for uri in card_mos.keys().chain(device_mos.keys()) {
        if out.contains_key(uri) {
            continue;
        }
        let cmp = compare(node_in(&device_mos, uri)?, node_in(&card_mos, uri)?);
        out.insert(uri.clone(), cmp);
    }
    Ok(out)
}

/// Compares one node (an MO root or any node inside one) between the device
/// and the card. The card's records are listed first and only the one that
/// holds `path` is read.
pub fn diff_node<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &T,
    path: &str,
) -> Result<MoComparison, ProvisioningError> {
    let card_side = match mo::get_node(card, path) {
        Ok((m, _)) => Some(m.tree),
        Err(MoCardError::NotFoundOrNotPermitted { .. } | MoCardError::NoSuchNode { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let index = tree.index()?;
    let device_side = match mo::enclosing(index.mos.keys().map(String::as_str), path) {
        None => None,
        Some((root, rel)) => match tree.read_mo(root)? {
            None => None,
            Some(t) if rel.is_empty() => Some(t),
            Some(t) => t.subtree(&rel).ok(),
        },
    };
    Ok(match (&device_side, &card_side) {
        (None, None) => {
            return Err(ProvisioningError::NotInDevice(format!(
                "{path} (and the card has no record the caller may read that holds it)"
            )))
        }
        _ => compare(device_side, card_side),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(reason: SkipReason) -> String {
        let skipped = SkippedMo {
            uri: "./A/B".into(),
            reason,
        };
        serde_json::to_string(&skipped).unwrap_or_default()
    }

    #[test]
    fn skip_reasons_are_typed_and_read_as_before() {
        let cases = [
            (
                SkipReason::CardOverlap {
                    uri: "./A/B".into(),
                    relation: mo::Overlap::Inside,
                    owner: MoOwner::Device,
                    other: "./A".into(),
                },
                "./A/B lies inside the device's own MO ./A: one node would have two values",
            ),
            (
                SkipReason::CardOverlap {
                    uri: "./A".into(),
                    relation: mo::Overlap::Above,
                    owner: MoOwner::CardRecord,
                    other: "./A/B".into(),
                },
                "./A encloses the card's MO record ./A/B: one node would have two values",
            ),
            (
                SkipReason::BootstrapOverlap {
                    uri: "./A/B".into(),
                    owner: MoOwner::Bootstrap,
                    other: "./A".into(),
                },
                "./A/B overlaps another MO of the bootstrap ./A: one node would have two values",
            ),
            (
                SkipReason::BootstrapOverlap {
                    uri: "./A/B".into(),
                    owner: MoOwner::Device,
                    other: "./A".into(),
                },
                "./A/B overlaps the device's own MO ./A: one node would have two values",
            ),
            (
                SkipReason::FactoryOverlap {
                    uri: "./A/B".into(),
                    other: "./A".into(),
                },
                "the factory bootstrap's ./A/B overlaps the device's own MO ./A",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
            // The report's JSON carries the text, as a string.
            assert_eq!(
                json(reason),
                format!(r#"{{"uri":"./A/B","reason":{}}}"#, serde_json::json!(text))
            );
        }
        let Err(e) = MgmtTree::from_tnds("<MgmtTree") else {
            panic!("not TNDS");
        };
        let text = e.to_string();
        let reason = SkipReason::Content(Arc::new(e));
        assert!(matches!(&reason, SkipReason::Content(e) if e.to_string() == text));
        assert_eq!(reason.to_string(), text);
        assert_eq!(json(reason.clone()), json(reason));
    }

    #[test]
    fn a_policy_state_that_does_not_read_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join(crate::policy::device::POLICY_DIR)
            .join(crate::policy::device::RESOURCES_FILE);
        crate::policy::device::write_device_file(dir.path(), "resources.json", b"{").unwrap();
        let e = uicc::smartcard_bootstrap_allowed(dir.path()).unwrap_err();
        assert!(
            matches!(
                &e,
                ProvisioningError::Policy {
                    problem: PolicyStateProblem::NotResourceStates(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{}: not the resource states: EOF while parsing an object at line 1 column 1",
                path.display()
            )
        );
        // A folder where the file should be: it cannot be read.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = uicc::smartcard_bootstrap_allowed(dir.path()).unwrap_err();
        assert!(
            matches!(
                &e,
                ProvisioningError::Policy {
                    problem: PolicyStateProblem::Read(crate::policy::PolicyError::Io { .. }),
                    ..
                }
            ),
            "{e:?}"
        );
        let shown = path.display();
        assert_eq!(
            e.to_string(),
            format!("{shown}: reading {shown}: Is a directory (os error 21)")
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
