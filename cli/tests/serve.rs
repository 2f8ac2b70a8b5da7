//! `dmsc sim serve` against a stand-in for vpcd (the real pcscd + vpcd
//! end-to-end tests live elsewhere): the readiness line, APDUs, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{dmsc, new_card, run, terminate};

/// Sends one vpcd frame: 2-byte big-endian length, payload.
fn send(s: &mut TcpStream, payload: &[u8]) {
    let mut frame = (payload.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
}

/// Reads one vpcd frame.
fn recv(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    payload
}

/// Two listeners on consecutive loopback ports, as vpcd's slots 0 and 1.
fn two_slots() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(b) = TcpListener::bind(("127.0.0.1", port + 1)) {
            return (a, b);
        }
    }
    panic!("no two consecutive free ports");
}

#[test]
fn serve_connects_to_vpcd_slots_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    new_card(dir.path(), "a.state");
    new_card(dir.path(), "b.state");
    let (slot0, slot1) = two_slots();
    let port = slot0.local_addr().unwrap().port();
    let mut child = dmsc(dir.path())
        .args(["sim", "serve", "--state", "a.state", "--state", "b.state"])
        .env("DMSC_VPCD_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cards: Vec<TcpStream> = [slot0, slot1]
        .iter()
        .map(|l| l.accept().unwrap().0)
        .collect();
    for c in &mut cards {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        send(c, &[0x04]); // get ATR: the card counts as attached
        let atr = recv(c);
        assert_eq!(atr[0], 0x3B);
    }
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!(
            "ready: 2 cards attached (vpcd 127.0.0.1:{port}, 127.0.0.1:{})\n",
            port + 1
        )
    );
    // SELECT through the bridge.
    send(
        &mut cards[1],
        &[
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x44, 0x4D, 0x53, 0x43, 0x00, 0x01, 0x00,
        ],
    );
    let rsp = recv(&mut cards[1]);
    assert_eq!(&rsp[rsp.len() - 2..], &[0x90, 0x00]);
    assert_eq!(terminate(&mut child), 0);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
}

#[test]
fn serve_listens_in_reversed_mode() {
    let dir = tempfile::tempdir().unwrap();
    new_card(dir.path(), "a.state");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = dmsc(dir.path())
        .args([
            "sim", "serve", "--state", "a.state", "--listen", &addr, "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut vpcd = loop {
        match TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the card never listened on {addr}: {e}"),
        }
    };
    vpcd.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send(&mut vpcd, &[0x04]);
    assert_eq!(recv(&mut vpcd)[0], 0x3B);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["schema_version"], 2);
    assert_eq!(ready["mode"], "listen");
    assert_eq!(ready["cards"][0]["endpoint"], addr);
    assert_eq!(terminate(&mut child), 0);
}

/// While `dmsc sim serve` runs a card, no other process opens it: not by its
/// name, a symbolic link or a hard link, not after deleting a `.lock` file
/// beside it, and `sim init --force` does not replace it.
#[test]
fn a_served_card_cannot_be_opened_by_a_second_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "a.state");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = dmsc(d)
        .args(["sim", "serve", "--state", "a.state", "--listen", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut vpcd = loop {
        match TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the card never listened on {addr}: {e}"),
        }
    };
    vpcd.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send(&mut vpcd, &[0x04]);
    assert_eq!(recv(&mut vpcd)[0], 0x3B, "the card is served");

    // An old build's lock file, deleted as in the attack it allowed.
    let _ = std::fs::remove_file(d.join("a.state.lock"));
    std::os::unix::fs::symlink("a.state", d.join("link.state")).unwrap();
    std::fs::hard_link(d.join("a.state"), d.join("alias.state")).unwrap();
    for name in ["a.state", "link.state", "alias.state"] {
        let out = run(d, &["--sim", name, "info"]).expect(1);
        assert!(
            out.stderr
                .contains(&format!("{name}: another process holds this card state")),
            "{name}: {out:?}"
        );
    }
    let out = run(d, &["-q", "sim", "init", "a.state", "--force"]).expect(1);
    assert!(out.stderr.contains("in use by another process"), "{out:?}");
    std::fs::remove_file(d.join("alias.state")).unwrap();
    std::fs::remove_file(d.join("link.state")).unwrap();
    assert!(!d.join("a.state.lock").exists());

    // The served card still answers.
    send(
        &mut vpcd,
        &[
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x44, 0x4D, 0x53, 0x43, 0x00, 0x01, 0x00,
        ],
    );
    let rsp = recv(&mut vpcd);
    assert_eq!(&rsp[rsp.len() - 2..], &[0x90, 0x00]);
    assert_eq!(terminate(&mut child), 0);
    run(d, &["--sim", "a.state", "info"]).expect(0);
}

#[test]
fn serve_refuses_bad_input_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(
        d,
        &["sim", "serve", "--state", "missing.state", "--port", "1"],
    )
    .expect(1);
    assert!(out.stderr.contains("missing.state"), "{out:?}");
    new_card(d, "a.state");
    run(
        d,
        &[
            "sim",
            "serve",
            "--state",
            "a.state",
            "--listen",
            "10.1.2.3:5000",
        ],
    )
    .expect(2);
    run(
        d,
        &["sim", "serve", "--state", "a.state", "--listen", "nonsense"],
    )
    .expect(2);
    run(
        d,
        &[
            "sim",
            "serve",
            "--state",
            "a.state",
            "--port",
            "1",
            "--listen",
            "127.0.0.1:5000",
        ],
    )
    .expect(2);
    run(d, &["sim", "serve"]).expect(2);
}
