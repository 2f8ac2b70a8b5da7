//! The command line: global options, subcommands and their help texts.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use dmsc_host::card_model::scp03::SecurityLevel;

/// Shown at the end of `dmsc --help`.
pub const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  error (I/O, corrupt card state, unexpected card answer, protocol error)
  2  usage: bad arguments or input (bad hex, key length, object reference, missing PIN)
  3  no PC/SC service, no (matching) reader, ambiguous reader, no card, card removed,
     or built without PC/SC support
  4  the card refused: security status not satisfied (6982), conditions of use (6985),
     authority authentication failed (wrong SCP03 keys)
  5  PIN or PUK blocked (6983)
  6  verification failed: MAC or signature does not verify (6300), approval refused,
     a demo step gave an unexpected result
  7  wrong PIN or PUK (63Cx); the message says how many tries are left
  8  object or key not found (6A82, 6A88), e.g. an unknown SCP03 key version
  9  declined by the user (bootstrap verify, firmware approve --on-unapproved ask)
  141 standard output closed by its reader (dmsc … | head): ended quietly

Secrets: PINs never go on the command line (prompt, --pin-file or DMSC_PIN);
authority keys come from --scp-key-file, DMSC_SCP_KEYS or --scp-keys, are
never printed, and --trace redacts them. See docs/cli.md for JSON schemas.";

/// dmsc — DM smart-card toolkit: inspect a card, manage its PIN, read and
/// delete its objects as the device, the user or an authority, run a simulated
/// card, and walk through every use case with `dmsc demo`.
#[derive(Debug, Parser)]
#[command(
    name = "dmsc",
    version,
    about = "DM smart-card toolkit: card info, PINs, objects, audit log, simulator and demo",
    long_about = None,
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// PC/SC reader: a case-insensitive substring of its name (`dmsc readers` lists them)
    #[arg(
        long,
        global = true,
        env = "DMSC_READER",
        hide_env_values = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub reader: Option<String>,

    /// Use the simulated card kept in this state file, in-process (no PC/SC); takes
    /// precedence over --reader
    #[arg(
        long,
        global = true,
        env = "DMSC_SIM",
        hide_env_values = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub sim: Option<PathBuf>,

    /// Machine-readable output on stdout (documented schemas, with "schema_version": 1)
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Trace every APDU on stderr (PINs and keys redacted)
    #[arg(long, global = true, help_heading = "Global options")]
    pub trace: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(
        short,
        long,
        global = true,
        action = clap::ArgAction::Count,
        conflicts_with = "quiet",
        help_heading = "Global options"
    )]
    pub verbose: u8,

    /// Only errors on stderr (no warnings or notes)
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Authority SCP03 keys ENC:MAC:DEK, hex, 16/24/32 bytes each (prefer
    /// --scp-key-file or DMSC_SCP_KEYS: the command line is visible to other users)
    #[arg(
        long,
        global = true,
        env = "DMSC_SCP_KEYS",
        hide_env_values = true,
        value_name = "ENC:MAC:DEK",
        help_heading = "Authority (SCP03)"
    )]
    pub scp_keys: Option<String>,

    /// File with the authority keys: one line ENC:MAC:DEK (hex), or JSON
    /// {"enc": "…", "mac": "…", "dek": "…"}
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Authority (SCP03)"
    )]
    pub scp_key_file: Option<PathBuf>,

    /// File with MASTER keys (format as --scp-key-file): every card's authority
    /// keys are derived from them and its card ID (docs/key-diversification.md);
    /// used by fleet acl-grant, fleet provision and ota build with --key-version.
    /// For development: production keeps master keys in an HSM
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Authority (SCP03)"
    )]
    pub master_key_file: Option<PathBuf>,

    /// PKCS#11 module holding the master keys (e.g. /usr/lib/softhsm/libsofthsm2.so);
    /// with --hsm-token and --key-version, like --master-key-file but the keys stay
    /// in the token. The user PIN: DMSC_HSM_PIN or a prompt
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        requires = "hsm_token",
        help_heading = "Authority (SCP03)"
    )]
    pub hsm_module: Option<PathBuf>,

    /// Label of the PKCS#11 token holding dmsc-master-<kvn>-enc|mac|dek
    #[arg(
        long,
        global = true,
        value_name = "LABEL",
        requires = "hsm_module",
        help_heading = "Authority (SCP03)"
    )]
    pub hsm_token: Option<String>,

    /// Key version number of the authority's key set, hex (0x30) or decimal (48);
    /// 0 = the card's first [default: 0; `sim init`: 0x30]
    #[arg(
        long,
        global = true,
        value_name = "N",
        value_parser = parse_key_version,
        help_heading = "Authority (SCP03)"
    )]
    pub key_version: Option<u8>,

    /// SCP03 security level of authority sessions
    #[arg(
        long,
        global = true,
        value_parser = security_level_parser(),
        default_value = "all",
        value_name = "LEVEL",
        help_heading = "Authority (SCP03)"
    )]
    pub security_level: SecurityLevel,

    /// Read the user PIN from this file (first line) instead of DMSC_PIN or a prompt
    #[arg(long, global = true, value_name = "FILE", help_heading = "User PIN")]
    pub pin_file: Option<PathBuf>,

    /// Run as if the clock read this instant (RFC 3339) when the command started; it
    /// then runs on in real time (policy decisions, command deadlines, watches)
    #[arg(
        long,
        global = true,
        env = "DMSC_NOW",
        value_name = "TIME",
        help_heading = "Global options"
    )]
    pub now: Option<jiff::Timestamp>,
}

