//! End to end: the simulated UICC served through vpcd on the private pcscd of
//! `.ci/test`; the host reads its LwM2M bootstrap through PC/SC, and OpenSC's
//! `pkcs15-tool` (default card driver, enabled in a private `opensc.conf`)
//! lists and reads the same data objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;

use std::process::Command as Process;

use dmsc_host::uicc::{self, lwm2m::Value};
use dmsc_sim_card::uicc::{SimUicc, UiccProfile};
use e2e::*;

/// The bootstrap file of the modem vendor's unit test
/// (test-vectors/uicc/nrf-uicc-lwm2m-csim.json).
const VENDOR: &str = "00010036000000003108002EC80025636F61703A2F2F6C657368616E2E65636C697073\
                      6570726F6A656374732E696F3A35373833C10101C10203FFFF";

fn profile(t0: bool, oid_do: bool) -> UiccProfile {
    UiccProfile {
        iccid: hex::decode("98103254769810325476").unwrap(),
        lwm2m_bootstrap: Some(hex::decode(VENDOR).unwrap()),
        lwm2m_size: 300,
        dm_bootstrap: Some(hex::decode("03016A0001020304").unwrap()),
        lwm2m_oid_do: oid_do,
        adm1: *b"88888888",
        t0,
    }
}

#[test]
fn host_reads_the_bootstrap_through_pcscd() {
    let served = Served::start(6, Box::new(SimUicc::new(&profile(true, true))));
    let mut s = session(&served.reader);
    let f = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
    assert_eq!(
        f.entries()[0].1,
        Value::String("coap://leshan.eclipseprojects.io:5783".into())
    );
    let info = uicc::read_info(&mut s).unwrap();
    assert_eq!(info.data_objects.len(), 2);
    assert_eq!(info.data_objects[0].size, Some(300));
}

fn pkcs15_tool(conf: &std::path::Path, reader: &str, args: &[&str]) -> String {
    let out = Process::new("pkcs15-tool")
        .env("OPENSC_CONF", conf)
        .args(["--reader", reader])
        .args(args)
        .output()
        .expect("pkcs15-tool (Debian package opensc) is installed by .ci/install-deps");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pkcs15-tool {args:?}: {text}");
    text
}

#[test]
fn opensc_lists_and_reads_the_data_objects() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("opensc.conf");
    std::fs::write(
        &conf,
        "app default {\n  enable_default_driver = true;\n  card_drivers = default;\n}\n",
    )
    .unwrap();
    let served = Served::start(8, Box::new(SimUicc::new(&profile(false, false))));
    let list = pkcs15_tool(&conf, &served.reader, &["--list-data-objects"]);
    assert!(list.contains("LwM2M Bootstrap"), "{list}");
    assert!(list.contains("2.23.43.9.1"), "{list}");
    assert!(list.contains("2.23.43.7.1"), "{list}");
    let read = pkcs15_tool(
        &conf,
        &served.reader,
        &["--read-data-object", "2.23.43.9.1"],
    );
    let flat: String = read.split_whitespace().collect::<String>().to_uppercase();
    assert!(flat.contains(&VENDOR[..40]), "{read}");
}

#[test]
fn opensc_lists_pin_protected_data_objects_and_the_aodf_pin() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("opensc.conf");
    std::fs::write(
        &conf,
        "app default {\n  enable_default_driver = true;\n  card_drivers = default;\n}\n",
    )
    .unwrap();
    let pin1 = dmsc_sim_card::uicc::Pin1::from_digits(b"2468", true, true);
    let served = Served::start(
        9,
        Box::new(SimUicc::with_pin1(&profile(false, false), pin1)),
    );
    let list = pkcs15_tool(&conf, &served.reader, &["--list-data-objects"]);
    assert!(
        list.contains("2.23.43.9.1") && list.contains("2.23.43.7.1"),
        "{list}"
    );
    let pins = pkcs15_tool(&conf, &served.reader, &["--list-pins"]);
    assert!(pins.contains("PIN1"), "{pins}");
    // The host: no PIN, then the PIN, through PC/SC.
    let mut s = session(&served.reader);
    let e = uicc::read_lwm2m_bootstrap(&mut s).unwrap_err();
    assert!(matches!(e, uicc::UiccError::PinRequired { .. }), "{e:?}");
    let pin = uicc::Pin::new(b"2468").unwrap();
    let f = uicc::read_lwm2m_bootstrap_with_pin(&mut s, Some(&pin)).unwrap();
    assert_eq!(
        f.entries()[0].1,
        Value::String("coap://leshan.eclipseprojects.io:5783".into())
    );
}
