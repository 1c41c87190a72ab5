//! `recipes lmm-base`: the bundled reasoning model, `assets/lmm-tiny`.
//!
//! LMM-R1 starts from Qwen2.5-VL-3B-Instruct, a model that already writes
//! arithmetic in its reasoning; FRE's text-only RL sharpens that and MGT
//! carries it over to images. The bundled `assets/med-tiny` was shown
//! text-logic answers without the working (`The result is N.`), so it
//! answers almost every problem with one small number and FRE had nothing
//! to sharpen (docs/lmm-r1.md). This command is the tiny-scale stand-in for
//! the real model's language pretraining: it continues a checkpoint (same
//! tokenizer and architecture) with SFT on text-logic problems answered
//! with their worked arithmetic (the generator's `rationale`), from seed
//! streams the recipe never uses, mixed with visual-math examples in the
//! short trace the model was pretrained on, so that it keeps (but is not
//! taught more of) its multimodal skill. It stops early on purpose, at a
//! text validation accuracy, so that RL has room left.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use vlrl::data::Row;

use vlrl::data::synth::{TextLogic, VisualMath, VisualMathConfig};
use vlrl::data::TaskGenerator;

use super::{
    multimodal_samples, test_seed, text_samples, to_prompt, Example, LmmR1Args, LmmR1Config,
    MULTIMODAL, TEXT,
};
use crate::base_model::{train_base, write_report, BaseFlags, BaseOutcome, BaseRun};
use crate::eval::{evaluate_targets, Decoding, EvalResult, VerifiedTarget};
use crate::policy::{VisionExtra, VlmPolicy};
use crate::pretrain::response_text;
use crate::sft::SftExample;
use crate::single_turn::{Checkpoint, RunFlags};
use crate::TrainBackend;

/// `recipes lmm-base` flags.
#[derive(Args, Debug, Clone)]
pub struct LmmBaseArgs {
    /// The lmm-r1 config whose tasks, image size, option order and answer
    /// budget the model learns (its `model`, `out` and stages are not used).
    #[arg(long, default_value = "recipes/configs/lmm-r1.toml")]
    pub config: PathBuf,
    /// Checkpoint to continue; its tokenizer, chat template and
    /// architecture are kept.
    #[arg(long, default_value = "assets/med-tiny")]
    pub init_from: PathBuf,
    /// Output checkpoint directory (Hugging Face layout) and its
    /// `lmm_base_report.json`.
    #[arg(long, default_value = "assets/lmm-tiny")]
    pub out: PathBuf,
    /// Seed of the SFT and validation streams.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
    /// Share of SFT examples that are visual-math questions in the
    /// pretraining trace (the rest: text-logic with worked arithmetic).
    #[arg(long, default_value_t = 0.25)]
    pub multimodal_share: f64,
    /// Steps, optimizer, validation and stopping (`--stop-accuracy` is
    /// compared with the text validation accuracy).
    #[command(flatten)]
    pub train: BaseFlags,
}

/// One validation: greedy accuracy on held-out text and multimodal problems.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseEval {
    pub step: usize,
    pub text: EvalResult,
    pub multimodal: EvalResult,
}

/// `lmm_base_report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LmmBaseReport {
    pub multimodal_share: f64,
    #[serde(flatten)]
    pub run: BaseOutcome<BaseEval>,
}

/// The SFT target of a row: text-logic shows its working
/// (`<think>7 + 5 - 3 = 9.</think><answer>9</answer>`); every other row
/// keeps the pretraining trace, so SFT adds reasoning and nothing else.
pub fn trace(row: &Row) -> String {
    match (row.source.as_str(), row.meta_str("rationale"), &row.answer) {
        ("text-logic", Some(why), Some(answer)) => {
            format!("<think>{why}.</think><answer>{answer}</answer>")
        }
        _ => response_text(row, false),
    }
}

/// Seed streams of the SFT and validation problems, kept apart from the
/// recipe's training (`seed`) and held-out (`seed + 1,000,003`) streams.
fn streams(seed: u64, config: &LmmR1Config) -> Result<(u64, u64)> {
    let sft = seed.wrapping_add(7_000_001);
    let validation = seed.wrapping_add(9_000_011);
    let recipe = [config.seed, test_seed(config)];
    if recipe.contains(&sft) || recipe.contains(&validation) {
        bail!(
            "--seed {seed}: its problem streams would repeat the recipe's training or \
             held-out problems (recipe seed {}); pick another",
            config.seed
        );
    }
    Ok((sft, validation))
}