/// The SCP03 security levels `--security-level` offers (P1 of EXTERNAL
/// AUTHENTICATE): name, level byte and help.
const SECURITY_LEVELS: [(&str, u8, &str); 5] = [
    ("cmac", 0x01, "C-MAC (01)"),
    ("cmac-cdec", 0x03, "C-MAC and C-DECRYPTION (03)"),
    ("cmac-rmac", 0x11, "C-MAC and R-MAC (11)"),
    ("cmac-cdec-rmac", 0x13, "C-MAC, C-DECRYPTION and R-MAC (13)"),
    (
        "all",
        0x33,
        "C-MAC, C-DECRYPTION, R-MAC and R-ENCRYPTION (33)",
    ),
];

/// `--security-level`: a level by name, as the card model's [`SecurityLevel`].
pub fn security_level_parser() -> impl TypedValueParser<Value = SecurityLevel> {
    PossibleValuesParser::new(
        SECURITY_LEVELS
            .iter()
            .map(|(name, _, help)| PossibleValue::new(name).help(help)),
    )
    .try_map(|name: String| {
        let bits = SECURITY_LEVELS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, bits, _)| *bits)
            .ok_or_else(|| format!("unknown security level {name}"))?;
        SecurityLevel::new(bits).map_err(|e| e.to_string())
    })
}

/// A card latency: a whole number with a unit, `15ms`, `800us` or `1s` (at most 10 s).
pub fn parse_latency(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    const HINT: &str = "expected a whole number with a unit, e.g. 15ms, 800us or 1s";
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| HINT.to_string())?;
    let latency = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return Err(HINT.to_string()),
    };
    if latency > Duration::from_secs(10) {
        return Err("at most 10s".to_string());
    }
    Ok(latency)
}

/// `0x30`, `0X30` (hex) or `48` (decimal).
/// A key version number: hex with `0x` (`0x30`) or decimal (`48`). A bare
/// `30` to `39` is refused: dmsc prints key versions in hex (`0x30`), and
/// SCP03 key sets are usually numbered 0x30 to 0x3F, so `30` is most likely
/// the hex version with its `0x` left out, while as a decimal it would mean
/// 0x1E. Those versions are written in hex (`0x1E` … `0x27`).
pub fn parse_key_version(s: &str) -> Result<u8, String> {
    let s = s.trim();
    if s.len() == 2 && s.starts_with('3') && s.bytes().all(|b| b.is_ascii_digit()) {
        let hex = u8::from_str_radix(s, 16).unwrap_or(0);
        let dec: u8 = s.parse().unwrap_or(0);
        return Err(format!(
            "'{s}' is ambiguous: key versions are shown in hex (0x{hex:02X}), and a bare {s} \
             would be decimal (0x{dec:02X}). Write 0x{hex:02X} (or {hex} in decimal), or \
             0x{dec:02X} if you mean decimal {dec}"
        ));
    }
    parse_u8(s).map_err(|_| {
        "expected a key version, hex with 0x (0x30) or decimal (48), 0 to 255".to_string()
    })
}

/// Formats a key version the one way dmsc prints it: `0x30`.
pub fn key_version_text(kvn: u8) -> String {
    format!("0x{kvn:02X}")
}

