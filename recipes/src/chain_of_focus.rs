//! Chain-of-Focus (Zhang et al. 2025, "Chain-of-Focus: Adaptive Visual
//! Search and Zooming for Multimodal Reasoning via RL"): the model looks at
//! a downscaled image, asks for a zoom into the region it chooses (a box),
//! gets the crop back as a new image turn, and answers — over several turns.
//! Stage 1: SFT cold start on focus traces (MM-CoF); stage 2: GRPO over whole
//! multi-turn trajectories (accuracy + format rewards, here plus an optional
//! box reward), the inserted image turns masked out of the loss.
//!
//! Tiny scale (default): the bundled model on synthetic `zoom-search`
//! (V*-like) at several resolutions with a fixed first-view pixel budget.
//! Real scale: `--model` a Qwen2-VL / Qwen2.5-VL checkpoint, `--features
//! cuda`; see `docs/chain-of-focus.md`.

pub mod base;
pub mod episode;
pub mod task;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use serde::{Deserialize, Serialize};
use vlrl::grounding::{CoordSpace, FocusAction, FocusLoop};
use vlrl::grpo::config::{GrpoConfig, KlPlacement};
use vlrl::grpo::lora::check_module_patterns;
use vlrl::grpo::policy::{Completion, Prompt};
use vlrl::grpo::trainer::{RewardFn, RewardOutput, RunOptions, Trainer};
use vlrl::qwen::{Qwen2VL, SamplingParams};
use vlrl::rewards::Registry;

use crate::eval::ChoiceTarget;
use crate::policy::{PromptVision, VlmPolicy};
use crate::sft::{train_sft, SftConfig, SftControl, SftExample, SftStep};
use crate::single_turn::set_from;
use crate::TrainBackend;
use episode::{
    run_episodes, score_episode, EpisodeScore, FocusEnv, FocusExtra, FocusPolicy, FocusState,
    FocusTarget,
};
use task::{
    answer_turn_text, example_at, zoom_box_grid, zoom_turn_text, FocusExample, QuestionKind,
    TaskSpec,
};

/// The recipe's configuration (`recipes/configs/chain-of-focus.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ChainOfFocusConfig {
    /// Hugging Face checkpoint directory of the starting model.
    pub model: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// Image sides evaluated (the paper: 8 from 224 to 4K; scaled down).
    pub sizes: Vec<u32>,
    /// Target radius in pixels, the same at every size.
    pub target_radius: f32,
    /// Grey distractors of a 448-px image (scaled with the area).
    pub distractors_448: usize,
    /// Shuffle the options (V*-like) or keep zoom-search's fixed order, in
    /// which the letter follows from the target's look (the bundled model's
    /// convention: it cannot find a named option in a shuffled list).
    pub shuffle_options: bool,
    /// Pixel budget of the first view (56·56 = 4 merged tokens).
    pub view_pixels: usize,
    /// Pixel budget of each zoomed crop.
    pub crop_pixels: usize,
    /// Cells per side of the trace boxes' grid.
    pub box_grid: u32,
    /// How boxes without a native space are read: `resized` (Qwen2.5-VL
    /// JSON pixels of the resized image) or `grid1000`; Qwen2-VL's box
    /// tokens are always the 0–1000 grid.
    pub box_space: CoordSpace,
    /// Model turns per episode, the answer included.
    pub max_turns: u32,
    /// New tokens per turn.
    pub turn_max_new_tokens: usize,
    /// `{question}` → the question and its options; asks for a zoom first.
    pub zoom_prompt: String,
    /// The same without zooming (one turn): the "without zoom" rows.
    pub direct_prompt: String,
    /// Share of SFT traces that answer directly from the first view.
    pub direct_share: f64,
    pub sft: SftConfig,
    /// RL prompts (spread over `sizes`).
    pub train_size: usize,
    /// Held-out questions per size (each asked with and without zoom).
    pub test_per_size: usize,
    pub format_weight: f64,
    pub accuracy_weight: f64,
    /// Reward when the last zoom's region holds the target (0 = off).
    pub box_weight: f64,
    pub eval_batch_size: usize,
    pub checkpoint_every: u64,
    pub grpo: GrpoConfig,
}

