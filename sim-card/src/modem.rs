//! A cellular modem on a pseudo-terminal with a simulated card behind it:
//! the AT commands a host uses to reach a SIM (3GPP TS 27.007 `AT+CSIM`
//! §8.17, `AT+CCHO`/`AT+CCHC` §8.45/§8.46, `AT+CGLA` §8.43), with the faults
//! tests need (URCs between lines, `+CME ERROR`, silence).
//!
//! The emulator owns the pty master and keeps a handle on the slave itself,
//! so clients (`dmsc uicc --modem PTY …`) can open and close the slave one
//! after the other. The line discipline is raw: the emulator echoes commands
//! itself while echo is on (`ATE1`, the default), as a modem does.
//!
//! Answers:
//! - `AT` → `OK`; `ATE0`/`ATE1` → echo off/on, `OK` (the `ATE0` itself still
//!   echoed);
//! - `AT+CSIM=<len>,"<hex>"` → `+CSIM: <len>,"<hex>"` and `OK`;
//! - `AT+CCHO="<AID>"` → the session ID on a line of its own and `OK`
//!   (MANAGE CHANNEL open and SELECT by AID on the card; an AID the card
//!   does not select is `+CME ERROR: 4`);
//! - `AT+CGLA=<id>,<len>,"<hex>"` → `+CGLA: <len>,"<hex>"` and `OK` (the
//!   class byte must name the session's channel);
//! - `AT+CCHC=<id>` → MANAGE CHANNEL close, `OK`;
//! - a malformed argument (bad hex, a length that is not the hex's, a
//!   missing field) → `+CME ERROR: 50` (incorrect parameters), a session ID
//!   that is not open → `+CME ERROR: 21` (invalid index), any other command
//!   → `ERROR`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{self, OptionalActions};

use crate::vpcd::VirtualCard;

/// `+CME ERROR` codes (3GPP TS 27.007 §9.2.1).
pub mod cme {
    /// Operation not supported.
    pub const NOT_SUPPORTED: u16 = 4;
    /// SIM failure.
    pub const SIM_FAILURE: u16 = 13;
    /// Invalid index.
    pub const INVALID_INDEX: u16 = 21;
    /// Incorrect parameters.
    pub const INCORRECT_PARAMETERS: u16 = 50;
}

/// How the emulated modem misbehaves. APDUs are counted over `AT+CSIM` and
/// `AT+CGLA` together, from 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// An unsolicited result code before the answer to every `n`-th command
    /// (alternately `RING` and `+CREG: 1,1`).
    pub urc_every: Option<usize>,
    /// `+CME ERROR: code` instead of the answer from the `k`-th APDU on:
    /// `(k, code)`.
    pub cme_error_after: Option<(usize, u16)>,
    /// No answer at all from the `k`-th APDU on (to any command).
    pub silent_after: Option<usize>,
}

