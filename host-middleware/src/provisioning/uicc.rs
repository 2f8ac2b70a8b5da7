//! The smartcard bootstrap of a plain UICC applied to the device tree
//! (docs/standard-cards.md, "Applying the bootstrap"; docs/bootstrap.md §7).
//!
//! - the OMA DM bootstrap (OID 2.23.43.7.1, a WBXML OMA DM message) goes
//!   through the same SyncML path as the HTTP bootstrap
//!   ([`crate::bootstrap::decode_content`]): its `Add`/`Replace` items become
//!   MOs;
//! - the LwM2M bootstrap (OID 2.23.43.9.1) becomes the MO `./LwM2M` in the
//!   device-tree form of [`lwm2m_tree`];
//! - every MO is recorded with [`Origin::Uicc`]: the card's ICCID and a
//!   digest of the bootstrap data, so that it goes when the card goes or its
//!   bootstrap changes;
//! - the factory bootstrap ([`FactoryBootstrap`]) is in force only while no
//!   card provides anything; a device policy can disable the smartcard
//!   bootstrap ([`smartcard_bootstrap_allowed`]).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bootstrap::{self, BootstrapError, MediaType};
use crate::device_tree::{CardMark, DeviceTree, LastCard, Origin, TreeChange, TreeIndex};
use crate::mo::{self, MgmtTree, Node, RtProperties};
use crate::session::CardCommands;
use crate::uicc::lwm2m::Value;
use crate::uicc::{self, BootstrapFile, Target, Uicc, UiccError};

use super::{MoOwner, PolicyStateProblem, ProvisioningError, RefreshReport, SkipReason, SkippedMo};

/// The root URI of the LwM2M bootstrap in the device tree.
pub const LWM2M_ROOT: &str = "./LwM2M";

/// The policy resource that switches the smartcard bootstrap off
/// (`declare = ["smartcard-bootstrap"]`, docs/policy.md).
pub const SMARTCARD_BOOTSTRAP_RESOURCE: &str = "smartcard-bootstrap";

/// EF(ICCID) under the MF (ETSI TS 102 221 §13.2).
pub const FID_ICCID: u16 = 0x2FE2;

/// What kind of card a refresh found in the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardKind {
    /// The dmsc applet answered its SELECT.
    Dmsc,
    /// The dmsc applet is not there (`6A82`): a plain UICC.
    Uicc,
}

/// The factory bootstrap: a TNDS document or an OMA DM bootstrap message
/// (XML or WBXML), applied when no card provides anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryBootstrap {
    /// `sha256:` digest of the file.
    pub digest: String,
    /// Its MOs by root URI.
    pub mos: Vec<(String, MgmtTree)>,
}

impl FactoryBootstrap {
    /// Decodes a factory bootstrap file (WBXML unless it starts with `<`,
    /// after white space).
    pub fn parse(bytes: &[u8]) -> Result<FactoryBootstrap, BootstrapError> {
        Ok(FactoryBootstrap {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            mos: bootstrap_mos(bytes)?,
        })
    }
}

/// Options of a refresh.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Whether a UICC's smartcard bootstrap is applied (a device policy may
    /// switch it off: [`smartcard_bootstrap_allowed`]).
    pub smartcard_bootstrap: bool,
    /// The factory bootstrap, applied when no card provides anything.
    pub factory: Option<FactoryBootstrap>,
    /// The user PIN for a UICC whose bootstrap data objects are PIN-protected
    /// (verified once per object read; a wrong PIN is an error, not retried).
    pub uicc_pin: Option<uicc::Pin>,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            smartcard_bootstrap: true,
            factory: None,
            uicc_pin: None,
        }
    }
}

