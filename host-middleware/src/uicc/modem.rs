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
//!   [`TransportError`]s (`Timeout`, or `Other` with the modem's words).
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
    #[error("modem {path}: {detail}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        detail: String,
    },
    /// Reading or writing the device failed.
    #[error("modem: {0}")]
    Io(String),
    /// No final result code within the timeout.
    #[error("modem: no answer to {command} within {timeout_ms} ms")]
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
    #[error("modem: bad answer to {command}: {detail}")]
    BadAnswer {
        /// The AT command.
        command: String,
        /// What is wrong.
        detail: String,
    },
}

impl From<ModemError> for TransportError {
    fn from(e: ModemError) -> TransportError {
        match e {
            ModemError::Timeout { .. } => TransportError::Timeout,
            other => TransportError::Other(other.to_string()),
        }
    }
}

/// The `+CSIM:` answer among the lines of one command's reply: the response
/// APDU bytes, or the modem's error. Lines that are neither (URCs, an echo,
/// blank lines) are ignored. `None` while no final result code has arrived.
pub fn parse_csim_reply(command: &str, lines: &[String]) -> Option<Result<Vec<u8>, ModemError>> {
    let mut answer: Option<Result<Vec<u8>, ModemError>> = None;
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("+CSIM:") {
            answer = Some(parse_csim_line(command, rest.trim()));
        } else if line == "OK" {
            return Some(answer.unwrap_or_else(|| {
                Err(ModemError::BadAnswer {
                    command: command.into(),
                    detail: "OK without a +CSIM line".into(),
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
    let bad = |detail: String| ModemError::BadAnswer {
        command: command.into(),
        detail,
    };
    let (len, data) = rest
        .split_once(',')
        .ok_or_else(|| bad(format!("+CSIM: {rest} has no comma")))?;
    let len: usize = len
        .trim()
        .parse()
        .map_err(|_| bad(format!("+CSIM length '{len}' is not a number")))?;
    let data = data.trim();
    let hex_text = data
        .strip_prefix('"')
        .and_then(|d| d.strip_suffix('"'))
        .unwrap_or(data);
    if hex_text.len() != len {
        return Err(bad(format!(
            "+CSIM length {len} but {} hex characters",
            hex_text.len()
        )));
    }
    let bytes = hex::decode(hex_text).map_err(|e| bad(format!("+CSIM data is not hex: {e}")))?;
    if bytes.len() < 2 {
        return Err(bad("+CSIM response shorter than a status word".into()));
    }
    Ok(bytes)
}

/// A UICC reached through a modem's `AT+CSIM`.
pub struct ModemTransport {
    file: File,
    name: String,
    timeout: Duration,
    pending: Vec<u8>,
}

impl ModemTransport {
    /// Opens the device raw at 115200 8N1 (when it is a terminal), sends
    /// `ATE0` and waits for its `OK`.
    pub fn open(path: &Path, timeout: Duration) -> Result<ModemTransport, ModemError> {
        let open_err = |detail: String| ModemError::Open {
            path: path.display().to_string(),
            detail,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
        if termios::isatty(&file) {
            let mut t = termios::tcgetattr(&file).map_err(|e| open_err(e.to_string()))?;
            t.make_raw();
            // 8N1, receiver on, modem control lines ignored.
            t.control_modes &= !(termios::ControlModes::CSIZE
                | termios::ControlModes::PARENB
                | termios::ControlModes::CSTOPB);
            t.control_modes |= termios::ControlModes::CS8
                | termios::ControlModes::CREAD
                | termios::ControlModes::CLOCAL;
            t.set_speed(115_200).map_err(|e| open_err(e.to_string()))?;
            termios::tcsetattr(&file, OptionalActions::Now, &t)
                .map_err(|e| open_err(e.to_string()))?;
        }
        let mut m = ModemTransport {
            file,
            name: format!("modem {}", path.display()),
            timeout,
            pending: Vec::new(),
        };
        m.command("ATE0", |lines| {
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

    /// Sends one AT command and reads lines until `done` decides.
    fn command<R>(
        &mut self,
        command: &str,
        done: impl Fn(&[String]) -> Option<Result<R, ModemError>>,
    ) -> Result<R, ModemError> {
        self.file
            .write_all(format!("{command}\r").as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| ModemError::Io(e.to_string()))?;
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
                    command: command.into(),
                    timeout_ms: self.timeout.as_millis(),
                });
            }
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            let n = poll(&mut fds, Some(&ts)).map_err(|e| ModemError::Io(e.to_string()))?;
            if n == 0 {
                continue;
            }
            let mut buf = [0u8; 512];
            let got = self
                .file
                .read(&mut buf)
                .map_err(|e| ModemError::Io(e.to_string()))?;
            if got == 0 {
                return Err(ModemError::Io("the device was closed".into()));
            }
            self.pending.extend_from_slice(&buf[..got]);
        }
    }

    /// One APDU through `AT+CSIM`.
    pub fn csim(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ModemError> {
        let hex_cmd = hex::encode_upper(apdu);
        let command = format!("AT+CSIM={},\"{}\"", hex_cmd.len(), hex_cmd);
        let shown = format!("AT+CSIM={},…", hex_cmd.len());
        self.command(&command, |lines| parse_csim_reply(&shown, lines))
    }
}

impl Transport for ModemTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.csim(apdu)?)
    }

    fn atr(&self) -> Vec<u8> {
        Vec::new()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        Err(TransportError::Other(
            "a modem's SIM cannot be reset through AT+CSIM".into(),
        ))
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
            matches!(&e, Some(Err(ModemError::BadAnswer { detail, .. })) if detail.contains("length 6 but 4")),
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
