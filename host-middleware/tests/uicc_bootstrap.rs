//! The smartcard bootstrap applied to the device tree and the card-change
//! rules (docs/bootstrap.md §7), against the simulated UICC and the simulated
//! dmsc card in-process, in the same device tree.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::device_tree::{DeviceTree, DirectoryTree, Origin, TreeChange};
use dmsc_host::mo::{self, MgmtTree};
use dmsc_host::provisioning::uicc::{
    bootstrap_mos, lwm2m_tree, smartcard_bootstrap_allowed, CardKind, FactoryBootstrap,
    RefreshOptions, LWM2M_ROOT,
};
use dmsc_host::provisioning::{self, ProvisioningError};
use dmsc_host::transport::sim::SimTransport;
use dmsc_host::transport::TransportError;
use dmsc_host::uicc::sim::VirtualCardTransport;
use dmsc_host::uicc::BootstrapFile;
use dmsc_host::{open_secure_channel, Session, Transport};
use dmsc_sim_card::uicc::{SimUicc, UiccProfile};
use support::*;

const WBXML: &[u8] = include_bytes!("../../test-vectors/syncml/dm-bootstrap.wbxml");
const XML: &str = include_str!("../../test-vectors/syncml/dm-bootstrap.xml");
/// The modem vendor's LwM2M bootstrap file (docs/standard-cards.md, sources).
const VENDOR: &str = "00010036000000003108002EC80025636F61703A2F2F6C657368616E2E65636C697073\
                      6570726F6A656374732E696F3A35373833C10101C10203FFFF";
/// EF(ICCID) as stored (BCD, nibbles swapped) and as read.
const ICCID_RAW: &str = "98103254769810325476";
const ICCID: &str = "89012345678901234567";
const ICCID2_RAW: &str = "98103254769810325486";
const ICCID2: &str = "89012345678901234568";

const FACTORY: &str = "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName>\
    <Path>.</Path><Node><NodeName>factory</NodeName><Node><NodeName>ServerID</NodeName>\
    <Value>factory.example.net</Value></Node></Node></Node></MgmtTree>";

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn profile(iccid: &str, dm: Option<&[u8]>, lwm2m: Option<&str>) -> UiccProfile {
    UiccProfile {
        iccid: h(iccid),
        lwm2m_bootstrap: lwm2m.map(h),
        lwm2m_size: 512,
        dm_bootstrap: dm.map(<[u8]>::to_vec),
        lwm2m_oid_do: true,
        adm1: *b"88888888",
        t0: true,
    }
}

/// Every APDU and its status word, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Exchange>>>);

/// A command and the status word it got.
type Exchange = (Vec<u8>, u16);

impl Log {
    /// SELECT commands of the dmsc applet that were refused.
    fn applet_select_failures(&self) -> usize {
        let aid = dmsc_host::card_model::commands::AID;
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, sw)| {
                c.len() > 5
                    && c[1] == 0xA4
                    && c[4..].windows(aid.len()).any(|w| w == aid)
                    && *sw != 0x9000
            })
            .count()
    }
}

struct Logged<T> {
    inner: T,
    log: Log,
}

impl<T: Transport> Transport for Logged<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let r = self.inner.transmit(apdu)?;
        let sw = match r.len() {
            n if n >= 2 => u16::from_be_bytes([r[n - 2], r[n - 1]]),
            _ => 0,
        };
        self.log.0.lock().unwrap().push((apdu.to_vec(), sw));
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn reader_name(&self) -> &str {
        self.inner.reader_name()
    }
    fn supports_extended(&self) -> bool {
        self.inner.supports_extended()
    }
    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        // The body gets this transport, so that its APDUs are logged too.
        body(self);
        Ok(())
    }
}

fn uicc(p: &UiccProfile) -> (Session<Logged<VirtualCardTransport<SimUicc>>>, Log) {
    let log = Log::default();
    let t = Logged {
        inner: VirtualCardTransport::new(SimUicc::new(p), "simulated UICC"),
        log: log.clone(),
    };
    (Session::new(t), log)
}

