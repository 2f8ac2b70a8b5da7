//! Demo step: the smartcard bootstrap of a plain UICC applied to a device
//! tree, and forgotten when the card is swapped (docs/bootstrap.md §7).

use anyhow::{Context as _, Result};
use dmsc_host::device_tree::{DeviceTree, DirectoryTree, Origin};
use dmsc_host::provisioning::uicc::{CardKind, FactoryBootstrap, RefreshOptions, LWM2M_ROOT};
use dmsc_host::provisioning::{self, RefreshReport};
use dmsc_host::uicc::sim::VirtualCardTransport;
use dmsc_host::uicc::BootstrapFile;
use dmsc_host::Session;
use dmsc_sim_card::uicc::{SimUicc, UiccProfile};

use super::{Report, World};

/// The step's title.
pub const TITLE: &str = "Smartcard bootstrap: a plain UICC's OMA DM and LwM2M bootstrap \
                         applied to the device tree, forgotten when the card is swapped";

/// The OMA DM bootstrap message as `xml2wbxml` encodes it (test-vectors/syncml).
const DM_BOOTSTRAP: &[u8] = include_bytes!("../../../test-vectors/syncml/dm-bootstrap.wbxml");

/// The LwM2M bootstrap (the JSON form of docs/standard-cards.md).
const LWM2M: &str = r#"{"format": 1, "objects": [
  {"id": 0, "instances": [{"id": 0, "resources": [
    {"id": 0, "value": {"type": "string", "value": "coaps://bs.example.com:5684"}},
    {"id": 1, "value": {"type": "boolean", "value": true}},
    {"id": 2, "value": {"type": "integer", "value": 0}}]}]}]}"#;

/// The device's factory bootstrap: in force while no card provides anything.
const FACTORY: &str = "<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName>\
    <Path>.</Path><Node><NodeName>factory</NodeName><Node><NodeName>ServerID</NodeName>\
    <Value>factory.example.com</Value></Node></Node></Node></MgmtTree>";

fn uicc(iccid: &str, bootstrap: bool) -> Result<Session<VirtualCardTransport<SimUicc>>> {
    let lwm2m: BootstrapFile = serde_json::from_str(LWM2M)?;
    let profile = UiccProfile {
        iccid: hex::decode(iccid)?,
        lwm2m_bootstrap: if bootstrap {
            Some(lwm2m.encode_padded(256)?)
        } else {
            None
        },
        lwm2m_size: 256,
        dm_bootstrap: bootstrap.then(|| DM_BOOTSTRAP.to_vec()),
        lwm2m_oid_do: true,
        adm1: *b"88888888",
        t0: true,
    };
    Ok(Session::new(VirtualCardTransport::new(
        SimUicc::new(&profile),
        "simulated UICC",
    )))
}

fn changes(r: &RefreshReport) -> String {
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_string()
        } else {
            l.join(" ")
        }
    };
    format!(
        "added {}; updated {}; removed {}{}",
        list(&r.added),
        list(&r.updated),
        list(&r.removed),
        if r.factory {
            "; factory bootstrap in force"
        } else {
            ""
        }
    )
}

/// Runs the step.
pub fn step(r: &mut Report, _w: &mut World) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("dmsc-demo-uicc-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut tree = DirectoryTree::init(dir.path())?;
    let options = RefreshOptions {
        smartcard_bootstrap: true,
        factory: Some(FactoryBootstrap::parse(FACTORY.as_bytes())?),
        uicc_pin: None,
    };

    let mut card = uicc("98103254769810325476", true)?;
    r.note(
        "insert a plain UICC (PKCS#15: OMA DM bootstrap 2.23.43.7.1, LwM2M bootstrap 2.23.43.9.1)",
        "ICCID 89012345678901234567",
    );
    if let Some(rep) = r.expect_ok(
        "refresh: SELECT of the dmsc applet answers 6A82, the card is read as a UICC",
        provisioning::refresh_with(&mut card, &mut tree, &options),
        "done",
    ) {
        r.expect(
            "the card is recognised as a UICC by its ICCID",
            format!("{:?} {}", rep.kind, rep.card_id),
            rep.kind == CardKind::Uicc && rep.card_id == "89012345678901234567",
            "Uicc 89012345678901234567",
        );
        r.expect(
            "the DM account and the LwM2M bootstrap are applied",
            changes(&rep),
            rep.added == ["./DMAcc", LWM2M_ROOT] && !rep.factory,
            "added ./DMAcc ./LwM2M",
        );
        r.note(
            "origin recorded",
            format!(
                "ICCID and {}",
                rep.bootstrap_digest.as_deref().unwrap_or("-")
            ),
        );
    }
    let server = tree
        .read_mo(LWM2M_ROOT)?
        .and_then(|t| t.nodes.first()?.find("0/0/0")?.value.clone())
        .unwrap_or_default();
    r.expect(
        "the LwM2M client's configuration: ./LwM2M/0/0/0",
        &server,
        server == "coaps://bs.example.com:5684",
        "coaps://bs.example.com:5684",
    );
    let account = tree
        .read_mo("./DMAcc")?
        .and_then(|t| t.nodes.first()?.find("w7/ServerID")?.value.clone())
        .unwrap_or_default();
    r.expect(
        "the DM account from the SyncML DM message: ./DMAcc/w7/ServerID",
        &account,
        account == "dm.example.net",
        "dm.example.net",
    );
    if let Some(rep) = r.expect_ok(
        "refresh again with the same card",
        provisioning::refresh_with(&mut card, &mut tree, &options),
        "done",
    ) {
        r.expect(
            "same ICCID, same bootstrap digest",
            if rep.unchanged {
                "unchanged"
            } else {
                "changed"
            },
            rep.unchanged,
            "unchanged",
        );
    }

    let mut other = uicc("98103254769810325486", false)?;
    r.note(
        "swap in another UICC without bootstrap",
        "ICCID 89012345678901234568",
    );
    if let Some(rep) = r.expect_ok(
        "refresh with the new card",
        provisioning::refresh_with(&mut other, &mut tree, &options),
        "done",
    ) {
        r.expect(
            "what the first card provided goes; the factory bootstrap comes",
            changes(&rep),
            rep.removed == ["./DMAcc", LWM2M_ROOT] && rep.factory,
            "removed ./DMAcc ./LwM2M; factory bootstrap in force",
        );
    }
    let index = tree.index()?;
    let uicc_left = index
        .mos
        .values()
        .filter(|e| matches!(e.origin, Origin::Uicc { .. }))
        .count();
    r.expect(
        "MOs from a UICC left in the device tree",
        uicc_left,
        uicc_left == 0,
        0,
    );
    Ok(())
}
