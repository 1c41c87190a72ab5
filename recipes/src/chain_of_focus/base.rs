//! `recipes zoom-base`: the bundled focus model, `assets/zoom-tiny`.
//!
//! Chain-of-Focus starts from Qwen2.5-VL-7B, which already reads an object
//! it can see and writes the box of an object it is asked about; MM-CoF's
//! SFT only teaches the protocol that chains the two (zoom, then answer from
//! the crop). The bundled `assets/med-tiny` can do neither: after 1000 SFT
//! steps on focus traces its answers still did not depend on the crop
//! (docs/chain-of-focus.md). This command is the tiny-scale stand-in for
//! that perception pretraining. It continues a checkpoint (by default
//! `assets/video-tiny`, which already tells object colours apart in video
//! frames; from med-tiny the lessons stayed at chance for a thousand steps)
//! on three lessons from zoom-search images of seed streams the recipe
//! never uses:
//!
//! - **read**: the trace's crop as the only image, seen at the crop budget
//!   as after a zoom, asked with the recipe's direct prompt and answered as
//!   the recipe's answer turn;
//! - **locate**: the first view, asked where the coloured object is,
//!   answered with the trace's grid box;
//! - **glance**: the first view with the direct prompt (what the model can
//!   read without zooming: the target's colour survives the downscale, its
//!   shape does not).
//!
//! It never shows the protocol itself (zoom prompt → box → crop turn →
//! answer); that stays the recipe's SFT stage.
//!
//! The committed `assets/zoom-tiny` is not this command's defaults alone:
//! since stop 20 it starts from a vision tower trained by
//! `recipes/examples/vision_probe.rs` (shape in crops, and where each image
//! token lies, which the language model needs to write a box) and runs with
//! `--freeze visual`; the exact commands are in docs/bundled-model.md. The
//! stop-17 model, built with the defaults (video-tiny's tower, trained
//! along), zoomed onto the target in 31% of the recipe's episodes, about
//! what a random half-image box does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use vlrl::qwen::Qwen2VL;
use vlrl::rewards::Registry;

use super::episode::{run_episodes, score_episode, FocusEnv, FocusExtra, FocusPolicy, FocusTarget};
use super::task::{
    answer_turn_text, box_text, zoom_box_grid, zoom_turn_text, FocusExample, QuestionKind,
};
use super::{
    choice_target, greedy_params, make_env, nth_example, test_seed, trace_crop, ChainOfFocusArgs,
    ChainOfFocusConfig,
};
use crate::base_model::{train_base, write_report, BaseFlags, BaseOutcome, BaseRun};
use crate::policy::VlmPolicy;
use crate::sft::SftExample;
use crate::single_turn::{EvalBackend, RunFlags};
use crate::TrainBackend;

/// The question of the locate lesson.
pub const LOCATE_PROMPT: &str = "Where is the coloured object? Output its bounding box.";

/// What one training or validation question teaches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Lesson {
    Read,
    Locate,
    Glance,
}

impl Lesson {
    /// Every lesson, in validation order.
    pub const ALL: [Lesson; 3] = [Lesson::Read, Lesson::Locate, Lesson::Glance];
}

/// `recipes zoom-base` flags.
#[derive(Args, Debug, Clone)]
pub struct ZoomBaseArgs {
    /// The chain-of-focus config whose task, pixel budgets, box grid and
    /// prompts the model learns (its `model`, `out`, `[sft]` and `[grpo]`
    /// are not used).
    #[arg(long, default_value = "recipes/configs/chain-of-focus.toml")]
    pub config: PathBuf,
    /// Checkpoint to continue; its tokenizer, chat template and
    /// architecture are kept.
    #[arg(long, default_value = "assets/video-tiny")]
    pub init_from: PathBuf,
    /// Output checkpoint directory (Hugging Face layout) and its
    /// `zoom_base_report.json`.
    #[arg(long, default_value = "assets/zoom-tiny")]
    pub out: PathBuf,
    /// Seed of the training and validation image streams.
    #[arg(long, default_value_t = 31)]
    pub seed: u64,
    /// The training lessons, taken in turn (default: reading a crop, the
    /// skill the recipe lacked, twice as often as the others).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "read,locate,read,glance"
    )]
    pub lessons: Vec<Lesson>,
    /// The question kinds trained on (validation always asks both).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "colour,shape"
    )]
    pub kinds: Vec<QuestionKind>,
    /// Steps, optimizer, validation and stopping (`--stop-accuracy` is
    /// compared with the read lesson's accuracy).
    #[command(flatten)]
    pub train: BaseFlags,
}

/// Greedy results of one lesson on the validation images.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LessonScore {
    pub n: usize,
    /// Share answered correctly (locate: the box holds the target).
    pub accuracy: f64,
    /// Share in the lesson's output format.
    pub format: f64,
    /// `(correct, n)` per image side.
    pub by_size: BTreeMap<u32, (usize, usize)>,
    /// `(correct, n)` per question kind (colour, shape).
    pub by_kind: BTreeMap<String, (usize, usize)>,
}

