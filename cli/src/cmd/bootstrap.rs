//! `dmsc bootstrap sign|set-key|verify`: HTTP bootstrap verified with the
//! card's key (docs/bootstrap.md). Protocol logic is in `dmsc_host::bootstrap`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use dmsc_host::bootstrap::{
    self, check_mac_length_for, content_type, parse_content_type, BootstrapOutcome, MediaType,
    SecMethod,
};
use dmsc_host::card_model::objects::MacAlgorithm;
use dmsc_host::device_tree::DirectoryTree;
use serde_json::json;
use zeroize::Zeroizing;

use crate::common::{ask, open_as, parse_u8};
use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::{hex_upper, print_json};

/// MAC algorithms of bootstrap keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Alg {
    /// AES-CMAC (RFC 4493), 16- or 32-byte key
    AesCmac,
    /// HMAC-SHA256, 16- to 64-byte key
    HmacSha256,
    /// HMAC-SHA1 (OMA DM 1.2 interoperability), 16- to 64-byte key
    HmacSha1,
}

impl Alg {
    fn model(self) -> MacAlgorithm {
        match self {
            Alg::AesCmac => MacAlgorithm::AesCmac,
            Alg::HmacSha256 => MacAlgorithm::HmacSha256,
            Alg::HmacSha1 => MacAlgorithm::HmacSha1,
        }
    }
}

/// The packet's encoding, for the Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Media {
    /// application/vnd.syncml.dm+xml (TNDS as XML text)
    Xml,
    /// application/vnd.syncml.dm+wbxml
    Wbxml,
}

impl Media {
    fn model(self) -> MediaType {
        match self {
            Media::Xml => MediaType::Xml,
            Media::Wbxml => MediaType::Wbxml,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BootstrapCommand {
    /// Authority side: MAC a bootstrap packet; prints the MAC and the HTTP Content-Type
    #[command(
        after_help = "KEYFILE holds the key as hex text (e.g. `openssl rand -hex 32 > \
        k.hex`) or as raw bytes (`openssl rand 32 > k.bin`). The key is never printed."
    )]
    Sign {
        /// The bootstrap packet (TNDS XML); `-` for standard input
        #[arg(value_name = "PACKET")]
        packet: PathBuf,
        /// The key shared with the card
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// MAC algorithm (the card's key must have the same)
        #[arg(long, value_enum, default_value_t = Alg::AesCmac)]
        alg: Alg,
        /// Encoding named in the Content-Type
        #[arg(long, value_enum, default_value_t = Media::Xml)]
        media: Media,
    },
    /// Authority: store a bootstrap key on the card (never readable; sent encrypted)
    #[command(
        after_help = "Needs the authority's SCP03 keys and a security level with \
        C-DECRYPTION (cmac-cdec, cmac-cdec-rmac or all, the default)."
    )]
    SetKey {
        /// Key number on the card (0-255)
        #[arg(long, value_name = "N", value_parser = parse_u8)]
        key_id: u8,
        /// MAC algorithm of the key
        #[arg(long, value_enum)]
        alg: Alg,
        /// The key: hex text or raw bytes
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Device side: the card verifies the packet's MAC; after the user's consent the
    /// TNDS content is written into the device tree
    #[command(after_help = "Exit codes: 0 verified and applied, 6 the MAC does not \
        verify (nothing written), 9 declined by the user (nothing written), others: error \
        (nothing written). Prompts only on a terminal; --yes for scripted use.")]
    Verify {
        /// The bootstrap packet as received; `-` for standard input
        #[arg(value_name = "PACKET")]
        packet: PathBuf,
        /// The HTTP Content-Type header, e.g.
        /// "application/vnd.syncml.dm+xml; SEC=NETWORKID; MAC=…"
        #[arg(
            long,
            value_name = "HEADER",
            conflicts_with = "mac",
            required_unless_present = "mac"
        )]
        content_type: Option<String>,
        /// The MAC as hex (instead of --content-type)
        #[arg(long, value_name = "HEX")]
        mac: Option<String>,
        /// With --mac: the algorithm, to check the MAC's length before the card
        #[arg(long, value_enum, requires = "mac")]
        alg: Option<Alg>,
        /// With --mac: the packet's encoding
        #[arg(long, value_enum, default_value_t = Media::Xml, requires = "mac")]
        media: Media,
        /// The card's bootstrap key number
        #[arg(long, value_name = "N", default_value = "1", value_parser = parse_u8)]
        key_id: u8,
        /// The device tree directory (docs/device-tree.md); the content becomes device MOs
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
        /// Apply without asking (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Runs a `bootstrap` subcommand; `Ok` carries the exit code.