impl Default for ChainOfFocusConfig {
    fn default() -> Self {
        let mut grpo = GrpoConfig {
            total_steps: 15,
            prompts_per_step: 4,
            group_size: 8,
            mini_batch_size: 32,
            micro_batch_size: 16,
            ..GrpoConfig::default()
        };
        grpo.optim.lr = 5e-5;
        grpo.loss.kl.placement = KlPlacement::Off;
        grpo.loss.kl.beta = 0.0;
        grpo.sampling.max_new_tokens = 48;
        grpo.freeze = vec!["visual".into()];
        Self {
            model: PathBuf::from("assets/zoom-tiny"),
            out: PathBuf::from("runs/chain-of-focus"),
            seed: 0,
            sizes: vec![112, 224, 336, 448],
            target_radius: 16.0,
            distractors_448: 40,
            shuffle_options: false,
            view_pixels: 56 * 56,
            crop_pixels: 112 * 112,
            box_grid: 3,
            box_space: CoordSpace::Resized,
            max_turns: 2,
            turn_max_new_tokens: 48,
            zoom_prompt: "{question} Zoom in first, then output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags.".into(),
            direct_prompt: "{question} Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags.".into(),
            direct_share: 0.25,
            sft: SftConfig {
                steps: 250,
                lr: 3e-3,
                warmup_steps: 10,
                freeze: vec!["visual".into()],
                ..SftConfig::default()
            },
            train_size: 256,
            test_per_size: 40,
            format_weight: 0.5,
            accuracy_weight: 1.0,
            box_weight: 0.25,
            eval_batch_size: 32,
            checkpoint_every: 5,
            grpo,
        }
    }
}

/// `recipes chain-of-focus` flags; each overrides the TOML config.
#[derive(Args, Debug, Default)]
pub struct ChainOfFocusArgs {
    /// `--resume` continues the SFT checkpoint, the RL checkpoints and the
    /// cached evaluations in `--out`.
    #[command(flatten)]
    pub run: crate::single_turn::RunFlags,
    /// SFT steps (0 = skip the cold start).
    #[arg(long)]
    pub sft_steps: Option<usize>,
    /// RL steps (0 = skip RL).
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long)]
    pub train_size: Option<usize>,
    #[arg(long)]
    pub test_per_size: Option<usize>,
    /// Comma-separated image sides, e.g. 112,224,448.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<u32>>,
    #[arg(long)]
    pub max_turns: Option<u32>,
}

impl ChainOfFocusArgs {
    pub fn resolve(&self) -> Result<ChainOfFocusConfig> {
        let mut c: ChainOfFocusConfig = self.run.load(
            "recipes/configs/chain-of-focus.toml",
            |c: &mut ChainOfFocusConfig| (&mut c.model, &mut c.out, &mut c.seed),
        )?;
        set_from(&mut c.sft.steps, &self.sft_steps);
        set_from(&mut c.grpo.total_steps, &self.steps);
        set_from(&mut c.train_size, &self.train_size);
        set_from(&mut c.test_per_size, &self.test_per_size);
        set_from(&mut c.sizes, &self.sizes);
        set_from(&mut c.max_turns, &self.max_turns);
        self.run.apply_grpo(&mut c.grpo, c.seed);
        c.grpo.sampling.max_new_tokens = c.turn_max_new_tokens;
        if c.sizes.is_empty() {
            bail!("`sizes` is empty");
        }
        if c.max_turns < 2 {
            bail!("max_turns must be >= 2 (a zoom turn and an answer turn)");
        }
        Ok(c)
    }
}

/// How a question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Zoom allowed (`max_turns` turns).
    Zoom,
    /// One turn, first view only.
    Direct,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Zoom => "with zoom",
            Mode::Direct => "without zoom",
        }
    }
}

