//! End-to-end training tests on the toy policy: learning with GRPO,
//! Dr.GRPO and DAPO settings, bit-exact resume, data-parallel equivalence,
//! non-finite skipping.

mod common;

use common::{params, toy_config, trainer};
use vlrl_grpo::config::{CovRegularizer, KlPlacement};
use vlrl_grpo::metrics::read_metrics;
use vlrl_grpo::toy::{PatternTask, ToyConfig};
use vlrl_grpo::trainer::RunOptions;
use vlrl_grpo::{GrpoConfig, GrpoError};

fn task() -> PatternTask {
    PatternTask {
        n_symbols: ToyConfig::default().n_symbols,
    }
}

fn learns(cfg: GrpoConfig, steps: u64) {
    let lr = cfg.optim.lr;
    let mut cfg = toy_config(cfg);
    if lr != GrpoConfig::default().optim.lr {
        cfg.optim.lr = lr;
    }
    cfg.total_steps = steps;
    let with_ref = cfg.loss.kl.placement != KlPlacement::Off;
    let mut t = trainer(cfg, with_ref, 1, RunOptions::default(), 3);
    let mut task = task();
    let history = t.train(&mut task).unwrap();
    let first = history.first().unwrap().sampled_reward_mean;
    let last: f64 = history
        .iter()
        .rev()
        .take(3)
        .map(|m| m.sampled_reward_mean)
        .sum::<f64>()
        / 3.0;
    let curve: Vec<String> = history
        .iter()
        .step_by(10)
        .map(|m| format!("{:.2}", m.sampled_reward_mean))
        .collect();
    assert!(
        first < 0.35,
        "initial reward {first} is not near chance: {curve:?}"
    );
    // The GPU's numerics (TF32 matmuls, other summation orders) take another
    // trajectory from the same seed: one seen on an H200 settled at 0.86
    // with one pattern left wrong (docs/gpu.md).
    let bar = if cfg!(feature = "cuda") { 0.8 } else { 0.9 };
    assert!(last >= bar, "final reward {last} < {bar}: {curve:?}");
}

#[test]
fn grpo_learns_the_toy_task() {
    // The GRPO paper's setting: k3 KL to the initial policy with β = 0.04.
    // With seq-mean-token-mean (GRPO's length bias, Dr.GRPO §3.1) and a
    // high LR, one prompt collapses onto a short wrong answer whose group
    // then has zero advantage forever; a lower LR plus the KL avoids it.
    let mut c = GrpoConfig::grpo();
    c.loss.kl.placement = KlPlacement::Loss;
    c.loss.kl.beta = 0.04;
    c.optim.lr = 3e-3;
    learns(c, 400);
}

#[test]
fn dr_grpo_learns_the_toy_task() {
    learns(GrpoConfig::dr_grpo(), 300);
}

#[test]
fn dapo_learns_the_toy_task() {
    learns(GrpoConfig::dapo(), 300);
}

/// A config that exercises every resumable piece: two inner epochs over two
/// mini-batches (old log-probs, shuffles, AdamW moments), gradient
/// accumulation, KL to a reference, Clip-Cov's random pick, LR warmup.
fn resume_config(total: u64) -> GrpoConfig {
    let mut c = toy_config(GrpoConfig::grpo());
    c.total_steps = total;
    c.inner_epochs = 2;
    c.mini_batch_size = c.rollout_size() / 2;
    c.micro_batch_size = c.mini_batch_size / 2;
    c.loss.kl.placement = KlPlacement::Loss;
    c.loss.cov = CovRegularizer::ClipCov {
        ratio: 0.05,
        lower: 0.0,
        upper: 5.0,
    };
    c.optim.warmup_steps = 2;
    c
}

