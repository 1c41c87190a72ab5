//! Video-RTS: pure-RL video reasoning with sparse-to-dense test-time scaling.

use anyhow::{bail, Result};
use clap::Args;

/// `recipes video-rts` flags.
#[derive(Args, Debug, Default)]
pub struct VideoRtsArgs {
    /// TOML config.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Runs the recipe.
pub fn run(_args: VideoRtsArgs) -> Result<()> {
    bail!("`video-rts` is not built yet (issue 9); see the status table in README.md")
}
