//! The single-turn GRPO pipeline shared by the Med-R1 and LMM-R1 recipes
//! (R1-V's loop): open a Hugging Face checkpoint directory (tokenizer, chat
//! template, image processor, stop and pad tokens from
//! `generation_config.json`), evaluate greedily, run GRPO with a format +
//! accuracy reward computed on the decoded completion, evaluate again.
//!
//! A recipe supplies the prompts (each with an [`EvalTarget`] as JSON in
//! `Prompt::target`) and the tables; everything between is here, so both
//! recipes train and score the same way.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use serde::de::DeserializeOwned;
use vlrl::grpo::config::{GrpoConfig, KlPlacement};
use vlrl::grpo::metrics::StepMetrics;
use vlrl::grpo::policy::{Completion, Prompt};
use vlrl::grpo::trainer::{RewardFn, RewardOutput, RunOptions, Trainer};
use vlrl::qwen::{GenerationConfig, Qwen2VL, QwenTokenizer};
use vlrl::rewards::{Registry, RewardContext};

use crate::eval::{evaluate_targets, Decoding, EvalResult, EvalTarget};
use crate::policy::{VisionExtra, VlmPolicy};
use crate::vl_prompt::VlPrompter;
use crate::TrainBackend;

/// A recipe's TOML config: `explicit` when given, else `default_path` when
/// that file exists (run from the repository root), else `T::default()`.
/// Flags are applied on top by the caller.
pub fn load_config<T: DeserializeOwned + Default>(
    explicit: Option<&Path>,
    default_path: &str,
) -> Result<T> {
    let default_path = Path::new(default_path);
    let path = explicit.or_else(|| default_path.exists().then_some(default_path));
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        }
        None => Ok(T::default()),
    }
}

/// A recipe flag over its config field: `Some` replaces, `None` keeps.
pub fn set_from<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        field.clone_from(v);
    }
}

/// Prints a run's Markdown report and writes it as `<out>/eval.md`, with
/// `json` as `<out>/eval.json`; returns the `eval.md` path for the log line.
pub fn write_report(out: &Path, md: &str, json: &impl serde::Serialize) -> Result<PathBuf> {
    println!("{md}");
    let path = out.join("eval.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    let json_path = out.join("eval.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(path)
}

/// The flags every RL recipe shares (`#[command(flatten)]` into each
/// recipe's own); each overrides the recipe's TOML config.
#[derive(Args, Debug, Default, Clone)]
pub struct RunFlags {
    /// TOML config (defaults to recipes/configs/<recipe>.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Checkpoint directory to start from (Hugging Face layout).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Run directory: resolved config, metrics, plots, checkpoints, tables.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Completions per prompt (G), every GRPO stage.
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Learning rate, every GRPO stage.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
}

impl RunFlags {
    /// The flags of a run that reads `config` and overrides nothing (how
    /// the `*-base` commands read a recipe's config).
    pub fn from_config(config: &std::path::Path) -> Self {
        Self {
            config: Some(config.to_path_buf()),
            ..Self::default()
        }
    }

    /// The recipe's config ([`load_config`]) with `--model`, `--out` and
    /// `--seed` applied through `fields`, which lends the config's own.
    pub fn load<T: DeserializeOwned + Default>(
        &self,
        default_path: &str,
        fields: impl FnOnce(&mut T) -> (&mut PathBuf, &mut PathBuf, &mut u64),
    ) -> Result<T> {
        let mut config: T = load_config(self.config.as_deref(), default_path)?;
        let (model, out, seed) = fields(&mut config);
        set_from(model, &self.model);
        set_from(out, &self.out);
        set_from(seed, &self.seed);
        Ok(config)
    }

    /// `--group-size` and `--lr` onto one GRPO stage, and the run's seed;
    /// the batch split is refitted ([`fit_batches`]) so a new group size
    /// cannot fail validation after the base evaluation.
    pub fn apply_grpo(&self, grpo: &mut GrpoConfig, seed: u64) {
        set_from(&mut grpo.group_size, &self.group_size);
        set_from(&mut grpo.optim.lr, &self.lr);
        grpo.seed = seed;
        fit_batches(grpo);
    }
}

/// Keeps the mini-batch dividing the rollout and the micro-batch dividing
/// the mini-batch, falling back to one batch where they do not (a config
/// that divides is left as it is).
pub fn fit_batches(grpo: &mut GrpoConfig) {
    let rollout = grpo.rollout_size();
    if rollout > 0 && (grpo.mini_batch_size == 0 || !rollout.is_multiple_of(grpo.mini_batch_size)) {
        grpo.mini_batch_size = rollout;
    }
    let mini = grpo.mini_batch_size;
    if grpo.micro_batch_size == 0 || !mini.is_multiple_of(grpo.micro_batch_size) {
        grpo.micro_batch_size = mini;
    }
}

/// The backend evaluation runs on (the training backend without autodiff).
pub type EvalBackend = <TrainBackend as AutodiffBackend>::InnerBackend;
/// A trainable model on this build's backend.
pub type TrainModel = Qwen2VL<TrainBackend>;

/// A checkpoint directory opened for prompting and generation.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub prompter: VlPrompter,
    /// `generation_config.json`'s EOS ids plus `<|im_end|>`.
    pub stop: Vec<u32>,
    /// `pad_token_id`, else `<|endoftext|>`, else 0.
    pub pad: u32,
    pub device: burn::tensor::Device<TrainBackend>,
}