pub fn run(ctx: &Ctx, cmd: &BootstrapCommand) -> Result<Code> {
    match cmd {
        BootstrapCommand::Sign {
            packet,
            key,
            alg,
            media,
        } => sign(ctx, packet, key, alg.model(), media.model()),
        BootstrapCommand::SetKey {
            key_id,
            alg,
            key_file,
        } => set_key(ctx, *key_id, alg.model(), key_file),
        BootstrapCommand::Verify {
            packet,
            content_type,
            mac,
            alg,
            media,
            key_id,
            device,
            init,
            yes,
        } => verify(
            ctx,
            packet,
            content_type.as_deref(),
            mac.as_deref(),
            alg.map(Alg::model),
            media.model(),
            *key_id,
            device,
            *init,
            *yes,
        ),
    }
}

/// Reads a packet (or `-`: standard input), at most the card's limit.
fn read_packet(path: &Path) -> Result<Vec<u8>> {
    let (name, reader): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
        ("standard input".into(), Box::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot open the packet {}", path.display()))?;
        (path.display().to_string(), Box::new(f))
    };
    let mut bytes = Vec::new();
    reader
        .take(bootstrap::MAX_PACKET as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the packet {name}"))?;
    if bytes.len() > bootstrap::MAX_PACKET {
        return Err(usage(format!(
            "the packet {name} is larger than {} bytes, the most the card verifies",
            bootstrap::MAX_PACKET
        )));
    }
    Ok(bytes)
}

/// Reads a bootstrap key: hex text (whitespace ignored) or raw bytes.
fn read_key(path: &Path, alg: MacAlgorithm) -> Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?,
    );
    let text: Zeroizing<String> = Zeroizing::new(
        raw.iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|&b| b as char)
            .collect(),
    );
    let key = match hex::decode(text.as_bytes()) {
        Ok(k) if !k.is_empty() && raw.is_ascii() => Zeroizing::new(k),
        _ => raw.clone(),
    };
    if !alg.key_len_ok(key.len()) {
        return Err(usage(format!(
            "key file {}: a {} key must be {}, this one is {} bytes (hex text or raw bytes; \
             the key is not shown)",
            path.display(),
            alg.name(),
            if alg == MacAlgorithm::AesCmac {
                "16 or 32 bytes"
            } else {
                "16 to 64 bytes"
            },
            key.len()
        )));
    }
    Ok(key)
}

fn sign(ctx: &Ctx, packet: &Path, key: &Path, alg: MacAlgorithm, media: MediaType) -> Result<Code> {
    let key = read_key(key, alg)?;
    let data = read_packet(packet)?;
    let mac = bootstrap::compute_mac(alg, &key, &data)?;
    let header = content_type(media, SecMethod::NetworkId, &mac);
    if ctx.json {
        print_json(&json!({
            "algorithm": alg.name(),
            "mac": hex_upper(&mac),
            "content_type": header,
            "packet_size": data.len(),
        }))?;
    } else {
        println!("MAC           {}", hex_upper(&mac));
        println!("Content-Type: {header}");
    }
    Ok(Code::Ok)
}

fn set_key(ctx: &Ctx, key_id: u8, alg: MacAlgorithm, key_file: &Path) -> Result<Code> {
    let key = read_key(key_file, alg)?;
    ctx.require_authority("bootstrap set-key")?;
    if ctx.security_level().bits() & 0x02 == 0 {
        return Err(usage(
            "bootstrap set-key sends a secret key: use a security level with C-DECRYPTION \
             (--security-level cmac-cdec, cmac-cdec-rmac or all)",
        ));
    }
    let (mut session, who) = open_as(ctx, false)?;
    bootstrap::provision_key(&mut session, key_id, alg, &key)
        .with_context(|| format!("storing bootstrap key {key_id} as {who}"))?;
    if ctx.json {
        print_json(&json!({"key_id": key_id, "algorithm": alg.name(), "result": "stored"}))?;
    } else {
        println!(
            "bootstrap key {key_id} stored ({}; never readable)",
            alg.name()
        );
    }
    Ok(Code::Ok)
}

