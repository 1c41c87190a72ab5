//! `recipes pretrain`: makes the bundled small model.
//!
//! 1. trains a byte-level BPE (Qwen2 layout, Qwen2-VL special tokens) on the
//!    synthetic tasks' text;
//! 2. writes a seeded random-init Qwen2-VL checkpoint of the configured size
//!    (`vlrl_qwen::init`) and loads it through the normal loader;
//! 3. supervised next-token training (cross-entropy on the assistant tokens
//!    only) with AdamW on `Autodiff<Flex>`, on med-synth in Med-R1's prompt
//!    format with `<think>…</think><answer>…</answer>` targets, plus a little
//!    text-logic / visual-math;
//! 4. stops *on purpose* once greedy held-out accuracy reaches
//!    `stop_accuracy` (or at `max_steps` / `max_minutes`), so RL has room;
//! 5. saves an HF checkpoint directory (`vlrl_qwen::save`) and a report.

pub mod data;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vlrl::backend::{Cpu, CpuTrain};
use vlrl::data::QuestionType;
use vlrl::qwen::init::{write_random_init, Qwen2VlSpec};
use vlrl::qwen::save::save_qwen2_vl;
use vlrl::qwen::{
    MultimodalBatch, Qwen2Config, Qwen2VL, QwenTokenizer, SamplingParams, VisionInput,
};
use vlrl::vision::{preprocess_images, ProcessorConfig, Qwen2VisionConfig};

pub use data::{is_correct, parse_answer, prompt_text, response_text};
use data::{Encoder, Example, TaskMix};
use tokenizer::{train_tokenizer, write_tokenizer_files, SpecialIds};

/// Everything that decides the run; defaults in `recipes/configs/pretrain.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    pub seed: u64,
    /// Seed of the held-out med-synth set (disjoint latents and images).
    pub eval_seed: u64,
    /// BPE entries before the special tokens (256 bytes included).
    pub bpe_vocab: usize,
    /// Samples of text the BPE is trained on.
    pub tokenizer_corpus: usize,
    pub image_size: u32,
    /// Per mille of training samples from text-logic, and from visual-math.
    pub side_task_per_mille: u64,
    /// Per mille of text-only option-lookup drills (0 in stints 1-2 of the
    /// bundled model; never part of the tokenizer corpus).
    pub lookup_per_mille: u64,
    /// Whether med-synth shuffles its options (stints 1-3 of the bundled
    /// model: yes; from stint 4 on: no, see docs/bundled-model.md). The
    /// tokenizer corpus always uses shuffled options.
    pub shuffle_options: bool,
    /// Med-R1 question types asked in SFT (labels or abbreviations, as
    /// `QuestionType::parse_loose` reads them; empty = all five). With
    /// `describe_image` a type left out is still perceived (every trace
    /// describes it) but never asked, leaving it to RL: Med-R1's
    /// cross-task generalization in miniature (tried as "v3" in stop 13; 60
    /// GRPO steps did not learn it, docs/bundled-model.md). Held-out
    /// evaluations always ask all five.
    pub sft_question_types: Vec<String>,
    /// Question types whose options SFT shuffles while the others keep
    /// `shuffle_options`'s order (evaluation and RL use that order for
    /// all): the model learns to name these answers but not their letters
    /// ("v4" in stop 13, docs/bundled-model.md).
    pub shuffled_question_types: Vec<String>,
    /// Whether target traces describe the whole image before answering
    /// (`data::response_text`; off for `assets/med-tiny`, on in
    /// `recipes/configs/pretrain-v2.toml`).
    pub describe_image: bool,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub mrope_section: Vec<usize>,
    pub rope_theta: f64,
    pub vision_depth: usize,
    pub vision_embed_dim: usize,
    pub vision_heads: usize,
    pub vision_mlp_ratio: f64,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f32,
    pub grad_clip: f32,
    pub max_steps: usize,
    /// Length of the cosine learning-rate schedule (0 = `max_steps`). A run
    /// with `max_steps` below it stops part-way down the schedule, exactly
    /// where a longer run's `save_every` snapshot of that step is.
    pub lr_schedule_steps: usize,
    /// Wall-clock budget for the training loop (0 = none).
    pub max_minutes: f64,
    pub eval_every: usize,
    /// Held-out samples for the periodic (early-stopping) evaluation.
    pub eval_samples: usize,
    /// Held-out samples for the final evaluation.
    pub final_eval_samples: usize,
    /// Stop once periodic held-out accuracy reaches this (1.0 = never).
    pub stop_accuracy: f64,
    pub max_new_tokens: usize,
    pub log_every: usize,
    /// Also save a full checkpoint directory `step-{N}/` under the output
    /// every this many steps (0 = never), so the base model for RL can be
    /// picked along the learning curve without retraining.
    pub save_every: usize,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seed: 17,
            eval_seed: 9_001,
            bpe_vocab: 1_200,
            tokenizer_corpus: 3_000,
            image_size: 56,
            side_task_per_mille: 50,
            lookup_per_mille: 0,
            shuffle_options: true,
            describe_image: false,
            sft_question_types: Vec::new(),
            shuffled_question_types: Vec::new(),
            hidden_size: 128,
            intermediate_size: 352,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            mrope_section: vec![4, 6, 6],
            rope_theta: 10_000.0,
            vision_depth: 2,
            vision_embed_dim: 64,
            vision_heads: 4,
            vision_mlp_ratio: 2.0,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 50,
            weight_decay: 0.01,
            grad_clip: 1.0,
            max_steps: 3_000,
            lr_schedule_steps: 0,
            max_minutes: 30.0,
            eval_every: 100,
            eval_samples: 80,
            final_eval_samples: 400,
            stop_accuracy: 0.45,
            max_new_tokens: 40,
            log_every: 10,
            save_every: 0,
        }
    }
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// TOML config (fields of `PretrainConfig`); flags below override it.
    #[arg(long, default_value = "recipes/configs/pretrain.toml")]
    pub config: PathBuf,
    /// Output checkpoint directory.
    #[arg(long, default_value = "assets/med-tiny")]
    pub out: PathBuf,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long)]
    pub max_minutes: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Per mille of option-lookup drills in the training mix.
    #[arg(long)]
    pub lookup_per_mille: Option<u64>,
    /// Whether med-synth shuffles its options.
    #[arg(long)]
    pub shuffle_options: Option<bool>,
    /// Steps between held-out evaluations (early-stopping checks).
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long)]
    pub stop_accuracy: Option<f64>,
    /// Save a checkpoint `step-{N}/` under `--out` every N steps.
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Don't train: load `--out`, write reference logits of a fixed
    /// multimodal batch to this JSON file (for tools/check_bundled_model.py).
    #[arg(long)]
    pub dump_logits: Option<PathBuf>,
    /// Don't train: load `--out` and print its held-out accuracy.
    #[arg(long)]
    pub eval_only: bool,
    /// Continue SFT from this checkpoint (made by an earlier run with the
    /// same config) instead of a random init; with `--start-step` the data
    /// stream and learning-rate schedule continue where that run stopped
    /// (AdamW moments start fresh).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Steps already done by the `--init-from` run.
    #[arg(long, default_value_t = 0)]
    pub start_step: usize,
}