pub fn parse_u8(s: &str) -> Result<u8, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| "expected 0 to 255, decimal (48) or hex with 0x (0x30)".to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the PC/SC readers and whether each holds a card
    Readers,

    /// Card identity, AID, applet version, generation, capabilities, memory, PIN tries
    Info,

    /// Send raw command APDUs (hex) after SELECT; prints each response's data and SW
    #[command(after_help = "Example: dmsc apdu 00CB3FFF0388000000 8020008100\n\
        Spaces and colons inside an APDU are ignored. The exit code is 0 whatever the \
        status words are.")]
    Apdu {
        /// Command APDUs, each as hex (CLA INS P1 P2 [Lc data] [Le])
        #[arg(required = true, value_name = "HEX")]
        apdus: Vec<String>,
        /// Open an authority session first (SCP03 keys needed) and send the APDUs in it
        #[arg(long)]
        secure: bool,
    },

    /// The user PIN: status, verify, change, unblock with the PUK
    #[command(subcommand)]
    Pin(PinCommand),

    /// The card's objects: MO records, policy, keys, approvers, floors…
    #[command(subcommand)]
    Object(ObjectCommand),

    /// Read the card's audit log (needs an authority: --scp-keys or --scp-key-file)
    Audit {
        /// Only entries with this sequence number or later
        #[arg(long, value_name = "SEQ")]
        from: Option<u32>,
        /// Only this event (e.g. alarm, access-denied, auth-failure, object-created)
        #[arg(long, value_name = "EVENT")]
        event: Option<String>,
        /// Only this principal (`*`, `user` or an authority name)
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },

    /// Simulated cards: create one, or attach cards to pcscd through vpcd
    #[command(subcommand)]
    Sim(SimCommand),

    /// Walk through every use case on an embedded simulated card
    #[command(
        after_help = "Uses a fresh temporary card unless --sim PATH is given on the \
        command line (then a new card is created there; an existing file is refused). \
        DMSC_SIM is ignored by the demo. Exit code 6 when any step's result is not the \
        expected one."
    )]
    Demo {
        /// Keep the temporary card state file and print its path
        #[arg(long)]
        keep: bool,
    },

    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: Shell,
    },

    /// Print the manual page (roff), or write one page per subcommand into a directory
    Man {
        /// Write dmsc.1, dmsc-info.1, … into this directory
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },

    /// HTTP bootstrap: MAC a packet (authority), store a key, verify and apply (device)
    #[command(subcommand)]
    Bootstrap(crate::cmd::bootstrap::BootstrapCommand),

    /// Firmware/software approval: approvers, rule, signing, approve, confirm-installed
    #[command(subcommand)]
    Firmware(crate::cmd::firmware::FirmwareCommand),
    /// OMA DM management objects (TNDS) on the card; copy and compare with the device tree
    #[command(subcommand)]
    Mo(MoCommand),

    /// Apply the card's MOs to the device tree (one APDU when the card is unchanged)
    #[command(
        after_help = "The device tree is a directory (docs/device-tree.md). The change \
        is atomic: a crash or a card pulled mid-refresh leaves the previous tree."
    )]
    Refresh {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
    },

    /// Follow a PC/SC reader: refresh on insertion and on content change; a removed
    /// card's MOs leave the device tree
    #[command(
        after_help = "Prints one line per event (one JSON document per line with \
        --json). Stops on SIGINT/SIGTERM, or after --events events."
    )]
    Watch {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
        /// Seconds between two checks of the card's generation
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        interval: f64,
        /// Stop after this many events
        #[arg(long, value_name = "N")]
        events: Option<u64>,
    },

    /// Over-the-air updates: the authority builds a protected script for one card,
    /// the device relays it
    #[command(subcommand)]
    Ota(OtaCommand),
    /// The enterprise policy: put, show, eval, timeline, enforce, signed commands
    #[command(subcommand)]
    Policy(crate::cmd::policy::PolicyCommand),
    /// Access control lists of the card's objects (OMA DM syntax)
    #[command(subcommand)]
    Acl(AclCommand),

    /// Authority SCP03 key sets: list, add, rotate, remove (GlobalPlatform PUT KEY)
    #[command(subcommand)]
    Authority(AuthorityCommand),

    /// Show or set the card's consecutive-failure limit (alarm threshold, at least 4)
    FailureLimit {
        /// The new limit (4 to 255); without it, show the current one
        #[arg(value_name = "N", value_parser = clap::value_parser!(u8).range(4..))]
        limit: Option<u8>,
    },

    /// Many cards at once: every reader holding a card
    #[command(subcommand)]
    Fleet(FleetCommand),

    /// Interactive session on one card: the commands without `dmsc`, login/logout
    /// of an authority with an idle timeout (docs/shell.md)
    Shell(crate::cmd::shell::ShellArgs),

    /// The standard bootstrap data on a SIM/UICC: PKCS#15 objects, LwM2M bootstrap (docs/uicc.md)
    Uicc(crate::cmd::uicc::UiccArgs),
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Show an object's ACL
    #[command(
        after_help = "OBJECT: an object reference (mo:./URI, policy, …) or an MO URI \
        starting with ./ . Acts as the device; as an authority with SCP03 keys; as the user \
        too with --user."
    )]
    Get {
        /// The object, e.g. ./DMAcc/Gw or policy
        #[arg(value_name = "OBJECT")]
        object: String,
        #[command(flatten)]
        who: AsUser,
    },
    /// Replace an object's ACL (needs Replace on it); asks for confirmation when
    /// the new ACL takes rights away
    #[command(after_help = "Example: dmsc acl set ./DMAcc/Gw 'Get=*&Replace=ServerA+ServerB'")]
    Set {
        /// The object
        #[arg(value_name = "OBJECT")]
        object: String,
        /// The new ACL, e.g. 'Get=*&Replace=ServerA+ServerB' ('' grants nothing)
        #[arg(value_name = "ACL")]
        acl: String,
        /// Do not ask for confirmation when rights are taken away
        #[arg(long, short = 'y')]
        yes: bool,
        /// Allow an ACL that leaves no authority (and not `*`) with Replace: nobody
        /// could ever change it again
        #[arg(long)]
        allow_lockout: bool,
        #[command(flatten)]
        who: AsUser,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// The key sets the authority may read: key version, name, key length, key check values
    List,
    /// Add an authority's key set (needs Add on the card object)
    #[command(after_help = "The new keys come from --new-key-file (same formats as \
        --scp-key-file) or DMSC_NEW_SCP_KEYS (ENC:MAC:DEK); they travel encrypted with the \
        session authority's DEK and are never printed.")]
    Add {
        /// The new authority's name (its ACL identifier)
        #[arg(value_name = "NAME")]
        name: String,
        /// Key version number of the new key set (01 to FE)
        #[arg(long, value_name = "N", value_parser = parse_key_version)]
        new_key_version: u8,
        #[command(flatten)]
        keys: NewKeys,
    },
    /// Replace a key set's keys (by its administrators or the authority itself)
    Rotate {
        /// The key version to rotate
        #[arg(value_name = "KVN", value_parser = parse_key_version)]
        kvn: u8,
        /// Key version of the new keys [default: the same]
        #[arg(long, value_name = "N", value_parser = parse_key_version)]
        new_key_version: Option<u8>,
        #[command(flatten)]
        keys: NewKeys,
    },
    /// Remove a key set (the card refuses to remove its last one)
    Remove {
        /// The key version to remove
        #[arg(value_name = "KVN", value_parser = parse_key_version)]
        kvn: u8,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Where new authority keys come from.
#[derive(Debug, Args)]
pub struct NewKeys {
    /// File with the new keys: one line ENC:MAC:DEK (hex), or JSON {"enc", "mac", "dek"}
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    /// The new keys ENC:MAC:DEK (prefer --new-key-file)
    #[arg(
        long,
        env = "DMSC_NEW_SCP_KEYS",
        hide_env_values = true,
        value_name = "ENC:MAC:DEK",
        conflicts_with = "new_key_file"
    )]
    pub new_keys: Option<String>,
}