impl RefreshOptions {
    /// The options of a device: the smartcard bootstrap unless its policy
    /// state disables it ([`smartcard_bootstrap_allowed`]), and the factory
    /// bootstrap read from `factory` (a file), if given.
    pub fn for_device(
        device_dir: &Path,
        factory: Option<&Path>,
    ) -> Result<RefreshOptions, ProvisioningError> {
        let factory = match factory {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| ProvisioningError::Factory {
                    path: path.display().to_string(),
                    source,
                })?;
                Some(FactoryBootstrap::parse(&bytes).map_err(|source| {
                    ProvisioningError::Bootstrap {
                        what: "the factory bootstrap",
                        source,
                    }
                })?)
            }
        };
        Ok(RefreshOptions {
            smartcard_bootstrap: smartcard_bootstrap_allowed(device_dir)?,
            factory,
            uicc_pin: None,
        })
    }
}

/// Whether the device's policy state allows the smartcard bootstrap: `false`
/// when `DIR/policy/resources.json` (written by `dmsc policy enforce`) has
/// the resource `smartcard-bootstrap` disabled; `true` when it is enabled,
/// not managed, or there is no policy state.
pub fn smartcard_bootstrap_allowed(device_dir: &Path) -> Result<bool, ProvisioningError> {
    use crate::policy::device::{read_device_file, ResourceStates, POLICY_DIR, RESOURCES_FILE};
    let path = device_dir.join(POLICY_DIR).join(RESOURCES_FILE);
    let bad = |problem: PolicyStateProblem| ProvisioningError::Policy {
        path: path.display().to_string(),
        problem,
    };
    let bytes = match read_device_file(device_dir, RESOURCES_FILE) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(true),
        Err(e) => return Err(bad(PolicyStateProblem::Read(e))),
    };
    let states: ResourceStates = serde_json::from_slice(&bytes)
        .map_err(|e| bad(PolicyStateProblem::NotResourceStates(e)))?;
    Ok(states.resources.get(SMARTCARD_BOOTSTRAP_RESOURCE) != Some(&crate::policy::State::Disabled))
}

/// The MOs of a bootstrap message or TNDS document (WBXML unless it starts
/// with `<`), through the HTTP bootstrap's path.
pub fn bootstrap_mos(bytes: &[u8]) -> Result<Vec<(String, MgmtTree)>, BootstrapError> {
    let media = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => MediaType::Xml,
        _ => MediaType::Wbxml,
    };
    let content = bootstrap::decode_content(media, bytes)?;
    let tree = MgmtTree::from_tnds(&content.xml)
        .map_err(|e| BootstrapError::BadContent(bootstrap::ContentError::Tnds(e)))?;
    Ok(tree.split())
}

/// The ICCID of the UICC (EF(ICCID), `2FE2` under the MF, on the basic
/// channel): BCD with the nibbles of each byte swapped, `F` padding removed.
pub fn read_iccid<C: CardCommands + ?Sized>(card: &mut C) -> Result<String, ProvisioningError> {
    let mut u = Uicc::new(card);
    u.select(&Target::PathFromMf(&FID_ICCID.to_be_bytes()))?;
    let raw = u.read_binary(0, 10)?;
    if raw.is_empty() {
        return Err(ProvisioningError::NoIccid);
    }
    let mut out = String::new();
    for b in raw {
        for nibble in [b & 0x0F, b >> 4] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('F'));
        }
    }
    Ok(out.to_ascii_uppercase().trim_end_matches('F').to_string())
}

/// The smartcard bootstrap data a UICC carries.
#[derive(Debug, Clone)]
pub struct UiccBootstrap {
    /// The ICCID.
    pub iccid: String,
    /// The raw OMA DM bootstrap, if the card has one.
    pub dm: Option<Vec<u8>>,
    /// The raw LwM2M bootstrap file, if the card has one.
    pub lwm2m: Option<Vec<u8>>,
}

