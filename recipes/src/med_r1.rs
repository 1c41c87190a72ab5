//! Med-R1 (Lai et al. 2025): GRPO on medical multiple-choice VQA with a
//! think/answer format reward and an answer-letter accuracy reward (R1-V's
//! trainer). Tiny scale: the bundled model on `med-synth` (8 drawn
//! modalities × 5 question types). Real scale: `--model` a Qwen2-VL
//! checkpoint, `--data` OmniMedVQA, `--features cuda`.
//!
//! Splits as in the paper: `all` (train on every group), `cross-modality`
//! (train on one modality, test on all eight) and `cross-task` (train on one
//! question type, test on all five); evaluation tables put base and RL side by
//! side per modality and per question type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use vlrl::data::medical::{Modality, QuestionType};
use vlrl::data::row::format_multiple_choice;
use vlrl::data::synth::{MedSynth, MedSynthConfig, TaskGenerator};
use vlrl::data::Row;
use vlrl::grpo::config::GrpoConfig;
use vlrl::grpo::lora::check_module_patterns;
use vlrl::grpo::policy::Prompt;

use crate::eval::{markdown_table, ChoiceTarget, Decoding, EvalResult};
use crate::policy::VisionExtra;
use crate::single_turn::{set_from, train_stage, Checkpoint, RunFlags, StageOptions, TrainModel};
use crate::vl_prompt::VlPrompter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// Train on every modality and question type.
    #[default]
    All,
    /// Train on one modality (`train_group`), test on all eight.
    CrossModality,
    /// Train on one question type (`train_group`), test on all five.
    CrossTask,
}

/// The recipe's configuration (`recipes/configs/med-r1.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MedR1Config {
    /// Hugging Face checkpoint directory of the starting policy.
    pub model: PathBuf,
    /// OmniMedVQA folder (with `QA_information/`, `Images/`); none = med-synth.
    pub data: Option<PathBuf>,
    /// Output folder of the run.
    pub out: PathBuf,
    pub seed: u64,
    /// med-synth: samples drawn for training and for the held-out test.
    pub train_size: usize,
    pub test_size: usize,
    pub image_size: u32,
    /// med-synth: shuffle the options (OmniMedVQA-like) or keep the fixed
    /// order the bundled model was trained on (see `MedSynthConfig`).
    pub shuffle_options: bool,
    pub split: Split,
    /// Modality (`CT`, `MRI`, …) or question type (`AI`, `DD`, …) to train
    /// on; a comma-separated list trains on several (`MR,AI`).
    pub train_group: Option<String>,
    /// `{question}` is replaced by the question and its option lines.
    pub prompt_template: String,
    pub format_weight: f64,
    pub accuracy_weight: f64,
    pub eval_max_new_tokens: usize,
    pub eval_batch_size: usize,
    /// Besides the greedy answer (the paper's metric), draw this many
    /// answers per held-out question at the rollout temperature and report
    /// their mean accuracy: the policy GRPO optimizes. 0 = greedy only.
    pub eval_samples: usize,
    pub checkpoint_every: u64,
    pub grpo: GrpoConfig,
}

impl Default for MedR1Config {
    fn default() -> Self {
        Self {
            model: PathBuf::from("assets/med-tiny"),
            data: None,
            out: PathBuf::from("runs/med-r1"),
            seed: 0,
            train_size: 320,
            test_size: 160,
            image_size: 56,
            shuffle_options: true,
            split: Split::All,
            train_group: None,
            prompt_template: "{question} Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags.".into(),
            format_weight: 1.0,
            accuracy_weight: 1.0,
            eval_max_new_tokens: 48,
            eval_batch_size: 16,
            eval_samples: 0,
            checkpoint_every: 10,
            grpo: GrpoConfig::default(),
        }
    }
}