fn dmsc_card_with(
    uri: &str,
) -> (
    Session<Logged<SimTransport<dmsc_sim_card::MemoryStore>>>,
    Log,
) {
    let log = Log::default();
    let t = Logged {
        inner: SimTransport::in_memory(card_params(false)).unwrap(),
        log: log.clone(),
    };
    let mut s = Session::new(t);
    open_secure_channel(&mut s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
    let xml = format!(
        "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>{}</NodeName><Path>.</Path>\
         <Node><NodeName>Port</NodeName><Value>995</Value></Node></Node></MgmtTree>",
        uri.trim_start_matches("./")
    );
    mo::put_mo(&mut s, &MgmtTree::from_tnds(&xml).unwrap(), None).unwrap();
    (s, log)
}

fn new_tree() -> (tempfile::TempDir, DirectoryTree) {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    // The device's own configuration, which no card rule may touch.
    tree.apply(&TreeChange {
        put: vec![("./Own".into(), own(), Origin::Device)],
        ..Default::default()
    })
    .unwrap();
    (dir, tree)
}

fn own() -> MgmtTree {
    MgmtTree::from_tnds(
        "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>Own</NodeName><Path>.</Path>\
         <Node><NodeName>Mode</NodeName><Value>a</Value></Node></Node></MgmtTree>",
    )
    .unwrap()
}

/// The MOs of the tree with their origins.
fn mos(tree: &DirectoryTree) -> Vec<(String, Origin)> {
    tree.index()
        .unwrap()
        .mos
        .into_iter()
        .map(|(u, e)| (u, e.origin))
        .collect()
}

fn uris(tree: &DirectoryTree) -> Vec<String> {
    mos(tree).into_iter().map(|(u, _)| u).collect()
}

#[test]
fn insertion_applies_the_dm_and_lwm2m_bootstrap_with_their_origin() {
    let (_d, mut tree) = new_tree();
    let (mut card, log) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(VENDOR)));
    let r = provisioning::refresh(&mut card, &mut tree).unwrap();
    assert_eq!(r.kind, CardKind::Uicc);
    assert_eq!(r.card_id, ICCID);
    assert_eq!(r.added, vec!["./DMAcc", LWM2M_ROOT]);
    assert_eq!(r.bootstrap, vec!["dm", "lwm2m"]);
    assert_eq!(
        log.applet_select_failures(),
        1,
        "one SELECT failure at most"
    );
    let digest = r.bootstrap_digest.clone().unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let origin = Origin::Uicc {
        iccid: ICCID.into(),
        digest,
    };
    assert_eq!(
        mos(&tree),
        vec![
            ("./DMAcc".into(), origin.clone()),
            ("./LwM2M".into(), origin),
            ("./Own".into(), Origin::Device),
        ]
    );
    // The DM bootstrap through the HTTP bootstrap's SyncML path: the same
    // tree as the XML message gives.
    let from_xml = bootstrap_mos(XML.as_bytes()).unwrap();
    assert_eq!(
        tree.read_mo("./DMAcc").unwrap().as_ref(),
        Some(&from_xml[0].1)
    );
    let dmacc = tree.read_mo("./DMAcc").unwrap().unwrap();
    assert_eq!(
        dmacc.nodes[0].find("w7/ServerID").unwrap().value.as_deref(),
        Some("dm.example.net")
    );
    // The LwM2M bootstrap in its device-tree form.
    let lw = tree.read_mo(LWM2M_ROOT).unwrap().unwrap();
    let node = lw.nodes[0].find("0/0/0").unwrap();
    assert_eq!(
        node.value.as_deref(),
        Some("coap://leshan.eclipseprojects.io:5783")
    );
    assert_eq!(
        lw.nodes[0].find("0/0/1").unwrap().value.as_deref(),
        Some("true")
    );
    assert_eq!(
        lw.nodes[0].find("0/0/2").unwrap().value.as_deref(),
        Some("3")
    );
    assert_eq!(lw, lwm2m_tree(&BootstrapFile::decode(&h(VENDOR)).unwrap()));
    // The same card again: unchanged, nothing written.
    let before = tree.index().unwrap();
    let again = provisioning::refresh(&mut card, &mut tree).unwrap();
    assert!(again.unchanged, "{again:?}");
    assert_eq!(tree.index().unwrap(), before);
}

#[test]
fn removal_removes_exactly_what_the_card_provided() {
    let (_d, mut tree) = new_tree();
    let (mut a, _) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(VENDOR)));
    provisioning::refresh(&mut a, &mut tree).unwrap();
    // Another card's ID removes nothing.
    assert!(provisioning::forget_card(&mut tree, Some(ICCID2))
        .unwrap()
        .is_empty());
    let gone = provisioning::forget_card(&mut tree, Some(ICCID)).unwrap();
    assert_eq!(gone, vec!["./DMAcc", "./LwM2M"]);
    assert_eq!(mos(&tree), vec![("./Own".into(), Origin::Device)]);
    assert_eq!(tree.read_mo("./Own").unwrap(), Some(own()));
}