/// Why the emulator cannot start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ModemError {
    /// Creating or setting up the pseudo-terminal failed.
    #[error("cannot set up the pseudo-terminal ({op})")]
    Pty {
        /// The step that failed.
        op: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the pty master failed.
    #[error("the pseudo-terminal failed ({op})")]
    Io {
        /// `read`, `write` or `poll`.
        op: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

fn pty(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> ModemError {
    move |e| ModemError::Pty {
        op,
        source: e.into(),
    }
}

/// A modem emulator on a new pseudo-terminal, serving `card`.
pub struct ModemEmulator<C> {
    master: File,
    /// Held so the pty stays up between clients.
    _slave: OwnedFd,
    path: PathBuf,
    card: C,
    faults: Faults,
    echo: bool,
    apdus: usize,
    commands: usize,
    urcs: usize,
    silent: bool,
    /// Open sessions (`AT+CCHO`), by ID = channel number.
    sessions: [bool; 20],
    logical: Arc<AtomicUsize>,
    pending: Vec<u8>,
}

impl<C: VirtualCard> ModemEmulator<C> {
    /// A new pty (raw, echo on as a modem powers up) in front of `card`.
    pub fn new(card: C, faults: Faults) -> Result<Self, ModemError> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).map_err(pty("openpt"))?;
        grantpt(&master).map_err(pty("grantpt"))?;
        unlockpt(&master).map_err(pty("unlockpt"))?;
        let name = ptsname(&master, Vec::new()).map_err(pty("ptsname"))?;
        let path = PathBuf::from(name.to_string_lossy().into_owned());
        let slave = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .map_err(pty("open the slave"))?;
        // Raw, so the line discipline neither echoes nor translates.
        let mut t = termios::tcgetattr(&slave).map_err(pty("tcgetattr"))?;
        t.make_raw();
        termios::tcsetattr(&slave, OptionalActions::Now, &t).map_err(pty("tcsetattr"))?;
        Ok(ModemEmulator {
            master: File::from(master),
            _slave: slave,
            path,
            card,
            faults,
            echo: true,
            apdus: 0,
            commands: 0,
            urcs: 0,
            silent: false,
            sessions: [false; 20],
            logical: Arc::new(AtomicUsize::new(0)),
            pending: Vec::new(),
        })
    }

    /// The slave's path, for the host (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A counter of the `AT+CCHO`/`AT+CGLA`/`AT+CCHC` commands received.
    pub fn logical_commands(&self) -> Arc<AtomicUsize> {
        self.logical.clone()
    }

    /// The card.
    pub fn card(&self) -> &C {
        &self.card
    }

    /// Serves until `shutdown` is set (checked every 100 ms) and returns the
    /// card.
    pub fn serve(mut self, shutdown: &AtomicBool) -> Result<C, ModemError> {
        let tick = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let mut chunk = [0u8; 512];
        while !shutdown.load(Ordering::SeqCst) {
            let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
            let ready = match poll(&mut fds, Some(&tick)) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(ModemError::Io {
                        op: "poll",
                        source: e.into(),
                    })
                }
            };
            if ready == 0 {
                continue;
            }
            let n = match self.master.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ModemError::Io { op: "read", source }),
            };
            if n == 0 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            self.pending.extend_from_slice(&chunk[..n]);
            while let Some(pos) = self.pending.iter().position(|b| *b == b'\r') {
                let raw: Vec<u8> = self.pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&raw[..raw.len() - 1])
                    .trim_matches('\n')
                    .to_string();
                if let Some(reply) = self.answer(&line) {
                    self.master
                        .write_all(reply.as_bytes())
                        .and_then(|()| self.master.flush())
                        .map_err(|source| ModemError::Io {
                            op: "write",
                            source,
                        })?;
                }
            }
        }
        Ok(self.card)
    }

    /// Serves on a thread of its own until the process ends.
    pub fn spawn(self) -> std::thread::JoinHandle<Result<C, ModemError>>
    where
        C: 'static,
    {
        std::thread::spawn(move || self.serve(&AtomicBool::new(false)))
    }

    /// The bytes written back for one command line, or `None` when silent.
    fn answer(&mut self, line: &str) -> Option<String> {
        if self.silent || line.is_empty() {
            return None;
        }
        self.commands += 1;
        let upper = line.to_ascii_uppercase();
        let apdu_command = upper.starts_with("AT+CSIM=") || upper.starts_with("AT+CGLA=");
        if upper.starts_with("AT+CCHO=")
            || upper.starts_with("AT+CGLA=")
            || upper.starts_with("AT+CCHC=")
        {
            self.logical.fetch_add(1, Ordering::SeqCst);
        }
        if apdu_command {
            self.apdus += 1;
            if self.faults.silent_after.is_some_and(|k| self.apdus >= k) {
                self.silent = true;
                return None;
            }
        }
        let mut out = String::new();
        if self.echo {
            out.push_str(line);
            out.push('\r');
        }
        if self
            .faults
            .urc_every
            .is_some_and(|n| n > 0 && self.commands.is_multiple_of(n))
        {
            self.urcs += 1;
            out.push_str(if self.urcs % 2 == 1 {
                "\r\nRING\r\n"
            } else {
                "\r\n+CREG: 1,1\r\n"
            });
        }
        let result = match self.faults.cme_error_after {
            Some((k, code)) if apdu_command && self.apdus >= k => Err(code),
            _ => self.result(&upper),
        };
        match result {
            Ok(body) => {
                out.push_str(&body);
                out.push_str("\r\nOK\r\n");
            }
            Err(0) => out.push_str("\r\nERROR\r\n"),
            Err(code) => out.push_str(&format!("\r\n+CME ERROR: {code}\r\n")),
        }
        Some(out)
    }

    /// The information lines of a command (each `\r\n…\r\n`), or its error:
    /// a CME code, `0` for a bare `ERROR`.
    fn result(&mut self, line: &str) -> Result<String, u16> {
        if line == "AT" {
            return Ok(String::new());
        }
        if line == "ATE0" || line == "ATE1" || line == "ATE" {
            self.echo = line == "ATE1";
            return Ok(String::new());
        }
        if let Some(rest) = line.strip_prefix("AT+CSIM=") {
            let apdu = sized_hex(rest)?;
            let rsp = self.transmit(&apdu)?;
            let rsp = hex::encode_upper(rsp);
            return Ok(format!("\r\n+CSIM: {},\"{rsp}\"\r\n", rsp.len()));
        }
        if let Some(rest) = line.strip_prefix("AT+CCHO=") {
            let aid = unquote(rest)
                .and_then(|h| hex::decode(h).ok())
                .filter(|a| (1..=16).contains(&a.len()))
                .ok_or(cme::INCORRECT_PARAMETERS)?;
            let open = self.transmit(&[0x00, 0x70, 0x00, 0x00, 0x01])?;
            let n = match open.as_slice() {
                [n, 0x90, 0x00] if usize::from(*n) < self.sessions.len() && *n > 0 => *n,
                _ => return Err(cme::NOT_SUPPORTED),
            };
            let mut select = vec![cla_of(n), 0xA4, 0x04, 0x0C, aid.len() as u8];
            select.extend_from_slice(&aid);
            let sw = self.transmit(&select)?;
            if sw.len() >= 2 && (sw[sw.len() - 2] == 0x90 || sw[sw.len() - 2] == 0x61) {
                self.sessions[usize::from(n)] = true;
                // A bare session ID line, as many modems answer.
                Ok(format!("\r\n{n}\r\n"))
            } else {
                self.transmit(&[0x00, 0x70, 0x80, n])?;
                Err(cme::NOT_SUPPORTED)
            }
        } else if let Some(rest) = line.strip_prefix("AT+CGLA=") {
            let (sid, rest) = rest.split_once(',').ok_or(cme::INCORRECT_PARAMETERS)?;
            let sid = self.session(sid)?;
            let apdu = sized_hex(rest)?;
            if apdu.first().map(|c| channel_of(*c)) != Some(sid) {
                return Err(cme::INCORRECT_PARAMETERS);
            }
            let rsp = hex::encode_upper(self.transmit(&apdu)?);
            Ok(format!("\r\n+CGLA: {},\"{rsp}\"\r\n", rsp.len()))
        } else if let Some(sid) = line.strip_prefix("AT+CCHC=") {
            let sid = self.session(sid)?;
            self.transmit(&[0x00, 0x70, 0x80, sid])?;
            self.sessions[usize::from(sid)] = false;
            Ok(String::new())
        } else {
            Err(0)
        }
    }

    /// An open session's ID.
    fn session(&self, text: &str) -> Result<u8, u16> {
        let sid: u8 = text.trim().parse().map_err(|_| cme::INCORRECT_PARAMETERS)?;
        if self.sessions.get(usize::from(sid)) == Some(&true) {
            Ok(sid)
        } else {
            Err(cme::INVALID_INDEX)
        }
    }

    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, u16> {
        // A mute card is a SIM failure.
        self.card.transmit(apdu).ok_or(cme::SIM_FAILURE)
    }
}