/// `recipes med-r1` flags; each overrides the TOML config.
#[derive(Args, Debug, Default)]
pub struct MedR1Args {
    #[command(flatten)]
    pub run: RunFlags,
    /// OmniMedVQA folder (instead of synthetic med-synth).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long)]
    pub train_size: Option<usize>,
    #[arg(long)]
    pub test_size: Option<usize>,
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    #[arg(long)]
    pub train_group: Option<String>,
    /// Sampled answers per held-out question (0 = greedy evaluation only).
    #[arg(long)]
    pub eval_samples: Option<usize>,
}

impl MedR1Args {
    pub fn resolve(&self) -> Result<MedR1Config> {
        let mut c: MedR1Config = self
            .run
            .load("recipes/configs/med-r1.toml", |c: &mut MedR1Config| {
                (&mut c.model, &mut c.out, &mut c.seed)
            })?;
        set_from(&mut c.train_size, &self.train_size);
        set_from(&mut c.test_size, &self.test_size);
        set_from(&mut c.split, &self.split);
        set_from(&mut c.eval_samples, &self.eval_samples);
        if self.data.is_some() {
            c.data = self.data.clone();
        }
        if self.train_group.is_some() {
            c.train_group = self.train_group.clone();
        }
        set_from(&mut c.grpo.total_steps, &self.steps);
        self.run.apply_grpo(&mut c.grpo, c.seed);
        Ok(c)
    }
}

/// One multiple-choice example before tokenization.
struct Example {
    row: Row,
    images: Vec<image::RgbImage>,
    modality: String,
    task: String,
}

fn examples_from_synth(config: &MedR1Config, n: usize, seed: u64) -> Result<Vec<Example>> {
    let generator = MedSynth::new(MedSynthConfig {
        image_size: config.image_size,
        shuffle_options: config.shuffle_options,
        ..MedSynthConfig::default()
    })?;
    Ok(generator
        .generate(n, seed)
        .into_iter()
        .map(|s| Example {
            modality: Modality::of_row(&s.row)
                .map_or("?", Modality::abbrev)
                .to_string(),
            task: QuestionType::of_row(&s.row)
                .map_or("?", QuestionType::abbrev)
                .to_string(),
            row: s.row,
            images: s.images,
        })
        .collect())
}

fn examples_from_omnimed(root: &Path) -> Result<Vec<Example>> {
    let set = vlrl::data::omnimed::load_omnimed_dir(root, &Default::default())?;
    let mut out = Vec::new();
    for row in set.into_rows() {
        let mut images = Vec::new();
        for rel in &row.images {
            let path = vlrl::data::paths::resolve_in_root(root, rel)?;
            images.push(vlrl::vision::load_image(&path)?);
        }
        out.push(Example {
            modality: Modality::of_row(&row)
                .map_or("?", Modality::abbrev)
                .to_string(),
            task: QuestionType::of_row(&row)
                .map_or("?", QuestionType::abbrev)
                .to_string(),
            row,
            images,
        });
    }
    Ok(out)
}

fn to_prompt(
    config: &MedR1Config,
    prompter: &VlPrompter,
    ex: &Example,
) -> Result<Prompt<VisionExtra>> {
    let question = ex.row.prompt_text().context("row without a question")?;
    let question = if ex.row.options.is_empty() || question.contains("\nA: ") {
        question
    } else {
        format_multiple_choice(&question, &ex.row.options)
    };
    let text = config.prompt_template.replace("{question}", &question);
    let (ids, extra) = prompter.build(&ex.images, &text)?;
    let target = ChoiceTarget {
        answer: ex.row.answer.clone().unwrap_or_default(),
        options: ex.row.options.clone(),
        groups: BTreeMap::from([
            ("modality".to_string(), ex.modality.clone()),
            ("task".to_string(), ex.task.clone()),
        ]),
    };
    Ok(Prompt {
        ids,
        extra,
        source: ex.task.clone(),
        target: serde_json::to_string(&target)?,
    })
}

type Prompts = Vec<Prompt<VisionExtra>>;

/// The group `--train-group` selects by: the question type for
/// cross-task splits, else the modality.
fn split_group(split: Split, ex: &Example) -> &str {
    match split {
        Split::CrossTask => &ex.task,
        _ => &ex.modality,
    }
}

