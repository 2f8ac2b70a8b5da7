//! JSON documents and text helpers shared by the commands.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

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