/// One prompt of the recipe with its grouping keys.
struct Item {
    prompt: Prompt<FocusExtra>,
    target: FocusTarget,
    size: u32,
    mode: Mode,
    kind: QuestionKind,
}

fn build_item(
    config: &ChainOfFocusConfig,
    env: &FocusEnv,
    ex: &FocusExample,
    mode: Mode,
) -> Result<Item> {
    let template = match mode {
        Mode::Zoom => &config.zoom_prompt,
        Mode::Direct => &config.direct_prompt,
    };
    let text = template.replace("{question}", &ex.question);
    let (ids, extra) = env.prompt(ex.image.clone(), &text)?;
    let target = FocusTarget {
        choice: choice_target(ex),
        bbox: ex.target_box,
        max_turns: match mode {
            Mode::Zoom => config.max_turns,
            Mode::Direct => 1,
        },
    };
    Ok(Item {
        prompt: Prompt {
            ids,
            extra,
            source: format!("{}px", ex.size),
            target: serde_json::to_string(&target)?,
        },
        target,
        size: ex.size,
        mode,
        kind: ex.kind,
    })
}

/// The multiple-choice ground truth of a question, grouped by size and kind.
fn choice_target(ex: &FocusExample) -> ChoiceTarget {
    ChoiceTarget {
        answer: ex.answer.clone(),
        options: ex.options.clone(),
        groups: BTreeMap::from([
            ("size".to_string(), ex.size.to_string()),
            ("kind".to_string(), ex.kind.name().to_string()),
        ]),
    }
}

/// The seed stream of the held-out questions.
fn test_seed(config: &ChainOfFocusConfig) -> u64 {
    config.seed.wrapping_add(1_000_003)
}

/// How the config draws zoom-search images.
pub fn task_spec(config: &ChainOfFocusConfig) -> TaskSpec {
    TaskSpec {
        target_radius: config.target_radius,
        distractors_448: config.distractors_448,
        shuffle_options: config.shuffle_options,
    }
}

/// Example `i` of a seed stream, sizes taken in turn.
fn nth_example(config: &ChainOfFocusConfig, i: u64, seed: u64) -> Result<FocusExample> {
    let n = config.sizes.len() as u64;
    let size = config.sizes[(i % n) as usize];
    example_at(size, i / n, seed, task_spec(config))
}

/// An MM-CoF-style trace: zoom turn (box around the target's cell), the
/// crop as an inserted user turn, answer turn; or a direct answer.
pub fn sft_example(
    config: &ChainOfFocusConfig,
    env: &FocusEnv,
    ex: &FocusExample,
    mode: Mode,
) -> Result<SftExample<FocusExtra>> {
    let item = build_item(config, env, ex, mode)?;
    let tok = &env.prompter.tokenizer;
    let answer = tok.encode(&format!("{}<|im_end|>", answer_turn_text(ex)))?;
    if mode == Mode::Direct {
        return Ok(SftExample {
            prompt_ids: item.prompt.ids,
            loss_mask: vec![true; answer.len()],
            response_ids: answer,
            extra: item.prompt.extra,
        });
    }
    let zoom_text = zoom_turn_text(zoom_box_grid(ex.target_box, ex.size, config.box_grid));
    let zoom_ids = tok.encode(&format!("{zoom_text}<|im_end|>"))?;
    let state = item.prompt.extra.as_ref();
    let crop = trace_crop(env, state.frame, ex, &zoom_text)?;
    let (inserted, crop_vision) = env.zoom_turn(&crop)?;
    let mut vision: PromptVision = state.vision.as_ref().clone();
    vision.pixel_values.extend(crop_vision.pixel_values);
    vision.grid_thw.extend(crop_vision.grid_thw);
    let mut response = zoom_ids.clone();
    let mut mask = vec![true; zoom_ids.len()];
    mask.extend(std::iter::repeat_n(false, inserted.len()));
    response.extend(inserted);
    mask.extend(std::iter::repeat_n(true, answer.len()));
    response.extend(answer);
    Ok(SftExample {
        prompt_ids: item.prompt.ids,
        response_ids: response,
        loss_mask: mask,
        extra: Arc::new(FocusState {
            image: state.image.clone(),
            vision: Arc::new(vision),
            frame: state.frame,
        }),
    })
}

