//! LMM-R1 (Peng et al. 2025, `TideDra/lmm-r1`): two stages of rule-based RL
//! on a vision-language model.
//!
//! 1. **FRE** (foundational reasoning enhancement): GRPO on text-only
//!    reasoning problems, no images (the paper: DeepScaleR-40K on
//!    Qwen2.5-VL-3B-Instruct). Here: `text-logic` arithmetic word problems.
//! 2. **MGT** (multimodal generalization training): continue from the FRE
//!    checkpoint on multimodal tasks (the paper: geometry, perception-reasoning,
//!    Sokoban-like agent tasks). Here: `visual-math` (shape counting, bar
//!    charts) and optionally the `grid-agent` planning task.
//!
//! The evaluation has the paper's ablation shape: base vs FRE vs FRE+MGT vs
//! MGT-only (direct RL on the multimodal data), each on held-out text and
//! multimodal sets, greedy, accuracy and format.
//!
//! Rewards are R1-V's rule-based pair: format (`<think>…</think><answer>…
//! </answer>`) + accuracy by the verifier each row names (`numeric` for the
//! integer answers, `multiple_choice` for the lettered ones). Prompts use the
//! template the bundled model was pretrained with (`pretrain::data::prompt_text`).

pub mod agent;
pub mod text_compare;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use vlrl::data::synth::{TextLogic, VisualMath, VisualMathConfig};
use vlrl::data::{Dataset, LoadOptions, Row, Sample, TaskGenerator};
use vlrl::grpo::config::GrpoConfig;
use vlrl::grpo::lora::check_module_patterns;
use vlrl::grpo::metrics::StepMetrics;
use vlrl::grpo::policy::Prompt;

use crate::eval::{markdown_table, Decoding, EvalResult, VerifiedTarget};
use crate::policy::VisionExtra;
use crate::pretrain::prompt_text;
use crate::single_turn::{
    set_from, train_stage, Checkpoint, RunFlags, StageOptions, StageOutcome, TrainModel,
};
use crate::vl_prompt::VlPrompter;

pub use agent::GridAgent;
pub use text_compare::TextCompare;

/// The recipe's configuration (`recipes/configs/lmm-r1.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LmmR1Config {
    /// Hugging Face checkpoint directory of the starting policy.
    pub model: PathBuf,
    /// Real data: a folder with `fre/data.jsonl` (text-only rows) and
    /// `mgt/data.jsonl` (multimodal rows), optionally `fre-test/` and
    /// `mgt-test/` (else `*_test_size` rows are held out of each); none =
    /// the synthetic generators.
    pub data: Option<PathBuf>,
    /// Output folder of the run.
    pub out: PathBuf,
    pub seed: u64,
    /// Synthetic image side (a multiple of 28).
    pub image_size: u32,
    /// Whether visual-math's bar questions shuffle their options (false:
    /// bars listed left to right; see `VisualMathConfig::shuffle_options`).
    pub shuffle_options: bool,
    /// Text-only (FRE) prompts for training and held out.
    pub text_train_size: usize,
    pub text_test_size: usize,
    /// Multimodal (MGT) prompts for training and held out.
    pub mm_train_size: usize,
    pub mm_test_size: usize,
    /// Share of the text sets drawn from `text-compare` (0 = text-logic only).
    pub easy_text_share: f64,
    /// Share of the multimodal sets drawn from `grid-agent` (0 = none).
    pub agent_share: f64,
    /// Also train MGT from the base model (the paper's direct-RL baseline).
    pub mgt_only: bool,
    pub format_weight: f64,
    pub accuracy_weight: f64,
    /// Verifier that scores the numeric rows' accuracy in FRE training
    /// (`numeric`: exact, as the paper; `counting_relative`: partial credit
    /// `max(0, 1 − |pred − truth| / max(truth, 1))`, a denser signal for a
    /// model that rarely hits the exact number). Evaluation is always exact.
    pub fre_numeric_verifier: String,
    /// The same for MGT (and MGT-only) training.
    pub mgt_numeric_verifier: String,
    pub eval_max_new_tokens: usize,
    pub eval_batch_size: usize,
    /// Besides the greedy answer, draw this many answers per held-out
    /// question at the MGT rollout temperature and report their mean
    /// accuracy (the policy GRPO optimizes; 8× the answers, so a smaller
    /// standard error). 0 = greedy only.
    pub eval_samples: usize,
    pub checkpoint_every: u64,
    /// Stage FRE (text-only).
    pub fre: GrpoConfig,
    /// Stage MGT (multimodal); the MGT-only baseline uses it too.
    pub mgt: GrpoConfig,
}