impl PretrainArgs {
    fn resolve(&self) -> Result<PretrainConfig> {
        let mut cfg = if self.config.exists() {
            let text = std::fs::read_to_string(&self.config)
                .with_context(|| format!("reading {}", self.config.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", self.config.display()))?
        } else {
            tracing::warn!(
                "{} not found; using built-in defaults",
                self.config.display()
            );
            PretrainConfig::default()
        };
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = self.max_steps {
            cfg.max_steps = v;
        }
        if let Some(v) = self.max_minutes {
            cfg.max_minutes = v;
        }
        if let Some(v) = self.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = self.lr {
            cfg.lr = v;
        }
        if let Some(v) = self.lookup_per_mille {
            cfg.lookup_per_mille = v;
        }
        if let Some(v) = self.shuffle_options {
            cfg.shuffle_options = v;
        }
        if let Some(v) = self.eval_every {
            cfg.eval_every = v;
        }
        if 2 * cfg.side_task_per_mille + cfg.lookup_per_mille > 1000 {
            bail!("2 x side_task_per_mille + lookup_per_mille must be at most 1000");
        }
        if let Some(v) = self.stop_accuracy {
            cfg.stop_accuracy = v;
        }
        if let Some(v) = self.save_every {
            cfg.save_every = v;
        }
        if cfg.batch_size == 0 || cfg.eval_every == 0 || cfg.log_every == 0 {
            bail!("batch_size, eval_every and log_every must be positive");
        }
        Ok(cfg)
    }
}

/// What a run reports (also written as `pretrain_report.json` beside the
/// checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    pub config: PretrainConfig,
    pub steps: usize,
    pub stop_reason: String,
    pub train_seconds: f64,
    pub num_parameters: usize,
    pub tokenizer_size: usize,
    pub vocab_size: usize,
    /// `(step, mean loss over the last log_every steps)`.
    pub losses: Vec<(usize, f64)>,
    /// `(step, held-out accuracy)` of the periodic evaluations.
    pub evals: Vec<(usize, f64)>,
    pub final_accuracy: f64,
    pub final_format_rate: f64,
    /// Accuracy per question type / per modality on the final set.
    pub by_question_type: Vec<(String, f64)>,
    pub by_modality: Vec<(String, f64)>,
    pub checkpoint_bytes: u64,
}

pub fn run(args: PretrainArgs) -> Result<()> {
    let cfg = args.resolve()?;
    let device = Default::default();
    if let Some(path) = &args.dump_logits {
        return dump_logits(&args.out, &cfg, path);
    }
    if args.eval_only {
        let model = Qwen2VL::<Cpu>::from_dir(&args.out, &device)?;
        let tok = QwenTokenizer::from_dir(&args.out)?;
        let ev = Evaluator::new(&cfg, &tok)?;
        let r = ev.evaluate(&model, cfg.final_eval_samples)?;
        println!(
            "held-out accuracy {:.1}% (format {:.1}%, modality named {:.1}%, answer text named {:.1}%, lookup drills {:.1}%) on {} samples",
            100.0 * r.accuracy,
            100.0 * r.format_rate,
            100.0 * r.modality_named,
            100.0 * r.answer_text_named,
            100.0 * r.lookup_accuracy,
            r.n
        );
        for ((k, v), (_, named)) in r.by_question_type.iter().zip(&r.answer_text_named_by_type) {
            println!(
                "  {k}: {:.1}% (answer text named {:.1}%)",
                100.0 * v,
                100.0 * named
            );
        }
        for (k, v) in &r.by_modality {
            println!("  {k}: {:.1}%", 100.0 * v);
        }
        return Ok(());
    }
    let report = pretrain_from(&cfg, &args.out, args.init_from.as_deref(), args.start_step)?;
    println!(
        "saved {} ({} steps, {:.0}s, {} parameters, {:.1} MB): held-out accuracy {:.1}% (chance 25%), format {:.1}%",
        args.out.display(),
        report.steps,
        report.train_seconds,
        report.num_parameters,
        report.checkpoint_bytes as f64 / 1e6,
        100.0 * report.final_accuracy,
        100.0 * report.final_format_rate
    );
    for (name, acc) in report.by_question_type.iter().chain(&report.by_modality) {
        println!("  {name:<28} {:.1}%", 100.0 * acc);
    }
    Ok(())
}

/// The files of a checkpoint directory besides `model.safetensors`.
pub const CHECKPOINT_FILES: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "generation_config.json",
    "preprocessor_config.json",
];

