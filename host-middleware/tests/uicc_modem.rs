//! The modem transport (`AT+CSIM` over a serial device) against a simulated
//! modem on a pseudo-terminal, with the simulated UICC behind it: URCs between
//! lines, an echo, `+CME ERROR`, and a modem that stops answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmsc_host::transport::modem::{ModemError, ModemTransport};
use dmsc_host::uicc::{self, lwm2m::Value, UiccError};
use dmsc_host::{HostError, Session, TransportError};
use dmsc_sim_card::uicc::{SimUicc, UiccProfile};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

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
    modem_counting(fault, Arc::new(AtomicUsize::new(0)))
}

/// The same, counting the AT+CCHO / AT+CGLA / AT+CCHC commands in `logical`.
fn modem_counting(fault: Fault, logical: Arc<AtomicUsize>) -> PathBuf {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let path = PathBuf::from(name.to_str().unwrap());
    let mut io = File::from(master);
    let mut card = SimUicc::new(&UiccProfile {
        iccid: hex::decode("98103254769810325476").unwrap(),
        lwm2m_bootstrap: Some(hex::decode(VENDOR).unwrap()),
        lwm2m_size: 300,
        dm_bootstrap: None,
        lwm2m_oid_do: true,
        adm1: *b"88888888",
        t0: true,
    });
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut csims = 0usize;
        let mut chunk = [0u8; 512];
        loop {
            let Ok(n) = io.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(pos) = buf.iter().position(|b| *b == b'\r') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).to_string();
                if ["AT+CCHO=", "AT+CGLA=", "AT+CCHC="]
                    .iter()
                    .any(|p| line.starts_with(p))
                {
                    logical.fetch_add(1, Ordering::SeqCst);
                }
                let reply = if let Some(aid) = line.strip_prefix("AT+CCHO=") {
                    let aid = hex::decode(aid.trim_matches('"')).unwrap();
                    let open = card.process(&[0x00, 0x70, 0x00, 0x00, 0x01]);
                    let n = open[0];
                    let mut sel = vec![n, 0xA4, 0x04, 0x0C, aid.len() as u8];
                    sel.extend_from_slice(&aid);
                    if card.process(&sel) == [0x90, 0x00] {
                        // A bare session ID line, as many modems answer.
                        format!("\r\n{n}\r\n\r\nOK\r\n")
                    } else {
                        card.process(&[n, 0x70, 0x80, n]);
                        "\r\n+CME ERROR: 4\r\n".into()
                    }
                } else if let Some(rest) = line.strip_prefix("AT+CGLA=") {
                    let mut parts = rest.splitn(3, ',');
                    let sid: u8 = parts.next().unwrap().parse().unwrap();
                    let _len = parts.next().unwrap();
                    let apdu = hex::decode(parts.next().unwrap().trim_matches('"')).unwrap();
                    assert_eq!(
                        apdu[0] & 0x03,
                        sid,
                        "the class byte names the session's channel"
                    );
                    let rsp = hex::encode_upper(card.process(&apdu));
                    format!("\r\n+CGLA: {},\"{rsp}\"\r\n\r\nOK\r\n", rsp.len())
                } else if let Some(sid) = line.strip_prefix("AT+CCHC=") {
                    let n: u8 = sid.parse().unwrap();
                    card.process(&[n, 0x70, 0x80, n]);
                    "\r\nOK\r\n".into()
                } else if line == "ATE0" {
                    // Echo still on for this command, as a modem does.
                    "ATE0\r\r\nOK\r\n".to_string()
                } else if let Some(rest) = line.strip_prefix("AT+CSIM=") {
                    csims += 1;
                    match fault {
                        Fault::CmeAfter(k) if csims >= k => "\r\n+CME ERROR: 10\r\n".into(),
                        Fault::SilentAfter(k) if csims >= k => continue,
                        _ => {
                            let (_, q) = rest.split_once(',').unwrap();
                            let apdu = hex::decode(q.trim_matches('"')).unwrap();
                            let rsp = hex::encode_upper(card.process(&apdu));
                            // URCs before the answer, now and then.
                            let urc = match csims % 3 {
                                0 => "\r\n+CREG: 1,\"00C3\",\"0102\"\r\n",
                                1 => "\r\nRING\r\n",
                                _ => "",
                            };
                            format!("{urc}\r\n+CSIM: {},\"{rsp}\"\r\n\r\nOK\r\n", rsp.len())
                        }
                    }
                } else {
                    "\r\nERROR\r\n".into()
                };
                if io.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    });
    path
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
            e,
            UiccError::Card(HostError::Transport(TransportError::Timeout))
        ),
        "{e:?}"
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
    let logical = Arc::new(AtomicUsize::new(0));
    let path = modem_counting(Fault::None, logical.clone());
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
