//! JSON documents and text helpers shared by the commands.

use std::io::Write;

use anyhow::Result;
use dmsc_host::card_model::commands::{algorithms, AuditEntry};
use dmsc_host::PinStatus;
use serde::Serialize;
use serde_json::{json, Value};

/// The version of every JSON document's schema (docs/cli.md).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Serialize)]
struct Doc<'a, T: Serialize> {
    schema_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Prints `body` as one JSON document with `schema_version` on stdout.
pub fn print_json<T: Serialize>(body: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(&Doc {
        schema_version: SCHEMA_VERSION,
        body,
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Bytes as text when they are printable UTF-8 (newlines and tabs allowed).
pub fn as_text(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    s.chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t' || c == '\r')
        .then_some(s)
}

/// Upper-case hex.
pub fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// PIN or PUK state in JSON.
#[derive(Serialize)]
pub struct PinJson {
    /// `verified`, `not-verified` or `blocked`.
    pub status: &'static str,
    pub tries_left: Option<u8>,
}

impl From<PinStatus> for PinJson {
    fn from(s: PinStatus) -> Self {
        match s {
            PinStatus::Verified => PinJson {
                status: "verified",
                tries_left: None,
            },
            PinStatus::NotVerified { tries_left } => PinJson {
                status: "not-verified",
                tries_left: Some(tries_left),
            },
            PinStatus::Blocked => PinJson {
                status: "blocked",
                tries_left: Some(0),
            },
        }
    }
}

/// A PIN state for people.
pub fn pin_text(s: PinStatus) -> String {
    match s {
        PinStatus::Verified => "verified in this card session".into(),
        PinStatus::NotVerified { tries_left } => format!("{tries_left} tries left"),
        PinStatus::Blocked => "BLOCKED".into(),
    }
}

/// The names of the algorithms in SELECT's bit map.
pub fn algorithm_names(bits: u16) -> Vec<&'static str> {
    [
        (algorithms::AES_CMAC, "aes-cmac"),
        (algorithms::HMAC_SHA256, "hmac-sha256"),
        (algorithms::HMAC_SHA1, "hmac-sha1"),
        (algorithms::ECDSA_P256_SHA256, "ecdsa-p256-sha256"),
        (algorithms::SCP03_AES128, "scp03-aes128"),
        (algorithms::SCP03_AES192, "scp03-aes192"),
        (algorithms::SCP03_AES256, "scp03-aes256"),
        (algorithms::SCP03_S16, "scp03-s16"),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// One audit entry in JSON.
pub fn entry_json(e: &AuditEntry) -> Value {
    let mut v = json!({
        "sequence": e.sequence,
        "event": e.event.name(),
        "principal": e.principal,
        "session": e.session,
        "detail": e.detail,
    });
    if let Some(r) = e.repeats {
        v["count"] = json!(r.count);
        v["first_sequence"] = json!(r.first_sequence);
    }
    v
}

/// One audit entry for people.
pub fn entry_text(e: &AuditEntry) -> String {
    let repeats = match e.repeats {
        Some(r) if r.count > 1 => format!(" ({} times since {})", r.count, r.first_sequence),
        _ => String::new(),
    };
    format!(
        "{:>6}  {:<18} {:<12} {:06X}   {}{repeats}",
        e.sequence,
        e.event.name(),
        e.principal,
        e.session,
        e.detail
    )
}

/// Prints entries as a table.
pub fn print_entries(entries: &[AuditEntry]) {
    if entries.is_empty() {
        println!("no audit entries");
        return;
    }
    println!(
        "{:>6}  {:<18} {:<12} {:<8} detail",
        "seq", "event", "principal", "session"
    );
    for e in entries {
        println!("{}", entry_text(e));
    }
}