impl Checkpoint {
    /// Opens `dir`; a missing `config.json` is an error that names how to
    /// make the bundled model.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("config.json").exists() {
            bail!(
                "no model at {}: the bundled model is made by `cargo run --release -p recipes -- pretrain` \
                 (or pass --model <Hugging Face Qwen2-VL checkpoint directory>)",
                dir.display()
            );
        }
        let prompter = VlPrompter::from_dir(dir)?;
        let gen_path = dir.join("generation_config.json");
        let gen_cfg = if gen_path.exists() {
            GenerationConfig::from_file(&gen_path)?
        } else {
            GenerationConfig::default()
        };
        let mut stop = gen_cfg.eos_token_ids();
        stop.extend(prompter.tokenizer.token_id("<|im_end|>"));
        let pad = gen_cfg
            .pad_token_id
            .or_else(|| prompter.tokenizer.token_id("<|endoftext|>"))
            .unwrap_or(0);
        Ok(Self {
            dir: dir.to_path_buf(),
            prompter,
            stop,
            pad,
            device: Default::default(),
        })
    }

    /// Loads the checkpoint's weights (a fresh copy each call: the frozen
    /// reference is loaded, never cloned from the policy, per DESIGN.md).
    pub fn load(&self) -> Result<TrainModel> {
        Ok(Qwen2VL::<TrainBackend>::from_dir(&self.dir, &self.device)?)
    }

    /// Evaluation of `model` on `prompts` whose targets are `T`, answers
    /// drawn per `decoding` (greedy for the papers' tables).
    pub fn evaluate<T: EvalTarget>(
        &self,
        model: &TrainModel,
        prompts: &[Prompt<VisionExtra>],
        max_new_tokens: usize,
        batch_size: usize,
        decoding: Decoding,
    ) -> Result<EvalResult> {
        evaluate_targets::<EvalBackend, T>(
            &model.valid(),
            &self.prompter.tokenizer,
            prompts,
            &self.stop,
            self.pad,
            max_new_tokens,
            batch_size,
            decoding,
        )
    }

    fn policy(&self, model: TrainModel) -> VlmPolicy<TrainBackend> {
        VlmPolicy::new(model, self.stop.clone(), self.pad)
    }
}

