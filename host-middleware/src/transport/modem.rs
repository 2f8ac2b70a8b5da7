//! A UICC behind a cellular modem: APDUs as 3GPP TS 27.007 `AT+CSIM`
//! (§8.17) over a serial device.
//!
//! - The device (any character device or a symlink to one, a pty included)
//!   is opened raw: no echo, no line discipline, 115200 8N1 where a baud rate
//!   applies. `ATE0` is sent first; an echo that arrives anyway is skipped.
//! - `AT+CSIM=<length>,"<hex command>"` → `+CSIM: <length>,"<hex response>"`
//!   then `OK`; the length counts hex characters and is checked.
//! - Unsolicited result codes (`+CREG: …`, `RING`, any line that is not the
//!   answer) arriving between lines are skipped.
//! - `ERROR` and `+CME ERROR: <n>` are [`ModemError`]s; a modem that stops
//!   answering is a timeout. Both reach the session as
//!   [`TransportError::Modem`] with the modem's error (a timeout names the
//!   AT command that got no answer).
//!
//! Logical channels are opened with MANAGE CHANNEL inside `AT+CSIM`, as
//! modem libraries do; `AT+CCHO`/`AT+CGLA` are not used.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::termios::{self, OptionalActions};

use crate::transport::{Transport, TransportError};

/// What went wrong talking to a modem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    /// The device cannot be opened or configured.
    #[error("modem {path}: {op}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// What was being done (`open`, `tcgetattr`, `set speed`, `tcsetattr`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: rustix::io::Errno,
    },
    /// Reading, writing or polling the device failed.
    #[error("modem: {op}: {source}")]
    Io {
        /// What was being done (`write`, `poll`, `read`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: rustix::io::Errno,
    },
    /// The device was closed (end of file) while an answer was awaited.
    #[error("modem: the device was closed")]
    Closed,
    /// No final result code within the timeout.
    #[error("modem: timed out: no answer to {command} within {timeout_ms} ms")]
    Timeout {
        /// The AT command.
        command: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// `ERROR`.
    #[error("modem: {command} answered ERROR")]
    Error {
        /// The AT command.
        command: String,
    },
    /// `+CME ERROR: <n>` (or a text form).
    #[error("modem: {command} answered +CME ERROR: {code}")]
    Cme {
        /// The AT command.
        command: String,
        /// The error code or text.
        code: String,
    },
    /// An answer that is not what 27.007 specifies.
    #[error("modem: bad answer to {command}: {fault}")]
    BadAnswer {
        /// The AT command.
        command: String,
        /// What is wrong.
        #[source]
        fault: AnswerFault,
    },
}

/// What `hex` says about `data`.
fn not_hex(data: &str) -> String {
    match hex::decode(data) {
        Err(e) => e.to_string(),
        Ok(_) => "valid hex".into(),
    }
}

/// How a modem's answer breaks 27.007.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerFault {
    /// `OK` came without the answer line.
    #[error("OK without a {prefix} line")]
    OkWithout {
        /// The answer's prefix (`+CSIM:`, `+CGLA:`).
        prefix: String,
    },
    /// The answer has no comma between length and data.
    #[error("+CSIM: {line} has no comma")]
    NoComma {
        /// The answer after its prefix.
        line: String,
    },
    /// The length is not a number.
    #[error("+CSIM length '{length}' is not a number")]
    LengthNotNumber {
        /// The length field as received.
        length: String,
    },
    /// The length does not count the hex characters that follow.
    #[error("+CSIM length {length} but {hex_chars} hex characters")]
    LengthMismatch {
        /// The length the modem gave.
        length: usize,
        /// The hex characters it sent.
        hex_chars: usize,
    },
    /// The data is not hex.
    #[error("+CSIM data is not hex: {}", not_hex(.data))]
    NotHex {
        /// The data as received (between its quotes).
        data: String,
    },
    /// The response is shorter than a status word.
    #[error("+CSIM response shorter than a status word")]
    NoStatusWord,
    /// `AT+CCHO` answered `OK` without a session ID.
    #[error("no session ID before OK")]
    NoSessionId,
}

