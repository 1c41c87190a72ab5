//! The `*-base` commands' shared loop: continue a checkpoint with SFT on a
//! recipe's perception task until a validation score or a time limit, and
//! write the result as a Hugging Face checkpoint with the same tokenizer and
//! architecture.
//!
//! A real VLM brings perception to RL (Qwen2.5-VL reads video and small
//! objects, and writes boxes); the tiny bundled `assets/med-tiny` does not.
//! Each recipe whose paper relies on such a skill gets a base model made by
//! this loop (`recipes video-base` → `assets/video-tiny`, `recipes zoom-base`
//! → `assets/zoom-tiny`), so that the recipe's RL sharpens a skill that is
//! there rather than searching for one that is not.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vlrl::grpo::checkpoint::{Checkpoint, CheckpointManager};
use vlrl::grpo::lora::check_module_patterns;
use vlrl::grpo::policy::Policy;
use vlrl::qwen::save::write_atomic;
use vlrl::qwen::Qwen2VL;

use crate::pretrain::CHECKPOINT_FILES;
use crate::sft::{
    sft_optimizer, train_sft_from, SftConfig, SftControl, SftExample, SftOptimizer, SftStep,
};
use crate::single_turn::EvalBackend;
use crate::TrainBackend;

/// Training flags shared by the `*-base` commands.
#[derive(Args, Debug, Clone)]
pub struct BaseFlags {
    /// Most SFT steps (the cosine schedule's length).
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 20)]
    pub warmup_steps: usize,
    /// Greedy validation every this many steps (0 = only at the end).
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Validation questions (their own seed stream; not the recipe's test set).
    #[arg(long, default_value_t = 60)]
    pub eval_size: usize,
    /// Stop once the command's validation score reaches this, so RL keeps
    /// room (1.0 = never).
    #[arg(long, default_value_t = 1.0)]
    pub stop_accuracy: f64,
    /// Every this many steps, also write the model as `<out>/step-N` and a
    /// resume checkpoint (weights, optimizer, state) in `<out>/resume`
    /// (0 = never).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Stop after this many minutes of training (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    pub max_minutes: f64,
    /// Continue a cut-off run from the newest checkpoint in `<out>/resume`
    /// (written every `--save-every` steps): the same weights, optimizer
    /// moments, step, loss curve and validations, so the continuation is
    /// the run that was cut off. Starts afresh when there is none.
    #[arg(long)]
    pub resume: bool,
    /// Module paths not trained, comma-separated (`visual` = the vision
    /// tower, as `[sft] freeze` and `[grpo] freeze` in the recipe configs):
    /// e.g. to teach the language model to use a tower trained elsewhere
    /// without washing out its features. A pattern that matches no
    /// parameter is an error.
    #[arg(long, value_delimiter = ',')]
    pub freeze: Vec<String>,
}

impl BaseFlags {
    /// The optimizer and schedule.
    pub fn sft(&self) -> SftConfig {
        SftConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            weight_decay: 0.01,
            grad_clip: 1.0,
            freeze: self.freeze.clone(),
        }
    }

    /// Refuses a zero batch and an output that would overwrite the input.
    pub fn check(&self, init_from: &Path, out: &Path) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same(init_from, out) {
            bail!("--out must differ from --init-from ({})", out.display());
        }
        Ok(())
    }
}

/// How a base run went (the report's common part).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseOutcome<E> {
    pub init_from: PathBuf,
    pub seed: u64,
    pub sft: SftConfig,
    pub steps: usize,
    pub stop_reason: String,
    /// The step this run was resumed after (`--resume`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<usize>,
    pub train_seconds: f64,
    /// `(step, mean loss over the last 10 steps)`.
    pub losses: Vec<(usize, f64)>,
    pub evals: Vec<E>,
}

/// A base run's inputs besides the policy and the closures.
pub struct BaseRun<'a> {
    pub flags: &'a BaseFlags,
    pub init_from: &'a Path,
    pub out: &'a Path,
    pub seed: u64,
}

type Bytes = BinBytesRecorder<FullPrecisionSettings>;

/// What a resume checkpoint holds besides the weights and the optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResumeState<E> {
    step: usize,
    seed: u64,
    sft: SftConfig,
    losses: Vec<(usize, f64)>,
    /// Losses of the steps since the last `losses` entry.
    window: Vec<f64>,
    evals: Vec<E>,
    last_validated: usize,
    train_seconds: f64,
    /// Set when the run reached `--stop-accuracy` at `step`: a resume then
    /// trains no further.
    #[serde(default)]
    reached_stop_accuracy: bool,
}