/// One validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoomBaseEval {
    pub step: usize,
    pub lessons: BTreeMap<Lesson, LessonScore>,
}

impl ZoomBaseEval {
    fn accuracy(&self, lesson: Lesson) -> f64 {
        self.lessons.get(&lesson).map_or(0.0, |s| s.accuracy)
    }
}

/// `zoom_base_report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoomBaseReport {
    #[serde(flatten)]
    pub run: BaseOutcome<ZoomBaseEval>,
}

/// A lesson question with its answer.
struct LessonItem {
    ids: Vec<u32>,
    extra: FocusExtra,
    target: FocusTarget,
    response: String,
    example: FocusExample,
}

/// The lesson `lesson` on example `ex`.
fn lesson_item(
    config: &ChainOfFocusConfig,
    env: &FocusEnv,
    ex: FocusExample,
    lesson: Lesson,
) -> Result<LessonItem> {
    let direct = config.direct_prompt.replace("{question}", &ex.question);
    let grid_box = zoom_box_grid(ex.target_box, ex.size, config.box_grid);
    let ((ids, extra), response, max_turns) = match lesson {
        Lesson::Read => {
            let frame = env.view_frame(&ex.image)?;
            let crop = trace_crop(env, frame, &ex, &zoom_turn_text(grid_box))?;
            let prompt = env.crop_prompt(Arc::new(crop), &direct)?;
            (prompt, answer_turn_text(&ex), 1)
        }
        // Two turns, so that the box is read as a zoom when it is scored.
        Lesson::Locate => (
            env.prompt(ex.image.clone(), LOCATE_PROMPT)?,
            box_text(grid_box),
            2,
        ),
        Lesson::Glance => (
            env.prompt(ex.image.clone(), &direct)?,
            answer_turn_text(&ex),
            1,
        ),
    };
    Ok(LessonItem {
        ids,
        extra,
        target: FocusTarget {
            choice: choice_target(&ex),
            bbox: ex.target_box,
            max_turns,
        },
        response,
        example: ex,
    })
}

/// The SFT pair of lesson `lesson` on example `ex`.
pub fn lesson_example(
    config: &ChainOfFocusConfig,
    env: &FocusEnv,
    ex: FocusExample,
    lesson: Lesson,
) -> Result<SftExample<FocusExtra>> {
    let item = lesson_item(config, env, ex, lesson)?;
    let response = env
        .prompter
        .tokenizer
        .encode(&format!("{}<|im_end|>", item.response))?;
    Ok(SftExample {
        prompt_ids: item.ids,
        loss_mask: vec![true; response.len()],
        response_ids: response,
        extra: item.extra,
    })
}

/// Seed streams of the training and validation images, kept apart from
/// the recipe's RL (`seed + 2`), SFT (`seed + 3`) and test streams.
fn streams(seed: u64, config: &ChainOfFocusConfig) -> Result<(u64, u64)> {
    let train = seed.wrapping_add(8_000_017);
    let validation = seed.wrapping_add(8_500_009);
    let recipe = [
        config.seed.wrapping_add(2),
        config.seed.wrapping_add(3),
        test_seed(config),
    ];
    if recipe.contains(&train) || recipe.contains(&validation) {
        bail!(
            "--seed {seed}: its image streams would repeat the recipe's training or test \
             images (recipe seed {}); pick another",
            config.seed
        );
    }
    Ok((train, validation))
}

/// Greedy answers to every lesson on `items`, scored as the recipe scores
/// (locate: the box, read as a zoom, holds the target's centre).
fn validate(
    model: &Qwen2VL<EvalBackend>,
    env: &FocusEnv,
    config: &ChainOfFocusConfig,
    items: &[(Lesson, LessonItem)],
    step: usize,
) -> Result<ZoomBaseEval> {
    let registry = Registry::with_defaults();
    let params = greedy_params(model, env, config.turn_max_new_tokens);
    let mut lessons = BTreeMap::new();
    for lesson in Lesson::ALL {
        let of: Vec<&LessonItem> = items
            .iter()
            .filter(|(l, _)| *l == lesson)
            .map(|(_, item)| item)
            .collect();
        let mut score = LessonScore::default();
        let (mut correct, mut formatted) = (0usize, 0usize);
        for chunk in of.chunks(config.eval_batch_size.max(1)) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|i| (i.ids.as_slice(), i.extra.as_ref()))
                .collect();
            let outs = run_episodes(model, env, &rows, &params, 1)?;
            for (item, out) in chunk.iter().zip(outs) {
                let s = score_episode(env, &registry, item.extra.frame, &item.target, &out.ids)?;
                let (ok, in_format) = match lesson {
                    Lesson::Locate => (s.zooms > 0 && s.box_hit, s.zooms > 0),
                    Lesson::Read | Lesson::Glance => (s.accuracy > 0.5, s.format > 0.5),
                };
                correct += usize::from(ok);
                formatted += usize::from(in_format);
                let ex = &item.example;
                for cell in [
                    score.by_size.entry(ex.size).or_default(),
                    score.by_kind.entry(ex.kind.name().to_string()).or_default(),
                ] {
                    cell.0 += usize::from(ok);
                    cell.1 += 1;
                }
            }
        }
        score.n = of.len();
        let n = of.len().max(1) as f64;
        score.accuracy = correct as f64 / n;
        score.format = formatted as f64 / n;
        lessons.insert(lesson, score);
    }
    let eval = ZoomBaseEval { step, lessons };
    let line: Vec<String> = Lesson::ALL
        .iter()
        .map(|l| {
            let s = &eval.lessons[l];
            let sizes: Vec<String> = s
                .by_size
                .iter()
                .map(|(size, (ok, n))| format!("{size}px {ok}/{n}"))
                .chain(
                    s.by_kind
                        .iter()
                        .map(|(kind, (ok, n))| format!("{kind} {ok}/{n}")),
                )
                .collect();
            format!(
                "{l:?} {:.1}% ({}; format {:.2})",
                100.0 * s.accuracy,
                sizes.join(", "),
                s.format
            )
        })
        .collect();
    tracing::info!(step, "validation: {}", line.join(" | "));
    Ok(eval)
}