/// Format + accuracy reward on decoded completions (R1-V): `format_weight ·
/// format + accuracy_weight · accuracy`, both from the prompt's target.
pub struct TargetReward<'a, T> {
    pub registry: Registry,
    pub tokenizer: &'a QwenTokenizer,
    pub format_weight: f64,
    pub accuracy_weight: f64,
    pub total_steps: u64,
    target: PhantomData<fn() -> T>,
}

impl<'a, T> TargetReward<'a, T> {
    pub fn new(
        tokenizer: &'a QwenTokenizer,
        format_weight: f64,
        accuracy_weight: f64,
        total_steps: u64,
    ) -> Self {
        Self {
            registry: Registry::with_defaults(),
            tokenizer,
            format_weight,
            accuracy_weight,
            total_steps,
            target: PhantomData,
        }
    }
}

impl<T: EvalTarget> RewardFn<VisionExtra> for TargetReward<'_, T> {
    fn score(
        &mut self,
        prompt: &Prompt<VisionExtra>,
        completion: &Completion,
    ) -> vlrl::grpo::Result<RewardOutput> {
        let err = |e: String| vlrl::grpo::GrpoError::Reward(e);
        let text = self
            .tokenizer
            .decode(&completion.ids, true)
            .map_err(|e| err(e.to_string()))?;
        let target: T = serde_json::from_str(&prompt.target).map_err(|e| err(e.to_string()))?;
        let ctx = RewardContext::at(0, self.total_steps);
        let (format, accuracy) = target
            .score_completion(&self.registry, &text, &ctx)
            .map_err(|e| err(e.to_string()))?;
        Ok(RewardOutput {
            reward: self.format_weight * format + self.accuracy_weight * accuracy,
            accuracy: Some(accuracy),
        })
    }
}

/// How one GRPO stage runs and where it writes.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// `metrics.jsonl`, `plots/`, `checkpoints/` go here.
    pub out_dir: PathBuf,
    pub checkpoint_every: u64,
    /// Continue from the newest checkpoint in `out_dir`, if any.
    pub resume: bool,
    pub format_weight: f64,
    pub accuracy_weight: f64,
}

/// What a stage leaves: the trained model and its metrics.
pub struct StageOutcome {
    pub model: TrainModel,
    /// Steps run by this call (empty when a resumed stage was complete).
    pub new_steps: Vec<StepMetrics>,
    /// Every step of the stage, restored ones included.
    pub history: Vec<StepMetrics>,
}

/// Runs GRPO on `train` from `model`. `reference` is called only when the
/// KL is on (a separately loaded copy of the starting weights).
pub fn train_stage<T: EvalTarget>(
    ckpt: &Checkpoint,
    model: TrainModel,
    reference: impl FnOnce() -> Result<TrainModel>,
    grpo: &GrpoConfig,
    train: Vec<Prompt<VisionExtra>>,
    stage: &StageOptions,
) -> Result<StageOutcome> {
    let reference = if grpo.loss.kl.placement != KlPlacement::Off {
        Some(ckpt.policy(reference()?))
    } else {
        None
    };
    let options = RunOptions {
        out_dir: Some(stage.out_dir.clone()),
        checkpoint_every: stage.checkpoint_every,
        keep_last: 2,
        plot_every: stage.checkpoint_every,
        progress: true,
    };
    let mut trainer = Trainer::new(
        ckpt.policy(model),
        reference,
        grpo.clone(),
        train,
        std::slice::from_ref(&ckpt.device).to_vec(),
        options,
    )?;
    if stage.resume {
        match trainer.resume()? {
            Some(step) => tracing::info!("resumed at step {step}"),
            None => tracing::info!(
                "no checkpoint in {}: starting fresh",
                stage.out_dir.display()
            ),
        }
    }
    let mut reward = TargetReward::<T>::new(
        &ckpt.prompter.tokenizer,
        stage.format_weight,
        stage.accuracy_weight,
        grpo.total_steps,
    );
    let new_steps = trainer.train(&mut reward)?;
    let history = trainer.history().to_vec();
    Ok(StageOutcome {
        model: trainer.policy.model,
        new_steps,
        history,
    })
}