/// Where the fleet's cards are.
#[derive(Debug, Args)]
pub struct FleetSource {
    /// Simulated cards: every *.state file in DIR is one card (instead of PC/SC readers)
    #[arg(long, value_name = "DIR")]
    pub sim_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Every reader with a card: reader, card ID, generation
    List {
        #[command(flatten)]
        source: FleetSource,
    },
    /// Grant a right on an object's ACL on every card, or on none
    #[command(
        after_help = "First every card's ACL is read and checked (the --as authority \
        must hold Replace on it); if any card fails, nothing changes on any card and the \
        failed card IDs are reported (exit 4). Otherwise the grant is applied to every card; \
        a card lost during the apply is reported and the cards already changed are put back \
        to their previous ACL (exit 3). The --as authority's keys: --scp-key-file, \
        DMSC_SCP_KEYS or --scp-keys, with --key-version."
    )]
    AclGrant {
        /// `all`, or card IDs (hex) separated by commas
        #[arg(long, value_name = "all|ID,…")]
        cards: String,
        /// The object, e.g. ./DMAcc/Gw or policy
        #[arg(long, value_name = "URI")]
        object: String,
        /// The right: Add, Delete, Exec, Get or Replace
        #[arg(long, value_name = "RIGHT")]
        right: String,
        /// The principal granted the right: an authority name, user or *
        #[arg(long, value_name = "PRINCIPAL")]
        to: String,
        /// The requesting authority (it must hold Replace on every card's ACL)
        #[arg(long = "as", value_name = "AUTHORITY")]
        as_authority: String,
        #[command(flatten)]
        source: FleetSource,
    },
    /// Provision every card in parallel (one worker per reader) from a profile
    #[command(
        after_help = "DIR holds profile.json: {\"objects\": [{\"ref\": \"mo:./DMAcc/Gw\", \
        \"mo_type\": \"urn:oma:mo:oma-dm-dmacc:1.0\", \"file\": \"dmacc.xml\", \"acl\": \
        \"Get=*&Replace=admin\"}, {\"ref\": \"policy\", \"file\": \"policy.bin\"}], \
        \"failure_limit\": 6}; files are relative to DIR. The authority's keys: \
        --scp-key-file, DMSC_SCP_KEYS or --scp-keys. Exit 1 when any card failed."
    )]
    Provision {
        /// The profile directory (with profile.json)
        #[arg(long, value_name = "DIR")]
        profile: PathBuf,
        /// `all`, or card IDs (hex) separated by commas
        #[arg(long, value_name = "all|ID,…")]
        cards: String,
        #[command(flatten)]
        source: FleetSource,
        #[command(flatten)]
        record: RecordOptions,
    },
    /// The provisioning records of a job (or of every job): --json, --csv or a table
    #[command(
        after_help = "CSV columns: card_id,job,station,status,key_version,kcv_enc,\
        kcv_mac,kcv_dek,started,finished,attempt,profile_digest,error (docs/records.md)."
    )]
    Records {
        /// Only this job
        #[arg(long, value_name = "NAME")]
        job: Option<String>,
        /// The record database (SQLite file)
        #[arg(long, value_name = "PATH", default_value = DEFAULT_DB)]
        db: PathBuf,
        /// CSV: a header line, then one line per attempt
        #[arg(long)]
        csv: bool,
    },
}

