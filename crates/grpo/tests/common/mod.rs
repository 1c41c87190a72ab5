//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[path = "../../../../tests/support/backend.rs"]
mod backend;
#[allow(unused_imports)]
pub use backend::tolerance;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlrl_grpo::toy::{PatternTask, ToyConfig, ToyPolicy};
use vlrl_grpo::trainer::{RunOptions, Trainer};
use vlrl_grpo::GrpoConfig;

pub type B = Autodiff<backend::TestBackend>;

/// The toy policy with weights drawn from `seed`.
pub fn toy_policy(seed: u64) -> ToyPolicy<B> {
    ToyConfig::default().init::<B>(&Default::default(), seed)
}

/// A config sized for the toy task.
pub fn toy_config(mut c: GrpoConfig) -> GrpoConfig {
    let task = PatternTask {
        n_symbols: ToyConfig::default().n_symbols,
    };
    c.seed = 7;
    c.prompts_per_step = task.n_symbols;
    c.group_size = 16;
    c.mini_batch_size = c.rollout_size();
    c.micro_batch_size = c.rollout_size();
    c.sampling.max_new_tokens = ToyConfig::default().max_len;
    c.optim.lr = 1e-2;
    c.optim.max_grad_norm = Some(1.0);
    if c.overlong.enabled {
        // targets have at most 4 tokens: penalize lengths 5 and 6
        c.overlong.buffer = 2;
        c.overlong.penalty_factor = 0.5;
    }
    c
}

pub fn trainer(
    cfg: GrpoConfig,
    with_reference: bool,
    devices: usize,
    options: RunOptions,
    init_seed: u64,
) -> Trainer<B, ToyPolicy<B>> {
    let task = PatternTask {
        n_symbols: ToyConfig::default().n_symbols,
    };
    // The reference is the base model (seed 3 in every test); the policy's
    // initial weights may differ (a resumed run overwrites them).
    let policy = toy_policy(init_seed);
    let reference = with_reference.then(|| toy_policy(3).no_grad());
    Trainer::new(
        policy,
        reference,
        cfg,
        task.prompts(),
        vec![Default::default(); devices],
        options,
    )
    .unwrap()
}

struct Collect(Vec<f32>);

impl<Bk: Backend> ModuleVisitor<Bk> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        self.0.extend(
            param
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap(),
        );
    }
}

/// Every float parameter, flattened in visit order.
pub fn params<Bk: Backend, M: Module<Bk>>(m: &M) -> Vec<f32> {
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}
