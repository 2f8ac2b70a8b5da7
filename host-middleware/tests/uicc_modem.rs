//! The modem transport (`AT+CSIM` over a serial device) against the modem
//! emulator (`dmsc_sim_card::modem`) on a pseudo-terminal, with the simulated
//! UICC behind it: URCs between lines, an echo, `+CME ERROR`, and a modem that
//! stops answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmsc_host::transport::modem::{ModemError, ModemTransport};
use dmsc_host::uicc::{self, lwm2m::Value, UiccError};
use dmsc_host::{HostError, Session, TransportError};
use dmsc_sim_card::modem::{Faults, ModemEmulator};
use dmsc_sim_card::uicc::{SimUicc, UiccProfile};

const VENDOR: &str = "00010036000000003108002EC80025636F61703A2F2F6C657368616E2E65636C697073\
                      6570726F6A656374732E696F3A35373833C10101C10203FFFF";

/// How the simulated modem misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    None,
    /// `+CME ERROR: 10` from the `n`-th AT+CSIM on.
    CmeAfter(usize),
    /// Silence from the `n`-th AT+CSIM on.
    SilentAfter(usize),
}

/// Starts a modem emulator on a new pty; returns the slave's path.
fn modem(fault: Fault) -> PathBuf {
    modem_counting(fault).0
}

/// The same, with the counter of AT+CCHO / AT+CGLA / AT+CCHC commands.
fn modem_counting(fault: Fault) -> (PathBuf, Arc<AtomicUsize>) {
    let card = SimUicc::new(&UiccProfile {
        iccid: hex::decode("98103254769810325476").unwrap(),
        lwm2m_bootstrap: Some(hex::decode(VENDOR).unwrap()),
        lwm2m_size: 300,
        dm_bootstrap: None,
        lwm2m_oid_do: true,
        adm1: *b"88888888",
        t0: true,
    });
    // URCs between the answers, now and then.
    let mut faults = Faults {
        urc_every: Some(2),
        ..Faults::default()
    };
    match fault {
        Fault::None => {}
        Fault::CmeAfter(k) => faults.cme_error_after = Some((k, 10)),
        Fault::SilentAfter(k) => faults.silent_after = Some(k),
    }
    let emulator = ModemEmulator::new(card, faults).unwrap();
    let path = emulator.path().to_path_buf();
    let logical = emulator.logical_commands();
    emulator.spawn();
    (path, logical)
}

#[test]
fn reads_the_bootstrap_through_at_csim_with_urcs_and_t0_answers() {
    let path = modem(Fault::None);
    let t = ModemTransport::open(&path, Duration::from_secs(10)).unwrap();
    let mut s = Session::new(t);
    let f = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
    assert_eq!(
        f.entries()[0].1,
        Value::String("coap://leshan.eclipseprojects.io:5783".into())
    );
}

#[test]
fn cme_error_is_a_clear_error() {
    let path = modem(Fault::CmeAfter(2));
    let mut s = Session::new(ModemTransport::open(&path, Duration::from_secs(10)).unwrap());
    let e = uicc::read_lwm2m_bootstrap(&mut s).unwrap_err();
    match &e {
        UiccError::Card(HostError::Transport(TransportError::Modem(m)))
            if matches!(**m, ModemError::Cme { .. }) =>
        {
            assert!(m.to_string().contains("+CME ERROR: 10"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_modem_times_out() {
    let path = modem(Fault::SilentAfter(3));
    let mut s = Session::new(ModemTransport::open(&path, Duration::from_millis(300)).unwrap());
    let e = uicc::read_lwm2m_bootstrap(&mut s).unwrap_err();
    assert!(
        matches!(
            &e,
            UiccError::Card(HostError::Transport(TransportError::Modem(m)))
                if matches!(**m, ModemError::Timeout { timeout_ms: 300, .. })
        ),
        "{e:?}"
    );
    // The command that got no answer is named, its data left out.
    assert!(
        e.to_string().contains("no answer to AT+CSIM=") && e.to_string().contains(",…"),
        "{e}"
    );
}

#[test]
fn a_missing_device_is_named() {
    let e = ModemTransport::open(
        std::path::Path::new("/nonexistent/ttyUSB9"),
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("/nonexistent/ttyUSB9"), "{e}");
}

#[test]
fn logical_channels_through_ccho_cgla_cchc() {
    let (path, logical) = modem_counting(Fault::None);
    let t = ModemTransport::open(&path, Duration::from_secs(10))
        .unwrap()
        .with_cgla(true);
    let mut s = Session::new(t);
    let f = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
    assert_eq!(
        f.entries()[0].1,
        Value::String("coap://leshan.eclipseprojects.io:5783".into())
    );
    // Twice: the channel was closed with AT+CCHC and opens again.
    let info = uicc::read_info(&mut s).unwrap();
    assert!(info.pkcs15);
    // CCHO, 8 CGLA and CCHC for the bootstrap at least.
    assert!(logical.load(Ordering::SeqCst) >= 10, "{logical:?}");
}
