//! `recipes video-base`: the bundled video model, `assets/video-tiny`.
//!
//! Video-RTS trains with pure RL from Qwen2.5-VL-7B, a model that already
//! reads video; RL sharpens that perception and test-time scaling spends it
//! frugally. The bundled `assets/med-tiny` never saw a video, and pure RL
//! from it only moved its answers onto one letter (docs/video-rts.md). This
//! command is the tiny-scale stand-in for the real model's video
//! pretraining: it continues a checkpoint (same tokenizer and architecture)
//! with SFT on `video-events` clips from seed streams the recipe never uses,
//! at the frame counts of the TTS schedule, each answered with a trace that
//! states all of the clip's events ([`EventClip::trace`]). It stops early on
//! purpose, at a validation accuracy, so that RL has room left.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::events::{EventClip, VideoEvents};
use super::{
    greedy_at, question_from_row, synthetic_questions, test_seed, ClipSource, StrategyResult,
    VideoPrompter, VideoRtsArgs, VideoRtsConfig,
};
use crate::base_model::{train_base, write_report, BaseFlags, BaseOutcome, BaseRun};
use crate::policy::{VisionExtra, VlmPolicy};
use crate::sft::SftExample;
use crate::single_turn::{Checkpoint, RunFlags};
use crate::TrainBackend;

/// `recipes video-base` flags.
#[derive(Args, Debug, Clone)]
pub struct VideoBaseArgs {
    /// The video-rts config whose task, frame size, pixel bounds and prompt
    /// template the model learns (its `model`, `out` and `[grpo]` are not used).
    #[arg(long, default_value = "recipes/configs/video-rts.toml")]
    pub config: PathBuf,
    /// Checkpoint to continue; its tokenizer, chat template and
    /// architecture are kept.
    #[arg(long, default_value = "assets/med-tiny")]
    pub init_from: PathBuf,
    /// Output checkpoint directory (Hugging Face layout) and its
    /// `video_base_report.json`.
    #[arg(long, default_value = "assets/video-tiny")]
    pub out: PathBuf,
    /// Seed of the SFT and validation clip streams.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
    /// Frame counts of the SFT clips, used in turn (default: the TTS rounds).
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    pub frames: Vec<usize>,
    /// Steps, optimizer, validation and stopping (`--stop-accuracy` is
    /// compared with the dense-frame accuracy).
    #[command(flatten)]
    pub train: BaseFlags,
}

/// One validation: greedy accuracy at the sparse and the dense frame count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseEval {
    pub step: usize,
    pub sparse: StrategyResult,
    pub dense: StrategyResult,
}

/// `video_base_report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoBaseReport {
    pub frames: Vec<usize>,
    #[serde(flatten)]
    pub run: BaseOutcome<BaseEval>,
}

/// Seed streams of the SFT and validation clips, kept apart from the
/// recipe's training (`seed`) and test ([`test_seed`]) streams.
fn streams(args: &VideoBaseArgs, config: &VideoRtsConfig) -> Result<(u64, u64)> {
    let sft = args.seed.wrapping_add(7_000_001);
    let validation = args.seed.wrapping_add(9_000_011);
    let recipe = [config.seed, test_seed(config)];
    if recipe.contains(&sft) || recipe.contains(&validation) {
        bail!(
            "--seed {}: its clip streams would repeat the recipe's training or test clips \
             (recipe seed {}); pick another",
            args.seed,
            config.seed
        );
    }
    Ok((sft, validation))
}

/// The question and SFT pair of one clip at `frames` frames.
fn example(
    prompter: &VideoPrompter,
    config: &VideoRtsConfig,
    clip: EventClip,
    frames: usize,
) -> Result<SftExample<VisionExtra>> {
    let response = prompter
        .ckpt
        .prompter
        .tokenizer
        .encode(&format!("{}<|im_end|>", clip.trace()))?;
    let row = clip.sample.row.clone();
    let q = question_from_row(config, &row, ClipSource::Synthetic(clip.scene))?;
    let indices = q.clip.indices_at(&config.tts, frames)?;
    let prompt = prompter.prompt(&q, &indices)?;
    Ok(SftExample {
        prompt_ids: prompt.ids,
        loss_mask: vec![true; response.len()],
        response_ids: response,
        extra: prompt.extra,
    })
}

/// Trains and writes the video base model.
pub fn run(args: VideoBaseArgs) -> Result<()> {
    let config = VideoRtsArgs {
        run: RunFlags::from_config(&args.config),
        ..Default::default()
    }
    .resolve()?;
    if config.data.is_some() {
        bail!("video-base trains on the synthetic video-events task; the config names `data`");
    }
    if args.frames.is_empty() || args.frames.contains(&0) {
        bail!("--frames must list positive frame counts");
    }
    args.train.check(&args.init_from, &args.out)?;
    let (sft_seed, validation_seed) = streams(&args, &config)?;
    let ckpt = Checkpoint::open(&args.init_from)?;
    let prompter = VideoPrompter::new(&ckpt, &config);
    let generator = VideoEvents::new(config.events.clone())?;
    let validation = synthetic_questions(&config, args.train.eval_size, validation_seed)?;
    let (sparse, dense) = (config.tts.start, config.tts.max);
    let validate = |model: &vlrl::qwen::Qwen2VL<super::EvalBackend>, step: usize| {
        let eval = BaseEval {
            step,
            sparse: greedy_at(model, &prompter, &validation, &config, sparse)?,
            dense: greedy_at(model, &prompter, &validation, &config, dense)?,
        };
        let groups: Vec<String> = eval
            .dense
            .by_group
            .iter()
            .map(|(g, (ok, n))| format!("{g} {ok}/{n}"))
            .collect();
        tracing::info!(
            step,
            "validation: greedy {:.1}% at {sparse} frames, {:.1}% at {dense} frames ({}), format {:.2}",
            100.0 * eval.sparse.accuracy,
            100.0 * eval.dense.accuracy,
            groups.join(", "),
            eval.dense.format
        );
        anyhow::Ok(eval)
    };

    let policy = VlmPolicy::<TrainBackend>::new(ckpt.load()?, ckpt.stop.clone(), ckpt.pad);
    let run = train_base(
        BaseRun {
            flags: &args.train,
            init_from: &args.init_from,
            out: &args.out,
            seed: args.seed,
        },
        policy,
        |p: &VlmPolicy<TrainBackend>| &p.model,
        |i| {
            let frames = args.frames[(i % args.frames.len() as u64) as usize];
            example(&prompter, &config, generator.clip(i, sft_seed), frames)
        },
        |model, step| {
            let eval = validate(model, step)?;
            let score = eval.dense.accuracy;
            Ok((eval, score))
        },
    )?;
    let report = VideoBaseReport {
        frames: args.frames.clone(),
        run,
    };
    write_report(&args.out.join("video_base_report.json"), &report)
}