impl Default for LmmR1Config {
    fn default() -> Self {
        Self {
            model: PathBuf::from("assets/med-tiny"),
            data: None,
            out: PathBuf::from("runs/lmm-r1"),
            seed: 0,
            image_size: 56,
            shuffle_options: true,
            text_train_size: 400,
            text_test_size: 200,
            mm_train_size: 400,
            mm_test_size: 200,
            easy_text_share: 0.0,
            agent_share: 0.0,
            mgt_only: true,
            format_weight: 1.0,
            accuracy_weight: 1.0,
            fre_numeric_verifier: "numeric".into(),
            mgt_numeric_verifier: "numeric".into(),
            eval_max_new_tokens: 32,
            eval_batch_size: 20,
            eval_samples: 0,
            checkpoint_every: 10,
            fre: GrpoConfig::default(),
            mgt: GrpoConfig::default(),
        }
    }
}

/// `recipes lmm-r1` flags; each overrides the TOML config.
#[derive(Args, Debug, Default)]
pub struct LmmR1Args {
    #[command(flatten)]
    pub run: RunFlags,
    /// Folder with `fre/data.jsonl` and `mgt/data.jsonl` (see docs/lmm-r1.md).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Steps of stage FRE.
    #[arg(long)]
    pub fre_steps: Option<u64>,
    /// Steps of stage MGT (and of the MGT-only baseline).
    #[arg(long)]
    pub mgt_steps: Option<u64>,
    #[arg(long)]
    pub text_train_size: Option<usize>,
    #[arg(long)]
    pub text_test_size: Option<usize>,
    #[arg(long)]
    pub mm_train_size: Option<usize>,
    #[arg(long)]
    pub mm_test_size: Option<usize>,
    #[arg(long)]
    pub easy_text_share: Option<f64>,
    #[arg(long)]
    pub agent_share: Option<f64>,
    /// FRE training accuracy verifier of numeric rows (`numeric`, `counting_relative`).
    #[arg(long)]
    pub fre_numeric_verifier: Option<String>,
    /// MGT training accuracy verifier of numeric rows.
    #[arg(long)]
    pub mgt_numeric_verifier: Option<String>,
    /// Skip the MGT-only baseline.
    #[arg(long)]
    pub no_mgt_only: bool,
    /// Sampled answers per held-out question (0 = greedy evaluation only).
    #[arg(long)]
    pub eval_samples: Option<usize>,
}

impl LmmR1Args {
    pub fn resolve(&self) -> Result<LmmR1Config> {
        let mut c: LmmR1Config = self
            .run
            .load("recipes/configs/lmm-r1.toml", |c: &mut LmmR1Config| {
                (&mut c.model, &mut c.out, &mut c.seed)
            })?;
        set_from(&mut c.text_train_size, &self.text_train_size);
        set_from(&mut c.text_test_size, &self.text_test_size);
        set_from(&mut c.mm_train_size, &self.mm_train_size);
        set_from(&mut c.mm_test_size, &self.mm_test_size);
        set_from(&mut c.easy_text_share, &self.easy_text_share);
        set_from(&mut c.agent_share, &self.agent_share);
        set_from(&mut c.fre_numeric_verifier, &self.fre_numeric_verifier);
        set_from(&mut c.mgt_numeric_verifier, &self.mgt_numeric_verifier);
        set_from(&mut c.eval_samples, &self.eval_samples);
        if self.data.is_some() {
            c.data = self.data.clone();
        }
        if self.no_mgt_only {
            c.mgt_only = false;
        }
        set_from(&mut c.fre.total_steps, &self.fre_steps);
        set_from(&mut c.mgt.total_steps, &self.mgt_steps);
        for grpo in [&mut c.fre, &mut c.mgt] {
            self.run.apply_grpo(grpo, c.seed);
        }
        for (name, share) in [
            ("agent_share", c.agent_share),
            ("easy_text_share", c.easy_text_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("{name} must be in [0, 1], got {share}");
            }
        }
        Ok(c)
    }
}