/// The crop a trace's zoom turn `zoom_text` cuts from `ex`'s image, whose
/// first view is `frame`: what the model sees after that zoom.
pub fn trace_crop(
    env: &FocusEnv,
    frame: vlrl::grounding::ImageFrame,
    ex: &FocusExample,
    zoom_text: &str,
) -> Result<image::RgbImage> {
    let mut focus = FocusLoop::new(frame, env.focus.clone());
    let FocusAction::Zoom { plan, .. } = focus.step(zoom_text) else {
        bail!("trace box {zoom_text} is not a valid zoom");
    };
    Ok(FocusLoop::render(&ex.image, &plan))
}

/// Accuracy cell of one (mode, size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub n: usize,
    pub correct: usize,
    pub zooms: usize,
    pub format: f64,
    pub box_hits: usize,
}

impl Cell {
    fn add(&mut self, s: &EpisodeScore) {
        self.n += 1;
        self.correct += usize::from(s.accuracy >= 0.999);
        self.zooms += s.zooms;
        self.format += s.format;
        self.box_hits += usize::from(s.box_hit);
    }

    fn merge(&mut self, o: &Cell) {
        self.n += o.n;
        self.correct += o.correct;
        self.zooms += o.zooms;
        self.format += o.format;
        self.box_hits += o.box_hits;
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }

    pub fn mean_zooms(&self) -> f64 {
        self.zooms as f64 / self.n.max(1) as f64
    }
}

/// Held-out results of one model: `mode → size → cell`, and the same
/// episodes by question kind (`mode → "colour" | "shape" → cell`): what a
/// zoom adds is the attribute the first view loses, so the split shows
/// where the gain comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FocusEval {
    pub cells: BTreeMap<Mode, BTreeMap<u32, Cell>>,
    /// Absent from evaluations cached before it existed.
    #[serde(default)]
    pub kinds: BTreeMap<Mode, BTreeMap<String, Cell>>,
}

impl FocusEval {
    pub fn total(&self, mode: Mode) -> Cell {
        let mut c = Cell::default();
        for cell in self.cells.get(&mode).into_iter().flat_map(|m| m.values()) {
            c.merge(cell);
        }
        c
    }

    pub fn accuracy(&self, mode: Mode, size: u32) -> Option<f64> {
        self.cells
            .get(&mode)
            .and_then(|m| m.get(&size))
            .map(Cell::accuracy)
    }

    pub fn kind(&self, mode: Mode, kind: QuestionKind) -> Option<&Cell> {
        self.kinds.get(&mode).and_then(|m| m.get(kind.name()))
    }
}

/// The ground truth of an example asked in `mode` (what `Prompt::target`
/// holds as JSON).
pub fn focus_target(
    config: &ChainOfFocusConfig,
    env: &FocusEnv,
    ex: &FocusExample,
    mode: Mode,
) -> Result<FocusTarget> {
    Ok(build_item(config, env, ex, mode)?.target)
}

/// Greedy decoding of one turn, vision placeholders never generated.
fn greedy_params<B: Backend>(
    model: &Qwen2VL<B>,
    env: &FocusEnv,
    max_new_tokens: usize,
) -> SamplingParams {
    let t = model.tokens();
    SamplingParams {
        max_new_tokens,
        stop_tokens: env.stop_tokens.clone(),
        suppress_tokens: vec![t.image_token_id, t.video_token_id],
        ..Default::default()
    }
}