/// An I/O error of the device as its OS error number (`EIO` if it has none).
fn io_error(op: &'static str, e: &std::io::Error) -> ModemError {
    ModemError::Io {
        op,
        source: rustix::io::Errno::from_io_error(e).unwrap_or(rustix::io::Errno::IO),
    }
}

impl From<ModemError> for TransportError {
    /// Every modem error, a timeout included (it names the AT command that
    /// got no answer), is [`TransportError::Modem`].
    fn from(e: ModemError) -> TransportError {
        TransportError::Modem(Box::new(e))
    }
}

/// The `+CSIM:` answer among the lines of one command's reply: the response
/// APDU bytes, or the modem's error. Lines that are neither (URCs, an echo,
/// blank lines) are ignored. `None` while no final result code has arrived.
pub fn parse_csim_reply(command: &str, lines: &[String]) -> Option<Result<Vec<u8>, ModemError>> {
    parse_apdu_reply("+CSIM:", command, lines)
}

/// The same for `+CGLA:` (or any `<prefix> <length>,"<hex>"` answer).
fn parse_apdu_reply(
    prefix: &str,
    command: &str,
    lines: &[String],
) -> Option<Result<Vec<u8>, ModemError>> {
    let mut answer: Option<Result<Vec<u8>, ModemError>> = None;
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(prefix) {
            answer = Some(parse_csim_line(command, rest.trim()));
        } else if line == "OK" {
            return Some(answer.unwrap_or_else(|| {
                Err(ModemError::BadAnswer {
                    command: command.into(),
                    fault: AnswerFault::OkWithout {
                        prefix: prefix.into(),
                    },
                })
            }));
        } else if line == "ERROR" {
            return Some(Err(ModemError::Error {
                command: command.into(),
            }));
        } else if let Some(code) = line.strip_prefix("+CME ERROR:") {
            return Some(Err(ModemError::Cme {
                command: command.into(),
                code: code.trim().into(),
            }));
        }
    }
    None
}

fn parse_csim_line(command: &str, rest: &str) -> Result<Vec<u8>, ModemError> {
    let bad = |fault: AnswerFault| ModemError::BadAnswer {
        command: command.into(),
        fault,
    };
    let (len, data) = rest
        .split_once(',')
        .ok_or_else(|| bad(AnswerFault::NoComma { line: rest.into() }))?;
    let len: usize = len
        .trim()
        .parse()
        .map_err(|_| bad(AnswerFault::LengthNotNumber { length: len.into() }))?;
    let data = data.trim();
    let hex_text = data
        .strip_prefix('"')
        .and_then(|d| d.strip_suffix('"'))
        .unwrap_or(data);
    if hex_text.len() != len {
        return Err(bad(AnswerFault::LengthMismatch {
            length: len,
            hex_chars: hex_text.len(),
        }));
    }
    let bytes = hex::decode(hex_text).map_err(|_| {
        bad(AnswerFault::NotHex {
            data: hex_text.into(),
        })
    })?;
    if bytes.len() < 2 {
        return Err(bad(AnswerFault::NoStatusWord));
    }
    Ok(bytes)
}

/// `OK`, or the modem's error.
fn ok_or_error(command: &str, lines: &[String]) -> Option<Result<(), ModemError>> {
    lines.iter().find_map(|l| match l.trim() {
        "OK" => Some(Ok(())),
        "ERROR" => Some(Err(ModemError::Error {
            command: command.into(),
        })),
        l => l.strip_prefix("+CME ERROR:").map(|code| {
            Err(ModemError::Cme {
                command: command.into(),
                code: code.trim().into(),
            })
        }),
    })
}