/// The record database `fleet provision --job` and `fleet records` use by default.
pub const DEFAULT_DB: &str = "dmsc-records.sqlite";

/// `fleet provision --job`: record every attempt, each card once per job.
#[derive(Debug, Args)]
pub struct RecordOptions {
    /// The job: each card is provisioned once for it, every attempt recorded (docs/records.md)
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// The record database (SQLite file) [default: dmsc-records.sqlite]
    #[arg(long, value_name = "PATH", requires = "job")]
    pub db: Option<PathBuf>,
    /// This station's name in the records [default: the host name]
    #[arg(long, value_name = "NAME", requires = "job")]
    pub station: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Tries left of the user PIN and the PUK
    Status,
    /// Check the user PIN (from --pin-file, DMSC_PIN or a prompt)
    #[command(
        after_help = "The PIN stays verified only in this card session, so this \
        mainly checks a PIN; commands that need the user (e.g. `object get --user`) take \
        the same PIN options."
    )]
    Verify,
    /// Change the user PIN (old: --pin-file/DMSC_PIN/prompt; new: --new-pin-file/DMSC_NEW_PIN/prompt)
    Change {
        /// Read the new PIN from this file instead of DMSC_NEW_PIN or a prompt
        #[arg(long, value_name = "FILE")]
        new_pin_file: Option<PathBuf>,
    },
    /// Unblock the user PIN with the PUK and set a new PIN
    Unblock {
        /// Read the PUK from this file instead of DMSC_PUK or a prompt
        #[arg(long, value_name = "FILE")]
        puk_file: Option<PathBuf>,
        /// Read the new PIN from this file instead of DMSC_NEW_PIN or a prompt
        #[arg(long, value_name = "FILE")]
        new_pin_file: Option<PathBuf>,
    },
}