/// Greedy episodes on the held-out items, scored as in training.
fn evaluate_focus<B: Backend>(
    model: &Qwen2VL<B>,
    env: &FocusEnv,
    items: &[Item],
    batch_size: usize,
    max_new_tokens: usize,
) -> Result<FocusEval> {
    let registry = Registry::with_defaults();
    let params = greedy_params(model, env, max_new_tokens);
    let mut eval = FocusEval::default();
    for mode in [Mode::Zoom, Mode::Direct] {
        let of_mode: Vec<&Item> = items.iter().filter(|i| i.mode == mode).collect();
        for chunk in of_mode.chunks(batch_size.max(1)) {
            let rows: Vec<(&[u32], &FocusState)> = chunk
                .iter()
                .map(|i| (i.prompt.ids.as_slice(), i.prompt.extra.as_ref()))
                .collect();
            let turns = chunk.first().map_or(1, |i| i.target.max_turns);
            let outs = run_episodes(model, env, &rows, &params, turns)?;
            for (item, out) in chunk.iter().zip(outs) {
                let s = score_episode(
                    env,
                    &registry,
                    item.prompt.extra.frame,
                    &item.target,
                    &out.ids,
                )?;
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let text = env.prompter.tokenizer.decode(&out.ids, false)?;
                    tracing::debug!(
                        size = item.size,
                        ?mode,
                        answer = %item.target.choice.answer,
                        bbox = ?item.target.bbox,
                        ?s,
                        "episode: {text:?}"
                    );
                }
                eval.cells
                    .entry(mode)
                    .or_default()
                    .entry(item.size)
                    .or_default()
                    .add(&s);
                eval.kinds
                    .entry(mode)
                    .or_default()
                    .entry(item.kind.name().to_string())
                    .or_default()
                    .add(&s);
            }
        }
    }
    Ok(eval)
}

/// Accuracy + format (+ box) reward of a whole episode.
struct FocusReward {
    env: Arc<FocusEnv>,
    registry: Registry,
    format_weight: f64,
    accuracy_weight: f64,
    box_weight: f64,
}

impl RewardFn<FocusExtra> for FocusReward {
    fn score(
        &mut self,
        prompt: &Prompt<FocusExtra>,
        completion: &Completion,
    ) -> vlrl::grpo::Result<RewardOutput> {
        let err = |e: String| vlrl::grpo::GrpoError::Reward(e);
        let target: FocusTarget =
            serde_json::from_str(&prompt.target).map_err(|e| err(e.to_string()))?;
        let s = score_episode(
            &self.env,
            &self.registry,
            prompt.extra.frame,
            &target,
            &completion.ids,
        )
        .map_err(|e| err(e.to_string()))?;
        let box_term = if s.box_hit { 1.0 } else { 0.0 };
        Ok(RewardOutput {
            reward: self.format_weight * s.format
                + self.accuracy_weight * s.accuracy
                + self.box_weight * box_term,
            accuracy: Some(s.accuracy),
        })
    }
}

type Bytes = BinBytesRecorder<FullPrecisionSettings>;

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn save_policy<B: AutodiffBackend>(policy: &FocusPolicy<B>, path: &Path) -> Result<()> {
    let bytes = Recorder::<B>::record(&Bytes::default(), policy.clone().into_record(), ())
        .map_err(|e| anyhow::anyhow!("recording {}: {e}", path.display()))?;
    write_atomic(path, &bytes)
}

fn load_policy<B: AutodiffBackend>(
    policy: FocusPolicy<B>,
    path: &Path,
    device: &B::Device,
) -> Result<FocusPolicy<B>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let record = Recorder::<B>::load(&Bytes::default(), bytes, device)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
    Ok(policy.load_record(record))
}

/// Evaluation of a stage, cached in `out/eval-<name>.json` for `--resume`.
fn cached_eval(
    out: &Path,
    name: &str,
    resume: bool,
    run: impl FnOnce() -> Result<FocusEval>,
) -> Result<FocusEval> {
    let path = out.join(format!("eval-{name}.json"));
    if resume && path.exists() {
        let text = std::fs::read_to_string(&path)?;
        if let Ok(e) = serde_json::from_str(&text) {
            tracing::info!("{name}: evaluation read from {}", path.display());
            return Ok(e);
        }
    }
    let started = Instant::now();
    let e = run()?;
    tracing::info!(
        "{name}: evaluated in {:.0} s: with zoom {:.1}%, without {:.1}%",
        started.elapsed().as_secs_f64(),
        100.0 * e.total(Mode::Zoom).accuracy(),
        100.0 * e.total(Mode::Direct).accuracy()
    );
    write_atomic(&path, serde_json::to_string_pretty(&e)?.as_bytes())?;
    Ok(e)
}