/// Which held-out set a prompt belongs to (the tables' `set` group).
const TEXT: &str = "text";
const MULTIMODAL: &str = "multimodal";

/// One verifiable example before tokenization.
struct Example {
    row: Row,
    images: Vec<image::RgbImage>,
    set: &'static str,
}

impl Example {
    fn from_sample(s: Sample, set: &'static str) -> Self {
        Self {
            row: s.row,
            images: s.images,
            set,
        }
    }

    /// The table's task label: the generator's template / task, refined by
    /// the answer kind where one task has both (visual-math's bar charts).
    fn task(&self) -> String {
        let base = self
            .row
            .meta_str("template")
            .or_else(|| self.row.meta_str("task"))
            .unwrap_or(&self.row.source)
            .to_string();
        if base == "bars" {
            let kind = if self.row.options.is_empty() {
                "diff"
            } else {
                "choice"
            };
            format!("bars-{kind}")
        } else {
            base
        }
    }

    /// The row's verifier; rows without one: `multiple_choice` when they have
    /// options, else `math` (LMM-R1 scores with math-verify).
    fn verifier(&self) -> String {
        self.row.verifier.clone().unwrap_or_else(|| {
            if self.row.options.is_empty() {
                "math".into()
            } else {
                "multiple_choice".into()
            }
        })
    }
}

/// `n` samples of `seed` from `main`, with `share` of them from `side`
/// (evenly interleaved, deterministic; sample `i` keeps index `i` in its
/// generator, so sets of different sizes share prefixes).
fn mixed_samples(
    main: &dyn TaskGenerator,
    side: &dyn TaskGenerator,
    share: f64,
    n: usize,
    seed: u64,
    set: &'static str,
) -> Vec<Example> {
    let mut side_due = 0.0;
    (0..n as u64)
        .map(|i| {
            side_due += share;
            let sample = if side_due >= 1.0 {
                side_due -= 1.0;
                side.sample(i, seed)
            } else {
                main.sample(i, seed)
            };
            Example::from_sample(sample, set)
        })
        .collect()
}

/// Text sets: text-logic with `easy_text_share` of text-compare.
fn text_samples(config: &LmmR1Config, n: usize, seed: u64) -> Vec<Example> {
    mixed_samples(
        &TextLogic,
        &TextCompare,
        config.easy_text_share,
        n,
        seed,
        TEXT,
    )
}

/// Multimodal sets: visual-math with `agent_share` of grid-agent.
fn multimodal_samples(config: &LmmR1Config, n: usize, seed: u64) -> Result<Vec<Example>> {
    let math = VisualMath::new(VisualMathConfig {
        image_size: config.image_size,
        shuffle_options: config.shuffle_options,
    })?;
    let grid = GridAgent {
        image_size: config.image_size,
        ..GridAgent::default()
    };
    Ok(mixed_samples(
        &math,
        &grid,
        config.agent_share,
        n,
        seed,
        MULTIMODAL,
    ))
}