/// Who the object commands act as, besides the device.
#[derive(Debug, Args)]
pub struct AsUser {
    /// Verify the user PIN first (--pin-file, DMSC_PIN or a prompt)
    #[arg(long)]
    pub user: bool,
}

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// List the objects of a kind that the caller may read
    #[command(
        after_help = "Acts as the device; as an authority when SCP03 keys are given \
        (--scp-keys, --scp-key-file, DMSC_SCP_KEYS); as the user too with --user."
    )]
    List {
        /// mo, bootstrap-key, approver, floor or authority
        #[arg(value_name = "KIND")]
        kind: String,
        #[command(flatten)]
        who: AsUser,
    },
    /// Read one object: its value and ACL
    #[command(
        after_help = "REF: mo:./URI, policy, bootstrap-key:ID, approver:NAME, \
        approval-rule, floor:CLASS, identity-key, audit-log, authority:KVN, card.\n\
        Acts as the device; as an authority when SCP03 keys are given; as the user too \
        with --user."
    )]
    Get {
        /// The object reference, e.g. mo:./DevInfo, policy, approver:owner
        #[arg(value_name = "REF")]
        object: String,
        /// Write the raw value to FILE (MO content, policy blob, SEC1 public key;
        /// other kinds: the value's TLV encoding)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        who: AsUser,
    },
    /// Delete one object (asks for confirmation on a terminal)
    Delete {
        /// The object reference
        #[arg(value_name = "REF")]
        object: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        who: AsUser,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Create (personalise) a new simulated card in a state file
    #[command(
        after_help = "Without --scp-keys/--scp-key-file/DMSC_SCP_KEYS the card gets the \
        well-known GlobalPlatform test keys 404142…4F (key version 0x30) and a warning is \
        printed. --pin/--puk take values on the command line ONLY because this \
        personalises a test card; every other command reads PINs from a file, the \
        environment or a prompt."
    )]
    Init {
        /// The new state file
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Name of the card's first authority (its administrator)
        #[arg(long, default_value = "admin", value_name = "NAME")]
        authority: String,
        /// Initial user PIN (test cards only)
        #[arg(long, default_value = "123456", value_name = "PIN")]
        pin: String,
        /// Initial PUK (test cards only)
        #[arg(long, default_value = "12345678", value_name = "PUK")]
        puk: String,
        /// Object storage in bytes
        #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
        capacity: u32,
        /// Consecutive authorisation failures before an alarm (at least 4)
        #[arg(long, default_value_t = 4, value_name = "N")]
        failure_limit: u8,
        /// Replace an existing state file (atomically: the old card stays if anything fails)
        #[arg(long)]
        force: bool,
    },
    /// Attach simulated cards to pcscd through its vpcd driver until SIGINT/SIGTERM
    #[command(
        after_help = "Prints exactly one line on stdout once every card is attached, \
        e.g. `ready: 2 cards attached (vpcd 127.0.0.1:35963, 127.0.0.1:35964)`."
    )]
    Serve {
        /// A card state file; repeat for more cards (card i uses port+i)
        #[arg(long = "state", required = true, value_name = "PATH")]
        states: Vec<PathBuf>,
        /// vpcd's listening base port on 127.0.0.1 (card i connects to port+i)
        #[arg(
            long,
            env = "DMSC_VPCD_PORT",
            hide_env_values = true,
            default_value_t = 35963
        )]
        port: u16,
        /// Reversed mode: card i listens on ADDR's host at ADDR's port + i for vpcd
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Answer each APDU this long after it arrived, as a real card's
        /// processing time (e.g. 15ms; units us, ms, s; at most 10s)
        #[arg(long, value_name = "DURATION", value_parser = parse_latency)]
        latency: Option<std::time::Duration>,
    },
}

/// MO file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MoFormat {
    /// OMA DM TNDS XML (syncml:dmddf1.2)
    Tnds,
    /// The equivalent JSON (docs/provisioning.md)
    Json,
}

