//! `dmsc completions SHELL` and `dmsc man`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

use crate::exit::Code;

/// `dmsc completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `dmsc man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write dmsc.1, dmsc-info.1, … into this directory
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the completion script of `cli` (the whole command line) on stdout.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> Result<Code> {
    use std::io::Write;
    // clap_complete panics on a write error: generate in memory, then write
    // (a closed stdout is then an error the caller ends quietly on).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "dmsc", &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("cannot write the completion script")?;
    Ok(Code::Ok)
}

/// Prints the manual page of `cmd` (the whole command line) on stdout, or
/// writes one page per subcommand into `--out DIR`.
pub fn man(args: &ManArgs, cmd: clap::Command) -> Result<Code> {
    match args.out.as_deref() {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot write the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
        }
    }
    Ok(Code::Ok)
}
