//! Which registrar a verb works on: `--config FILE` or `--state DIR`.

use clap::Args;
use registrar::CONFIG_FILE;
use std::path::PathBuf;

/// Which registrar: a config file, or a state directory holding registrar.toml.
#[derive(Debug, Args)]
pub(crate) struct Where {
    /// Configuration file.
    #[arg(long, conflicts_with = "state")]
    config: Option<PathBuf>,
    /// State directory (uses its registrar.toml).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl Where {
    /// The registrar.toml this names.
    pub(crate) fn path(&self) -> anyhow::Result<PathBuf> {
        match (&self.config, &self.state) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(s)) => Ok(s.join(CONFIG_FILE)),
            _ => anyhow::bail!("give --config FILE or --state DIR"),
        }
    }
}