/// Rows of a JSONL dataset folder with their images.
fn examples_from_dir(dir: &Path, set: &'static str) -> Result<Vec<Example>> {
    let path = dir.join("data.jsonl");
    let data = Dataset::load_jsonl(&path, &LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    let mut out = Vec::with_capacity(data.len());
    for (i, row) in data.rows.iter().enumerate() {
        out.push(Example {
            row: row.clone(),
            images: data.load_images(i)?,
            set,
        });
    }
    Ok(out)
}

/// `(train, test)` of one stage from real data: `<root>/<name>/` and
/// `<root>/<name>-test/` when present, else a seeded hold-out.
fn real_split(
    root: &Path,
    name: &str,
    set: &'static str,
    test_size: usize,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>)> {
    let mut train = examples_from_dir(&root.join(name), set)?;
    let test_dir = root.join(format!("{name}-test"));
    if test_dir.join("data.jsonl").exists() {
        return Ok((train, examples_from_dir(&test_dir, set)?));
    }
    let mut rng = vlrl::grpo::rng::TrainRng::seed_from_u64(seed);
    rng.shuffle(&mut train);
    let cut = train.len().saturating_sub(test_size);
    let test = train.split_off(cut);
    Ok((train, test))
}

/// The prompt of an example; `numeric_verifier` replaces `numeric` (the
/// training reward's choice, see [`LmmR1Config::fre_numeric_verifier`]).
fn to_prompt(
    prompter: &VlPrompter,
    ex: &Example,
    numeric_verifier: &str,
) -> Result<Prompt<VisionExtra>> {
    let (ids, extra) = prompter.build(&ex.images, &prompt_text(&ex.row))?;
    let verifier = match ex.verifier() {
        v if v == "numeric" => numeric_verifier.to_string(),
        v => v,
    };
    let target = VerifiedTarget {
        answer: ex.row.answer.clone().unwrap_or_default(),
        options: ex.row.options.clone(),
        verifier,
        groups: BTreeMap::from([
            ("set".to_string(), ex.set.to_string()),
            ("task".to_string(), ex.task()),
        ]),
    };
    Ok(Prompt {
        ids,
        extra,
        source: ex.row.source.clone(),
        target: serde_json::to_string(&target)?,
    })
}

type Prompts = Vec<Prompt<VisionExtra>>;

/// The four prompt sets of a run.
pub struct Sets {
    pub text_train: Prompts,
    pub text_test: Prompts,
    pub mm_train: Prompts,
    pub mm_test: Prompts,
}

/// Seed offset of the held-out streams: held-out problems and images are
/// never the training ones.
const TEST_SEED_OFFSET: u64 = 1_000_003;

fn datasets(config: &LmmR1Config, prompter: &VlPrompter) -> Result<Sets> {
    let (text_train, text_test, mm_train, mm_test) = match &config.data {
        None => {
            let test_seed = config.seed.wrapping_add(TEST_SEED_OFFSET);
            (
                text_samples(config, config.text_train_size, config.seed),
                text_samples(config, config.text_test_size, test_seed),
                multimodal_samples(config, config.mm_train_size, config.seed)?,
                multimodal_samples(config, config.mm_test_size, test_seed)?,
            )
        }
        Some(root) => {
            let (a, b) = real_split(root, "fre", TEXT, config.text_test_size, config.seed)?;
            let (c, d) = real_split(root, "mgt", MULTIMODAL, config.mm_test_size, config.seed)?;
            (a, b, c, d)
        }
    };
    let build = |v: &[Example], what: &str, numeric: &str| -> Result<Prompts> {
        if v.is_empty() {
            bail!("the {what} set is empty");
        }
        v.iter().map(|e| to_prompt(prompter, e, numeric)).collect()
    };
    Ok(Sets {
        text_train: build(&text_train, "text training", &config.fre_numeric_verifier)?,
        text_test: build(&text_test, "text held-out", "numeric")?,
        mm_train: build(
            &mm_train,
            "multimodal training",
            &config.mgt_numeric_verifier,
        )?,
        mm_test: build(&mm_test, "multimodal held-out", "numeric")?,
    })
}

/// Held-out results of one model on both sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SetResults {
    pub text: EvalResult,
    pub multimodal: EvalResult,
    /// `eval_samples` answers per question at the MGT rollout temperature
    /// (absent when `eval_samples = 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<SampledResults>,
}

/// Mean accuracy over sampled answers, text and multimodal.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SampledResults {
    pub text: EvalResult,
    pub multimodal: EvalResult,
}

/// Everything `eval.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LmmR1Report {
    pub base: SetResults,
    pub fre: SetResults,
    pub fre_mgt: SetResults,
    pub mgt_only: Option<SetResults>,
    /// Steps per stage (`fre`, `fre_mgt`, `mgt_only`).
    pub steps: BTreeMap<String, usize>,
    /// Mean training reward over the first and last `CURVE_WINDOW` steps of
    /// each stage.
    pub reward_first_last: BTreeMap<String, (f64, f64)>,
    pub seconds: f64,
}

const CURVE_WINDOW: usize = 5;

fn first_last(history: &[StepMetrics]) -> (f64, f64) {
    let mean =
        |s: &[StepMetrics]| s.iter().map(|m| m.reward_mean).sum::<f64>() / s.len().max(1) as f64;
    let k = CURVE_WINDOW.min(history.len());
    (
        mean(history.get(..k).unwrap_or(&[])),
        mean(history.get(history.len() - k..).unwrap_or(&[])),
    )
}

