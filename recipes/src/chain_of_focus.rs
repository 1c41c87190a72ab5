//! Chain-of-Focus: SFT cold start, then multi-turn zoom RL.

use anyhow::{bail, Result};
use clap::Args;

/// `recipes chain-of-focus` flags.
#[derive(Args, Debug, Default)]
pub struct ChainOfFocusArgs {
    /// TOML config.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Runs the recipe.
pub fn run(_args: ChainOfFocusArgs) -> Result<()> {
    bail!("`chain-of-focus` is not built yet (issue 9); see the status table in README.md")
}
