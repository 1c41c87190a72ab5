//! Step-time breakdown of GRPO on the toy policy (CPU, burn Flex).
//!
//! `cargo bench -p vlrl-grpo --bench toy_step` — criterion times one full
//! training step for three settings; then the per-phase breakdown (rollout /
//! reward / old log-probs / reference log-probs / update) is printed from
//! the trainer's own timings, averaged over 30 steps.

use burn::backend::{Autodiff, Flex};
use criterion::Criterion;
use vlrl_grpo::config::KlPlacement;
use vlrl_grpo::toy::{PatternTask, ToyConfig, ToyPolicy};
use vlrl_grpo::trainer::{RunOptions, Trainer};
use vlrl_grpo::GrpoConfig;

type B = Autodiff<Flex>;

fn setting(name: &str) -> GrpoConfig {
    let mut c = match name {
        "dapo" => GrpoConfig::dapo(),
        _ => GrpoConfig::grpo(),
    };
    let toy = ToyConfig::default();
    c.prompts_per_step = toy.n_symbols;
    c.group_size = 16;
    c.mini_batch_size = c.rollout_size();
    c.micro_batch_size = c.rollout_size();
    c.sampling.max_new_tokens = toy.max_len;
    c.optim.lr = 3e-3;
    c.total_steps = u64::MAX;
    if c.overlong.enabled {
        c.overlong.buffer = 2;
    }
    if name == "grpo-kl-mu2" {
        c.loss.kl.placement = KlPlacement::Loss;
        c.inner_epochs = 2;
        c.mini_batch_size = c.rollout_size() / 2;
        c.micro_batch_size = c.mini_batch_size;
    }
    c
}

fn trainer(name: &str, devices: usize) -> Trainer<B, ToyPolicy<B>> {
    let toy = ToyConfig::default();
    let cfg = setting(name);
    let reference =
        (cfg.loss.kl.placement != KlPlacement::Off).then(|| toy.init::<B>(&Default::default(), 3));
    Trainer::new(
        toy.init::<B>(&Default::default(), 3),
        reference,
        cfg,
        PatternTask {
            n_symbols: toy.n_symbols,
        }
        .prompts(),
        vec![Default::default(); devices],
        RunOptions::default(),
    )
    .expect("trainer")
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    let settings = [("grpo", 1), ("grpo-kl-mu2", 1), ("dapo", 1), ("grpo", 2)];
    for (name, devices) in settings {
        let mut t = trainer(name, devices);
        let mut task = PatternTask {
            n_symbols: ToyConfig::default().n_symbols,
        };
        c.bench_function(&format!("toy_step/{name}/devices={devices}"), |b| {
            b.iter(|| t.step(&mut task).expect("step"))
        });
    }
    println!("\nphase breakdown (mean over 30 steps, milliseconds):");
    println!("setting | devices | rollout | reward | old_logprob | ref_logprob | update | total | tokens/s");
    for (name, devices) in settings {
        let mut t = trainer(name, devices);
        let mut task = PatternTask {
            n_symbols: ToyConfig::default().n_symbols,
        };
        let ms: Vec<_> = (0..30).map(|_| t.step(&mut task).expect("step")).collect();
        let mean = |f: &dyn Fn(&vlrl_grpo::metrics::StepMetrics) -> f64| {
            ms.iter().map(f).sum::<f64>() / ms.len() as f64
        };
        println!(
            "{name} | {devices} | {:.2} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0}",
            1e3 * mean(&|m| m.timings.rollout),
            1e3 * mean(&|m| m.timings.reward),
            1e3 * mean(&|m| m.timings.old_logprob),
            1e3 * mean(&|m| m.timings.ref_logprob),
            1e3 * mean(&|m| m.timings.update),
            1e3 * mean(&|m| m.timings.total),
            mean(&|m| m.tokens_per_s),
        );
    }
    c.final_summary();
}
