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

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use clap::Args;
use serde::{Deserialize, Serialize};
use vlrl::qwen::save::{qwen2_vl_tensors, write_atomic, write_safetensors};

use super::events::{EventClip, VideoEvents};
use super::{
    greedy_at, question_from_row, synthetic_questions, test_seed, ClipSource, StrategyResult,
    VideoPrompter, VideoRtsArgs, VideoRtsConfig,
};
use crate::policy::{VisionExtra, VlmPolicy};
use crate::pretrain::CHECKPOINT_FILES;
use crate::sft::{train_sft, SftConfig, SftControl, SftExample, SftStep};
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
    /// Most SFT steps (the cosine schedule's length).
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 20)]
    pub warmup_steps: usize,
    /// Frame counts of the SFT clips, used in turn (default: the TTS rounds).
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    pub frames: Vec<usize>,
    /// Greedy validation every this many steps (0 = only at the end).
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Validation clips (their own seed stream; not the recipe's test clips).
    #[arg(long, default_value_t = 60)]
    pub eval_size: usize,
    /// Stop once greedy validation accuracy at the dense frame count
    /// reaches this, so RL keeps room (1.0 = never).
    #[arg(long, default_value_t = 1.0)]
    pub stop_accuracy: f64,
    /// Also write the model as `<out>/step-N` every this many steps (0 = never).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Stop after this many minutes of training (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    pub max_minutes: f64,
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
    pub init_from: PathBuf,
    pub seed: u64,
    pub frames: Vec<usize>,
    pub sft: SftConfig,
    pub steps: usize,
    pub stop_reason: String,
    pub train_seconds: f64,
    /// `(step, mean loss over the last 10 steps)`.
    pub losses: Vec<(usize, f64)>,
    pub evals: Vec<BaseEval>,
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
        run: RunFlags {
            config: Some(args.config.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
    .resolve()?;
    if config.data.is_some() {
        bail!("video-base trains on the synthetic video-events task; the config names `data`");
    }
    if args.frames.is_empty() || args.frames.contains(&0) {
        bail!("--frames must list positive frame counts");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&args.init_from, &args.out) {
        bail!(
            "--out must differ from --init-from ({})",
            args.out.display()
        );
    }
    let (sft_seed, validation_seed) = streams(&args, &config)?;
    let ckpt = Checkpoint::open(&args.init_from)?;
    let prompter = VideoPrompter::new(&ckpt, &config);
    let generator = VideoEvents::new(config.events.clone())?;
    let validation = synthetic_questions(&config, args.eval_size, validation_seed)?;
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

    let model = ckpt.load()?;
    let mut evals = vec![validate(&model.valid(), 0)?];
    let policy = VlmPolicy::<TrainBackend>::new(model, ckpt.stop.clone(), ckpt.pad);
    let sft = SftConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        weight_decay: 0.01,
        grad_clip: 1.0,
    };
    let started = Instant::now();
    let progress = indicatif::ProgressBar::new(args.steps as u64);
    let mut losses = Vec::new();
    let mut window = Vec::new();
    let mut stop_reason = format!("steps ({})", args.steps);
    let bs = args.batch_size as u64;
    let (policy, history) = train_sft::<TrainBackend, _>(
        policy,
        &sft,
        &ckpt.device,
        |step| {
            (0..bs)
                .map(|k| {
                    let i = step as u64 * bs + k;
                    let frames = args.frames[(i % args.frames.len() as u64) as usize];
                    example(&prompter, &config, generator.clip(i, sft_seed), frames)
                })
                .collect()
        },
        |s: &SftStep, policy: &VlmPolicy<TrainBackend>| {
            progress.inc(1);
            window.push(s.loss);
            if s.step.is_multiple_of(10) {
                let mean = window.iter().sum::<f64>() / window.len() as f64;
                window.clear();
                losses.push((s.step, mean));
                progress.set_message(format!("loss {mean:.3}"));
            }
            if args.save_every > 0 && s.step.is_multiple_of(args.save_every) {
                let snapshot = args.out.join(format!("step-{}", s.step));
                write_checkpoint(&args.init_from, &snapshot, &policy.model.valid())?;
            }
            let out_of_time =
                args.max_minutes > 0.0 && started.elapsed().as_secs_f64() > args.max_minutes * 60.0;
            let due = args.eval_every > 0 && s.step.is_multiple_of(args.eval_every);
            if due || out_of_time {
                let eval = progress.suspend(|| validate(&policy.model.valid(), s.step))?;
                let reached = eval.dense.accuracy >= args.stop_accuracy;
                evals.push(eval);
                if reached {
                    stop_reason = format!("stop_accuracy {} reached", args.stop_accuracy);
                    return Ok(SftControl::Stop);
                }
            }
            if out_of_time {
                stop_reason = format!("max_minutes ({})", args.max_minutes);
                return Ok(SftControl::Stop);
            }
            Ok(SftControl::Continue)
        },
    )?;
    progress.finish_and_clear();
    let steps = history.len();
    if evals.last().map(|e| e.step) != Some(steps) {
        evals.push(validate(&policy.model.valid(), steps)?);
    }
    write_checkpoint(&args.init_from, &args.out, &policy.model.valid())?;
    let report = VideoBaseReport {
        init_from: args.init_from.clone(),
        seed: args.seed,
        frames: args.frames.clone(),
        sft,
        steps,
        stop_reason,
        train_seconds: started.elapsed().as_secs_f64(),
        losses,
        evals,
    };
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    write_atomic(&args.out.join("video_base_report.json"), text.as_bytes())?;
    tracing::info!(
        "wrote {} after {steps} steps ({})",
        args.out.display(),
        report.stop_reason
    );
    Ok(())
}

/// Writes `model` as a checkpoint in `out`: the weights, and the other
/// files of `from` (each written atomically), which the model shares since
/// SFT keeps the architecture and tokenizer.
fn write_checkpoint(
    from: &Path,
    out: &Path,
    model: &vlrl::qwen::Qwen2VL<super::EvalBackend>,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for name in CHECKPOINT_FILES {
        let src = from.join(name);
        if src.exists() {
            let bytes =
                std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            write_atomic(&out.join(name), &bytes)?;
        }
    }
    write_safetensors(&out.join("model.safetensors"), &qwen2_vl_tensors(model)?)?;
    Ok(())
}
