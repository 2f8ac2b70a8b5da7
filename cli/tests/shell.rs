//! `dmsc shell` on a simulated card: scripts on stdin, the interactive shell on
//! a pseudo-terminal, login/logout, the idle logout on the test clock (`--now`
//! and `advance`), and the session limit counted through lock files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

/// A card and the GlobalPlatform test keys in a key file.
struct Setup {
    dir: tempfile::TempDir,
    card: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let card = new_card(dir.path(), "card.state");
        std::fs::write(dir.path().join("keys"), format!("{}\n", triple(TEST_KEY))).unwrap();
        std::fs::write(
            dir.path().join("other-keys"),
            format!("{}\n", triple(OTHER_KEY)),
        )
        .unwrap();
        Setup { dir, card }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sessions(&self) -> PathBuf {
        self.path().join("sessions")
    }

    /// `dmsc --sim card.state [global…] shell [args…]`, sessions counted in
    /// the test's own directory.
    fn shell(&self, global: &[&str], args: &[&str]) -> Command {
        let mut cmd = dmsc(self.path());
        cmd.arg("--sim")
            .arg(&self.card)
            .args(global)
            .arg("shell")
            .args(args);
        cmd.env("DMSC_SESSION_DIR", self.sessions());
        cmd
    }

    /// Runs a script through the shell's stdin.
    fn script(&self, global: &[&str], args: &[&str], script: &str) -> Out {
        let mut child = self
            .shell(global, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn card_id(&self) -> String {
        let info = run(self.path(), &["--sim", "card.state", "--json", "info"]).expect(0);
        info.json()["card_id"].as_str().unwrap().to_string()
    }

    fn slot(&self, i: usize) -> PathBuf {
        self.sessions()
            .join(self.card_id())
            .join(format!("slot-{i}.lock"))
    }
}

/// Pinned test clock: the shell's idle clock moves only with `advance`.
const NOW: &[&str] = &["--now", "2026-03-01T10:00:00Z"];

#[test]
fn a_script_runs_commands_without_dmsc_and_ignores_comments_and_blank_lines() {
    let s = Setup::new();
    let out = s
        .script(
            &[],
            &[],
            "# who is this card\n\ninfo\n   \nlogin admin --scp-key-file keys\naudit --event auth-success\nlogout\nexit\ninfo --no-such-option\n",
        )
        .expect(0);
    assert!(out.stdout.contains("card ID"), "{out:#?}");
    assert!(out.stdout.contains("auth-success"), "{out:#?}");
    // No prompt and no echo of the lines.
    assert!(
        !out.stdout.contains("dmsc>") && !out.stdout.contains("login admin"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("logged in as admin"), "{out:#?}");
    assert!(out.stderr.contains("logged out"), "{out:#?}");
}

#[test]
fn a_script_stops_at_the_first_error_naming_its_line() {
    let s = Setup::new();
    // Line 4 needs an authority: the device may not read the audit log.
    let out = s
        .script(
            &[],
            &[],
            "info\nlogin admin --scp-key-file keys\nlogout\naudit\ninfo\n",
        )
        .expect(2);
    assert!(out.stderr.contains("error: line 4: "), "{out:#?}");
    assert!(
        out.stderr
            .contains("needs an authority: log in first (login AUTHORITY)"),
        "{out:#?}"
    );
    assert_eq!(
        out.stdout.matches("card ID").count(),
        1,
        "stopped: {out:#?}"
    );
    // --keep-going runs the rest; the exit code is the first failure's.
    let out = s
        .script(
            &[],
            &["--keep-going"],
            "audit\nno-such-command\ninfo\nlogin admin --scp-key-file other-keys\n",
        )
        .expect(2);
    assert!(out.stderr.contains("error: line 1: "), "{out:#?}");
    assert!(out.stderr.contains("error: line 2: "), "{out:#?}");
    assert!(out.stderr.contains("error: line 4: "), "{out:#?}");
    assert!(out.stdout.contains("card ID"), "{out:#?}");
    // Wrong keys alone: the card's refusal code (4).
    s.script(&[], &[], "login admin --scp-key-file other-keys\n")
        .expect(4);
}

#[test]
fn the_card_authority_and_clock_options_are_the_shells() {
    let s = Setup::new();
    for (line, flag) in [
        ("info --sim other.state", "--sim"),
        ("info --reader vpcd", "--reader"),
        ("audit --scp-key-file keys", "--scp-key-file"),
        ("info --now 2026-01-01T00:00:00Z", "--now"),
    ] {
        let out = s.script(&[], &[], &format!("{line}\n")).expect(2);
        assert!(
            out.stderr.contains(&format!("{flag} is the shell's")),
            "{line}: {out:#?}"
        );
    }
    for line in ["shell", "demo", "fleet list", "sim serve --state x"] {
        let out = s.script(&[], &[], &format!("{line}\n")).expect(2);
        assert!(out.stderr.contains("error: line 1: "), "{line}: {out:#?}");
    }
    // Keys given to the shell do not log anyone in: login does.
    let out = s
        .script(
            &["--scp-keys", &triple(TEST_KEY)],
            &[],
            "audit\nlogin admin\naudit\n",
        )
        .expect(2);
    assert!(out.stderr.contains("error: line 1: "), "{out:#?}");
    let out = s
        .script(
            &["--scp-keys", &triple(TEST_KEY)],
            &[],
            "login admin\naudit\n",
        )
        .expect(0);
    assert!(out.stdout.contains("auth-success"), "{out:#?}");
}

#[test]
fn a_session_the_card_ended_is_over_for_the_shell_too() {
    let s = Setup::new();
    // SELECT of another application ends the secure channel on the card.
    let out = s
        .script(
            &[],
            &["--keep-going"],
            "login admin --scp-key-file keys\napdu 00A4040005A000000001\nstatus\naudit\n",
        )
        .expect(2);
    assert!(
        out.stderr
            .contains("authority session of admin ended by the card"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("logged in:    no"), "{out:#?}");
    assert!(out.stderr.contains("error: line 4: "), "{out:#?}");
}

#[test]
fn keys_of_another_authority_do_not_log_in() {
    let s = Setup::new();
    let out = s
        .script(&[], &[], "login ServerB --scp-key-file keys\n")
        .expect(4);
    assert!(out.stderr.contains("'admin', not 'ServerB'"), "{out:#?}");
}

/// The idle script: logged in, 4 minutes idle (still in: the default idle
/// time is 5 minutes), then 5 minutes 1 second idle before `audit`.
const IDLE_SCRIPT: &str = "login admin --scp-key-file keys\nadvance 4m\naudit --event auth-success\nadvance 5m\nadvance 1s\naudit\nstatus\n";

/// Whether a run of [`IDLE_SCRIPT`] shows the idle logout: the message, the
/// audit of line 6 refused to the device, nobody logged in, the slot free.
fn idle_logout_seen(out: &Out) -> bool {
    out.stdout.matches("auth-success").count() == 1
        && out
            .stderr
            .contains("authority session ended after 5m 1s idle (admin)")
        && out.stderr.contains("error: line 6: ")
        && out.stderr.contains("needs an authority")
        && out.stdout.contains("logged in:    no")
        && out.stdout.contains("sessions:     0 of at most 1")
}

#[test]
fn an_idle_authority_session_ends_and_the_next_command_runs_as_the_device() {
    let s = Setup::new();
    let out = s.script(NOW, &["--keep-going"], IDLE_SCRIPT).expect(2);
    assert!(idle_logout_seen(&out), "{out:#?}");

    // Exactly the idle time is not past it.
    let out = s
        .script(
            NOW,
            &[],
            "login admin --scp-key-file keys\nadvance 5m\naudit --event auth-success\n",
        )
        .expect(0);
    assert!(!out.stderr.contains("ended after"), "{out:#?}");
}

/// Self-test of the check above: a shell whose session does not end in that
/// time (idle time 1 hour) is not taken for an idle logout.
#[test]
fn the_idle_logout_check_fails_for_a_session_that_stays_open() {
    let s = Setup::new();
    let out = s
        .script(NOW, &["--keep-going", "--idle-timeout", "1h"], IDLE_SCRIPT)
        .expect(0);
    assert!(!idle_logout_seen(&out), "{out:#?}");
    assert!(out.stdout.contains("logged in:    admin"), "{out:#?}");
}

#[test]
fn the_idle_time_is_set_by_option_or_by_set() {
    let s = Setup::new();
    let out = s
        .script(
            NOW,
            &["--idle-timeout", "90s"],
            "login admin --scp-key-file keys\nadvance 91s\ninfo\n",
        )
        .expect(0);
    assert!(
        out.stderr
            .contains("authority session ended after 1m 31s idle"),
        "{out:#?}"
    );
    let out = s
        .script(
            NOW,
            &[],
            "login admin --scp-key-file keys\nset idle-timeout 1m\nadvance 61s\naudit\n",
        )
        .expect(2);
    assert!(out.stderr.contains("ended after 1m 1s idle"), "{out:#?}");
    // `advance` needs the test clock.
    let out = s.script(&[], &[], "advance 1m\n").expect(2);
    assert!(out.stderr.contains("needs --now"), "{out:#?}");
}

fn try_lock(path: &Path) -> Result<File, ()> {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(()),
        Err(TryLockError::Error(e)) => panic!("{e}"),
    }
}

#[test]
fn the_session_limit_counts_the_slots_other_processes_hold() {
    let s = Setup::new();
    // Another process's session: this test holds slot 0 of the card.
    std::fs::create_dir_all(s.slot(0).parent().unwrap()).unwrap();
    let other = try_lock(&s.slot(0)).expect("slot 0 free");
    let out = s
        .script(
            &[],
            &["--max-sessions", "1"],
            "login admin --scp-key-file keys\n",
        )
        .expect(4);
    assert!(
        out.stderr
            .contains("too many authority sessions on this card: at most 1"),
        "{out:#?}"
    );
    // With a limit of 2 the shell takes slot 1.
    let out = s
        .script(
            &[],
            &["--max-sessions", "2"],
            "login admin --scp-key-file keys\nstatus\n",
        )
        .expect(0);
    assert!(
        out.stdout.contains("sessions:     2 of at most 2"),
        "{out:#?}"
    );
    // The card session number the card writes into this session's audit entries.
    assert!(out.stdout.contains(", card session "), "{out:#?}");
    drop(other);
    s.script(
        &[],
        &["--max-sessions", "1"],
        "login admin --scp-key-file keys\n",
    )
    .expect(0);
}

/// Waits until the child's stderr has a line containing `needle`.
fn wait_for_line(child: &mut Child, needle: &str) {
    use std::io::BufRead;
    let stderr = child.stderr.as_mut().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stderr ended before '{needle}'");
        if line.contains(needle) {
            return;
        }
    }
}

#[test]
fn a_killed_shell_frees_its_slot() {
    let s = Setup::new();
    let slot = s.slot(0);
    let mut child = s
        .shell(&[], &["--max-sessions", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"login admin --scp-key-file keys\n")
        .unwrap();
    stdin.flush().unwrap();
    wait_for_line(&mut child, "logged in as admin");
    assert!(try_lock(&slot).is_err(), "the shell holds slot 0");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(try_lock(&slot).is_ok(), "the kernel freed the slot");
}

#[test]
fn interactive_on_a_terminal_with_prompt_completion_and_login() {
    let s = Setup::new();
    let mut cmd = s.shell(NOW, &[]);
    cmd.stdin(Stdio::inherit());
    cmd.env("TERM", "xterm");
    // A safeguard against a hang, not a timing assertion.
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    p.exp_string("`help` lists the commands").unwrap();
    p.exp_string("dmsc> ").unwrap();
    p.send_line("info").unwrap();
    p.exp_string("card ID").unwrap();
    p.exp_string("dmsc> ").unwrap();
    // A failing command leaves the shell running.
    p.send_line("audit").unwrap();
    p.exp_string("needs an authority").unwrap();
    p.exp_string("dmsc> ").unwrap();
    p.send_line("login admin --scp-key-file keys").unwrap();
    p.exp_string("logged in as admin").unwrap();
    p.exp_string("dmsc admin> ").unwrap();
    p.send_line("audit --event auth-success").unwrap();
    p.exp_string("auth-success").unwrap();
    p.exp_string("dmsc admin> ").unwrap();
    // Tab completes "aud" (from the command tree) to "audit ".
    // The table's header is output only (the echoed line does not hold it).
    p.send("aud\t").unwrap();
    p.send_line("--event auth-success").unwrap();
    p.exp_string("principal").unwrap();
    p.exp_string("dmsc admin> ").unwrap();
    // Idle past the limit: the next command runs as the device.
    p.send_line("advance 6m").unwrap();
    p.exp_string("dmsc admin> ").unwrap();
    p.send_line("info").unwrap();
    p.exp_string("authority session ended after 6m idle (admin)")
        .unwrap();
    p.exp_string("dmsc> ").unwrap();
    // "logo" + Tab completes the shell's own command.
    p.send_line("login admin --scp-key-file keys").unwrap();
    p.exp_string("dmsc admin> ").unwrap();
    p.send("logo\t").unwrap();
    p.send_line("").unwrap();
    p.exp_string("logged out (admin)").unwrap();
    p.exp_string("dmsc> ").unwrap();
    p.send_line("exit").unwrap();
    p.exp_eof().unwrap();
}
