//! `dmsc firmware …`: approvers, the approval rule, signing statements, and the
//! device side — approve a package with the card, confirm its installation
//! (docs/firmware-approval.md). Protocol logic is in `dmsc_host::firmware`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use dmsc_host::card_model::commands::{ApprovalVerdict, PackageId};
use dmsc_host::card_model::objects::{check_name, ObjectRef, Version};
use dmsc_host::firmware::mcuboot::{Check, McubootReport};
use dmsc_host::firmware::{self, ApprovalFile, Decision, Outcome, PackageHash};
use dmsc_host::p256_keys::{load_private_key, load_public_key, sec1_point};
use dmsc_host::CardCommands;
use serde_json::{json, Value};

use crate::common::{ask, open_as};
use crate::context::Ctx;
use crate::exit::{coded, usage, Code};
use crate::output::{hex_upper, print_json};

/// What to do with a package the card does not approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnUnapproved {
    /// Refuse it (exit 6)
    Reject,
    /// Ask the user (after the PIN, when the card's rule requires the user)
    Ask,
}

impl From<OnUnapproved> for firmware::OnUnapproved {
    fn from(o: OnUnapproved) -> Self {
        match o {
            OnUnapproved::Reject => firmware::OnUnapproved::Reject,
            OnUnapproved::Ask => firmware::OnUnapproved::Ask,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Approvers' P-256 public keys on the card (add/remove: an authority)
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// The approval rule: the approvers who must all approve (set: an authority)
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Print (or write) the exact statement bytes an approver signs, e.g. with
    /// `openssl dgst -sha256 -sign KEY.pem -out FILE.sig FILE`
    #[command(disable_version_flag = true)]
    Statement {
        /// The package (`-` for standard input)
        #[arg(value_name = "PACKAGE")]
        package: PathBuf,
        #[command(flatten)]
        what: StatementArgs,
        /// Write the statement to FILE instead of standard output
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    #[command(disable_version_flag = true)]
    /// Approver side: sign the approval statement of a package with a P-256 key
    #[command(
        after_help = "KEY.pem: SEC1 (openssl ecparam -genkey) or PKCS#8, PEM or DER. \
        The approver's name defaults to the key file's name without extension \
        (owner.pem → owner)."
    )]
    Sign {
        /// The package (`-` for standard input)
        #[arg(value_name = "PACKAGE")]
        package: PathBuf,
        /// The approver's private key
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[command(flatten)]
        what: StatementArgs,
        /// The approval file to write (standard output without it)
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Device side: hash the package, and have the card check the approvals, the rule
    /// and the anti-rollback floor
    #[command(disable_version_flag = true)]
    #[command(after_help = "Exit codes: 0 approved (or accepted by the user with \
        --on-unapproved ask), 6 not approved, 9 declined by the user, 7 wrong PIN, \
        3 no card or card removed, 2 bad input. An approval file without a signature= line \
        takes its signature from FILE.sig (DER or raw r||s, as openssl writes it).")]
    Approve {
        /// The package file, or `-` for standard input
        #[arg(value_name = "PACKAGE")]
        package: PathBuf,
        /// An approval file (repeat for each approver)
        #[arg(long = "approval", value_name = "FILE", required = true)]
        approvals: Vec<PathBuf>,
        /// What to do when the card does not approve
        #[arg(long, value_enum, default_value_t = OnUnapproved::Reject)]
        on_unapproved: OnUnapproved,
        /// The version the package must be (checked against the approvals)
        #[arg(long, value_name = "V")]
        version: Option<String>,
        /// The device class the package must be for
        #[arg(long, value_name = "C")]
        class: Option<String>,
        /// Public key that signed the MCUboot image (its signature TLV is checked with it)
        #[arg(long, value_name = "FILE")]
        mcuboot_key: Option<PathBuf>,
        /// With --on-unapproved ask: install without asking (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
        /// DANGEROUS device setting: with --on-unapproved ask, let the user accept a
        /// version below the anti-rollback floor (a downgrade). Without it such a
        /// package is refused whatever the user answers
        #[arg(long)]
        dangerous_allow_below_floor: bool,
    },
    /// Device side: report the installation done; the card moves the class's
    /// anti-rollback floor to this version
    #[command(disable_version_flag = true)]
    ConfirmInstalled {
        /// The installed package (or give --digest)
        #[arg(value_name = "PACKAGE", required_unless_present = "digest")]
        package: Option<PathBuf>,
        /// The package's SHA-256 as hex (instead of PACKAGE)
        #[arg(long, value_name = "HEX", conflicts_with = "package")]
        digest: Option<String>,
        /// The installed version
        #[arg(long, value_name = "V")]
        version: String,
        /// The device class
        #[arg(long, value_name = "C")]
        class: String,
    },
}

/// What an approval statement names besides the package digest.
#[derive(Debug, clap::Args)]
pub struct StatementArgs {
    /// The package version (dotted decimal, e.g. 2.1.0)
    #[arg(long, value_name = "V")]
    pub version: String,
    /// The device class (e.g. gateway)
    #[arg(long, value_name = "C")]
    pub class: String,
    /// The approver's registered name
    #[arg(long, value_name = "NAME")]
    pub approver: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApproverCommand {
    /// Register (or replace) an approver's public key (an authority)
    #[command(
        after_help = "FILE: PEM or DER, SubjectPublicKeyInfo (openssl pkey -pubout), \
        SEC1 or PKCS#8 private key (its public half is used), or a 65-byte point."
    )]
    Add {
        /// The approver's name (A-Z a-z 0-9 . _ -)
        #[arg(value_name = "NAME")]
        name: String,
        /// The public key
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Remove an approver (an authority)
    Remove {
        /// The approver's name
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the approvers and their public keys
    List,
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Set the rule: every named approver must approve (an authority)
    Set {
        /// Approver names, comma-separated (e.g. maintainer,owner)
        #[arg(long, value_name = "NAMES", value_delimiter = ',', required = true)]
        require: Vec<String>,
        /// The user must verify the PIN before installing an unapproved package
        #[arg(long)]
        user_pin: bool,
        /// Store the rule even if it names approvers not registered on the card
        /// (it cannot be met until they are)
        #[arg(long)]
        allow_unregistered: bool,
    },
    /// Show the rule
    Show,
}

/// Runs a `firmware` subcommand; `Ok` carries the exit code.
pub fn run(ctx: &Ctx, cmd: &FirmwareCommand) -> Result<Code> {
    match cmd {
        FirmwareCommand::Approver(c) => approver(ctx, c),
        FirmwareCommand::Rule(c) => rule(ctx, c),
        FirmwareCommand::Statement { package, what, out } => {
            statement(ctx, package, what, out.as_deref())
        }
        FirmwareCommand::Sign {
            package,
            key,
            what,
            out,
        } => sign(ctx, package, key, what, out.as_deref()),
        FirmwareCommand::Approve {
            package,
            approvals,
            on_unapproved,
            version,
            class,
            mcuboot_key,
            yes,
            dangerous_allow_below_floor,
        } => approve(
            ctx,
            &ApproveArgs {
                package,
                approvals,
                policy: firmware::ConsentPolicy {
                    on_unapproved: (*on_unapproved).into(),
                    allow_below_floor: *dangerous_allow_below_floor,
                },
                version: version.as_deref(),
                class: class.as_deref(),
                mcuboot_key: mcuboot_key.as_deref(),
                yes: *yes,
            },
        ),
        FirmwareCommand::ConfirmInstalled {
            package,
            digest,
            version,
            class,
        } => confirm_installed(ctx, package.as_deref(), digest.as_deref(), version, class),
    }
}

fn parse_version(s: &str) -> Result<Version> {
    let v = Version::parse(s).map_err(|_| {
        usage(format!(
            "version {s:?}: expected dotted decimal (e.g. 2.1.0; at most 8 parts of up to 9 digits)"
        ))
    })?;
    if v.to_string() != s {
        return Err(usage(format!(
            "version {s:?}: write it without leading zeros ({v})"
        )));
    }
    Ok(v)
}

fn parse_name(s: &str, what: &str) -> Result<String> {
    check_name(s).map_err(|_| usage(format!("{what} {s:?}: 1-64 of A-Z a-z 0-9 . _ -")))?;
    Ok(s.to_string())
}

/// Hashes a package file or standard input, with a progress bar on a terminal.
fn hash(ctx: &Ctx, path: &Path, mcuboot_key: Option<&p256::PublicKey>) -> Result<PackageHash> {
    let show = std::io::stderr().is_terminal() && !ctx.json && !ctx.quiet;
    let (what, size, reader): (String, Option<u64>, Box<dyn Read>) = if path.as_os_str() == "-" {
        (
            "standard input".into(),
            None,
            Box::new(std::io::stdin().lock()),
        )
    } else {
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot open the package {}", path.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (path.display().to_string(), size, Box::new(f))
    };
    let bar = if show {
        let bar = match size {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "hashing {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what.clone());
        Some(bar)
    } else {
        None
    };
    let result = firmware::hash_package(reader, &what, mcuboot_key, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(result?)
}

fn statement_for(ctx: &Ctx, package: &Path, what: &StatementArgs) -> Result<PackageId> {
    let version = parse_version(&what.version)?;
    let class = parse_name(&what.class, "device class")?;
    let h = hash(ctx, package, None)?;
    Ok(PackageId {
        digest: h.digest,
        version,
        device_class: class,
    })
}

fn approver_name(what: &StatementArgs, key: Option<&Path>) -> Result<String> {
    match (&what.approver, key) {
        (Some(n), _) => parse_name(n, "approver"),
        (None, Some(k)) => {
            let stem = k
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            parse_name(
                &stem,
                "approver name (from the key file name; give --approver NAME)",
            )
        }
        (None, None) => Err(usage("give the approver's name with --approver NAME")),
    }
}

/// Writes `bytes` to `out` atomically (temporary file + rename), or to stdout.
fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(bytes)?;
            o.flush()?;
        }
        Some(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            tmp.write_all(bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

fn statement(ctx: &Ctx, package: &Path, what: &StatementArgs, out: Option<&Path>) -> Result<Code> {
    let name = approver_name(what, None)?;
    let id = statement_for(ctx, package, what)?;
    write_out(out, &id.statement(&name).to_signed_bytes())?;
    if let Some(p) = out {
        ctx.note(&format!(
            "statement written to {0}; sign it with: openssl dgst -sha256 -sign KEY.pem -out {0}.sig {0}",
            p.display()
        ));
    }
    Ok(Code::Ok)
}

fn sign(
    ctx: &Ctx,
    package: &Path,
    key: &Path,
    what: &StatementArgs,
    out: Option<&Path>,
) -> Result<Code> {
    let name = approver_name(what, Some(key))?;
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(key).with_context(|| format!("cannot read the key {}", key.display()))?,
    );
    let signing = load_private_key(&bytes).map_err(|e| usage(format!("{}: {e}", key.display())))?;
    let id = statement_for(ctx, package, what)?;
    let file = firmware::sign_statement(&id.statement(&name), &signing);
    write_out(out, &file.to_bytes())?;
    if let Some(p) = out {
        if ctx.json {
            print_json(&json!({
                "approval": p.display().to_string(),
                "approver": name,
                "sha256": hex::encode(id.digest),
                "version": id.version.to_string(),
                "class": id.device_class,
            }))?;
        } else {
            ctx.note(&format!(
                "{name} approves {} {} (SHA-256 {}): {}",
                id.device_class,
                id.version,
                hex::encode(id.digest),
                p.display()
            ));
        }
    }
    Ok(Code::Ok)
}

fn approver(ctx: &Ctx, cmd: &ApproverCommand) -> Result<Code> {
    match cmd {
        ApproverCommand::Add { name, key } => {
            let name = parse_name(name, "approver")?;
            let bytes =
                std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
            let public =
                load_public_key(&bytes).map_err(|e| usage(format!("{}: {e}", key.display())))?;
            ctx.require_authority("firmware approver add")?;
            let (mut s, who) = open_as(ctx, false)?;
            firmware::register_approver(&mut s, &name, &public, None)
                .with_context(|| format!("registering approver {name} as {who}"))?;
            let point = sec1_point(&public);
            if ctx.json {
                print_json(
                    &json!({"approver": name, "public_key": hex_upper(&point), "result": "stored"}),
                )?;
            } else {
                println!(
                    "approver {name} registered (public key {}…)",
                    &hex_upper(&point)[..18]
                );
            }
        }
        ApproverCommand::Remove { name } => {
            let name = parse_name(name, "approver")?;
            ctx.require_authority("firmware approver remove")?;
            let (mut s, who) = open_as(ctx, false)?;
            s.delete(&ObjectRef::Approver(name.clone()))
                .with_context(|| format!("removing approver {name} as {who}"))?;
            if ctx.json {
                print_json(&json!({"approver": name, "result": "deleted"}))?;
            } else {
                println!("approver {name} removed");
            }
        }
        ApproverCommand::List => {
            let (mut s, who) = open_as(ctx, false)?;
            let list = firmware::list_approvers(&mut s)
                .with_context(|| format!("listing approvers as {who}"))?;
            if ctx.json {
                let items: Vec<Value> = list
                    .iter()
                    .map(|(n, p)| json!({"name": n, "public_key": hex_upper(p)}))
                    .collect();
                print_json(&json!({ "approvers": items }))?;
            } else if list.is_empty() {
                println!("no approvers readable by {who}");
            } else {
                for (n, p) in &list {
                    println!("{n}  {}", hex_upper(p));
                }
            }
        }
    }
    Ok(Code::Ok)
}

fn rule(ctx: &Ctx, cmd: &RuleCommand) -> Result<Code> {
    match cmd {
        RuleCommand::Set {
            require,
            user_pin,
            allow_unregistered,
        } => {
            let names: Vec<String> = require
                .iter()
                .map(|n| parse_name(n.trim(), "approver"))
                .collect::<Result<_>>()?;
            ctx.require_authority("firmware rule set")?;
            let (mut s, who) = open_as(ctx, false)?;
            match firmware::set_rule_checked(&mut s, &names, *user_pin, *allow_unregistered) {
                Ok(()) => {}
                Err(e @ firmware::FirmwareError::UnregisteredApprovers(_)) => {
                    return Err(usage(format!(
                        "{e}; pass --allow-unregistered to store it anyway"
                    )))
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("storing the approval rule as {who}")))
                }
            }
            if ctx.json {
                print_json(
                    &json!({"required": names, "user_consent_needs_pin": user_pin, "result": "stored"}),
                )?;
            } else {
                println!(
                    "approval rule: {} must all approve{}",
                    names.join(", "),
                    if *user_pin {
                        "; the user verifies the PIN before overriding"
                    } else {
                        ""
                    }
                );
            }
        }
        RuleCommand::Show => {
            let (mut s, who) = open_as(ctx, false)?;
            let data = s
                .read_object(&ObjectRef::ApprovalRule)
                .with_context(|| format!("reading the approval rule as {who}"))?;
            match data.value {
                dmsc_host::card_model::commands::ObjectValue::ApprovalRule(r) => {
                    if ctx.json {
                        print_json(
                            &json!({"required": r.required, "user_consent_needs_pin": r.user_consent_needs_pin, "acl": data.acl.to_string()}),
                        )?;
                    } else {
                        println!("required   {}", r.required.join(", "));
                        println!(
                            "user PIN   {}",
                            if r.user_consent_needs_pin {
                                "required to override"
                            } else {
                                "not required"
                            }
                        );
                        println!("ACL        {}", data.acl);
                    }
                }
                other => anyhow::bail!("the approval rule read as {}", other.kind().word()),
            }
        }
    }
    Ok(Code::Ok)
}

struct ApproveArgs<'a> {
    package: &'a Path,
    approvals: &'a [PathBuf],
    policy: firmware::ConsentPolicy,
    version: Option<&'a str>,
    class: Option<&'a str>,
    mcuboot_key: Option<&'a Path>,
    yes: bool,
}

fn mcuboot_json(r: &McubootReport) -> Value {
    let c = |c: Check| match c {
        Check::Valid => "valid",
        Check::Invalid => "invalid",
        Check::Missing => "missing",
        Check::NotChecked => "not-checked",
    };
    json!({"version": r.version, "sha256": c(r.sha256), "signature": c(r.signature), "error": r.error.as_ref().map(ToString::to_string), "ok": r.ok()})
}

fn approve(ctx: &Ctx, a: &ApproveArgs<'_>) -> Result<Code> {
    // Inputs first: a bad file is an error before the card or the package is touched.
    let version = a.version.map(parse_version).transpose()?;
    let class = a.class.map(|c| parse_name(c, "device class")).transpose()?;
    let files: Vec<ApprovalFile> = a
        .approvals
        .iter()
        .map(|p| ApprovalFile::read(p).map_err(|e| usage(e.to_string())))
        .collect::<Result<_>>()?;
    firmware::package_id([0; 32], &files, version.as_ref(), class.as_deref())
        .map_err(|e| usage(e.to_string()))?;
    let mcuboot_key = match a.mcuboot_key {
        Some(p) => {
            let b = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            Some(load_public_key(&b).map_err(|e| usage(format!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    if a.policy.on_unapproved == firmware::OnUnapproved::Ask && !a.yes && !ctx.interactive() {
        return Err(usage(
            "--on-unapproved ask needs a terminal to ask the user; pass --yes for scripted use",
        ));
    }
    // The card is found before the (possibly long) hashing.
    let (mut session, who) = open_as(ctx, false)?;
    let h = hash(ctx, a.package, mcuboot_key.as_ref())?;
    let package = firmware::package_id(h.digest, &files, None, None)?;
    let notes = firmware::digest_mismatches(&h.digest, &files);
    let verdict: ApprovalVerdict = firmware::check_with_card(&mut session, &package, &files)
        .with_context(|| format!("CHECK APPROVAL as {who}"))?;
    let decision = firmware::decide(&verdict, h.mcuboot.as_ref(), &a.policy);
    let reasons: Vec<String> = decision.reasons().iter().map(ToString::to_string).collect();
    let approved = decision == Decision::Approved;
    if !approved && !ctx.json {
        print_verdict(&h, &package, false, &reasons, &notes);
    }
    let outcome = match &decision {
        Decision::AskUser { needs_pin, .. } => {
            if *needs_pin {
                let pin = ctx.user_pin()?;
                ctx.verify_user(&mut session, &pin)?;
            }
            let yes = a.yes
                || ask(
                    ctx,
                    &format!(
                        "The card did not approve {} {}. Install it anyway?",
                        package.device_class, package.version
                    ),
                    "installing an unapproved package",
                )?;
            decision.answered(yes)
        }
        _ => decision.answered(false),
    };
    let code = match outcome {
        Outcome::Approved | Outcome::AcceptedByUser => Code::Ok,
        Outcome::Refused => Code::VerificationFailed,
        Outcome::DeclinedByUser => Code::Declined,
    };
    let cause = match &decision {
        Decision::Refused {
            cause: cause @ firmware::Final::BelowFloor,
            ..
        } if a.policy.on_unapproved == firmware::OnUnapproved::Ask => {
            Some(format!("{cause}: --dangerous-allow-below-floor"))
        }
        Decision::Refused { cause, .. }
            if a.policy.on_unapproved == firmware::OnUnapproved::Ask =>
        {
            Some(cause.to_string())
        }
        _ => None,
    };
    if ctx.json {
        print_json(&json!({
            "package": {
                "file": a.package.display().to_string(),
                "size": h.size,
                "sha256": hex::encode(h.digest),
                "version": package.version.to_string(),
                "class": package.device_class,
            },
            "approved": approved,
            "reasons": reasons,
            "notes": notes,
            "user_consent_needs_pin": verdict.user_consent_needs_pin,
            "mcuboot": h.mcuboot.as_ref().map(mcuboot_json),
            "decision": outcome.word(),
            "final": cause,
        }))?;
    } else if approved {
        print_verdict(&h, &package, true, &reasons, &notes);
    } else {
        match outcome {
            Outcome::AcceptedByUser => println!("not approved by the card; the user accepted it"),
            Outcome::DeclinedByUser => eprintln!("not approved by the card; declined by the user"),
            _ => {}
        }
    }
    if code == Code::VerificationFailed && !ctx.json {
        return Err(coded(
            code,
            format!(
                "{} {} is not approved: {}{}",
                package.device_class,
                package.version,
                reasons.join("; "),
                cause
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(code)
}

fn print_verdict(
    h: &PackageHash,
    p: &PackageId,
    approved: bool,
    reasons: &[String],
    notes: &[String],
) {
    println!(
        "package   {} {} ({} bytes)",
        p.device_class, p.version, h.size
    );
    println!("SHA-256   {}", hex::encode(h.digest));
    if let Some(m) = &h.mcuboot {
        println!(
            "MCUboot   image {}: hash {:?}, signature {:?}{}",
            m.version,
            m.sha256,
            m.signature,
            m.error
                .as_ref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default()
        );
    }
    if approved {
        println!("verdict   approved by the card");
    } else {
        println!("verdict   NOT approved");
        for r in reasons {
            println!("  - {r}");
        }
        for n in notes {
            println!("  note: {n}");
        }
    }
}

fn confirm_installed(
    ctx: &Ctx,
    package: Option<&Path>,
    digest: Option<&str>,
    version: &str,
    class: &str,
) -> Result<Code> {
    let version = parse_version(version)?;
    let class = parse_name(class, "device class")?;
    let digest: [u8; 32] = match (digest, package) {
        (Some(d), _) => hex::decode(d.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| usage(format!("--digest {d:?}: expected 64 hex digits (SHA-256)")))?,
        (None, Some(p)) => hash(ctx, p, None)?.digest,
        (None, None) => return Err(usage("give the installed PACKAGE or --digest HEX")),
    };
    let id = PackageId {
        digest,
        version,
        device_class: class,
    };
    let (mut s, who) = open_as(ctx, false)?;
    s.confirm_installed(&id).with_context(|| {
        format!(
            "CONFIRM INSTALLED {} {} as {who} (the card accepts only the package it approved last)",
            id.device_class, id.version
        )
    })?;
    if ctx.json {
        print_json(
            &json!({"class": id.device_class, "version": id.version.to_string(), "result": "confirmed"}),
        )?;
    } else {
        println!(
            "installation of {} {} confirmed; the anti-rollback floor is at least {}",
            id.device_class, id.version, id.version
        );
    }
    Ok(Code::Ok)
}
