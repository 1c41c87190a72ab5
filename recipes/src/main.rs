//! `recipes`: the vlrl command line. One subcommand per paper recipe, plus
//! the tools around them (pretrain the bundled model, chat with a checkpoint).

use recipes::{chain_of_focus, generate, lmm_r1, med_r1, pretrain, video_rts};

use anyhow::Result;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "recipes",
    version,
    about = "vlrl recipes: R1-style RL for vision-language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Med-R1: GRPO on medical VQA (synthetic med-synth by default).
    MedR1(med_r1::MedR1Args),
    /// Chain-of-Focus: SFT cold start then multi-turn zoom RL.
    ChainOfFocus(chain_of_focus::ChainOfFocusArgs),
    /// Video-RTS: pure-RL video reasoning with sparse-to-dense test-time scaling.
    VideoRts(video_rts::VideoRtsArgs),
    /// Video base model: SFT on video-events clips from a checkpoint, so that
    /// Video-RTS's pure RL starts from a model that reads video.
    VideoBase(video_rts::base::VideoBaseArgs),
    /// Focus base model: SFT on reading crops and locating objects in
    /// zoom-search images, so that Chain-of-Focus starts from a model that
    /// reads what it zooms into.
    ZoomBase(chain_of_focus::base::ZoomBaseArgs),
    /// LMM-R1: text-only reasoning RL (FRE), then multimodal generalization (MGT).
    LmmR1(lmm_r1::LmmR1Args),
    /// Train the small bundled Qwen2-VL-architecture model from scratch.
    Pretrain(pretrain::PretrainArgs),
    /// Chat with (or complete a prompt on) a Hugging Face checkpoint directory.
    Generate(generate::GenerateArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::MedR1(args) => med_r1::run(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::ChainOfFocus(args) => chain_of_focus::run(args),
        Command::VideoRts(args) => video_rts::run(args),
        Command::VideoBase(args) => video_rts::base::run(args),
        Command::ZoomBase(args) => chain_of_focus::base::run(args),
        Command::LmmR1(args) => lmm_r1::run(args),
    }
}