/// Runs both stages, the MGT-only baseline and the evaluation table.
pub fn run(args: LmmR1Args) -> Result<()> {
    let config = args.resolve()?;
    let ckpt = Checkpoint::open(&config.model)?;
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating {}", config.out.display()))?;
    std::fs::write(
        config.out.join("config.resolved.toml"),
        toml::to_string(&config)?,
    )?;
    let started = Instant::now();
    let sets = datasets(&config, &ckpt.prompter)?;
    tracing::info!(
        "lmm-r1: text {} train / {} held out; multimodal {} train / {} held out",
        sets.text_train.len(),
        sets.text_test.len(),
        sets.mm_train.len(),
        sets.mm_test.len()
    );
    let eval = |name: &str, m: &TrainModel| -> Result<SetResults> {
        let run = |prompts: &[Prompt<VisionExtra>], decoding| {
            ckpt.evaluate::<VerifiedTarget>(
                m,
                prompts,
                config.eval_max_new_tokens,
                config.eval_batch_size,
                decoding,
            )
        };
        let sampled =
            match Decoding::like_rollouts(&config.mgt.sampling, config.eval_samples, config.seed) {
                Some(decoding) => Some(SampledResults {
                    text: run(&sets.text_test, decoding)?,
                    multimodal: run(&sets.mm_test, decoding)?,
                }),
                None => None,
            };
        let r = SetResults {
            text: run(&sets.text_test, Decoding::GREEDY)?,
            multimodal: run(&sets.mm_test, Decoding::GREEDY)?,
            sampled,
        };
        tracing::info!(
            "{name}: text accuracy {:.1}% (format {:.2}), multimodal accuracy {:.1}% (format {:.2})",
            100.0 * r.text.accuracy,
            r.text.format,
            100.0 * r.multimodal.accuracy,
            r.multimodal.format
        );
        Ok(r)
    };
    let stage = |dir: &str| StageOptions {
        out_dir: config.out.join(dir),
        checkpoint_every: config.checkpoint_every,
        resume: args.run.resume,
        format_weight: config.format_weight,
        accuracy_weight: config.accuracy_weight,
    };
    let mut report = LmmR1Report::default();
    let mut record = |name: &str, outcome: &StageOutcome| {
        report.steps.insert(name.into(), outcome.history.len());
        report
            .reward_first_last
            .insert(name.into(), first_last(&outcome.history));
    };

    let base_model = ckpt.load()?;
    // A bad freeze pattern fails now, not after the base evaluation.
    check_module_patterns(&base_model, "fre.freeze", &config.fre.freeze)?;
    check_module_patterns(&base_model, "mgt.freeze", &config.mgt.freeze)?;
    let base = eval("base", &base_model)?;

    tracing::info!("stage FRE: text-only GRPO");
    let fre = train_stage::<VerifiedTarget>(
        &ckpt,
        base_model,
        || ckpt.load(),
        &config.fre,
        sets.text_train.clone(),
        &stage("fre"),
    )?;
    record("fre", &fre);
    let fre_eval = eval("FRE", &fre.model)?;

    tracing::info!("stage MGT: multimodal GRPO from the FRE model");
    let fre_start = fre.model.clone();
    let fre_mgt = train_stage::<VerifiedTarget>(
        &ckpt,
        fre.model,
        || Ok(fre_start),
        &config.mgt,
        sets.mm_train.clone(),
        &stage("fre-mgt"),
    )?;
    record("fre_mgt", &fre_mgt);
    let fre_mgt_eval = eval("FRE+MGT", &fre_mgt.model)?;
    drop(fre_mgt);

    let mgt_only_eval = if config.mgt_only {
        tracing::info!("baseline MGT-only: multimodal GRPO from the base model");
        let mgt_only = train_stage::<VerifiedTarget>(
            &ckpt,
            ckpt.load()?,
            || ckpt.load(),
            &config.mgt,
            sets.mm_train.clone(),
            &stage("mgt-only"),
        )?;
        record("mgt_only", &mgt_only);
        Some(eval("MGT-only", &mgt_only.model)?)
    } else {
        None
    };
    report.base = base;
    report.fre = fre_eval;
    report.fre_mgt = fre_mgt_eval;
    report.mgt_only = mgt_only_eval;
    report.seconds = started.elapsed().as_secs_f64();
    write_report(&config, &report)
}