fn processor_config(image_size: u32) -> ProcessorConfig {
    let side = image_size as usize;
    ProcessorConfig {
        min_pixels: 56 * 56,
        max_pixels: (4 * side * side).max(112 * 112),
        ..ProcessorConfig::default()
    }
}

/// The model's spec for a config and tokenizer.
fn model_spec(
    cfg: &PretrainConfig,
    ids: &SpecialIds,
    tokenizer_size: usize,
) -> Result<Qwen2VlSpec> {
    let vocab = tokenizer_size.div_ceil(64) * 64;
    let text = Qwen2Config {
        vocab_size: vocab,
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads,
        max_position_embeddings: 4096,
        rms_norm_eps: 1e-6,
        rope_theta: cfg.rope_theta,
        tie_word_embeddings: true,
        hidden_act: "silu".into(),
        mrope_section: Some(cfg.mrope_section.clone()),
        bos_token_id: Some(ids.endoftext),
        eos_token_id: Some(json!(ids.im_end)),
    };
    let vision = Qwen2VisionConfig::from_json_value(&json!({
        "depth": cfg.vision_depth,
        "embed_dim": cfg.vision_embed_dim,
        "hidden_size": cfg.hidden_size,
        "hidden_act": "quick_gelu",
        "mlp_ratio": cfg.vision_mlp_ratio,
        "num_heads": cfg.vision_heads,
        "in_chans": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }))
    .map_err(|e| anyhow!("vision config: {e}"))?;
    let spec = Qwen2VlSpec {
        text,
        vision,
        image_token_id: ids.image_pad,
        video_token_id: ids.video_pad,
        vision_start_token_id: ids.vision_start,
        vision_end_token_id: ids.vision_end,
        vision_token_id: ids.vision_pad,
        initializer_range: 0.02,
    };
    spec.validate()?;
    Ok(spec)
}

/// The whole pipeline; returns the report (also written to `out`).
pub fn pretrain(cfg: &PretrainConfig, out: &Path) -> Result<PretrainReport> {
    pretrain_from(cfg, out, None, 0)
}