#[derive(Debug, Subcommand)]
pub enum MoCommand {
    /// Store the MOs of a TNDS (or JSON) file on the card, one record per top-level node
    /// (an authority: SCP03 keys needed)
    Put {
        /// TNDS XML or JSON file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Root URI for the MO (the file must hold one top-level node), e.g. ./DMAcc
        #[arg(long, value_name = "URI")]
        uri: Option<String>,
        /// Card ACL of the record, e.g. 'Get=*&Replace=admin' (default: the card's)
        #[arg(long, value_name = "ACL")]
        acl: Option<String>,
    },
    /// Read one MO, or any node inside one, from the card as TNDS XML or JSON
    Get {
        /// Root URI or node path, e.g. ./DMAcc or ./DMAcc/ServerA/AppAddr
        #[arg(value_name = "URI")]
        uri: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = MoFormat::Tnds)]
        format: MoFormat,
        /// Write to FILE (atomically) instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List the MOs on the card that the caller may read
    List,
    /// Delete one MO from the card (an authority; asks for confirmation on a terminal)
    Delete {
        /// Root URI
        #[arg(value_name = "URI")]
        uri: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Copy an MO, or a subtree of it, from the device tree to the card (an authority)
    Copy {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// The MO's root URI in the device tree, or a node path inside an MO
        #[arg(long, value_name = "URI")]
        uri: String,
        /// Only this part, relative to the MO root (e.g. ServerA/AppAddr)
        #[arg(long, value_name = "PATH")]
        subtree: Option<String>,
        /// Card ACL of the new record
        #[arg(long, value_name = "ACL")]
        acl: Option<String>,
        /// Erase the device copy after the card stored it (default: keep both)
        #[arg(long)]
        erase_device: bool,
        /// Do not ask before erasing the device copy
        #[arg(long, short = 'y')]
        yes: bool,
        /// Create the device tree if DIR is new or empty (else DIR must be one)
        #[arg(long)]
        init: bool,
    },
    /// Compare the device tree's MOs with the card's, node by node
    Diff {
        /// The device tree directory
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        /// Only this node (an MO root or a node path inside an MO)
        #[arg(value_name = "URI")]
        uri: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OtaCommand {
    /// Device side: the card ID and SCP03 sequence counter the authority needs (uses
    /// up one counter value)
    Request {
        /// Write the request JSON to FILE instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Authority side: build a protected script for the card of a request (SCP03 keys
    /// of that card needed)
    Build {
        /// The request from `dmsc ota request`
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Store the MOs of this TNDS/JSON file (repeatable)
        #[arg(long = "put", value_name = "FILE")]
        put: Vec<PathBuf>,
        /// Delete this MO (repeatable)
        #[arg(long = "delete", value_name = "URI")]
        delete: Vec<String>,
        /// Card ACL for the MOs put
        #[arg(long, value_name = "ACL")]
        acl: Option<String>,
        /// Replace the enterprise policy with this policy file (signed with --sign-key)
        #[arg(long, value_name = "FILE", requires = "sign_key")]
        policy: Option<PathBuf>,
        /// The enterprise administrator's P-256 private key that signs --policy (its
        /// public key must be the one on the card)
        #[arg(long, value_name = "KEY", requires = "policy")]
        sign_key: Option<PathBuf>,
        /// The script file to write
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
    /// Device side: relay a script to the card (status words checked, nothing else)
    Apply {
        /// The script from `dmsc ota build`
        #[arg(value_name = "FILE")]
        script: PathBuf,
    },
}

#[cfg(test)]
mod latency_tests {
    use super::parse_latency;
    use std::time::Duration;

    #[test]
    fn latencies_with_units_and_bad_ones() {
        assert_eq!(parse_latency("15ms"), Ok(Duration::from_millis(15)));
        assert_eq!(parse_latency("800us"), Ok(Duration::from_micros(800)));
        assert_eq!(parse_latency("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_latency("0ms"), Ok(Duration::ZERO));
        for bad in ["15", "ms", "1.5ms", "-1ms", "15 ms", "15min"] {
            assert!(parse_latency(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_latency("11s"), Err("at most 10s".to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_levels_by_name_are_the_card_models() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["dmsc"];
            argv.extend_from_slice(args);
            argv.push("info");
            Cli::try_parse_from(argv).map(|c| c.global.security_level.bits())
        };
        assert_eq!(parse(&[]).ok(), Some(0x33));
        for (name, bits, _) in SECURITY_LEVELS {
            assert_eq!(parse(&["--security-level", name]).ok(), Some(bits));
        }
        assert!(parse(&["--security-level", "none"]).is_err());
    }
}