/// The episode environment of a config: the model directory's tokenizer,
/// chat template and processor, its stop and pad tokens.
pub fn make_env(config: &ChainOfFocusConfig) -> Result<Arc<FocusEnv>> {
    let ckpt = crate::single_turn::Checkpoint::open(&config.model)?;
    Ok(Arc::new(FocusEnv::new(
        ckpt.prompter,
        config.view_pixels,
        config.crop_pixels,
        config.max_turns,
        config.box_space,
        ckpt.stop,
        ckpt.pad,
    )?))
}

/// What the run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FocusReport {
    pub base: FocusEval,
    pub sft: FocusEval,
    pub rl: FocusEval,
    pub sft_steps: usize,
    pub rl_steps: usize,
    pub seconds: f64,
}

/// Runs the recipe: base eval, SFT cold start, SFT eval, multi-turn GRPO,
/// RL eval, report.
pub fn run(args: ChainOfFocusArgs) -> Result<()> {
    let config = args.resolve()?;
    run_config(&config, args.run.resume).map(|_| ())
}

/// [`run`] on a resolved config (the integration test calls this).
pub fn run_config(config: &ChainOfFocusConfig, resume: bool) -> Result<FocusReport> {
    let started = Instant::now();
    // Fails early, naming how to make the bundled model, when there is none.
    let env = make_env(config)?;
    let (stop, pad) = (env.stop_tokens.clone(), env.pad_id);
    let out = &config.out;
    std::fs::create_dir_all(out.join("plots"))
        .with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("config.resolved.toml"), toml::to_string(config)?)?;
    let device = burn::tensor::Device::<TrainBackend>::default();

    // Held-out questions: every size, each asked with and without zoom.
    let test_seed = test_seed(config);
    let mut test = Vec::new();
    for &size in &config.sizes {
        for i in 0..config.test_per_size as u64 {
            let ex = example_at(size, i, test_seed, task_spec(config))?;
            test.push(build_item(config, &env, &ex, Mode::Zoom)?);
            test.push(build_item(config, &env, &ex, Mode::Direct)?);
        }
    }
    let train: Vec<Prompt<FocusExtra>> = (0..config.train_size as u64)
        .map(|i| {
            let ex = nth_example(config, i, config.seed.wrapping_add(2))?;
            Ok(build_item(config, &env, &ex, Mode::Zoom)?.prompt)
        })
        .collect::<Result<_>>()?;
    tracing::info!(
        "chain-of-focus: sizes {:?}, {} RL prompts, {} held-out episodes",
        config.sizes,
        train.len(),
        test.len()
    );

    // A fresh copy of the starting model as a focus policy (the policy, and
    // the KL reference, which is loaded, never cloned, per DESIGN.md).
    let load_start = || -> Result<FocusPolicy<TrainBackend>> {
        Ok(FocusPolicy {
            inner: VlmPolicy::new(
                Qwen2VL::<TrainBackend>::from_dir(&config.model, &device)?,
                stop.clone(),
                pad,
            ),
            env: env.clone(),
            max_turns: config.max_turns,
        })
    };
    let mut policy = load_start()?;
    // A bad freeze pattern fails now, not after SFT and the base evaluation.
    check_module_patterns(&policy.inner.model, "sft.freeze", &config.sft.freeze)?;
    check_module_patterns(&policy.inner.model, "grpo.freeze", &config.grpo.freeze)?;
    let eval_model = |m: &Qwen2VL<<TrainBackend as AutodiffBackend>::InnerBackend>| {
        evaluate_focus(
            m,
            &env,
            &test,
            config.eval_batch_size,
            config.turn_max_new_tokens,
        )
    };
    let base = cached_eval(out, "base", resume, || {
        eval_model(&policy.inner.model.valid())
    })?;

    // Stage 1: SFT cold start on focus traces.
    let sft_dir = out.join("sft");
    std::fs::create_dir_all(&sft_dir)?;
    let sft_model = sft_dir.join("model.bin");
    let mut sft_history: Vec<SftStep> = Vec::new();
    if resume && sft_model.exists() {
        policy = load_policy(policy, &sft_model, &device)?;
        tracing::info!("SFT: model read from {}", sft_model.display());
    } else if config.sft.steps > 0 {
        let sft_seed = config.seed.wrapping_add(3);
        let bs = config.sft.batch_size.max(1) as u64;
        let mut metrics = std::fs::File::create(sft_dir.join("metrics.jsonl"))?;
        let direct_every = if config.direct_share > 0.0 {
            (1.0 / config.direct_share).round().max(1.0) as u64
        } else {
            u64::MAX
        };
        let progress = indicatif::ProgressBar::new(config.sft.steps as u64);
        let (trained, history) = train_sft::<TrainBackend, _>(
            policy,
            &config.sft,
            &device,
            |step| {
                (0..bs)
                    .map(|k| {
                        let i = step as u64 * bs + k;
                        let ex = nth_example(config, i, sft_seed)?;
                        let mode = if (i + 1).is_multiple_of(direct_every) {
                            Mode::Direct
                        } else {
                            Mode::Zoom
                        };
                        sft_example(config, &env, &ex, mode)
                    })
                    .collect()
            },
            |s, _| {
                use std::io::Write;
                if let Ok(line) = serde_json::to_string(s) {
                    let _ = writeln!(metrics, "{line}");
                }
                progress.inc(1);
                progress.set_message(format!("SFT loss {:.3}", s.loss));
                if s.step % 25 == 0 {
                    tracing::info!(step = s.step, loss = s.loss, "SFT");
                }
                Ok(SftControl::Continue)
            },
        )?;
        progress.finish();
        policy = trained;
        sft_history = history;
        save_policy(&policy, &sft_model)?;
        let curve: Vec<(f64, f64)> = sft_history
            .iter()
            .map(|s| (s.step as f64, s.loss))
            .collect();
        vlrl::grpo::metrics::plot_series(&out.join("plots/sft_loss.png"), &curve, 640, 360)?;
    }
    let sft = cached_eval(out, "sft", resume, || {
        eval_model(&policy.inner.model.valid())
    })?;

    // Stage 2: GRPO over whole focus episodes.
    let options = RunOptions {
        out_dir: Some(out.clone()),
        checkpoint_every: config.checkpoint_every,
        keep_last: 2,
        plot_every: config.checkpoint_every,
        progress: true,
    };
    let mut rl_steps = 0;
    let rl = if config.grpo.total_steps > 0 {
        let needs_reference = config.grpo.loss.kl.placement != KlPlacement::Off;
        let reference = if needs_reference {
            let reference = load_start()?;
            // The reference is the SFT model (the RL starting point).
            Some(if sft_model.exists() {
                load_policy(reference, &sft_model, &device)?
            } else {
                reference
            })
        } else {
            None
        };
        let mut trainer = Trainer::new(
            policy,
            reference,
            config.grpo.clone(),
            train,
            vec![device],
            options,
        )?;
        if resume {
            if let Some(step) = trainer.resume()? {
                tracing::info!("RL: resumed at step {step}");
            }
        }
        let mut reward = FocusReward {
            env: env.clone(),
            registry: Registry::with_defaults(),
            format_weight: config.format_weight,
            accuracy_weight: config.accuracy_weight,
            box_weight: config.box_weight,
        };
        trainer.train(&mut reward)?;
        rl_steps = trainer.history().len();
        let model = trainer.policy.inner.model.valid();
        cached_eval(out, "rl", false, || eval_model(&model))?
    } else {
        sft.clone()
    };

    let report = FocusReport {
        base,
        sft,
        rl,
        sft_steps: if sft_history.is_empty() {
            config.sft.steps
        } else {
            sft_history.len()
        },
        rl_steps,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_report(config, &report)?;
    Ok(report)
}