/// As [`pretrain`], optionally continuing from a checkpoint `init_from`
/// after `start_step` steps (see `--init-from`).
pub fn pretrain_from(
    cfg: &PretrainConfig,
    out: &Path,
    init_from: Option<&Path>,
    start_step: usize,
) -> Result<PretrainReport> {
    let device = Default::default();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The tokenizer corpus never includes the drills, so runs with and
    // without them share one tokenizer (and `--init-from` works across).
    let corpus_mix = TaskMix::new(cfg.image_size, cfg.side_task_per_mille)?;
    let mix = TaskMix::with_options(cfg.image_size, cfg.side_task_per_mille, cfg.shuffle_options)?
        .with_lookup(cfg.lookup_per_mille)
        .with_question_types(&match cfg.sft_question_types.as_slice() {
            [] => QuestionType::ALL.to_vec(),
            names => question_types("sft_question_types", names)?,
        })?
        .with_shuffled_types(&question_types(
            "shuffled_question_types",
            &cfg.shuffled_question_types,
        )?)?;

    // 1. Tokenizer.
    let started = Instant::now();
    let corpus: Vec<String> = (0..cfg.tokenizer_corpus as u64)
        .map(|i| {
            data::corpus_text(
                &corpus_mix.train_sample(i, cfg.seed).row,
                cfg.describe_image,
            )
        })
        .collect();
    let tok = train_tokenizer(corpus.iter(), cfg.bpe_vocab)?;
    let processor = processor_config(cfg.image_size);
    write_tokenizer_files(out, &tok, &processor)?;
    let ids = SpecialIds::of(&tok)?;
    let tokenizer_size = tok.get_vocab_size(true);
    tracing::info!(
        "tokenizer: {tokenizer_size} tokens ({} BPE + 14 special) in {:.1?}",
        tokenizer_size - 14,
        started.elapsed()
    );
    let qtok = QwenTokenizer::from_dir(out)?;

    // 2. Random init through the real loader.
    let spec = model_spec(cfg, &ids, tokenizer_size)?;
    let mut model = match init_from {
        Some(dir) => {
            tracing::info!("continuing from {} after {start_step} steps", dir.display());
            let m = Qwen2VL::<CpuTrain>::from_dir(dir, &device)?;
            if m.language_model.config() != &spec.text {
                bail!("{}: its config differs from this run's", dir.display());
            }
            let theirs = std::fs::read(dir.join("tokenizer.json"))
                .with_context(|| format!("reading {}/tokenizer.json", dir.display()))?;
            let ours = std::fs::read(out.join("tokenizer.json"))?;
            if theirs != ours {
                bail!(
                    "{}/tokenizer.json differs from the one this config trains \
                     (different seed, corpus size or vocabulary?)",
                    dir.display()
                );
            }
            m
        }
        None => {
            write_random_init(out, &spec, cfg.seed)?;
            Qwen2VL::<CpuTrain>::from_dir(out, &device)?
        }
    };
    tracing::info!(
        "model: {} parameters (vocab {}, hidden {}, {} layers; vision {}x{})",
        spec.num_parameters(),
        spec.text.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.vision_depth,
        cfg.vision_embed_dim
    );

    // 3. SFT.
    let encoder = Encoder {
        tokenizer: &qtok,
        image_pad: ids.image_pad,
        im_end: ids.im_end,
        tokens_per_image: tokens_per_image(&processor, cfg.image_size)?,
        describe: cfg.describe_image,
    };
    let evaluator = Evaluator::new(cfg, &qtok)?;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay)
        .with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            cfg.grad_clip,
        )))
        .init::<CpuTrain, Qwen2VL<CpuTrain>>();
    let bar = ProgressBar::new(cfg.max_steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let train_started = Instant::now();
    let mut losses = Vec::new();
    let mut evals = Vec::new();
    let mut window = Vec::new();
    let mut stop_reason = format!("max_steps ({})", cfg.max_steps);
    let mut steps = 0;
    for step in start_step + 1..=cfg.max_steps {
        let examples: Vec<Example> = (0..cfg.batch_size)
            .map(|j| {
                let i = ((step - 1) * cfg.batch_size + j) as u64;
                encoder.example(mix.train_sample(i, cfg.seed))
            })
            .collect::<Result<_>>()?;
        let (batch, targets, mask, n_tokens) =
            training_batch::<CpuTrain>(&examples, &processor, ids.endoftext, &device)?;
        let logits = model.forward(&batch)?;
        let loss = masked_nll(logits, targets, mask, n_tokens);
        let loss_value = loss.clone().into_scalar() as f64;
        if !loss_value.is_finite() {
            bail!("loss became {loss_value} at step {step}");
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(cfg, step);
        model = optim.step(lr, model, grads);
        window.push(loss_value);
        steps = step;
        bar.inc(1);
        if step % cfg.log_every == 0 {
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            window.clear();
            losses.push((step, mean));
            bar.set_message(format!("loss {mean:.4} lr {lr:.2e}"));
            tracing::debug!(step, loss = mean, lr, "train");
        }
        if cfg.save_every > 0 && step % cfg.save_every == 0 {
            let snapshot = out.join(format!("step-{step}"));
            std::fs::create_dir_all(&snapshot)
                .with_context(|| format!("creating {}", snapshot.display()))?;
            write_tokenizer_files(&snapshot, &tok, &processor)?;
            save_qwen2_vl(&model.valid(), &spec, &snapshot)?;
            bar.suspend(|| tracing::info!(step, "saved {}", snapshot.display()));
        }
        let out_of_time =
            cfg.max_minutes > 0.0 && train_started.elapsed().as_secs_f64() > cfg.max_minutes * 60.0;
        if step % cfg.eval_every == 0 || out_of_time {
            let r = evaluator.evaluate(&model.valid(), cfg.eval_samples)?;
            evals.push((step, r.accuracy));
            bar.suspend(|| {
                tracing::info!(
                    step,
                    "held-out accuracy {:.1}% (format {:.1}%, modality named {:.1}%, answer text named {:.1}%, lookup drills {:.1}%), loss {:.4}",
                    100.0 * r.accuracy,
                    100.0 * r.format_rate,
                    100.0 * r.modality_named,
                    100.0 * r.answer_text_named,
                    100.0 * r.lookup_accuracy,
                    losses.last().map_or(f64::NAN, |l| l.1)
                )
            });
            if r.accuracy >= cfg.stop_accuracy {
                stop_reason = format!(
                    "held-out accuracy {:.1}% reached stop_accuracy {:.0}%",
                    100.0 * r.accuracy,
                    100.0 * cfg.stop_accuracy
                );
                break;
            }
        }
        if out_of_time {
            stop_reason = format!("max_minutes ({})", cfg.max_minutes);
            break;
        }
    }
    bar.finish_and_clear();
    let train_seconds = train_started.elapsed().as_secs_f64();
    tracing::info!("stopped after {steps} steps ({train_seconds:.0}s): {stop_reason}");

    // 4. Save, reload, final evaluation on the saved checkpoint.
    let trained = model.valid();
    save_qwen2_vl(&trained, &spec, out)?;
    let reloaded = Qwen2VL::<Cpu>::from_dir(out, &device)?;
    let fin = evaluator.evaluate(&reloaded, cfg.final_eval_samples)?;
    let checkpoint_bytes = std::iter::once(&"model.safetensors")
        .chain(CHECKPOINT_FILES.iter())
        .filter_map(|f| std::fs::metadata(out.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let report = PretrainReport {
        config: cfg.clone(),
        steps,
        stop_reason,
        train_seconds,
        num_parameters: spec.num_parameters(),
        tokenizer_size,
        vocab_size: spec.text.vocab_size,
        losses,
        evals,
        final_accuracy: fin.accuracy,
        final_format_rate: fin.format_rate,
        by_question_type: fin.by_question_type,
        by_modality: fin.by_modality,
        checkpoint_bytes,
    };
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    vlrl::qwen::save::write_atomic(&out.join("pretrain_report.json"), text.as_bytes())?;
    Ok(report)
}

/// Parses the question types named in config field `field`.
fn question_types(field: &str, names: &[String]) -> Result<Vec<QuestionType>> {
    names
        .iter()
        .map(|t| {
            t.parse::<QuestionType>()
                .map_err(|e| anyhow!("{field}: {e}"))
        })
        .collect()
}

fn tokens_per_image(processor: &ProcessorConfig, image_size: u32) -> Result<usize> {
    let side = image_size as usize;
    let patches = processor
        .num_patches(side, side)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(patches / (processor.merge_size * processor.merge_size))
}

/// Linear warmup, then cosine decay to 10% at `max_steps`.
fn learning_rate(cfg: &PretrainConfig, step: usize) -> f64 {
    if step <= cfg.warmup_steps {
        return cfg.lr * step as f64 / cfg.warmup_steps.max(1) as f64;
    }
    let length = match cfg.lr_schedule_steps {
        0 => cfg.max_steps,
        n => n,
    };
    let span = length.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let t = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// Pixel patches of the samples' images (in order), if any.
fn vision_input<B: Backend>(
    samples: &[&vlrl::data::Sample],
    processor: &ProcessorConfig,
    device: &B::Device,
) -> Result<Option<VisionInput<B>>> {
    let images: Vec<_> = samples
        .iter()
        .flat_map(|s| s.images.iter().cloned())
        .collect();
    if images.is_empty() {
        return Ok(None);
    }
    let patches = preprocess_images(&images, processor).map_err(|e| anyhow!("{e}"))?;
    let n = patches.num_patches();
    Ok(Some(VisionInput {
        pixel_values: Tensor::from_data(
            TensorData::new(patches.data, [n, patches.patch_dim]),
            device,
        ),
        grid_thw: patches.grid_thw,
    }))
}

/// Left-padded `prompt ++ response` rows, next-token targets and the loss
/// mask (1 on response positions).
#[allow(clippy::type_complexity)]
fn training_batch<B: Backend>(
    examples: &[Example],
    processor: &ProcessorConfig,
    pad: u32,
    device: &B::Device,
) -> Result<(MultimodalBatch<B>, Tensor<B, 3, Int>, Tensor<B, 2>, usize)> {
    let len = examples
        .iter()
        .map(|e| e.prompt.len() + e.response.len())
        .max()
        .ok_or_else(|| anyhow!("empty batch"))?;
    let mut input_ids = Vec::with_capacity(examples.len());
    let mut attention = Vec::with_capacity(examples.len());
    let mut targets = Vec::with_capacity(examples.len() * (len - 1));
    let mut mask = Vec::with_capacity(examples.len() * (len - 1));
    for e in examples {
        let real = e.prompt.len() + e.response.len();
        let padding = len - real;
        let mut row = vec![pad; padding];
        row.extend(&e.prompt);
        row.extend(&e.response);
        let first_target = padding + e.prompt.len(); // index of the first response token
        for p in 0..len - 1 {
            targets.push(i64::from(row[p + 1]));
            mask.push(if p + 1 >= first_target { 1.0f32 } else { 0.0 });
        }
        let mut m = vec![0u8; padding];
        m.extend(std::iter::repeat_n(1u8, real));
        input_ids.push(row);
        attention.push(m);
    }
    let n_tokens = mask.iter().filter(|&&m| m > 0.0).count();
    let samples: Vec<_> = examples.iter().map(|e| &e.sample).collect();
    let b = examples.len();
    Ok((
        MultimodalBatch {
            input_ids,
            attention_mask: attention,
            images: vision_input(&samples, processor, device)?,
            videos: None,
            second_per_grid_ts: None,
        },
        Tensor::from_data(TensorData::new(targets, [b, len - 1, 1]), device),
        Tensor::from_data(TensorData::new(mask, [b, len - 1]), device),
        n_tokens,
    ))
}

/// Mean negative log-likelihood of the masked next tokens.
fn masked_nll<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 3, Int>,
    mask: Tensor<B, 2>,
    n_tokens: usize,
) -> Tensor<B, 1> {
    let [b, s, v] = logits.dims();
    let logp = log_softmax(logits.slice([0..b, 0..s - 1, 0..v]), 2);
    let picked = logp.gather(2, targets).reshape([b, s - 1]);
    -(picked * mask).sum() / n_tokens.max(1) as f64
}

/// Result of a held-out evaluation.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub n: usize,
    pub accuracy: f64,
    pub format_rate: f64,
    /// Share of traces whose `<think>` names the image's true modality: how
    /// well the model reads the pixels, apart from picking the letter.
    pub modality_named: f64,
    /// Share of traces whose `<think>` names the correct answer text.
    pub answer_text_named: f64,
    /// Greedy accuracy on text-only option-lookup drills (`n / 4` of them).
    pub lookup_accuracy: f64,
    pub by_question_type: Vec<(String, f64)>,
    /// [`Self::answer_text_named`] per question type: perception apart from
    /// the letter (the bundled model names lesions at about chance).
    pub answer_text_named_by_type: Vec<(String, f64)>,
    pub by_modality: Vec<(String, f64)>,
}

/// Greedy generation on held-out med-synth and answer-letter parsing.
struct Evaluator<'a> {
    cfg: PretrainConfig,
    mix: TaskMix,
    tok: &'a QwenTokenizer,
    processor: ProcessorConfig,
    tokens_per_image: usize,
    ids: (u32, u32, u32),
}

impl<'a> Evaluator<'a> {
    fn new(cfg: &PretrainConfig, tok: &'a QwenTokenizer) -> Result<Self> {
        let processor = processor_config(cfg.image_size);
        let id = |t: &str| {
            tok.token_id(t)
                .ok_or_else(|| anyhow!("tokenizer lacks {t}"))
        };
        Ok(Self {
            cfg: cfg.clone(),
            mix: TaskMix::with_options(
                cfg.image_size,
                cfg.side_task_per_mille,
                cfg.shuffle_options,
            )?,
            tok,
            tokens_per_image: tokens_per_image(&processor, cfg.image_size)?,
            processor,
            ids: (
                id("<|image_pad|>")?,
                id("<|im_end|>")?,
                id("<|endoftext|>")?,
            ),
        })
    }

    /// Greedy completions of `samples`, decoded, in order.
    fn complete<B: Backend>(
        &self,
        model: &Qwen2VL<B>,
        samples: &[vlrl::data::Sample],
    ) -> Result<Vec<String>> {
        let (image_pad, im_end, pad) = self.ids;
        let encoder = Encoder {
            tokenizer: self.tok,
            image_pad,
            im_end,
            tokens_per_image: self.tokens_per_image,
            describe: self.cfg.describe_image,
        };
        let device = model.language_model.embed_tokens.weight.device();
        let params = SamplingParams {
            max_new_tokens: self.cfg.max_new_tokens,
            stop_tokens: vec![im_end, pad],
            ..SamplingParams::default()
        };
        let mut texts = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(40) {
            let prompts: Vec<Vec<u32>> = chunk
                .iter()
                .map(|s| encoder.prompt(s))
                .collect::<Result<_>>()?;
            let (input_ids, attention_mask) = vlrl::qwen::generate::left_pad(&prompts, pad);
            let refs: Vec<_> = chunk.iter().collect();
            let batch = MultimodalBatch {
                input_ids,
                attention_mask,
                images: vision_input(&refs, &self.processor, &device)?,
                videos: None,
                second_per_grid_ts: None,
            };
            let gen = model.generate(&batch, pad, &params)?;
            for tokens in &gen.tokens {
                texts.push(self.tok.decode(tokens, true)?);
            }
        }
        Ok(texts)
    }

    /// Greedy accuracy on `n` held-out option-lookup drills (text only).
    fn lookup_accuracy<B: Backend>(&self, model: &Qwen2VL<B>, n: usize) -> Result<f64> {
        let samples: Vec<_> = (0..n as u64)
            .map(|i| self.mix.lookup_sample(i, self.cfg.eval_seed))
            .collect();
        let texts = self.complete(model, &samples)?;
        let correct = samples
            .iter()
            .zip(&texts)
            .filter(|(s, t)| is_correct(t, &s.row))
            .count();
        Ok(correct as f64 / n.max(1) as f64)
    }

    fn evaluate<B: Backend>(&self, model: &Qwen2VL<B>, n: usize) -> Result<EvalResult> {
        let mut correct = 0usize;
        let mut formatted = 0usize;
        let mut modality_named = 0usize;
        let mut answer_text_named = 0usize;
        let mut by_type: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        let mut by_mod: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        let mut named_by_type: std::collections::BTreeMap<String, (usize, usize)> =
            Default::default();
        let samples: Vec<_> = (0..n as u64)
            .map(|i| self.mix.med_sample(i, self.cfg.eval_seed))
            .collect();
        let texts = self.complete(model, &samples)?;
        for (s, text) in samples.iter().zip(texts) {
            let ok = is_correct(&text, &s.row);
            let well_formed = text.contains("<think>")
                && text.contains("</think>")
                && parse_answer(&text).is_some();
            correct += usize::from(ok);
            formatted += usize::from(well_formed);
            let think = text.split("</think>").next().unwrap_or("");
            let names = |key: &str, pattern: &dyn Fn(&str) -> String| {
                s.row
                    .meta_str(key)
                    .is_some_and(|v| think.contains(&pattern(v)))
            };
            modality_named += usize::from(names("modality", &|m| format!("This is a {m} image")));
            let text_named = names("answer_text", &|a| format!("It shows {a},"));
            answer_text_named += usize::from(text_named);
            let e = named_by_type
                .entry(s.row.meta_str("question_type").unwrap_or("?").to_string())
                .or_default();
            e.0 += usize::from(text_named);
            e.1 += 1;
            tracing::debug!(id = %s.row.id, ok, "{text}");
            for (map, key) in [(&mut by_type, "question_type"), (&mut by_mod, "modality")] {
                let k = s.row.meta_str(key).unwrap_or("?").to_string();
                let e = map.entry(k).or_default();
                e.0 += usize::from(ok);
                e.1 += 1;
            }
        }
        let rate = |m: std::collections::BTreeMap<String, (usize, usize)>| {
            m.into_iter()
                .map(|(k, (c, t))| (k, c as f64 / t.max(1) as f64))
                .collect()
        };
        Ok(EvalResult {
            n,
            accuracy: correct as f64 / n.max(1) as f64,
            format_rate: formatted as f64 / n.max(1) as f64,
            modality_named: modality_named as f64 / n.max(1) as f64,
            answer_text_named: answer_text_named as f64 / n.max(1) as f64,
            lookup_accuracy: self.lookup_accuracy(model, n.div_ceil(4))?,
            by_question_type: rate(by_type),
            answer_text_named_by_type: rate(named_by_type),
            by_modality: rate(by_mod),
        })
    }
}

/// Writes reference logits of the saved checkpoint on two held-out
/// multimodal prompts (one left-padded), with the exact inputs, so
/// `tools/check_bundled_model.py` can run transformers on the same batch.
fn dump_logits(dir: &Path, cfg: &PretrainConfig, path: &Path) -> Result<()> {
    let device = Default::default();
    let model = Qwen2VL::<Cpu>::from_dir(dir, &device)?;
    let tok = QwenTokenizer::from_dir(dir)?;
    let processor = processor_config(cfg.image_size);
    let encoder = Encoder {
        tokenizer: &tok,
        image_pad: tok
            .token_id("<|image_pad|>")
            .ok_or_else(|| anyhow!("no <|image_pad|>"))?,
        im_end: tok
            .token_id("<|im_end|>")
            .ok_or_else(|| anyhow!("no <|im_end|>"))?,
        tokens_per_image: tokens_per_image(&processor, cfg.image_size)?,
        describe: cfg.describe_image,
    };
    let mix = TaskMix::new(cfg.image_size, cfg.side_task_per_mille)?;
    // Two questions of different types (different prompt lengths), with the
    // reference answer appended so the logits cover the trace too.
    let samples = [
        mix.med_sample(0, cfg.eval_seed),
        mix.med_sample(13, cfg.eval_seed),
    ];
    let rows: Vec<Vec<u32>> = samples
        .iter()
        .map(|s| {
            let e = encoder.example(s.clone())?;
            Ok([e.prompt, e.response].concat())
        })
        .collect::<Result<_>>()?;
    let pad = tok
        .token_id("<|endoftext|>")
        .ok_or_else(|| anyhow!("no <|endoftext|>"))?;
    let (input_ids, attention_mask) = vlrl::qwen::generate::left_pad(&rows, pad);
    let refs: Vec<_> = samples.iter().collect();
    let images =
        vision_input::<Cpu>(&refs, &processor, &device)?.ok_or_else(|| anyhow!("no images"))?;
    let pixel_values = images
        .pixel_values
        .clone()
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    let grid_thw = images.grid_thw.clone();
    let batch = MultimodalBatch {
        input_ids: input_ids.clone(),
        attention_mask: attention_mask.clone(),
        images: Some(images),
        videos: None,
        second_per_grid_ts: None,
    };
    let logits = model.forward(&batch)?;
    let dims = logits.dims();
    let values = logits
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    let prompt_texts: Vec<String> = samples.iter().map(|s| prompt_text(&s.row)).collect();
    let out = json!({
        "checkpoint": dir,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": pixel_values,
        "pixel_shape": [pixel_values.len() / processor.patch_dim(), processor.patch_dim()],
        "image_grid_thw": grid_thw,
        "logits_shape": dims,
        "logits": values,
        "prompt_texts": prompt_texts,
    });
    std::fs::write(path, serde_json::to_vec(&out)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote reference logits {:?} to {}", dims, path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_run_follows_the_longer_schedule() {
        let long = PretrainConfig {
            max_steps: 4500,
            ..PretrainConfig::default()
        };
        let cut = PretrainConfig {
            max_steps: 2500,
            lr_schedule_steps: 4500,
            ..long.clone()
        };
        let own = PretrainConfig {
            max_steps: 2500,
            ..long.clone()
        };
        for step in [1, 50, 51, 1000, 2500] {
            assert_eq!(learning_rate(&cut, step), learning_rate(&long, step));
        }
        // Its own schedule would have decayed to 10% by its last step.
        assert!((learning_rate(&own, 2500) - 0.1 * own.lr).abs() < 1e-12);
        assert!(
            learning_rate(&cut, 2500) > 0.4 * cut.lr,
            "about half way down"
        );
    }
}
