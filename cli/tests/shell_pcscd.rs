//! `dmsc shell` through the private pcscd of `.ci/test` (feature `e2e`): two
//! shells share one card served with `dmsc sim serve`; the session limit
//! counts the other shell's login, and its logout frees the slot.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStderr, Stdio};
use std::time::Duration;

use common::*;

/// Reads the shell's stderr until a line contains `needle`.
fn wait_for(lines: &mut std::io::Lines<BufReader<ChildStderr>>, needle: &str) {
    for line in lines.by_ref() {
        if line.unwrap().contains(needle) {
            return;
        }
    }
    panic!("stderr ended before '{needle}'");
}

/// Runs a script in a shell on `reader`.
fn script(d: &Path, reader: &str, args: &[&str], text: &str) -> Out {
    let mut child = dmsc(d)
        .args(["--reader", reader, "shell"])
        .args(args)
        .env("DMSC_SESSION_DIR", d.join("sessions"))
        .env("DMSC_SCP_KEYS", triple(TEST_KEY))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn two_shells_on_one_card_count_each_others_sessions() {
    let slot = 5usize;
    let port: u16 = env("DMSC_VPCD_PORT").parse().unwrap();
    let reader = env("DMSC_VPCD_READERS")
        .split(';')
        .nth(slot)
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "card");
    let mut serve = dmsc(d)
        .args([
            "sim",
            "serve",
            "--state",
            "card",
            "--port",
            &(port + slot as u16).to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready"), "{ready}");
    // pcscd notices the card on its next poll of the reader.
    let mut present = false;
    for _ in 0..200 {
        if run(d, &["--reader", &reader, "info"]).code == 0 {
            present = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(present, "the card never showed in {reader}");

    // Shell A logs in and stays.
    let mut a = dmsc(d)
        .args(["--reader", &reader, "shell"])
        .env("DMSC_SESSION_DIR", d.join("sessions"))
        .env("DMSC_SCP_KEYS", triple(TEST_KEY))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut a_in = a.stdin.take().unwrap();
    let mut a_err = BufReader::new(a.stderr.take().unwrap()).lines();
    a_in.write_all(b"login admin\n").unwrap();
    a_in.flush().unwrap();
    wait_for(&mut a_err, "logged in as admin");

    // Shell B on the same card: the limit (1) counts A's session.
    let out = script(d, &reader, &[], "login admin\n").expect(4);
    assert!(
        out.stderr
            .contains("too many authority sessions on this card: at most 1"),
        "{out:#?}"
    );
    // B as the device meanwhile is fine.
    let out = script(d, &reader, &[], "info\n").expect(0);
    assert!(out.stdout.contains("card ID"), "{out:#?}");

    // A logs out: B may log in.
    a_in.write_all(b"logout\n").unwrap();
    a_in.flush().unwrap();
    wait_for(&mut a_err, "logged out (admin)");
    let out = script(d, &reader, &[], "login admin\naudit --event auth-success\n").expect(0);
    assert!(out.stdout.contains("auth-success"), "{out:#?}");

    drop(a_in);
    assert!(a.wait().unwrap().success());
    terminate(&mut serve);
}
