//! LMM-R1: text-only reasoning RL (FRE), then multimodal generalization (MGT).

use anyhow::{bail, Result};
use clap::Args;

/// `recipes lmm-r1` flags.
#[derive(Args, Debug, Default)]
pub struct LmmR1Args {
    /// TOML config.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Runs the recipe.
pub fn run(_args: LmmR1Args) -> Result<()> {
    bail!("`lmm-r1` is not built yet (issue 9); see the status table in README.md")
}
