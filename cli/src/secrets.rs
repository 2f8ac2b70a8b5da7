//! Authority keys and PINs: where they come from and how they are checked.
//!
//! Keys and PINs are kept in zeroizing buffers and never appear in messages.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dmsc_host::card_model::commands::Pin;
use dmsc_host::card_model::scp03::StaticKeys;
use zeroize::{Zeroize, Zeroizing};

use crate::exit::usage;

/// The well-known GlobalPlatform test key (404142…4F), used for ENC, MAC and DEK.
pub const TEST_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];
/// The key version of the test key set on a card made by `dmsc sim init`.
pub const TEST_KEY_VERSION: u8 = 0x30;

/// Where the authority keys come from.
pub enum KeySource {
    /// `--scp-keys` or `DMSC_SCP_KEYS`; `what` names it in messages.
    Inline {
        text: Zeroizing<String>,
        what: &'static str,
    },
    /// `--scp-key-file`.
    File(PathBuf),
}

/// The three keys, zeroized on drop.
pub struct KeyTriple {
    pub enc: Zeroizing<Vec<u8>>,
    pub mac: Zeroizing<Vec<u8>>,
    pub dek: Zeroizing<Vec<u8>>,
}

impl KeyTriple {
    /// The test key set.
    pub fn test_keys() -> KeyTriple {
        KeyTriple {
            enc: Zeroizing::new(TEST_KEY.to_vec()),
            mac: Zeroizing::new(TEST_KEY.to_vec()),
            dek: Zeroizing::new(TEST_KEY.to_vec()),
        }
    }

    /// Whether these are the well-known GlobalPlatform test keys.
    pub fn is_test_keys(&self) -> bool {
        [&self.enc, &self.mac, &self.dek]
            .iter()
            .all(|k| k.as_slice() == TEST_KEY.as_slice())
    }

    /// As SCP03 static keys.
    pub fn static_keys(&self) -> Result<StaticKeys> {
        StaticKeys::new(&self.enc, &self.mac, &self.dek)
            .map_err(|e| usage(format!("authority keys: {e}")))
    }

    /// Key length in bits.
    pub fn bits(&self) -> usize {
        self.enc.len() * 8
    }
}

impl KeySource {
    /// Reads and checks the keys.
    pub fn load(&self) -> Result<KeyTriple> {
        match self {
            KeySource::Inline { text, what } => {
                parse_triple(text).map_err(|e| usage(format!("{what}: {e}")))
            }
            KeySource::File(path) => load_key_file(path),
        }
    }
}

const TRIPLE_FORMAT: &str =
    "expected ENC:MAC:DEK, three hex AES keys of the same length (16, 24 or 32 bytes), \
     or one key used for all three (as gp --key); the value is not shown";

/// Parses `ENC:MAC:DEK` (hex), or one key for all three (GlobalPlatformPro's
/// `--key`). The error never contains the input.
pub fn parse_triple(text: &str) -> Result<KeyTriple, String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let (enc, mac, dek) = match parts.as_slice() {
        [one] => (*one, *one, *one),
        [enc, mac, dek] => (*enc, *mac, *dek),
        _ => {
            return Err(format!(
                "{} parts instead of 3 (or 1); {TRIPLE_FORMAT}",
                parts.len()
            ))
        }
    };
    let triple = KeyTriple {
        enc: decode_key(enc, "ENC")?,
        mac: decode_key(mac, "MAC")?,
        dek: decode_key(dek, "DEK")?,
    };
    if triple.enc.len() != triple.mac.len() || triple.enc.len() != triple.dek.len() {
        return Err(format!("the three keys differ in length; {TRIPLE_FORMAT}"));
    }
    Ok(triple)
}

fn decode_key(hex_text: &str, name: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = hex::decode(hex_text.trim())
        .map(Zeroizing::new)
        .map_err(|_| format!("{name} is not valid hex; {TRIPLE_FORMAT}"))?;
    if ![16, 24, 32].contains(&bytes.len()) {
        return Err(format!(
            "{name} is {} bytes long; {TRIPLE_FORMAT}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    enc: String,
    mac: String,
    dek: String,
}

impl Drop for KeyFileJson {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.mac.zeroize();
        self.dek.zeroize();
    }
}

/// Reads a key file: one line `ENC:MAC:DEK` (blank lines and `#` comments
/// ignored), or JSON `{"enc": "…", "mac": "…", "dek": "…"}`.
pub fn load_key_file(path: &Path) -> Result<KeyTriple> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?,
    );
    let bad = |e: String| usage(format!("key file {}: {e}", path.display()));
    if text.trim_start().starts_with('{') {
        let json: KeyFileJson = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "invalid JSON at line {} column {} ({:?}); expected {{\"enc\": \"hex\", \
                 \"mac\": \"hex\", \"dek\": \"hex\"}}",
                e.line(),
                e.column(),
                e.classify()
            ))
        })?;
        let joined = Zeroizing::new(format!(
            "{}:{}:{}",
            json.enc.as_str(),
            json.mac.as_str(),
            json.dek.as_str()
        ));
        return parse_triple(&joined).map_err(bad);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [line] => parse_triple(line).map_err(bad),
        _ => Err(bad(format!(
            "{} key lines; expected exactly one line ENC:MAC:DEK (hex) or a JSON object",
            lines.len()
        ))),
    }
}

