//! APDU traces with secrets redacted.
//!
//! The session hands every APDU it sends and receives to a trace hook as
//! hex text. The data field of commands that carry PINs or keys
//! ([`command_carries_secret`](dmsc_card_model::commands::command_carries_secret),
//! decided on the plain command) is replaced by `<redacted N bytes>`. Under
//! secure messaging the plain command and the unwrapped response are traced,
//! flagged as secured, instead of the ciphertext on the wire.

use core::fmt;

use dmsc_card_model::apdu::{Command, Response};

/// Which way an APDU travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Host to card.
    Command,
    /// Card to host.
    Response,
}

/// One traced APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Command or response.
    pub direction: Direction,
    /// Upper-case hex, fields separated by spaces, secrets redacted. Commands:
    /// `CLA INS P1 P2` (8 digits), then Lc, data and Le when present.
    /// Responses: data (when present), then the status word.
    pub hex: String,
    /// Whether the APDU travelled under secure messaging (`hex` then shows
    /// the plain command or the unwrapped response).
    pub secured: bool,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arrow = match self.direction {
            Direction::Command => '>',
            Direction::Response => '<',
        };
        let secured = if self.secured { " (secured)" } else { "" };
        write!(f, "{arrow}{secured} {}", self.hex)
    }
}

/// A trace hook.
pub type TraceHook = Box<dyn FnMut(&TraceEvent) + Send>;

/// Formats a command as it is (or would be) encoded, short form when it fits
/// and `extended` otherwise; with `redact`, the data field is hidden.
pub fn format_command(cmd: &Command, extended: bool, redact: bool) -> String {
    let ext = extended && !cmd.fits_short();
    let mut out = format!("{:02X}{:02X}{:02X}{:02X}", cmd.cla, cmd.ins, cmd.p1, cmd.p2);
    let nc = cmd.data.len();
    if nc > 0 {
        if ext {
            out.push_str(&format!(" 00{nc:04X}"));
        } else {
            out.push_str(&format!(" {:02X}", nc & 0xFF));
        }
        if redact {
            out.push_str(&format!(" <redacted {nc} bytes>"));
        } else {
            out.push(' ');
            out.push_str(&hex::encode_upper(&cmd.data));
        }
    }
    if let Some(ne) = cmd.le {
        if ext {
            let prefix = if nc == 0 { "00" } else { "" };
            out.push_str(&format!(" {prefix}{:04X}", ne & 0xFFFF));
        } else {
            out.push_str(&format!(" {:02X}", ne & 0xFF));
        }
    }
    out
}

/// Formats a response: data (when present) and status word.
pub fn format_response(resp: &Response) -> String {
    if resp.data.is_empty() {
        format!("{:04X}", resp.sw)
    } else {
        format!("{} {:04X}", hex::encode_upper(&resp.data), resp.sw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_short_extended_and_redacted() {
        let c = Command::new(0x00, 0xA4, 0x04, 0x00)
            .with_data(vec![0xF0, 0x44])
            .with_le(256);
        assert_eq!(format_command(&c, false, false), "00A40400 02 F044 00");
        assert_eq!(format_command(&c, true, false), "00A40400 02 F044 00");
        assert_eq!(
            format_command(&c, false, true),
            "00A40400 02 <redacted 2 bytes> 00"
        );
        let big = Command::new(0x00, 0xCB, 0x3F, 0xFF)
            .with_data(vec![0x80; 300])
            .with_le(65_536);
        assert!(format_command(&big, true, true).ends_with(" 00012C <redacted 300 bytes> 0000"));
        let expect = Command::new(0x00, 0xCB, 0x3F, 0xFF).with_le(1000);
        assert_eq!(format_command(&expect, true, false), "00CB3FFF 0003E8");
        let event = TraceEvent {
            direction: Direction::Response,
            hex: format_response(&Response::ok(vec![1, 2])),
            secured: true,
        };
        assert_eq!(event.to_string(), "< (secured) 0102 9000");
    }
}
