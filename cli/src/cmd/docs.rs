//! `dmsc completions SHELL` and `dmsc man`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> Result<()> {
    use std::io::Write;
    let mut cmd = Cli::command();
    // clap_complete panics on a write error: generate in memory, then write
    // (a closed stdout is then an error the caller ends quietly on).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dmsc", &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("cannot write the completion script")
}

/// Prints the manual page on stdout, or writes one page per subcommand into `dir`.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = Cli::command();
    match dir {
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
    Ok(())
}