/// The rows of the report's tables: each model, without then with zoom.
fn report_rows(r: &FocusReport) -> impl Iterator<Item = (&'static str, &FocusEval, Mode)> {
    [("base", &r.base), ("SFT", &r.sft), ("SFT+RL", &r.rl)]
        .into_iter()
        .flat_map(|(name, e)| [Mode::Direct, Mode::Zoom].map(|mode| (name, e, mode)))
}

/// The paper's layout: accuracy per image resolution, one row per model
/// and mode, plus mean zooms and format.
pub fn markdown(config: &ChainOfFocusConfig, r: &FocusReport) -> String {
    let mut md = format!(
        "# Chain-of-Focus (tiny scale) — held-out zoom-search accuracy (%)\n\n\
         seed {}, first view {} px, crops {} px, up to {} turns; SFT {} steps, RL {} steps; {:.0} s\n\n",
        config.seed,
        config.view_pixels,
        config.crop_pixels,
        config.max_turns,
        r.sft_steps,
        r.rl_steps,
        r.seconds
    );
    md.push_str("| model | mode |");
    for s in &config.sizes {
        md.push_str(&format!(" {s} px |"));
    }
    md.push_str(" overall | mean zooms | box hit | format |\n|---|---|");
    md.push_str(&"---|".repeat(config.sizes.len() + 4));
    md.push('\n');
    for (name, e, mode) in report_rows(r) {
        md.push_str(&format!("| {name} | {} |", mode.label()));
        for s in &config.sizes {
            match e.accuracy(mode, *s) {
                Some(a) => md.push_str(&format!(" {:.1} |", 100.0 * a)),
                None => md.push_str(" – |"),
            }
        }
        let t = e.total(mode);
        md.push_str(&format!(
            " {:.1} | {:.2} | {:.1} | {:.2} |\n",
            100.0 * t.accuracy(),
            t.mean_zooms(),
            100.0 * t.box_hits as f64 / t.n.max(1) as f64,
            t.format / t.n.max(1) as f64
        ));
    }
    md.push_str("\nBy question kind, all sizes (correct / asked):\n\n| model | mode |");
    for kind in QuestionKind::ALL {
        md.push_str(&format!(" {} |", kind.name()));
    }
    md.push_str(&format!(
        "\n|---|---|{}\n",
        "---|".repeat(QuestionKind::ALL.len())
    ));
    for (name, e, mode) in report_rows(r) {
        md.push_str(&format!("| {name} | {} |", mode.label()));
        for kind in QuestionKind::ALL {
            match e.kind(mode, kind) {
                Some(c) => md.push_str(&format!(" {}/{} |", c.correct, c.n)),
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    md.push_str(
        "\nChance is 25% (4 options). \"without zoom\": one turn on the first view; \
         \"with zoom\": the model may ask for up to `max_turns - 1` crops.\n\n\
         Paper (Qwen2.5-VL-7B, V*, 8 resolutions 224 → 4K): +5% over existing VLMs.\n",
    );
    md
}

fn write_report(config: &ChainOfFocusConfig, r: &FocusReport) -> Result<()> {
    let md_path = crate::single_turn::write_report(&config.out, &markdown(config, r), r)?;
    let top = config.sizes.iter().copied().max().unwrap_or(0);
    tracing::info!(
        "at {top} px: with zoom {:.1}% vs without {:.1}% (RL model); report in {}",
        100.0 * r.rl.accuracy(Mode::Zoom, top).unwrap_or(0.0),
        100.0 * r.rl.accuracy(Mode::Direct, top).unwrap_or(0.0),
        md_path.display()
    );
    Ok(())
}