#[test]
fn a_changed_card_replaces_what_the_earlier_one_provided() {
    let (_d, mut tree) = new_tree();
    let (mut a, _) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(VENDOR)));
    let first = provisioning::refresh(&mut a, &mut tree).unwrap();
    // The same card with another LwM2M bootstrap (one byte of the URI).
    let changed = VENDOR.replace("6C657368616E", "6C657368616F");
    let (mut a2, _) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(&changed)));
    let r = provisioning::refresh(&mut a2, &mut tree).unwrap();
    assert!(!r.unchanged);
    assert_ne!(r.bootstrap_digest, first.bootstrap_digest);
    assert_eq!(r.updated, vec![LWM2M_ROOT], "{r:?}");
    let lw = tree.read_mo(LWM2M_ROOT).unwrap().unwrap();
    assert_eq!(
        lw.nodes[0].find("0/0/0").unwrap().value.as_deref(),
        Some("coap://leshao.eclipseprojects.io:5783")
    );
    // Another card with only a LwM2M bootstrap: the DM account whose card
    // is gone is removed.
    let (mut b, _) = uicc(&profile(ICCID2_RAW, None, Some(VENDOR)));
    let r = provisioning::refresh(&mut b, &mut tree).unwrap();
    assert_eq!(r.card_id, ICCID2);
    assert_eq!(r.removed, vec!["./DMAcc"]);
    assert_eq!(r.updated, vec![LWM2M_ROOT]);
    let digest = r.bootstrap_digest.unwrap();
    assert_eq!(
        mos(&tree),
        vec![
            (
                "./LwM2M".into(),
                Origin::Uicc {
                    iccid: ICCID2.into(),
                    digest
                }
            ),
            ("./Own".into(), Origin::Device),
        ]
    );
}

#[test]
fn a_card_without_bootstrap_falls_back_to_the_factory_bootstrap() {
    let (_d, mut tree) = new_tree();
    let factory = FactoryBootstrap::parse(FACTORY.as_bytes()).unwrap();
    let options = RefreshOptions {
        smartcard_bootstrap: true,
        factory: Some(factory.clone()),
        uicc_pin: None,
    };
    let forigin = Origin::Factory {
        digest: factory.digest.clone(),
    };
    let (mut bare, _) = uicc(&profile(ICCID2_RAW, None, None));
    let r = provisioning::refresh_with(&mut bare, &mut tree, &options).unwrap();
    assert!(r.factory && r.bootstrap.is_empty(), "{r:?}");
    assert_eq!(r.added, vec!["./DMAcc"]);
    assert_eq!(
        mos(&tree),
        vec![
            ("./DMAcc".into(), forigin.clone()),
            ("./Own".into(), Origin::Device)
        ]
    );
    // A card with a bootstrap: tried first, the factory MOs go.
    let (mut a, _) = uicc(&profile(ICCID_RAW, Some(WBXML), None));
    let r = provisioning::refresh_with(&mut a, &mut tree, &options).unwrap();
    assert!(!r.factory, "{r:?}");
    let dmacc = tree.read_mo("./DMAcc").unwrap().unwrap();
    assert!(dmacc.nodes[0].find("w7").is_some() && dmacc.nodes[0].find("factory").is_none());
    assert!(matches!(&mos(&tree)[0].1, Origin::Uicc { iccid, .. } if iccid == ICCID));
    // The card removed: the factory bootstrap comes back.
    let (removed, added) =
        provisioning::forget_card_with(&mut tree, Some(ICCID), options.factory.as_ref()).unwrap();
    assert_eq!(
        (removed, added),
        (vec!["./DMAcc".to_string()], vec!["./DMAcc".to_string()])
    );
    assert_eq!(
        mos(&tree),
        vec![
            ("./DMAcc".into(), forigin),
            ("./Own".into(), Origin::Device)
        ]
    );
}