/// Which secret a PIN prompt asks for.
#[derive(Clone, Copy)]
pub enum PinKind {
    /// The current user PIN: `--pin-file`, `DMSC_PIN`.
    Pin,
    /// A new user PIN: `--new-pin-file`, `DMSC_NEW_PIN` (prompted twice).
    NewPin,
    /// The PUK: `--puk-file`, `DMSC_PUK`.
    Puk,
}

impl PinKind {
    fn env(self) -> &'static str {
        match self {
            PinKind::Pin => "DMSC_PIN",
            PinKind::NewPin => "DMSC_NEW_PIN",
            PinKind::Puk => "DMSC_PUK",
        }
    }
    fn option(self) -> &'static str {
        match self {
            PinKind::Pin => "--pin-file",
            PinKind::NewPin => "--new-pin-file",
            PinKind::Puk => "--puk-file",
        }
    }
    fn label(self) -> &'static str {
        match self {
            PinKind::Pin => "PIN",
            PinKind::NewPin => "new PIN",
            PinKind::Puk => "PUK",
        }
    }
}

/// Gets a PIN: from `file`, else the environment variable, else a no-echo
/// prompt on a terminal. Never from the command line.
pub fn read_pin(kind: PinKind, file: Option<&Path>) -> Result<Pin> {
    let (value, from) = if let Some(path) = file {
        let text = Zeroizing::new(std::fs::read(path).with_context(|| {
            format!("cannot read the {} file {}", kind.label(), path.display())
        })?);
        let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        (
            Zeroizing::new(first.to_vec()),
            format!("the file {}", path.display()),
        )
    } else if let Some(v) = std::env::var_os(kind.env()) {
        let v = Zeroizing::new(v.into_encoded_bytes());
        (v, kind.env().to_string())
    } else if std::io::stdin().is_terminal() {
        let value = prompt(&format!("{}: ", capitalise(kind.label())))?;
        if let PinKind::NewPin = kind {
            let again = prompt("Repeat the new PIN: ")?;
            if *again != *value {
                return Err(usage("the two new PINs differ; nothing was changed"));
            }
        }
        (value, "the prompt".to_string())
    } else {
        return Err(usage(format!(
            "no {} given: use {} FILE or set {} (PINs are never taken on the command line), \
             or run on a terminal to be prompted",
            kind.label(),
            kind.option(),
            kind.env()
        )));
    };
    Pin::new(&value).map_err(|_| {
        usage(format!(
            "the {} from {from} must be 4 to 8 characters",
            kind.label()
        ))
    })
}

/// The HSM user PIN: `DMSC_HSM_PIN`, or a prompt on a terminal; never argv.
pub fn read_hsm_pin(token: &str) -> Result<Zeroizing<String>> {
    if let Some(v) = std::env::var_os("DMSC_HSM_PIN") {
        let v = Zeroizing::new(v.into_encoded_bytes());
        return String::from_utf8(v.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| usage("DMSC_HSM_PIN is not UTF-8 (the value is not shown)"));
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "no HSM PIN given: set DMSC_HSM_PIN (PINs are never taken on the command line), \
             or run on a terminal to be prompted",
        ));
    }
    let s = rpassword::prompt_password(format!("User PIN of token '{token}': "))
        .context("cannot read the HSM PIN from the terminal")?;
    Ok(Zeroizing::new(s))
}

fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let s = rpassword::prompt_password(text).context("cannot read the PIN from the terminal")?;
    Ok(Zeroizing::new(s.into_bytes()))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_parse_and_errors_hide_the_value() {
        let k = "404142434445464748494A4B4C4D4E4F";
        let t = parse_triple(&format!("{k}:{k}:{k}")).unwrap();
        assert_eq!(t.bits(), 128);
        // One key: ENC = MAC = DEK (gp --key).
        let one = parse_triple(k).unwrap();
        assert!(one.is_test_keys());
        assert_eq!(one.bits(), 128);
        assert!(!parse_triple(&"11".repeat(16)).unwrap().is_test_keys());
        for bad in [
            format!("{k}:{k}"),
            format!("{k}:{k}:zz"),
            format!("{k}:{k}:4041"),
            format!("{k}:{k}:{k}{k}"),
        ] {
            let e = parse_triple(&bad).err().unwrap();
            assert!(!e.contains("4041424344"), "{e}");
        }
    }
}