impl UiccBootstrap {
    /// `sha256:` digest of the bootstrap data (each part tagged and
    /// length-prefixed, so that moving bytes between parts changes it).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (tag, part) in [(&b"dm"[..], &self.dm), (&b"lwm2m"[..], &self.lwm2m)] {
            h.update(tag);
            match part {
                None => h.update([0]),
                Some(p) => {
                    h.update([1]);
                    h.update((p.len() as u64).to_be_bytes());
                    h.update(p);
                }
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Which bootstrap data the card has: `dm`, `lwm2m`.
    pub fn kinds(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dm.is_some() {
            out.push("dm".to_string());
        }
        if self.lwm2m.is_some() {
            out.push("lwm2m".to_string());
        }
        out
    }

    /// The MOs the bootstrap gives: the DM bootstrap's items, then
    /// `./LwM2M`. Malformed data is an error (nothing is applied).
    pub fn mos(&self) -> Result<Vec<(String, MgmtTree)>, ProvisioningError> {
        let mut out = Vec::new();
        if let Some(dm) = &self.dm {
            out.extend(
                bootstrap_mos(dm).map_err(|source| ProvisioningError::Bootstrap {
                    what: "the UICC's OMA DM bootstrap (OID 2.23.43.7.1)",
                    source,
                })?,
            );
        }
        if let Some(raw) = &self.lwm2m {
            let file = BootstrapFile::decode(raw).map_err(|e| ProvisioningError::Uicc(e.into()))?;
            out.push((LWM2M_ROOT.to_string(), lwm2m_tree(&file)));
        }
        Ok(out)
    }
}

/// Reads the ICCID and both bootstrap data objects. A card without the
/// PKCS#15 application or without one of the objects gives `None` for it.
pub fn read_uicc_bootstrap<C: CardCommands + ?Sized>(
    card: &mut C,
) -> Result<UiccBootstrap, ProvisioningError> {
    read_uicc_bootstrap_with_pin(card, None)
}

/// [`read_uicc_bootstrap`] with the user PIN for PIN-protected data objects.
pub fn read_uicc_bootstrap_with_pin<C: CardCommands + ?Sized>(
    card: &mut C,
    pin: Option<&uicc::Pin>,
) -> Result<UiccBootstrap, ProvisioningError> {
    let iccid = read_iccid(card)?;
    let absent = |r: Result<Vec<u8>, UiccError>| match r {
        Ok(v) => Ok(Some(v)),
        Err(UiccError::NoPkcs15Application { .. } | UiccError::NoDataObject { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    let dm = absent(uicc::read_dm_bootstrap_raw_with_pin(card, pin))?;
    let lwm2m = absent(uicc::read_lwm2m_bootstrap_raw_with_pin(card, pin))?;
    Ok(UiccBootstrap { iccid, dm, lwm2m })
}

fn leaf(name: String, value: &Value) -> Node {
    let (format, text) = match value {
        Value::String(s) => ("chr", s.clone()),
        Value::Integer(v) | Value::Time(v) => ("int", v.to_string()),
        Value::UnsignedInteger(v) => ("int", v.to_string()),
        Value::Float(v) => ("float", v.to_string()),
        Value::Boolean(v) => ("bool", v.to_string()),
        Value::Objlnk { object, instance } => ("chr", format!("{object}:{instance}")),
        Value::Opaque(h) => ("bin", h.to_ascii_uppercase()),
    };
    Node {
        name,
        path: None,
        properties: Some(RtProperties {
            format: Some(format.to_string()),
            ..RtProperties::default()
        }),
        value: Some(text),
        children: Vec::new(),
    }
}

/// The device-tree form of a LwM2M bootstrap (docs/standard-cards.md): the MO
/// `./LwM2M` with one node per object, instance and resource
/// (`./LwM2M/0/0/0`), and per resource instance of a multiple resource
/// (`./LwM2M/0/0/8/1`). Leaves carry the value with its Format: `chr`
/// (string; object link as `object:instance`), `int` (integer, unsigned,
/// time), `float`, `bool` (`true`/`false`), `bin` (opaque, hex as in the
/// JSON form).
pub fn lwm2m_tree(file: &BootstrapFile) -> MgmtTree {
    let mut root = Node::named("LwM2M");
    root.path = Some(".".into());
    for o in &file.objects {
        let mut on = Node::named(&o.id.to_string());
        for i in &o.instances {
            let mut inode = Node::named(&i.id.to_string());
            for r in &i.resources {
                let name = r.id.to_string();
                match (&r.value, &r.instances) {
                    (Some(v), _) => inode.children.push(leaf(name, v)),
                    (None, Some(list)) => {
                        let mut rn = Node::named(&name);
                        rn.children = list
                            .iter()
                            .map(|ri| leaf(ri.id.to_string(), &ri.value))
                            .collect();
                        inode.children.push(rn);
                    }
                    (None, None) => inode.children.push(Node::named(&name)),
                }
            }
            on.children.push(inode);
        }
        root.children.push(on);
    }
    MgmtTree::single(root)
}

/// URIs of MOs that will hold content from a card after `change`.
fn card_content_after(index: &TreeIndex, change: &TreeChange) -> bool {
    change.put.iter().any(|(_, _, o)| o.card_id().is_some())
        || index.mos.iter().any(|(u, e)| {
            e.origin.card_id().is_some()
                && !change.remove.contains(u)
                && !change.put.iter().any(|(p, _, _)| p == u)
        })
}

/// Completes `change` with the factory bootstrap rule: when a card provides
/// something after the change, the factory MOs go; otherwise the factory
/// bootstrap (if given) is put in force. Returns whether factory MOs are in
/// force after the change.
pub(crate) fn settle_factory<T: DeviceTree + ?Sized>(
    tree: &T,
    index: &TreeIndex,
    factory: Option<&FactoryBootstrap>,
    change: &mut TreeChange,
    report: &mut RefreshReport,
) -> Result<bool, ProvisioningError> {
    let in_force: Vec<&String> = index
        .mos
        .iter()
        .filter(|(_, e)| matches!(e.origin, Origin::Factory { .. }))
        .map(|(u, _)| u)
        .collect();
    let putting = |change: &TreeChange, u: &str| change.put.iter().any(|(p, _, _)| p == u);
    if card_content_after(index, change) {
        for u in in_force {
            if !putting(change, u) && !change.remove.contains(u) {
                change.remove.push(u.clone());
                report.removed.push(u.clone());
            }
        }
        return Ok(false);
    }
    let Some(f) = factory else {
        return Ok(!in_force.is_empty());
    };
    let origin = Origin::Factory {
        digest: f.digest.clone(),
    };
    let own: Vec<&String> = index
        .mos
        .iter()
        .filter(|(_, e)| e.origin == Origin::Device)
        .map(|(u, _)| u)
        .collect();
    let mut kept = BTreeSet::new();
    for (uri, t) in &f.mos {
        if let Some((other, _)) = mo::find_overlap(own.iter().map(|s| s.as_str()), uri) {
            report.skipped.push(SkippedMo {
                uri: uri.clone(),
                reason: SkipReason::FactoryOverlap {
                    uri: uri.clone(),
                    other: other.to_string(),
                },
            });
            continue;
        }
        kept.insert(uri.clone());
        if let Some(at) = change.remove.iter().position(|u| u == uri) {
            // What a card provided here goes (reported removed) and the
            // factory MO takes its place.
            change.remove.remove(at);
            report.added.push(uri.clone());
            change.put.push((uri.clone(), t.clone(), origin.clone()));
            continue;
        }
        match index.mos.get(uri) {
            Some(e) if e.origin == origin && tree.read_mo(uri)?.as_ref() == Some(t) => {}
            Some(_) => {
                report.updated.push(uri.clone());
                change.put.push((uri.clone(), t.clone(), origin.clone()));
            }
            None => {
                report.added.push(uri.clone());
                change.put.push((uri.clone(), t.clone(), origin.clone()));
            }
        }
    }
    for u in in_force {
        if !kept.contains(u) && !change.remove.contains(u) {
            change.remove.push(u.clone());
            report.removed.push(u.clone());
        }
    }
    Ok(!kept.is_empty())
}

/// Refreshes the device tree from a plain UICC (the reader's card did not
/// have the dmsc applet): reads the ICCID and (unless `options` disable it)
/// the smartcard bootstrap, and changes the device tree in one atomic step:
/// the bootstrap's MOs are put with [`Origin::Uicc`], MOs any other card (or
/// an earlier content of this one) provided are removed, and the factory
/// rule is applied. A card whose ICCID and bootstrap digest are those in
/// force changes nothing (`unchanged`). Malformed bootstrap data is refused
/// whole: nothing is applied.
pub fn refresh_uicc<C: CardCommands + ?Sized, T: DeviceTree + ?Sized>(
    card: &mut C,
    tree: &mut T,
    options: &RefreshOptions,
) -> Result<RefreshReport, ProvisioningError> {
    let data = if options.smartcard_bootstrap {
        read_uicc_bootstrap_with_pin(card, options.uicc_pin.as_ref())?
    } else {
        UiccBootstrap {
            iccid: read_iccid(card)?,
            dm: None,
            lwm2m: None,
        }
    };
    let mos = data.mos()?;
    let digest = data.digest();
    let index = tree.index()?;
    let mut report = RefreshReport::new(data.iccid.clone(), 0, CardKind::Uicc);
    report.bootstrap = data.kinds();
    report.smartcard_bootstrap_disabled = !options.smartcard_bootstrap;
    if options.smartcard_bootstrap {
        report.bootstrap_digest = Some(digest.clone());
    }
    let origin = Origin::Uicc {
        iccid: data.iccid.clone(),
        digest,
    };
    // One record per node: the device's own MOs first, then the bootstrap's
    // from the outermost.
    let mut taken: Vec<String> = index
        .mos
        .iter()
        .filter(|(_, e)| e.origin == Origin::Device)
        .map(|(u, _)| u.clone())
        .collect();
    let own = taken.len();
    let mut mos = mos;
    mos.sort_by_key(|(u, _)| (u.matches('/').count(), u.clone()));
    let mut change = TreeChange {
        last_card: LastCard::Set(CardMark {
            card_id: data.iccid.clone(),
            generation: 0,
        }),
        ..TreeChange::default()
    };
    for (uri, t) in mos {
        if let Some((other, _)) = mo::find_overlap(taken.iter().map(String::as_str), &uri) {
            let owner = if taken.iter().position(|x| x == other) < Some(own) {
                MoOwner::Device
            } else {
                MoOwner::Bootstrap
            };
            report.skipped.push(SkippedMo {
                reason: SkipReason::BootstrapOverlap {
                    uri: uri.clone(),
                    owner,
                    other: other.to_string(),
                },
                uri,
            });
            continue;
        }
        taken.push(uri.clone());
        match index.mos.get(&uri) {
            None => report.added.push(uri.clone()),
            // Same card, same content: not reported (the origin's digest
            // still moves with the rest of the bootstrap).
            Some(e)
                if matches!(&e.origin, Origin::Uicc { iccid, .. } if *iccid == data.iccid)
                    && tree.read_mo(&uri)?.as_ref() == Some(&t) => {}
            Some(_) => report.updated.push(uri.clone()),
        }
        change.put.push((uri, t, origin.clone()));
    }
    for (uri, e) in &index.mos {
        if e.origin.card_id().is_some() && !change.put.iter().any(|(p, _, _)| p == uri) {
            report.removed.push(uri.clone());
            change.remove.push(uri.clone());
        }
    }
    report.factory = settle_factory(
        &*tree,
        &index,
        options.factory.as_ref(),
        &mut change,
        &mut report,
    )?;
    // Unchanged: the same card with the same bootstrap in force.
    let same_mark = index.last_card.as_ref().map(|m| m.card_id.as_str()) == Some(&data.iccid);
    let nothing = report.added.is_empty()
        && report.updated.is_empty()
        && report.removed.is_empty()
        && change.remove.is_empty()
        && change
            .put
            .iter()
            .all(|(u, _, o)| index.mos.get(u).map(|e| &e.origin) == Some(o));
    if same_mark && nothing {
        report.unchanged = true;
        return Ok(report);
    }
    tree.apply(&change)?;
    Ok(report)
}
