//! Chain-of-Focus recipe on the bundled model: focus traces score as
//! correct and mask exactly the inserted image turn; wrong traces do not
//! score; a short SFT + multi-turn RL run writes every output, lowers the SFT
//! loss and resumes from its checkpoints.

use std::path::PathBuf;

use recipes::chain_of_focus::episode::score_episode;
use recipes::chain_of_focus::task::{example_at, TaskSpec};
use recipes::chain_of_focus::{
    focus_target, make_env, run_config, sft_example, ChainOfFocusConfig, Mode,
};
use vlrl::rewards::Registry;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/med-tiny")
}

fn config(out: PathBuf) -> ChainOfFocusConfig {
    let mut c = ChainOfFocusConfig {
        model: model_dir(),
        out,
        sizes: vec![112, 224],
        test_per_size: 3,
        train_size: 8,
        eval_batch_size: 8,
        checkpoint_every: 1,
        ..ChainOfFocusConfig::default()
    };
    c.sft.steps = 6;
    c.sft.batch_size = 4;
    c.sft.warmup_steps = 2;
    c.grpo.total_steps = 2;
    c.grpo.prompts_per_step = 2;
    c.grpo.group_size = 4;
    c.grpo.mini_batch_size = 8;
    c.grpo.micro_batch_size = 8;
    c
}

#[test]
fn traces_score_and_mask_the_inserted_turn() {
    let cfg = config(PathBuf::from("/nonexistent"));
    let env = make_env(&cfg).unwrap();
    let registry = Registry::with_defaults();
    let tok = &env.prompter.tokenizer;
    let image_pad = tok.token_id("<|image_pad|>").unwrap();
    let spec = TaskSpec {
        target_radius: cfg.target_radius,
        distractors_448: cfg.distractors_448,
        shuffle_options: cfg.shuffle_options,
    };
    for (size, index) in [(112u32, 0u64), (224, 1), (448, 2), (448, 3)] {
        let ex = example_at(size, index, 5, spec).unwrap();
        let trace = sft_example(&cfg, &env, &ex, Mode::Zoom).unwrap();
        let target = focus_target(&cfg, &env, &ex, Mode::Zoom).unwrap();
        let frame = trace.extra.frame;
        let s = score_episode(&env, &registry, frame, &target, &trace.response_ids).unwrap();
        assert!(s.answered, "{size}: {s:?}");
        assert_eq!(
            (s.format, s.accuracy, s.zooms, s.box_hit),
            (1.0, 1.0, 1, true),
            "{size}"
        );

        // The masked part is exactly the inserted user turn with the crop.
        assert_eq!(trace.loss_mask.len(), trace.response_ids.len());
        let masked: Vec<u32> = trace
            .response_ids
            .iter()
            .zip(&trace.loss_mask)
            .filter(|(_, m)| !**m)
            .map(|(t, _)| *t)
            .collect();
        let trained: Vec<u32> = trace
            .response_ids
            .iter()
            .zip(&trace.loss_mask)
            .filter(|(_, m)| **m)
            .map(|(t, _)| *t)
            .collect();
        let crop = trace.extra.vision.grid_thw[1];
        let crop_tokens = crop[0] * crop[1] * crop[2] / 4;
        assert_eq!(
            masked.iter().filter(|&&t| t == image_pad).count(),
            crop_tokens
        );
        assert!(!trained.contains(&image_pad));
        let masked_text = tok.decode(&masked, false).unwrap();
        assert!(masked_text.contains("<|im_start|>user") && masked_text.ends_with("assistant\n"));
        let trained_text = tok.decode(&trained, false).unwrap();
        assert!(trained_text.contains("<|box_start|>") && trained_text.contains("<answer>"));
        assert_eq!(trace.extra.vision.grid_thw.len(), 2);

        // A wrong letter scores no accuracy; an answer without a zoom has
        // no zoom; a direct-mode prompt allows no zoom turn.
        let wrong = if target.choice.answer == "A" {
            "B"
        } else {
            "A"
        };
        let bad = tok
            .encode(&format!(
                "<think>x</think><answer>{wrong}</answer><|im_end|>"
            ))
            .unwrap();
        let s = score_episode(&env, &registry, frame, &target, &bad).unwrap();
        assert_eq!((s.accuracy, s.zooms, s.format), (0.0, 0, 1.0));
        let direct = focus_target(&cfg, &env, &ex, Mode::Direct).unwrap();
        let s = score_episode(&env, &registry, frame, &direct, &trace.response_ids).unwrap();
        assert!(!s.answered && s.accuracy == 0.0, "{s:?}");
    }
}

#[test]
fn short_run_writes_outputs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cof");
    let cfg = config(out.clone());
    let report = run_config(&cfg, false).unwrap();
    for f in [
        "config.resolved.toml",
        "eval.md",
        "eval.json",
        "eval-base.json",
        "eval-sft.json",
        "metrics.jsonl",
        "sft/model.bin",
        "sft/metrics.jsonl",
        "plots/sft_loss.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    for e in [&report.base, &report.sft, &report.rl] {
        for mode in [Mode::Zoom, Mode::Direct] {
            assert_eq!(e.total(mode).n, 6, "{mode:?}");
            for size in [112, 224] {
                assert!(e.accuracy(mode, size).is_some());
            }
        }
    }
    assert_eq!(report.rl_steps, 2);
    let sft: Vec<serde_json::Value> = std::fs::read_to_string(out.join("sft/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sft.len(), 6);
    let first = sft[0]["loss"].as_f64().unwrap();
    let last = sft[5]["loss"].as_f64().unwrap();
    assert!(last < 0.9 * first, "SFT loss {first} → {last}");
    let md = std::fs::read_to_string(out.join("eval.md")).unwrap();
    assert!(md.contains("| SFT+RL | with zoom |") && md.contains("112 px"));

    // Resume one more RL step: SFT model and evaluations are read back,
    // RL continues from its step-2 checkpoint.
    let mut more = cfg.clone();
    more.grpo.total_steps = 3;
    let resumed = run_config(&more, true).unwrap();
    assert_eq!(resumed.rl_steps, 3);
    assert_eq!(resumed.base, report.base);
    assert_eq!(resumed.sft, report.sft);
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);
}