#[test]
fn the_device_policy_can_disable_the_smartcard_bootstrap() {
    let (dir, mut tree) = new_tree();
    assert!(
        smartcard_bootstrap_allowed(dir.path()).unwrap(),
        "no policy state"
    );
    let (mut a, _) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(VENDOR)));
    provisioning::refresh(&mut a, &mut tree).unwrap();
    // What `dmsc policy enforce` writes for a policy that declares and
    // disables the resource.
    dmsc_host::policy::device::write_device_file(
        dir.path(),
        "resources.json",
        br#"{"schema_version": 1, "policy": "sha256:00", "at": "2026-11-23T08:00:00Z",
             "resources": {"camera": "enabled", "smartcard-bootstrap": "disabled"}}"#,
    )
    .unwrap();
    assert!(!smartcard_bootstrap_allowed(dir.path()).unwrap());
    let options = RefreshOptions {
        smartcard_bootstrap: smartcard_bootstrap_allowed(dir.path()).unwrap(),
        factory: Some(FactoryBootstrap::parse(FACTORY.as_bytes()).unwrap()),
        uicc_pin: None,
    };
    let (mut a, log) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(VENDOR)));
    let r = provisioning::refresh_with(&mut a, &mut tree, &options).unwrap();
    assert!(r.smartcard_bootstrap_disabled && r.factory, "{r:?}");
    assert_eq!(r.bootstrap_digest, None);
    // The card's bootstrap is not even read: no PKCS#15 SELECT.
    let pkcs15 = dmsc_host::uicc::PKCS15_AID;
    assert!(!log
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(c, _)| c.windows(pkcs15.len()).any(|w| w == pkcs15)));
    let dmacc = tree.read_mo("./DMAcc").unwrap().unwrap();
    assert!(dmacc.nodes[0].find("factory").is_some());
    assert!(tree.read_mo(LWM2M_ROOT).unwrap().is_none());
    // Enabled again: the card's bootstrap is applied.
    dmsc_host::policy::device::write_device_file(
        dir.path(),
        "resources.json",
        br#"{"schema_version": 1, "policy": "sha256:00", "at": "2026-11-23T08:00:00Z",
             "resources": {"smartcard-bootstrap": "enabled"}}"#,
    )
    .unwrap();
    assert!(smartcard_bootstrap_allowed(dir.path()).unwrap());
    // A policy state that is not one is an error naming the file.
    dmsc_host::policy::device::write_device_file(dir.path(), "resources.json", b"{").unwrap();
    let e = smartcard_bootstrap_allowed(dir.path()).unwrap_err();
    assert!(e.to_string().contains("resources.json"), "{e}");
}

#[test]
fn a_dmsc_card_and_a_uicc_in_the_same_reader_in_turn() {
    let (_d, mut tree) = new_tree();
    let factory = FactoryBootstrap::parse(FACTORY.as_bytes()).unwrap();
    let options = RefreshOptions {
        smartcard_bootstrap: true,
        factory: Some(factory),
        uicc_pin: None,
    };
    // A dmsc card without MOs: nothing from a card, the factory bootstrap.
    let mut blank = Session::new(SimTransport::in_memory(card_params(false)).unwrap());
    let r = provisioning::refresh_with(&mut blank, &mut tree, &options).unwrap();
    assert_eq!((r.kind, r.factory), (CardKind::Dmsc, true), "{r:?}");
    assert_eq!(r.added, vec!["./DMAcc"]);
    // A dmsc card with an MO: the factory MO goes.
    let (mut card, log) = dmsc_card_with("./Vendor");
    let r = provisioning::refresh_with(&mut card, &mut tree, &options).unwrap();
    assert_eq!(r.kind, CardKind::Dmsc);
    assert_eq!(log.applet_select_failures(), 0);
    assert_eq!(r.removed, vec!["./DMAcc"], "{r:?}");
    assert!(!r.factory);
    let card_id = r.card_id.clone();
    assert_eq!(uris(&tree), vec!["./Own", "./Vendor"]);
    // The UICC replaces the dmsc card: the card's MO goes, the bootstrap comes.
    let (mut u, ulog) = uicc(&profile(ICCID_RAW, Some(WBXML), Some(VENDOR)));
    let r = provisioning::refresh_with(&mut u, &mut tree, &options).unwrap();
    assert_eq!(r.kind, CardKind::Uicc);
    assert_eq!(ulog.applet_select_failures(), 1);
    assert_eq!(r.removed, vec!["./Vendor"]);
    assert_eq!(uris(&tree), vec!["./DMAcc", "./LwM2M", "./Own"]);
    // And the dmsc card again: the UICC's bootstrap goes.
    let (mut card, _) = dmsc_card_with("./Vendor");
    let r = provisioning::refresh_with(&mut card, &mut tree, &options).unwrap();
    assert_eq!(r.kind, CardKind::Dmsc);
    assert_eq!(r.card_id.len(), card_id.len());
    assert_eq!(r.removed, vec!["./DMAcc", "./LwM2M"]);
    assert_eq!(uris(&tree), vec!["./Own", "./Vendor"]);
}

#[test]
fn a_malformed_bootstrap_is_refused_and_nothing_applied() {
    let (_d, mut tree) = new_tree();
    let (mut a, _) = uicc(&profile(ICCID_RAW, Some(WBXML), None));
    provisioning::refresh(&mut a, &mut tree).unwrap();
    let before = tree.index().unwrap();
    let mut bad = WBXML.to_vec();
    bad.truncate(bad.len() / 2);
    let (mut b, _) = uicc(&profile(ICCID2_RAW, Some(&bad), Some(VENDOR)));
    let e = provisioning::refresh(&mut b, &mut tree).unwrap_err();
    assert!(matches!(e, ProvisioningError::Bootstrap { .. }), "{e:?}");
    assert!(e.to_string().contains("OMA DM bootstrap"), "{e}");
    assert_eq!(tree.index().unwrap(), before);
}