/// Example `i` of the stream if its question is of one of `kinds`, else the
/// first that is among its stand-ins (indices `i + j·2³²·sizes`, the same
/// image size): with both kinds allowed, always example `i`.
fn example_of_kind(
    config: &ChainOfFocusConfig,
    i: u64,
    seed: u64,
    kinds: &[QuestionKind],
) -> Result<FocusExample> {
    let stride = (1u64 << 32).wrapping_mul(config.sizes.len() as u64);
    for j in 0..64u64 {
        let ex = nth_example(config, i.wrapping_add(j.wrapping_mul(stride)), seed)?;
        if kinds.contains(&ex.kind) {
            return Ok(ex);
        }
    }
    bail!("no question of the kinds {kinds:?} among 64 draws for example {i}")
}

/// Trains and writes the focus base model.
pub fn run(args: ZoomBaseArgs) -> Result<()> {
    let config = ChainOfFocusArgs {
        run: RunFlags::from_config(&args.config),
        ..Default::default()
    }
    .resolve()?;
    args.train.check(&args.init_from, &args.out)?;
    if args.lessons.is_empty() || args.kinds.is_empty() {
        bail!("--lessons and --kinds must each name at least one");
    }
    let (train_seed, validation_seed) = streams(args.seed, &config)?;
    let config = ChainOfFocusConfig {
        model: args.init_from.clone(),
        ..config
    };
    let env = make_env(&config)?;
    let mut validation = Vec::new();
    for i in 0..args.train.eval_size as u64 {
        for lesson in Lesson::ALL {
            let ex = nth_example(&config, i, validation_seed)?;
            validation.push((lesson, lesson_item(&config, &env, ex, lesson)?));
        }
    }
    let policy = FocusPolicy {
        inner: VlmPolicy::new(
            Qwen2VL::<TrainBackend>::from_dir(&args.init_from, &Default::default())?,
            env.stop_tokens.clone(),
            env.pad_id,
        ),
        env: env.clone(),
        max_turns: config.max_turns,
    };
    let sizes = config.sizes.len() as u64;
    let run = train_base(
        BaseRun {
            flags: &args.train,
            init_from: &args.init_from,
            out: &args.out,
            seed: args.seed,
        },
        policy,
        |p: &FocusPolicy<TrainBackend>| &p.inner.model,
        // Sizes change fastest, so every lesson meets every size.
        |i| {
            let lesson = args.lessons[((i / sizes) % args.lessons.len() as u64) as usize];
            let ex = example_of_kind(&config, i, train_seed, &args.kinds)?;
            lesson_example(&config, &env, ex, lesson)
        },
        |model, step| {
            let eval = validate(model, &env, &config, &validation, step)?;
            let score = eval.accuracy(Lesson::Read);
            Ok((eval, score))
        },
    )?;
    write_report(
        &args.out.join("zoom_base_report.json"),
        &ZoomBaseReport { run },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_pick_stand_ins_of_the_same_size_and_keep_the_stream_otherwise() {
        let config = ChainOfFocusConfig::default();
        let both = QuestionKind::ALL;
        let mut shapes = 0;
        for i in 0..24 {
            let own = nth_example(&config, i, 5).unwrap();
            let any = example_of_kind(&config, i, 5, &both).unwrap();
            assert_eq!(
                (any.question.clone(), any.size),
                (own.question.clone(), own.size)
            );
            let shape = example_of_kind(&config, i, 5, &[QuestionKind::Shape]).unwrap();
            assert_eq!(shape.kind, QuestionKind::Shape);
            assert_eq!(shape.size, own.size, "example {i}: same image size");
            shapes += usize::from(own.kind == QuestionKind::Shape);
        }
        assert!(
            shapes > 4 && shapes < 20,
            "{shapes} of 24 drawn as shape questions"
        );
    }
}
