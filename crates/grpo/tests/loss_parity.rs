//! Parity of advantages, losses and loss gradients with the PyTorch
//! reference (`tools/grpo_reference.py`, TRL / verl formulas), and a
//! finite-difference check of the surrogate-loss gradient.

mod common;

use burn::tensor::{Tensor, TensorData};
use serde_json::Value;
use vlrl_grpo::advantage::compute_advantages;
use vlrl_grpo::config::{AdvantageConfig, AdvantageEstimator, KlPlacement, LossConfig, StdScaling};
use vlrl_grpo::loss::{aggregation_weights, policy_loss, BatchNorm, LossInputs};
use vlrl_grpo::TrainRng;

use common::B;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/grpo/loss_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

struct Inputs {
    b: usize,
    t: usize,
    lens: Vec<usize>,
    logp: Vec<f32>,
    old: Vec<f32>,
    refl: Vec<f32>,
    ent: Vec<f32>,
    adv: Vec<f32>,
    mask: Vec<f32>,
}

fn inputs(fx: &Value) -> Inputs {
    let shape: Vec<usize> = fx["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (b, t) = (shape[0], shape[1]);
    let lens: Vec<usize> = fx["lens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let groups: Vec<usize> = fx["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let adv_seq =
        compute_advantages(&f64s(&fx["rewards"]), &groups, &AdvantageConfig::default()).unwrap();
    let mut mask = vec![0f32; b * t];
    let mut adv = vec![0f32; b * t];
    for i in 0..b {
        for j in 0..lens[i] {
            mask[i * t + j] = 1.0;
            adv[i * t + j] = adv_seq[i] as f32;
        }
    }
    Inputs {
        b,
        t,
        lens,
        logp: f32s(&fx["logp"]),
        old: f32s(&fx["old_logp"]),
        refl: f32s(&fx["ref_logp"]),
        ent: f32s(&fx["entropy"]),
        adv,
        mask,
    }
}

fn tensor<Bk: burn::tensor::backend::Backend>(v: &[f32], b: usize, t: usize) -> Tensor<Bk, 2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [b, t]), &Default::default())
}

/// Loss (and optionally grad w.r.t. logp) for a case.
fn run_case(x: &Inputs, logp: &[f32], cfg: &LossConfig) -> (vlrl_grpo::loss::LossStats, Vec<f32>) {
    let norm = BatchNorm {
        sequences: x.b,
        tokens: x.lens.iter().sum(),
        horizon: cfg.norm_horizon.unwrap_or(x.t),
    };
    let w = aggregation_weights(&x.lens, x.t, cfg.aggregation, &norm);
    let lp = tensor::<B>(logp, x.b, x.t).require_grad();
    let inputs = LossInputs {
        logp: lp.clone(),
        old_logp: tensor(&x.old, x.b, x.t),
        ref_logp: (cfg.kl.placement == KlPlacement::Loss).then(|| tensor(&x.refl, x.b, x.t)),
        entropy: Some(tensor(&x.ent, x.b, x.t)),
        advantages: tensor(&x.adv, x.b, x.t),
        mask: tensor(&x.mask, x.b, x.t),
        weights: tensor(&w, x.b, x.t),
    };
    let mut rng = TrainRng::seed_from_u64(0);
    let out = policy_loss(inputs, cfg, cfg.kl.beta, &norm, &mut rng).unwrap();
    let grads = out.loss.backward();
    let g = lp
        .grad(&grads)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    (out.stats, g)
}

#[test]
fn advantages_match_reference() {
    let fx = fixture();
    let r = f64s(&fx["rewards"]);
    let groups: Vec<usize> = fx["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let cases = [
        ("grpo", AdvantageConfig::default()),
        (
            "dr_grpo",
            AdvantageConfig {
                scaling: StdScaling::None,
                ..Default::default()
            },
        ),
        (
            "rloo",
            AdvantageConfig {
                estimator: AdvantageEstimator::Rloo,
                scaling: StdScaling::None,
                ..Default::default()
            },
        ),
        (
            "batch",
            AdvantageConfig {
                scaling: StdScaling::Batch,
                ..Default::default()
            },
        ),
    ];
    for (name, cfg) in cases {
        let got = compute_advantages(&r, &groups, &cfg).unwrap();
        let want = f64s(&fx["advantages"][name]);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6, "{name}: {g} vs {w}");
        }
    }
}

#[test]
fn losses_and_gradients_match_reference() {
    let fx = fixture();
    let x = inputs(&fx);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg: LossConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let (stats, grad) = run_case(&x, &x.logp, &cfg);
        let close = |what: &str, got: f64, want: f64| {
            assert!(
                (got - want).abs() <= 1e-6,
                "{name} {what}: {got} vs {want} (diff {:e})",
                (got - want).abs()
            );
        };
        close("loss", stats.loss, case["loss"].as_f64().unwrap());
        close("pg_loss", stats.pg_loss, case["pg_loss"].as_f64().unwrap());
        close("kl", stats.kl, case["kl"].as_f64().unwrap());
        close("entropy", stats.entropy, case["entropy"].as_f64().unwrap());
        close(
            "clip_frac",
            stats.clip_frac,
            case["clip_frac"].as_f64().unwrap(),
        );
        close(
            "clip_frac_lower",
            stats.clip_frac_lower,
            case["clip_frac_lower"].as_f64().unwrap(),
        );
        close(
            "cov_frac",
            stats.cov_frac,
            case["cov_frac"].as_f64().unwrap(),
        );
        let want = f64s(&case["grad_logp"]);
        for (i, (g, w)) in grad.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-6,
                "{name} grad[{i}]: {g} vs {w}"
            );
        }
    }
}

/// d loss / d logp from autodiff equals central finite differences (f32,
/// so h = 1e-2 on a smooth case: k3 KL + entropy + clip inactive region).
#[test]
fn surrogate_gradient_matches_finite_differences() {
    let fx = fixture();
    let x = inputs(&fx);
    let mut cfg = LossConfig::default();
    cfg.kl.placement = KlPlacement::Loss;
    cfg.kl.beta = 0.5;
    cfg.clip_low = 0.9; // wide clip: keeps the loss smooth around the point
    cfg.clip_high = 10.0;
    let (_, grad) = run_case(&x, &x.logp, &cfg);
    let h = 1e-2f32;
    let mut checked = 0;
    for i in 0..x.b * x.t {
        if x.mask[i] == 0.0 {
            assert_eq!(grad[i], 0.0, "padding gets no gradient");
            continue;
        }
        let mut plus = x.logp.clone();
        plus[i] += h;
        let mut minus = x.logp.clone();
        minus[i] -= h;
        let fd = (run_case(&x, &plus, &cfg).0.loss - run_case(&x, &minus, &cfg).0.loss)
            / (2.0 * h as f64);
        let g = grad[i] as f64;
        assert!(
            (fd - g).abs() <= 2e-4 + 1e-2 * g.abs(),
            "token {i}: autodiff {g} vs fd {fd}"
        );
        checked += 1;
    }
    assert_eq!(checked, x.lens.iter().sum::<usize>());
}