/// The `--train-group` values the training data offers for `split`, for
/// the error that names a group matching nothing.
fn available_groups(split: Split, examples: &[Example]) -> String {
    let groups: std::collections::BTreeSet<&str> =
        examples.iter().map(|e| split_group(split, e)).collect();
    let kind = if split == Split::CrossTask {
        "question types"
    } else {
        "modalities"
    };
    format!(
        "the training data has these {kind}: {}",
        groups.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// Train / test prompts per the configured split.
fn datasets(config: &MedR1Config, prompter: &VlPrompter) -> Result<(Prompts, Prompts)> {
    let (train, test) = match &config.data {
        None => (
            examples_from_synth(config, config.train_size, config.seed)?,
            // A different seed stream: held-out images never seen in training.
            examples_from_synth(
                config,
                config.test_size,
                config.seed.wrapping_add(1_000_003),
            )?,
        ),
        Some(root) => {
            let mut all = examples_from_omnimed(root)?;
            let mut rng = vlrl::grpo::rng::TrainRng::seed_from_u64(config.seed);
            rng.shuffle(&mut all);
            let cut = all.len() * 8 / 10;
            let test = all.split_off(cut);
            (all, test)
        }
    };
    let groups: Vec<&str> = config
        .train_group
        .as_deref()
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if config.split != Split::All && groups.is_empty() {
        bail!(
            "--split {:?} needs --train-group (a modality like CT or a question type like DD)",
            config.split
        );
    }
    let in_group = |ex: &Example, g: &str| split_group(config.split, ex).eq_ignore_ascii_case(g);
    let train_examples = train;
    // Every listed group must match: a typo in `MR,AII` would otherwise
    // train on MR alone without a word.
    if config.split != Split::All {
        if let Some(g) = groups
            .iter()
            .find(|g| !train_examples.iter().any(|e| in_group(e, g)))
        {
            bail!(
                "no training example matches --split {:?} --train-group {g:?}; {}",
                config.split,
                available_groups(config.split, &train_examples)
            );
        }
    }
    let keep = |ex: &Example| config.split == Split::All || groups.iter().any(|g| in_group(ex, g));
    let train: Vec<_> = train_examples
        .iter()
        .filter(|e| keep(e))
        .map(|e| to_prompt(config, prompter, e))
        .collect::<Result<_>>()?;
    if train.is_empty() {
        bail!("no training examples (train_size = {})", config.train_size);
    }
    let test = test
        .iter()
        .map(|e| to_prompt(config, prompter, e))
        .collect::<Result<_>>()?;
    Ok((train, test))
}

/// Runs the recipe: base evaluation, GRPO, RL evaluation, tables.
pub fn run(args: MedR1Args) -> Result<()> {
    let config = args.resolve()?;
    let ckpt = Checkpoint::open(&config.model)?;
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating {}", config.out.display()))?;
    std::fs::write(
        config.out.join("config.resolved.toml"),
        toml::to_string(&config)?,
    )?;
    let started = Instant::now();
    let (train, test) = datasets(&config, &ckpt.prompter)?;
    tracing::info!(
        "med-r1: {} training prompts, {} held-out prompts",
        train.len(),
        test.len()
    );

    let model = ckpt.load()?;
    // A bad freeze pattern fails now, not after the base evaluation.
    check_module_patterns(&model, "grpo.freeze", &config.grpo.freeze)?;
    let eval = |m: &TrainModel| -> Result<Evals> {
        let run = |decoding| {
            ckpt.evaluate::<ChoiceTarget>(
                m,
                &test,
                config.eval_max_new_tokens,
                config.eval_batch_size,
                decoding,
            )
        };
        let sampled =
            Decoding::like_rollouts(&config.grpo.sampling, config.eval_samples, config.seed)
                .map(run)
                .transpose()?;
        Ok(Evals {
            greedy: run(Decoding::GREEDY)?,
            sampled,
        })
    };
    let base = eval(&model)?;
    tracing::info!(
        "base model: held-out accuracy {:.1}%{}",
        100.0 * base.greedy.accuracy,
        base.sampled_note()
    );

    let stage = StageOptions {
        out_dir: config.out.clone(),
        checkpoint_every: config.checkpoint_every,
        resume: args.run.resume,
        format_weight: config.format_weight,
        accuracy_weight: config.accuracy_weight,
    };
    let outcome =
        train_stage::<ChoiceTarget>(&ckpt, model, || ckpt.load(), &config.grpo, train, &stage)?;
    let rl = eval(&outcome.model)?;
    write_report(
        &config,
        &base,
        &rl,
        &outcome.new_steps,
        started.elapsed().as_secs_f64(),
    )?;
    Ok(())
}

/// One model's held-out evaluations.
struct Evals {
    greedy: EvalResult,
    /// `eval_samples` answers per question at the rollout temperature.
    sampled: Option<EvalResult>,
}

impl Evals {
    fn sampled_note(&self) -> String {
        self.sampled
            .as_ref()
            .map(|s| format!(" (sampled: {:.1}%)", 100.0 * s.accuracy))
            .unwrap_or_default()
    }
}

fn write_report(
    config: &MedR1Config,
    base_evals: &Evals,
    rl_evals: &Evals,
    history: &[vlrl::grpo::metrics::StepMetrics],
    seconds: f64,
) -> Result<()> {
    let (base, rl) = (&base_evals.greedy, &rl_evals.greedy);
    let runs = [("base", base), ("GRPO (vlrl)", rl)];
    let mut md = format!(
        "# Med-R1 (tiny scale) — held-out accuracy (%)\n\nsplit: {:?}{}, seed {}, {} steps, {:.0} s\n\n",
        config.split,
        config.train_group.as_deref().map(|g| format!(" (train on {g})")).unwrap_or_default(),
        config.seed,
        history.len(),
        seconds
    );
    md.push_str("## By modality\n\n");
    md.push_str(&markdown_table("modality", &runs));
    md.push_str("\n## By question type\n\n");
    md.push_str(&markdown_table("task", &runs));
    md.push_str(&format!(
        "\nformat reward: base {:.2}, GRPO {:.2}\n",
        base.format, rl.format
    ));
    let mut json =
        serde_json::json!({"base": base, "rl": rl, "seconds": seconds, "steps": history.len()});
    if let (Some(bs), Some(rs)) = (&base_evals.sampled, &rl_evals.sampled) {
        let s = &config.grpo.sampling;
        md.push_str(&format!(
            "\n## Sampled answers ({} per question, temperature {}, top-p {})\n\n\
             The tables above score one greedy answer per question (the paper's metric). \
             These score every sampled answer: the policy GRPO optimizes.\n\n",
            config.eval_samples, s.temperature, s.top_p
        ));
        let sampled_runs = [("base", bs), ("GRPO (vlrl)", rs)];
        md.push_str(&markdown_table("task", &sampled_runs));
        json["sampled"] = serde_json::json!({
            "samples_per_question": config.eval_samples,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "base": bs,
            "rl": rs,
        });
    }
    let md_path = crate::single_turn::write_report(&config.out, &md, &json)?;
    base.write_samples(&config.out.join("samples-base.jsonl"))?;
    rl.write_samples(&config.out.join("samples-rl.jsonl"))?;
    tracing::info!(
        "held-out accuracy {:.1}% → {:.1}% ({:+.1} points){}; report in {}",
        100.0 * base.accuracy,
        100.0 * rl.accuracy,
        100.0 * (rl.accuracy - base.accuracy),
        match (&base_evals.sampled, &rl_evals.sampled) {
            (Some(b), Some(r)) => format!(
                ", sampled {:.1}% → {:.1}% ({:+.1})",
                100.0 * b.accuracy,
                100.0 * r.accuracy,
                100.0 * (r.accuracy - b.accuracy)
            ),
            _ => String::new(),
        },
        md_path.display()
    );
    Ok(())
}