#[allow(clippy::too_many_arguments)]
fn verify(
    ctx: &Ctx,
    packet_path: &Path,
    header: Option<&str>,
    mac_hex: Option<&str>,
    alg: Option<MacAlgorithm>,
    media: MediaType,
    key_id: u8,
    device: &Path,
    init: bool,
    yes: bool,
) -> Result<Code> {
    // Everything the card does not decide is checked before it is touched.
    let (media, mac) = match (header, mac_hex) {
        (Some(h), _) => {
            let parsed = parse_content_type(h).map_err(|e| usage(e.to_string()))?;
            check_mac_length_for(alg, &parsed.mac)
                .map_err(|e| usage(format!("the MAC of the Content-Type: {e}")))?;
            (parsed.media_type, parsed.mac)
        }
        (None, Some(m)) => {
            let m: String = m
                .chars()
                .filter(|c| !c.is_whitespace() && *c != ':')
                .collect();
            let mac = hex::decode(&m).map_err(|_| usage(format!("--mac {m:?} is not hex")))?;
            check_mac_length_for(alg, &mac).map_err(|e| usage(format!("--mac: {e}")))?;
            (media, mac)
        }
        (None, None) => return Err(usage("give --content-type HEADER or --mac HEX")),
    };
    if !yes && !ctx.interactive() {
        return Err(usage(
            "bootstrap verify asks the user before applying; not on a terminal: pass --yes",
        ));
    }
    // A mistyped --device must not start a new tree: it must be one, or with
    // --init be new or empty (created only when the content is applied).
    let checked = if init {
        DirectoryTree::check_init(device)
    } else {
        DirectoryTree::open_existing(device).map(|_| ())
    };
    checked.map_err(|e| usage(format!("--device {e}")))?;
    let packet = read_packet(packet_path)?;
    let (mut session, who) = open_as(ctx, false)?;
    let mut prompt_error = None;
    let outcome = bootstrap::verify_and_apply(
        &mut session,
        key_id,
        media,
        &packet,
        &mac,
        device,
        &mut |content| {
            if yes {
                return true;
            }
            let question = format!(
                "The card verified this bootstrap ({} bytes, nodes: {}). Apply it to {}?",
                packet.len(),
                content.nodes.join(", "),
                device.display()
            );
            match ask(ctx, &question, "applying a bootstrap") {
                Ok(answer) => answer,
                Err(e) => {
                    prompt_error = Some(e);
                    false
                }
            }
        },
    )
    .with_context(|| format!("bootstrap with key {key_id} as {who}"))?;
    if let Some(e) = prompt_error {
        return Err(e);
    }
    let (result, code, path) = match &outcome {
        BootstrapOutcome::Applied(p) => ("applied", Code::Ok, Some(p.display().to_string())),
        BootstrapOutcome::MacInvalid => ("mac-invalid", Code::VerificationFailed, None),
        BootstrapOutcome::Declined => ("declined", Code::Declined, None),
    };
    if ctx.json {
        print_json(&json!({
            "result": result,
            "key_id": key_id,
            "packet_size": packet.len(),
            "written": path,
        }))?;
    } else {
        match &outcome {
            BootstrapOutcome::Applied(p) => {
                println!(
                    "bootstrap verified by the card and applied: {}",
                    p.display()
                )
            }
            BootstrapOutcome::MacInvalid => eprintln!(
                "error: the card did not verify the MAC with bootstrap key {key_id}; nothing \
                 was written (the card counted and audited the failure)"
            ),
            BootstrapOutcome::Declined => {
                eprintln!("bootstrap declined by the user; nothing was written")
            }
        }
    }
    Ok(code)
}