/// Every number in `a` within `rel` (relative, at least 1 absolute scale) of
/// the one at the same place in `b`; everything else equal.
fn assert_close(a: &serde_json::Value, b: &serde_json::Value, rel: f64, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= rel * x.abs().max(1.0), "{at}: {x} vs {y}");
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: fields");
            for (k, v) in x {
                assert_close(v, &y[k], rel, &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: length");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_close(v, w, rel, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn resume_is_bit_exact() {
    let total = 6;
    let dir_full = tempfile::tempdir().unwrap();
    let dir_split = tempfile::tempdir().unwrap();
    let opts = |d: &tempfile::TempDir| RunOptions {
        out_dir: Some(d.path().to_path_buf()),
        checkpoint_every: 1,
        keep_last: 2,
        ..Default::default()
    };
    let mut full = trainer(resume_config(total), true, 1, opts(&dir_full), 3);
    full.train(&mut task()).unwrap();

    // Run 3 steps, then "crash" (drop without a final checkpoint besides the
    // per-step ones) and start a new process-equivalent trainer whose policy
    // has different initial weights: resume must restore everything.
    let mut first = trainer(resume_config(total), true, 1, opts(&dir_split), 3);
    for _ in 0..3 {
        first.step(&mut task()).unwrap();
    }
    drop(first);
    let mut resumed = trainer(resume_config(total), true, 1, opts(&dir_split), 99);
    assert_eq!(resumed.resume().unwrap(), Some(3));
    resumed.train(&mut task()).unwrap();

    let a = read_metrics(&dir_full.path().join("metrics.jsonl")).unwrap();
    let b = read_metrics(&dir_split.path().join("metrics.jsonl")).unwrap();
    assert_eq!(a.len(), total as usize);
    assert_eq!(b.len(), total as usize);
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (x.without_timings(), y.without_timings());
        if x != y {
            eprintln!("A {x:?}\nB {y:?}");
        }
        if cfg!(feature = "cuda") {
            // Bit-exact on the CPU. On the GPU two runs from the same seed
            // differed by 2e-7 (relative) at the first step on an H200: its
            // kernels need not sum in the same order every time.
            let (x, y) = (
                serde_json::to_value(&x).unwrap(),
                serde_json::to_value(&y).unwrap(),
            );
            assert_close(&x, &y, 1e-4, &format!("step {}", x["step"]));
        } else {
            assert_eq!(x, y, "metrics differ at step {}", x.step);
        }
    }
    let (p_full, p_resumed) = (params(&full.policy), params(&resumed.policy));
    if cfg!(feature = "cuda") {
        let worst = p_full
            .iter()
            .zip(&p_resumed)
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "parameters differ by {worst}");
    } else {
        assert_eq!(p_full, p_resumed, "parameters differ");
    }
    assert_eq!(full.state, resumed.state);
    // keep-last-N and plots
    let ckpts = std::fs::read_dir(dir_split.path().join("checkpoints"))
        .unwrap()
        .count();
    assert_eq!(ckpts, 2);
    assert!(dir_full.path().join("plots/reward.png").exists());
}

#[test]
fn two_devices_with_half_batches_equal_one_device() {
    let mut cfg = toy_config(GrpoConfig::dapo());
    cfg.total_steps = 3;
    cfg.dynamic_sampling.enabled = false; // same rollouts on both sides
    let mut one = trainer(cfg.clone(), false, 1, RunOptions::default(), 5);
    let mut two = trainer(cfg, false, 2, RunOptions::default(), 5);
    one.train(&mut task()).unwrap();
    two.train(&mut task()).unwrap();
    let (a, b) = (params(&one.policy), params(&two.policy));
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max <= 1e-5, "max parameter difference {max}");
    let (ma, mb) = (one.history(), two.history());
    for (x, y) in ma.iter().zip(mb) {
        assert!(
            (x.loss - y.loss).abs() < 1e-5,
            "loss {} vs {}",
            x.loss,
            y.loss
        );
    }
}

