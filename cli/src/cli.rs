//! The command line: the global options and the top-level command enum. Each
//! command's own arguments are its module's (`cmd::X`).

use std::path::PathBuf;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};
use dmsc_host::card_model::scp03::SecurityLevel;
use zeroize::Zeroizing;

use crate::cmd;
use crate::common::{parse_key_version, security_level_parser};
use crate::context::{Clock, Ctx, ModemOptions};
use crate::exit::usage;
use crate::secrets::KeySource;

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

    /// Reach the card (a SIM/UICC) through a cellular modem's AT+CSIM on this serial
    /// device (opened raw, 115200 8N1, `ATE0` first) instead of PC/SC; --sim takes
    /// precedence
    #[arg(
        long,
        global = true,
        env = "DMSC_MODEM",
        hide_env_values = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub modem: Option<PathBuf>,

    /// With --modem: logical channels through AT+CCHO / AT+CGLA / AT+CCHC instead of
    /// MANAGE CHANNEL inside AT+CSIM
    #[arg(long, global = true, help_heading = "Global options")]
    pub modem_cgla: bool,

    /// With --modem: seconds to wait for each modem answer
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value_t = 10,
        help_heading = "Global options"
    )]
    pub modem_timeout: u64,

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

impl Global {
    /// Resolves the global options. `--sim` and `--reader` both on the command
    /// line is a usage error; the command line wins over the environment
    /// (`--reader` over `DMSC_SIM`, `--sim` over `DMSC_READER`); between two
    /// environment variables `DMSC_SIM` wins. The same
    /// for `--scp-keys` and `--scp-key-file`; a key file wins over `DMSC_SCP_KEYS`.
    pub fn into_ctx(self, m: &ArgMatches) -> Result<Ctx> {
        let g = self;
        let sim_cli = from_command_line(m, "sim");
        let reader_cli = from_command_line(m, "reader");
        if sim_cli && reader_cli {
            return Err(usage("give either --sim or --reader, not both"));
        }
        // A reader named on the command line is not overridden by DMSC_SIM.
        let sim = if reader_cli && !sim_cli { None } else { g.sim };
        let keys_cli = from_command_line(m, "scp_keys");
        let keys = match (g.scp_keys, g.scp_key_file) {
            (Some(_), Some(_)) if keys_cli => {
                return Err(usage("give either --scp-keys or --scp-key-file, not both"))
            }
            (_, Some(file)) => Some(KeySource::File(file)),
            (Some(text), None) => Some(KeySource::Inline {
                text: Zeroizing::new(text),
                what: if keys_cli {
                    "--scp-keys"
                } else {
                    "DMSC_SCP_KEYS"
                },
            }),
            (None, None) => None,
        };
        Ok(Ctx {
            reader: g.reader,
            sim,
            sim_on_command_line: sim_cli,
            modem: g.modem.map(|path| ModemOptions {
                path,
                cgla: g.modem_cgla,
                timeout: std::time::Duration::from_secs(g.modem_timeout.max(1)),
            }),
            json: g.json,
            trace: g.trace,
            verbose: g.verbose,
            quiet: g.quiet,
            keys,
            master_key_file: g.master_key_file,
            hsm: g.hsm_module.zip(g.hsm_token),
            key_version: g.key_version,
            level: g.security_level,
            pin_file: g.pin_file,
            clock: Clock::starting_at(g.now),
            shell: None,
        })
    }
}

fn from_command_line(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
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
    Apdu(cmd::apdu::ApduArgs),

    /// The user PIN: status, verify, change, unblock with the PUK
    #[command(subcommand)]
    Pin(cmd::pin::PinCommand),

    /// The card's objects: MO records, policy, keys, approvers, floors…
    #[command(subcommand)]
    Object(cmd::object::ObjectCommand),

    /// Read the card's audit log (needs an authority: --scp-keys or --scp-key-file)
    Audit(cmd::audit::AuditArgs),

    /// Simulated cards: create one, or attach cards to pcscd through vpcd
    #[command(subcommand)]
    Sim(cmd::sim::SimCommand),

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
    Completions(cmd::docs::CompletionsArgs),

    /// Print the manual page (roff), or write one page per subcommand into a directory
    Man(cmd::docs::ManArgs),

    /// HTTP bootstrap: MAC a packet (authority), store a key, verify and apply (device)
    #[command(subcommand)]
    Bootstrap(cmd::bootstrap::BootstrapCommand),

    /// Firmware/software approval: approvers, rule, signing, approve, confirm-installed
    #[command(subcommand)]
    Firmware(cmd::firmware::FirmwareCommand),
    /// OMA DM management objects (TNDS) on the card; copy and compare with the device tree
    #[command(subcommand)]
    Mo(cmd::mo::MoCommand),

    /// Apply the card's MOs to the device tree (one APDU when the card is unchanged)
    #[command(
        after_help = "The device tree is a directory (docs/device-tree.md). The change \
        is atomic: a crash or a card pulled mid-refresh leaves the previous tree."
    )]
    Refresh(cmd::mo::RefreshArgs),

    /// Follow a PC/SC reader: refresh on insertion and on content change; a removed
    /// card's MOs leave the device tree
    #[command(
        after_help = "Prints one line per event (one JSON document per line with \
        --json). Stops on SIGINT/SIGTERM, or after --events events."
    )]
    Watch(cmd::mo::WatchArgs),

    /// Over-the-air updates: the authority builds a protected script for one card,
    /// the device relays it
    #[command(subcommand)]
    Ota(cmd::ota::OtaCommand),
    /// The enterprise policy: put, show, eval, timeline, enforce, signed commands
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Access control lists of the card's objects (OMA DM syntax)
    #[command(subcommand)]
    Acl(cmd::acl::AclCommand),

    /// Authority SCP03 key sets: list, add, rotate, remove (GlobalPlatform PUT KEY)
    #[command(subcommand)]
    Authority(cmd::authority::AuthorityCommand),

    /// Show or set the card's consecutive-failure limit (alarm threshold, at least 4)
    FailureLimit(cmd::authority::FailureLimitArgs),

    /// Many cards at once: every reader holding a card
    #[command(subcommand)]
    Fleet(cmd::fleet::FleetCommand),

    /// Interactive session on one card: the commands without `dmsc`, login/logout
    /// of an authority with an idle timeout (docs/shell.md)
    Shell(cmd::shell::ShellArgs),

    /// The standard bootstrap data on a SIM/UICC: PKCS#15 objects, LwM2M bootstrap (docs/standard-cards.md)
    Uicc(cmd::uicc::UiccArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::SECURITY_LEVELS;

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