/// The SFT pair of one example.
fn example(ckpt: &Checkpoint, ex: &Example) -> Result<SftExample<VisionExtra>> {
    let prompt = to_prompt(&ckpt.prompter, ex, "numeric")?;
    let response = ckpt
        .prompter
        .tokenizer
        .encode(&format!("{}<|im_end|>", trace(&ex.row)))?;
    Ok(SftExample {
        prompt_ids: prompt.ids,
        loss_mask: vec![true; response.len()],
        response_ids: response,
        extra: prompt.extra,
    })
}

/// Trains and writes the reasoning base model.
pub fn run(args: LmmBaseArgs) -> Result<()> {
    let config = LmmR1Args {
        run: RunFlags::from_config(&args.config),
        ..Default::default()
    }
    .resolve()?;
    if config.data.is_some() {
        bail!("lmm-base trains on the synthetic text-logic and visual-math tasks; the config names `data`");
    }
    if !(0.0..=1.0).contains(&args.multimodal_share) {
        bail!(
            "--multimodal-share must be in [0, 1], got {}",
            args.multimodal_share
        );
    }
    args.train.check(&args.init_from, &args.out)?;
    let (sft_seed, validation_seed) = streams(args.seed, &config)?;
    let ckpt = Checkpoint::open(&args.init_from)?;
    let prompts = |examples: Vec<Example>| -> Result<Vec<_>> {
        examples
            .iter()
            .map(|e| to_prompt(&ckpt.prompter, e, "numeric"))
            .collect()
    };
    let validation = (
        prompts(text_samples(&config, args.train.eval_size, validation_seed))?,
        prompts(multimodal_samples(
            &config,
            args.train.eval_size,
            validation_seed,
        )?)?,
    );
    let max_new_tokens = config.eval_max_new_tokens;
    let batch_size = config.eval_batch_size;
    let validate = |model: &vlrl::qwen::Qwen2VL<crate::single_turn::EvalBackend>, step| {
        let run = |prompts| {
            evaluate_targets::<_, VerifiedTarget>(
                model,
                &ckpt.prompter.tokenizer,
                prompts,
                &ckpt.stop,
                ckpt.pad,
                max_new_tokens,
                batch_size,
                Decoding::GREEDY,
            )
        };
        let eval = BaseEval {
            step,
            text: run(&validation.0)?,
            multimodal: run(&validation.1)?,
        };
        tracing::info!(
            step,
            "validation: greedy text {:.1}%, multimodal {:.1}%, format {:.2} / {:.2}",
            100.0 * eval.text.accuracy,
            100.0 * eval.multimodal.accuracy,
            eval.text.format,
            eval.multimodal.format
        );
        anyhow::Ok(eval)
    };

    let visual_math = VisualMath::new(VisualMathConfig {
        image_size: config.image_size,
        shuffle_options: config.shuffle_options,
    })?;
    let policy = VlmPolicy::<TrainBackend>::new(ckpt.load()?, ckpt.stop.clone(), ckpt.pad);
    let share = args.multimodal_share;
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
            // A function of `i` alone, so a resumed run sees the same
            // examples: every 1/share-th is multimodal, as `mixed_samples`
            // interleaves the recipe's sets.
            let multimodal = ((i + 1) as f64 * share).floor() > (i as f64 * share).floor();
            let ex = if multimodal {
                Example::from_sample(visual_math.sample(i, sft_seed), MULTIMODAL)
            } else {
                Example::from_sample(TextLogic.sample(i, sft_seed), TEXT)
            };
            example(&ckpt, &ex)
        },
        |model, step| {
            let eval = validate(model, step)?;
            let score = eval.text.accuracy;
            Ok((eval, score))
        },
    )?;
    let report = LmmBaseReport {
        multimodal_share: share,
        run,
    };
    write_report(&args.out.join("lmm_base_report.json"), &report)
}
