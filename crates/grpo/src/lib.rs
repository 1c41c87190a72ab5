//! Model-agnostic GRPO / Dr.GRPO / DAPO training core on burn.
//!
//! A model implements [`Policy`] (sample completions; score completions
//! token by token); this crate does the rest of the RL loop: rewards →
//! advantages ([`advantage`]) → clipped surrogate with KL and entropy terms
//! ([`loss`]) → AdamW with global-norm clipping and LR schedules
//! ([`trainer`]), with DAPO's dynamic sampling and overlong shaping
//! ([`dapo`]), LoRA adapters ([`lora`]), atomic checkpoints
//! ([`checkpoint`]), metrics and plots ([`metrics`]).
//!
//! Formulas follow TRL's `GRPOTrainer` and verl's `core_algos.py` where the
//! two agree; each function cites its paper. See `docs/grpo.md`.

pub mod advantage;
pub mod checkpoint;
pub mod config;
pub mod dapo;
pub mod error;
pub mod grads;
pub mod kl;
pub mod lora;
pub mod loss;
pub mod metrics;
pub mod policy;
pub mod rng;
pub mod rollout;
pub mod schedule;
pub mod toy;
pub mod trainer;

pub use config::{
    AdvantageConfig, AdvantageEstimator, CovRegularizer, GrpoConfig, KlEstimator, KlPlacement,
    LossAggregation, LossConfig, StdScaling,
};
pub use error::{GrpoError, Result};
pub use policy::{Completion, Episode, Policy, Prompt, SequenceBatch, TokenLogProbs};
pub use rng::TrainRng;
pub use trainer::{RewardFn, RewardOutput, Trainer};