#[test]
fn non_finite_updates_are_skipped_then_training_stops() {
    let mut cfg = toy_config(GrpoConfig::grpo());
    cfg.total_steps = 50;
    cfg.optim.lr = 1e35; // the first update blows the weights up to inf/NaN
    cfg.optim.max_grad_norm = None;
    cfg.max_nonfinite_streak = 3;
    let mut t = trainer(cfg, false, 1, RunOptions::default(), 3);
    let err = t.train(&mut task()).unwrap_err();
    assert!(
        matches!(err, GrpoError::NonFiniteStreak { streak: 3, .. }),
        "{err}"
    );
    assert!(t.history().iter().any(|m| m.skipped_updates > 0));
}

/// The remaining option paths run end to end: RLOO advantages, KL in the
/// reward (k1), KL-Cov, entropy bonus, dual clip, cosine schedule with
/// warmup, gradient accumulation over three micro-batches.
#[test]
fn other_option_paths_run_and_stay_finite() {
    use vlrl_grpo::config::{AdvantageEstimator, KlEstimator, ScheduleKind, StdScaling};
    let mut c = toy_config(GrpoConfig::grpo());
    c.total_steps = 4;
    c.advantage.estimator = AdvantageEstimator::Rloo;
    c.advantage.scaling = StdScaling::Batch;
    c.loss.kl.placement = KlPlacement::Reward;
    c.loss.kl.estimator = KlEstimator::K1;
    c.loss.cov = CovRegularizer::kl_cov();
    c.loss.entropy_coef = 0.01;
    c.loss.dual_clip = Some(3.0);
    c.optim.schedule = ScheduleKind::Cosine;
    c.optim.warmup_steps = 1;
    c.optim.total_steps = 4;
    c.micro_batch_size = c.mini_batch_size / 3;
    let mut t = trainer(c, true, 1, RunOptions::default(), 3);
    let hist = t.train(&mut task()).unwrap();
    assert_eq!(hist.len(), 4);
    for m in &hist {
        assert_eq!(m.updates, 1);
        assert!(m.loss.is_finite() && m.grad_norm.is_finite() && m.entropy > 0.0);
        assert!(m.cov_frac > 0.0, "KL-Cov selected no token");
        assert!(m.kl.is_finite());
    }
    assert!(hist[0].lr == 0.0 && hist[1].lr > 0.0, "warmup starts at 0");
    assert_eq!(hist[0].kl, 0.0, "π_old = π_ref before the first update");
    assert!(
        hist[3].kl != 0.0,
        "KL in reward is measured once the policy moved"
    );
}

/// `freeze` keeps the named module's parameters where they were, through
/// training and through a resume (the resumed trainer freezes its policy
/// before the checkpoint's values are loaded into it), while the rest
/// trains; a pattern that matches nothing stops the run before it starts.
#[test]
fn frozen_modules_do_not_move_and_typos_are_errors() {
    let mut cfg = toy_config(GrpoConfig::grpo());
    cfg.total_steps = 4;
    cfg.freeze = vec!["out".into()];
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: Some(dir.path().to_path_buf()),
        checkpoint_every: 1,
        ..Default::default()
    };
    let mut first = trainer(cfg.clone(), false, 1, opts.clone(), 3);
    let (out_before, all_before) = (params(&first.policy.out), params(&first.policy));
    first.step(&mut task()).unwrap();
    first.step(&mut task()).unwrap();
    assert_eq!(
        params(&first.policy.out),
        out_before,
        "a frozen module moved"
    );
    assert_ne!(params(&first.policy), all_before, "nothing trained");
    drop(first);

    let mut resumed = trainer(cfg.clone(), false, 1, opts, 99);
    assert_eq!(resumed.resume().unwrap(), Some(2));
    resumed.train(&mut task()).unwrap();
    assert_eq!(
        params(&resumed.policy.out),
        out_before,
        "a frozen module moved after the resume"
    );

    cfg.freeze = vec!["hiden".into()];
    let err = vlrl_grpo::trainer::Trainer::new(
        common::toy_policy(3),
        None,
        cfg,
        task().prompts(),
        vec![Default::default()],
        RunOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("freeze") && err.contains("hiden"), "{err}");
}