/// The session ID of an `AT+CCHO` answer (`+CCHO: <id>` or a bare `<id>`
/// line, then `OK`).
fn parse_ccho(command: &str, lines: &[String]) -> Option<Result<u32, ModemError>> {
    let done = ok_or_error(command, lines)?;
    Some(done.and_then(|()| {
        lines
            .iter()
            .map(|l| l.trim())
            .find_map(|l| {
                l.strip_prefix("+CCHO:")
                    .unwrap_or(l)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
            .ok_or_else(|| ModemError::BadAnswer {
                command: command.into(),
                fault: AnswerFault::NoSessionId,
            })
    }))
}

/// A UICC reached through a modem's `AT+CSIM`.
pub struct ModemTransport {
    file: File,
    name: String,
    timeout: Duration,
    pending: Vec<u8>,
    /// Logical channels through `AT+CCHO`/`AT+CGLA`/`AT+CCHC` instead of
    /// MANAGE CHANNEL in `AT+CSIM`.
    cgla: bool,
    /// The modem's session ID of each host channel (1-19).
    sessions: [Option<u32>; 20],
    /// A channel the host opened that has no modem session yet (until its
    /// SELECT by AID, which becomes `AT+CCHO`).
    opening: Option<u8>,
}

impl ModemTransport {
    /// Opens the device raw at 115200 8N1 (when it is a terminal), sends
    /// `ATE0` and waits for its `OK`.
    pub fn open(path: &Path, timeout: Duration) -> Result<ModemTransport, ModemError> {
        let open_err = |op: &'static str| {
            move |source: rustix::io::Errno| ModemError::Open {
                path: path.display().to_string(),
                op,
                source,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(path)
            .map_err(|e| {
                open_err("open")(
                    rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
                )
            })?;
        if termios::isatty(&file) {
            let mut t = termios::tcgetattr(&file).map_err(open_err("tcgetattr"))?;
            t.make_raw();
            // 8N1, receiver on, modem control lines ignored.
            t.control_modes &= !(termios::ControlModes::CSIZE
                | termios::ControlModes::PARENB
                | termios::ControlModes::CSTOPB);
            t.control_modes |= termios::ControlModes::CS8
                | termios::ControlModes::CREAD
                | termios::ControlModes::CLOCAL;
            t.set_speed(115_200).map_err(open_err("set speed"))?;
            termios::tcsetattr(&file, OptionalActions::Now, &t).map_err(open_err("tcsetattr"))?;
        }
        let mut m = ModemTransport {
            file,
            name: format!("modem {}", path.display()),
            timeout,
            pending: Vec::new(),
            cgla: false,
            sessions: [None; 20],
            opening: None,
        };
        m.command("ATE0", "ATE0", |lines| {
            lines.iter().find_map(|l| match l.trim() {
                "OK" => Some(Ok(())),
                "ERROR" => Some(Err(ModemError::Error {
                    command: "ATE0".into(),
                })),
                _ => None,
            })
        })?;
        Ok(m)
    }

    /// Sends one AT command and reads lines until `done` decides; errors
    /// name the command as `shown` (an APDU's data, a PIN's say, left out).
    fn command<R>(
        &mut self,
        command: &str,
        shown: &str,
        done: impl Fn(&[String]) -> Option<Result<R, ModemError>>,
    ) -> Result<R, ModemError> {
        self.file
            .write_all(format!("{command}\r").as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| io_error("write", &e))?;
        let deadline = Instant::now() + self.timeout;
        let mut lines: Vec<String> = Vec::new();
        loop {
            while let Some(pos) = self.pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let raw: Vec<u8> = self.pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&raw[..raw.len() - 1])
                    .trim()
                    .to_string();
                // Blank lines and the echo of the command are not answers.
                if line.is_empty() || line == command {
                    continue;
                }
                lines.push(line);
                if let Some(r) = done(&lines) {
                    return r;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ModemError::Timeout {
                    command: shown.into(),
                    timeout_ms: self.timeout.as_millis(),
                });
            }
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            let n = poll(&mut fds, Some(&ts))
                .map_err(|source| ModemError::Io { op: "poll", source })?;
            if n == 0 {
                continue;
            }
            let mut buf = [0u8; 512];
            let got = self.file.read(&mut buf).map_err(|e| io_error("read", &e))?;
            if got == 0 {
                return Err(ModemError::Closed);
            }
            self.pending.extend_from_slice(&buf[..got]);
        }
    }

    /// Uses `AT+CCHO`/`AT+CGLA`/`AT+CCHC` (3GPP TS 27.007 §8.45-8.46, §8.43)
    /// for logical channels: MANAGE CHANNEL open is answered by the transport
    /// with a channel number of its own, the SELECT by AID that follows on
    /// that channel becomes `AT+CCHO="<AID>"` (answered `9000` without an
    /// FCP; a modem error becomes `6A82`, application not found), commands
    /// on the channel go through `AT+CGLA=<session>,…` with the session's
    /// channel in the class byte, and MANAGE CHANNEL close becomes
    /// `AT+CCHC=<session>`. The basic channel stays on `AT+CSIM`.
    pub fn with_cgla(mut self, on: bool) -> Self {
        self.cgla = on;
        self
    }

    fn logical(&mut self, apdu: &[u8]) -> Result<Option<Vec<u8>>, ModemError> {
        let [cla, ins, p1, p2, ..] = *apdu else {
            return Ok(None);
        };
        let channel = match cla {
            0x00..=0x3F => usize::from(cla & 0x03),
            0x40..=0x7F => 4 + usize::from(cla & 0x0F),
            _ => return Ok(None),
        };
        if ins == 0x70 && p1 == 0x00 && channel == 0 {
            let free = (1..20u8)
                .find(|n| self.sessions[usize::from(*n)].is_none() && self.opening != Some(*n));
            return Ok(Some(match free {
                Some(n) => {
                    self.opening = Some(n);
                    vec![n, 0x90, 0x00]
                }
                None => vec![0x6A, 0x81],
            }));
        }
        if ins == 0x70 && p1 == 0x80 {
            let n = usize::from(p2);
            if self.opening == Some(p2) {
                self.opening = None;
                return Ok(Some(vec![0x90, 0x00]));
            }
            let Some(sid) = self.sessions.get(n).copied().flatten() else {
                return Ok(Some(vec![0x6A, 0x86]));
            };
            let command = format!("AT+CCHC={sid}");
            self.command(&command, &command, |lines| ok_or_error(&command, lines))?;
            self.sessions[n] = None;
            return Ok(Some(vec![0x90, 0x00]));
        }
        if channel == 0 {
            return Ok(None);
        }
        if self.opening == Some(channel as u8) && ins == 0xA4 && p1 == 0x04 {
            let aid = apdu
                .get(5..5 + usize::from(*apdu.get(4).unwrap_or(&0)))
                .unwrap_or(&[]);
            let command = format!("AT+CCHO=\"{}\"", hex::encode_upper(aid));
            let sid = self.command(&command, &command, |lines| parse_ccho(&command, lines));
            return Ok(Some(match sid {
                Ok(sid) => {
                    self.opening = None;
                    self.sessions[channel] = Some(sid);
                    vec![0x90, 0x00]
                }
                Err(ModemError::Cme { .. } | ModemError::Error { .. }) => vec![0x6A, 0x82],
                Err(e) => return Err(e),
            }));
        }
        let Some(sid) = self.sessions[channel] else {
            return Ok(None);
        };
        // The class byte names the modem's channel for this session (the
        // chaining bit kept; no secure messaging on this path).
        let mut wire = apdu.to_vec();
        if let Some(c) = u8::try_from(sid)
            .ok()
            .and_then(crate::uicc::cla_for_channel)
        {
            wire[0] = c | (cla & 0x10);
        }
        let hex_cmd = hex::encode_upper(&wire);
        let command = format!("AT+CGLA={sid},{},\"{hex_cmd}\"", hex_cmd.len());
        let shown = format!("AT+CGLA={sid},{},…", hex_cmd.len());
        self.command(&command, &shown, |lines| {
            parse_apdu_reply("+CGLA:", &shown, lines)
        })
        .map(Some)
    }

    /// One APDU through `AT+CSIM`.
    pub fn csim(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ModemError> {
        let hex_cmd = hex::encode_upper(apdu);
        let command = format!("AT+CSIM={},\"{}\"", hex_cmd.len(), hex_cmd);
        let shown = format!("AT+CSIM={},…", hex_cmd.len());
        self.command(&command, &shown, |lines| parse_csim_reply(&shown, lines))
    }
}

impl Transport for ModemTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.cgla {
            if let Some(r) = self.logical(apdu)? {
                return Ok(r);
            }
        }
        Ok(self.csim(apdu)?)
    }

    fn atr(&self) -> Vec<u8> {
        Vec::new()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        Err(TransportError::NoReset(crate::transport::NoReset::ModemSim))
    }

    fn reader_name(&self) -> &str {
        &self.name
    }

    fn supports_extended(&self) -> bool {
        false
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        body(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn csim_reply_with_urcs_in_between() {
        let r = parse_csim_reply(
            "c",
            &lines(&[
                "+CREG: 1,\"00C3\",\"0102\"",
                "RING",
                "+CSIM: 6,\"019000\"",
                "",
                "OK",
            ]),
        );
        assert_eq!(r, Some(Ok(vec![0x01, 0x90, 0x00])));
        assert_eq!(parse_csim_reply("c", &lines(&["+CSIM: 4,\"9000\""])), None);
    }

    /// The typed causes read as the messages did, and keep their sources.
    #[test]
    fn causes_are_typed_and_read_well() {
        use std::error::Error as _;
        let e = parse_csim_reply("AT+CSIM", &lines(&["+CSIM: 4,\"90zz\"", "OK"]));
        let Some(Err(e)) = e else { panic!("{e:?}") };
        assert_eq!(
            e.to_string(),
            "modem: bad answer to AT+CSIM: +CSIM data is not hex: Invalid character 'z' at \
             position 2"
        );
        assert!(e.source().is_some());
        let dir = std::env::temp_dir().join("dmsc-no-such-dir-for-a-modem");
        let Err(e) = ModemTransport::open(&dir.join("tty"), Duration::from_millis(1)) else {
            panic!("a missing device opens")
        };
        assert!(
            matches!(&e, ModemError::Open { op: "open", source, .. } if *source == rustix::io::Errno::NOENT),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .ends_with(": open: No such file or directory (os error 2)"),
            "{e}"
        );
        assert!(e.source().is_some());
    }

    #[test]
    fn csim_errors_are_typed() {
        assert_eq!(
            parse_csim_reply("c", &lines(&["+CME ERROR: 10"])),
            Some(Err(ModemError::Cme {
                command: "c".into(),
                code: "10".into()
            }))
        );
        assert!(matches!(
            parse_csim_reply("c", &lines(&["ERROR"])),
            Some(Err(ModemError::Error { .. }))
        ));
        let e = parse_csim_reply("c", &lines(&["+CSIM: 6,\"9000\"", "OK"]));
        assert!(
            matches!(
                &e,
                Some(Err(ModemError::BadAnswer {
                    fault: AnswerFault::LengthMismatch {
                        length: 6,
                        hex_chars: 4
                    },
                    ..
                }))
            ),
            "{e:?}"
        );
        assert!(matches!(
            parse_csim_reply("c", &lines(&["OK"])),
            Some(Err(ModemError::BadAnswer { .. }))
        ));
        assert!(matches!(
            parse_csim_reply("c", &lines(&["+CSIM: 2,\"90\"", "OK"])),
            Some(Err(ModemError::BadAnswer { .. }))
        ));
    }
}