/// The paper's headline gains (Qwen2.5-VL-3B-Instruct; PAPERS.md), for the
/// table's last line.
const PAPER_LINE: &str = "Paper (Qwen2.5-VL-3B-Instruct, FRE-Text then MGT): +4.83% average on multimodal and +4.5% on text-only benchmarks over the base; +3.63% on Football Game (agent).";

/// The report as Markdown: the ablation table, then per-task tables.
pub fn markdown_report(config: &LmmR1Config, r: &LmmR1Report) -> String {
    let mut rows: Vec<(&str, &SetResults)> = vec![
        ("base", &r.base),
        ("FRE (text RL)", &r.fre),
        ("FRE+MGT (LMM-R1)", &r.fre_mgt),
    ];
    if let Some(m) = &r.mgt_only {
        rows.push(("MGT-only (direct RL)", m));
    }
    let steps = |k: &str| r.steps.get(k).copied().unwrap_or(0);
    let mut md = format!(
        "# LMM-R1 ({}) — held-out accuracy (%), greedy\n\nseed {}, FRE {} steps, MGT {} steps, {:.0} s; text set {} prompts, multimodal set {} prompts\n\n",
        if config.data.is_some() { "real data" } else { "tiny scale" },
        config.seed,
        steps("fre"),
        steps("fre_mgt"),
        r.seconds,
        r.base.text.n,
        r.base.multimodal.n,
    );
    md.push_str("| model | text acc | multimodal acc | text format | multimodal format |\n|---|---|---|---|---|\n");
    for (name, s) in &rows {
        md.push_str(&format!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.2} |\n",
            100.0 * s.text.accuracy,
            100.0 * s.multimodal.accuracy,
            s.text.format,
            s.multimodal.format
        ));
    }
    md.push_str(&format!("\n{PAPER_LINE}\n"));
    if rows.iter().all(|(_, s)| s.sampled.is_some()) {
        md.push_str(&format!(
            "\n## Sampled answers ({} per question, temperature {}, top-p {})\n\n\
             Mean accuracy over every sampled answer: the policy GRPO optimizes.\n\n\
             | model | text acc | multimodal acc |\n|---|---|---|\n",
            config.eval_samples, config.mgt.sampling.temperature, config.mgt.sampling.top_p
        ));
        for (name, s) in &rows {
            if let Some(sampled) = &s.sampled {
                md.push_str(&format!(
                    "| {name} | {:.1} | {:.1} |\n",
                    100.0 * sampled.text.accuracy,
                    100.0 * sampled.multimodal.accuracy
                ));
            }
        }
    }
    let text_runs: Vec<(&str, &EvalResult)> = rows.iter().map(|(n, s)| (*n, &s.text)).collect();
    let mm_runs: Vec<(&str, &EvalResult)> = rows.iter().map(|(n, s)| (*n, &s.multimodal)).collect();
    md.push_str("\n## Text (held out) by task\n\n");
    md.push_str(&markdown_table("task", &text_runs));
    md.push_str("\n## Multimodal (held out) by task\n\n");
    md.push_str(&markdown_table("task", &mm_runs));
    md.push_str("\n## Training reward (mean of the first / last 5 steps)\n\n| stage | first | last |\n|---|---|---|\n");
    for (stage, (a, b)) in &r.reward_first_last {
        md.push_str(&format!("| {stage} | {a:.3} | {b:.3} |\n"));
    }
    md
}

fn write_report(config: &LmmR1Config, report: &LmmR1Report) -> Result<()> {
    let md_path =
        crate::single_turn::write_report(&config.out, &markdown_report(config, report), report)?;
    let mgt_only = report
        .mgt_only
        .as_ref()
        .map(|m| format!(", MGT-only {:.1}%", 100.0 * m.multimodal.accuracy))
        .unwrap_or_default();
    tracing::info!(
        "text: base {:.1}% → FRE {:.1}%; multimodal: base {:.1}% → FRE+MGT {:.1}%{mgt_only}; report in {}",
        100.0 * report.base.text.accuracy,
        100.0 * report.fre.text.accuracy,
        100.0 * report.base.multimodal.accuracy,
        100.0 * report.fre_mgt.multimodal.accuracy,
        md_path.display()
    );
    Ok(())
}