fn record_bytes<R: burn::record::Record<TrainBackend>>(what: &str, record: R) -> Result<Vec<u8>> {
    Recorder::<TrainBackend>::record(&Bytes::default(), record, ())
        .map_err(|e| anyhow!("recording the {what}: {e}"))
}

fn load_record<R: burn::record::Record<TrainBackend>>(
    ckpt: &Checkpoint,
    name: &str,
    device: &burn::tensor::Device<TrainBackend>,
) -> Result<R> {
    Recorder::<TrainBackend>::load(&Bytes::default(), ckpt.file(name)?.to_vec(), device)
        .map_err(|e| anyhow!("{}: {name}: {e}", ckpt.dir.display()))
}

/// Trains `policy` on batches of `example(i)` (the `i`-th example of the
/// run: batch `s` holds examples `s·batch_size ..`) with greedy validations
/// (`validate(model, step)` → the evaluation and the score that
/// `--stop-accuracy` compares), at step 0, every `--eval-every` steps, on a
/// time stop and at the end; writes `step-N` snapshots and the final
/// checkpoint into `run.out`. `model_of` reaches the policy's model.
pub fn train_base<P, E>(
    run: BaseRun<'_>,
    policy: P,
    model_of: impl Fn(&P) -> &Qwen2VL<TrainBackend>,
    mut example: impl FnMut(u64) -> Result<SftExample<P::Extra>>,
    mut validate: impl FnMut(&Qwen2VL<EvalBackend>, usize) -> Result<(E, f64)>,
) -> Result<BaseOutcome<E>>
where
    P: Policy<TrainBackend>,
    E: Serialize + DeserializeOwned + Clone,
{
    let flags = run.flags;
    // A typo would otherwise train what it meant to freeze.
    check_module_patterns(&policy, "--freeze", &flags.freeze)?;
    let device = burn::tensor::Device::<TrainBackend>::default();
    let sft = flags.sft();
    let resume_dir = run.out.join("resume");
    let checkpoints = if flags.save_every > 0 || flags.resume || resume_dir.exists() {
        Some(CheckpointManager::new(&resume_dir, 2)?)
    } else {
        None
    };
    let latest = match &checkpoints {
        Some(c) => c.latest()?,
        None => None,
    };
    if let (Some(ckpt), false) = (&latest, flags.resume) {
        tracing::warn!(
            "{} holds a checkpoint of a cut-off run (step {}); starting afresh, pass --resume \
             to continue it",
            resume_dir.display(),
            ckpt.step
        );
    }
    let (policy, optim, mut state) = match latest {
        Some(ckpt) if flags.resume => {
            let state: ResumeState<E> = serde_json::from_slice(ckpt.file("state.json")?)
                .with_context(|| format!("{}: state.json", ckpt.dir.display()))?;
            // `sft` holds `--freeze` too.
            if state.sft != sft || state.seed != run.seed {
                bail!(
                    "{}: written by a run with other settings (seed {}, {:?}); \
                     resume with the same flags, or start afresh in another --out",
                    ckpt.dir.display(),
                    state.seed,
                    state.sft
                );
            }
            let policy = policy.load_record(load_record(&ckpt, "model.bin", &device)?);
            let optim = sft_optimizer::<TrainBackend, P>(&sft).load_record(load_record(
                &ckpt,
                "optim.bin",
                &device,
            )?);
            tracing::info!("resuming {} after step {}", run.out.display(), state.step);
            (policy, optim, state)
        }
        _ => {
            let state = ResumeState {
                step: 0,
                seed: run.seed,
                sft: sft.clone(),
                losses: Vec::new(),
                window: Vec::new(),
                evals: vec![validate(&model_of(&policy).valid(), 0)?.0],
                last_validated: 0,
                train_seconds: 0.0,
                reached_stop_accuracy: false,
            };
            (policy, sft_optimizer::<TrainBackend, P>(&sft), state)
        }
    };
    // `train_sft_from` applies `--freeze` (part of `sft`) after any resume.
    let start_step = state.step;
    let started = Instant::now();
    let progress = indicatif::ProgressBar::new(flags.steps as u64);
    progress.set_position(start_step as u64);
    let mut stop_reason = format!("steps ({})", flags.steps);
    if state.reached_stop_accuracy {
        stop_reason = format!("stop_accuracy {} reached", flags.stop_accuracy);
    }
    let (policy, _) = train_sft_from::<TrainBackend, _>(
        policy,
        optim,
        // A run that stopped on accuracy stays stopped.
        if state.reached_stop_accuracy {
            sft.steps.max(start_step)
        } else {
            start_step
        },
        &sft,
        &device,
        |step| {
            let bs = flags.batch_size as u64;
            (0..bs).map(|k| example(step as u64 * bs + k)).collect()
        },
        |s: &SftStep, policy: &P, optim: &SftOptimizer<TrainBackend, P>| {
            progress.inc(1);
            state.step = s.step;
            state.window.push(s.loss);
            if s.step.is_multiple_of(10) {
                let mean = state.window.iter().sum::<f64>() / state.window.len() as f64;
                state.window.clear();
                state.losses.push((s.step, mean));
                progress.set_message(format!("loss {mean:.3}"));
            }
            let out_of_time = flags.max_minutes > 0.0
                && started.elapsed().as_secs_f64() > flags.max_minutes * 60.0;
            let due = flags.eval_every > 0 && s.step.is_multiple_of(flags.eval_every);
            let mut stop = false;
            if due || out_of_time {
                let (eval, score) =
                    progress.suspend(|| validate(&model_of(policy).valid(), s.step))?;
                state.evals.push(eval);
                state.last_validated = s.step;
                if score >= flags.stop_accuracy {
                    stop_reason = format!("stop_accuracy {} reached", flags.stop_accuracy);
                    state.reached_stop_accuracy = true;
                    stop = true;
                }
            }
            if out_of_time && !stop {
                stop_reason = format!("max_minutes ({})", flags.max_minutes);
                stop = true;
            }
            if flags.save_every > 0 && s.step.is_multiple_of(flags.save_every) {
                let snapshot = run.out.join(format!("step-{}", s.step));
                write_checkpoint(run.init_from, &snapshot, &model_of(policy).valid())?;
                let saved = ResumeState {
                    train_seconds: state.train_seconds + started.elapsed().as_secs_f64(),
                    ..state.clone()
                };
                let model = record_bytes("model", policy.clone().into_record())?;
                let optim = record_bytes("optimizer", optim.to_record())?;
                let json = serde_json::to_vec_pretty(&saved)?;
                let checkpoints = checkpoints
                    .as_ref()
                    .context("checkpoints are made when --save-every is set")?;
                checkpoints.save(
                    s.step as u64,
                    &[
                        ("model.bin", &model),
                        ("optim.bin", &optim),
                        ("state.json", &json),
                    ],
                )?;
            }
            Ok(if stop {
                SftControl::Stop
            } else {
                SftControl::Continue
            })
        },
    )?;
    progress.finish_and_clear();
    let steps = state.step;
    if state.last_validated != steps {
        state
            .evals
            .push(validate(&model_of(&policy).valid(), steps)?.0);
    }
    write_checkpoint(run.init_from, run.out, &model_of(&policy).valid())?;
    tracing::info!(
        "wrote {} after {steps} steps ({stop_reason})",
        run.out.display()
    );
    Ok(BaseOutcome {
        init_from: run.init_from.to_path_buf(),
        seed: run.seed,
        sft,
        steps,
        stop_reason,
        resumed_after: (start_step > 0).then_some(start_step),
        train_seconds: state.train_seconds + started.elapsed().as_secs_f64(),
        losses: state.losses,
        evals: state.evals,
    })
}

/// Writes `model` as a checkpoint in `out`: the weights, and the other
/// files of `from` (each written atomically), which the model shares since
/// SFT keeps the architecture and tokenizer.
pub fn write_checkpoint<B: burn::tensor::backend::Backend>(
    from: &Path,
    out: &Path,
    model: &Qwen2VL<B>,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for name in CHECKPOINT_FILES {
        let src = from.join(name);
        if src.exists() {
            let bytes =
                std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            vlrl::qwen::save::write_atomic(&out.join(name), &bytes)?;
        }
    }
    vlrl::qwen::save::write_safetensors(
        &out.join("model.safetensors"),
        &vlrl::qwen::save::qwen2_vl_tensors(model)?,
    )?;
    Ok(())
}

/// Writes `report` as pretty JSON to `path`, atomically.
pub fn write_report(path: &Path, report: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())?;
    Ok(())
}