/// `<len>,"<hex>"`: the bytes, when the length is the hex's.
fn sized_hex(text: &str) -> Result<Vec<u8>, u16> {
    let (len, hex) = text.split_once(',').ok_or(cme::INCORRECT_PARAMETERS)?;
    let len: usize = len.trim().parse().map_err(|_| cme::INCORRECT_PARAMETERS)?;
    let hex = unquote(hex).ok_or(cme::INCORRECT_PARAMETERS)?;
    if hex.len() != len || len < 8 {
        return Err(cme::INCORRECT_PARAMETERS);
    }
    hex::decode(hex).map_err(|_| cme::INCORRECT_PARAMETERS)
}

fn unquote(text: &str) -> Option<&str> {
    text.trim().strip_prefix('"')?.strip_suffix('"')
}

/// The logical channel a class byte names (ETSI TS 102 221 §10.1.1).
fn channel_of(cla: u8) -> u8 {
    if cla & 0x40 == 0 {
        cla & 0x03
    } else {
        (cla & 0x0F) + 4
    }
}

/// The class byte of channel `n`.
fn cla_of(n: u8) -> u8 {
    if n < 4 {
        n
    } else {
        0x40 | (n - 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpcd::Power;

    /// Answers `9000` to everything, `0190 00` to MANAGE CHANNEL open.
    struct Card;
    impl VirtualCard for Card {
        fn atr(&self) -> Vec<u8> {
            Vec::new()
        }
        fn power(&mut self, _: Power) {}
        fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
            Some(match apdu {
                [_, 0x70, 0x00, ..] => vec![0x01, 0x90, 0x00],
                _ => vec![0x90, 0x00],
            })
        }
    }

    fn emulator(faults: Faults) -> ModemEmulator<Card> {
        let mut m = ModemEmulator::new(Card, faults).unwrap();
        m.echo = false;
        m
    }

    #[test]
    fn answers_the_sim_commands() {
        let mut m = emulator(Faults::default());
        assert_eq!(m.answer("AT").unwrap(), "\r\nOK\r\n");
        assert_eq!(
            m.answer("AT+CSIM=10,\"00A4000000\"").unwrap(),
            "\r\n+CSIM: 4,\"9000\"\r\n\r\nOK\r\n"
        );
        assert_eq!(
            m.answer("AT+CCHO=\"A000000063\"").unwrap(),
            "\r\n1\r\n\r\nOK\r\n"
        );
        assert_eq!(
            m.answer("AT+CGLA=1,10,\"01B0000000\"").unwrap(),
            "\r\n+CGLA: 4,\"9000\"\r\n\r\nOK\r\n"
        );
        assert_eq!(m.answer("AT+CCHC=1").unwrap(), "\r\nOK\r\n");
        assert_eq!(
            m.answer("AT+CGLA=1,10,\"01B0000000\"").unwrap(),
            "\r\n+CME ERROR: 21\r\n"
        );
        assert_eq!(m.answer("AT+COPS?").unwrap(), "\r\nERROR\r\n");
    }

    #[test]
    fn malformed_arguments_are_incorrect_parameters() {
        let mut m = emulator(Faults::default());
        for bad in [
            "AT+CSIM=12,\"00A4000000\"",
            "AT+CSIM=10,\"00A40000ZZ\"",
            "AT+CSIM=10,00A4000000",
            "AT+CSIM=\"00A4000000\"",
            "AT+CCHO=A0000000",
            "AT+CCHO=\"\"",
        ] {
            assert_eq!(m.answer(bad).unwrap(), "\r\n+CME ERROR: 50\r\n", "{bad}");
        }
        m.answer("AT+CCHO=\"A000000063\"").unwrap();
        // The class byte names channel 0, not session 1.
        assert_eq!(
            m.answer("AT+CGLA=1,10,\"00B0000000\"").unwrap(),
            "\r\n+CME ERROR: 50\r\n"
        );
    }

    #[test]
    fn echo_follows_ate() {
        let mut m = ModemEmulator::new(Card, Faults::default()).unwrap();
        assert_eq!(m.answer("ATE0").unwrap(), "ATE0\r\r\nOK\r\n");
        assert_eq!(m.answer("AT").unwrap(), "\r\nOK\r\n");
        assert_eq!(m.answer("ATE1").unwrap(), "\r\nOK\r\n");
        assert_eq!(m.answer("AT").unwrap(), "AT\r\r\nOK\r\n");
    }

    #[test]
    fn faults_from_the_kth_apdu() {
        let mut m = emulator(Faults {
            urc_every: Some(2),
            cme_error_after: Some((2, 10)),
            silent_after: Some(3),
        });
        assert_eq!(m.answer("AT").unwrap(), "\r\nOK\r\n");
        assert_eq!(
            m.answer("AT+CSIM=10,\"00A4000000\"").unwrap(),
            "\r\nRING\r\n\r\n+CSIM: 4,\"9000\"\r\n\r\nOK\r\n"
        );
        assert_eq!(
            m.answer("AT+CSIM=10,\"00A4000000\"").unwrap(),
            "\r\n+CME ERROR: 10\r\n"
        );
        assert_eq!(m.answer("AT").unwrap(), "\r\n+CREG: 1,1\r\n\r\nOK\r\n");
        assert_eq!(m.answer("AT+CSIM=10,\"00A4000000\""), None);
        assert_eq!(m.answer("AT"), None, "silent from then on");
    }

    #[test]
    fn class_bytes_of_channels() {
        for n in 0..20 {
            assert_eq!(channel_of(cla_of(n)), n);
        }
    }
}
