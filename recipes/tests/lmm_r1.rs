//! The lmm-r1 recipe end to end at toy size: FRE (text-only GRPO) → MGT
//! (multimodal GRPO from the FRE model) → MGT-only baseline → the ablation
//! table, on the fixture Qwen2-VL checkpoint (random weights): it checks the
//! plumbing, the files and the resume path, not learning (learning on the
//! bundled model is recorded in docs/lmm-r1.md).

use std::path::{Path, PathBuf};

use recipes::eval::{EvalTarget, VerifiedTarget};
use recipes::lmm_r1::{run, LmmR1Args, LmmR1Report};
use recipes::single_turn::RunFlags;
use vlrl::data::synth::{write_dataset_dir, TextLogic, VisualMath, VisualMathConfig};
use vlrl::data::TaskGenerator;
use vlrl::rewards::{Registry, RewardContext};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default config shrunk to seconds: short answers, small batches.
fn tiny_config(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(root().join("recipes/configs/lmm-r1.toml")).unwrap();
    let text = base
        .replace("eval_max_new_tokens = 32", "eval_max_new_tokens = 6")
        .replace("max_new_tokens = 32", "max_new_tokens = 6")
        .replace("prompts_per_step = 8", "prompts_per_step = 2")
        .replace("group_size = 8", "group_size = 4")
        .replace("mini_batch_size = 64", "mini_batch_size = 8")
        .replace("micro_batch_size = 32", "micro_batch_size = 8");
    assert_ne!(
        text, base,
        "the default config changed shape; update this test"
    );
    let path = dir.join("lmm-r1.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn tiny_args(dir: &Path, out: &Path) -> LmmR1Args {
    LmmR1Args {
        run: RunFlags {
            config: Some(tiny_config(dir)),
            model: Some(root().join("tests/fixtures/models/qwen2-vl-tiny")),
            out: Some(out.to_path_buf()),
            ..Default::default()
        },
        fre_steps: Some(2),
        mgt_steps: Some(2),
        text_train_size: Some(8),
        text_test_size: Some(6),
        mm_train_size: Some(8),
        mm_test_size: Some(4),
        agent_share: Some(0.5),
        easy_text_share: Some(0.5),
        ..Default::default()
    }
}

fn metrics_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn both_stages_and_the_baseline_run_and_write_the_ablation_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(tiny_args(tmp.path(), &out)).unwrap();

    let report = std::fs::read_to_string(out.join("eval.md")).unwrap();
    for row in [
        "| base |",
        "| FRE (text RL) |",
        "| FRE+MGT (LMM-R1) |",
        "| MGT-only (direct RL) |",
    ] {
        assert!(report.contains(row), "missing {row}:\n{report}");
    }
    // The grid-agent share put agent tasks into the multimodal table.
    assert!(
        report.contains("move") || report.contains("steps"),
        "{report}"
    );
    let eval: LmmR1Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    for set in [
        &eval.base,
        &eval.fre,
        &eval.fre_mgt,
        eval.mgt_only.as_ref().unwrap(),
    ] {
        assert_eq!(set.text.n, 6);
        assert_eq!(set.multimodal.n, 4);
        for r in [&set.text, &set.multimodal] {
            assert!((0.0..=1.0).contains(&r.accuracy) && (0.0..=1.0).contains(&r.format));
        }
        // Every held-out prompt is counted once under its set.
        assert_eq!(set.text.by_group["set"]["text"].1, 6);
        assert_eq!(set.multimodal.by_group["set"]["multimodal"].1, 4);
        // The default config also samples 8 answers per question.
        let sampled = set
            .sampled
            .as_ref()
            .expect("eval_samples = 8 in the config");
        assert_eq!(sampled.text.by_group["set"]["text"].1, 6 * 8);
        assert_eq!(sampled.multimodal.by_group["set"]["multimodal"].1, 4 * 8);
        assert!((0.0..=1.0).contains(&sampled.text.accuracy));
    }
    assert!(
        report.contains("## Sampled answers (8 per question"),
        "{report}"
    );
    for stage in ["fre", "fre-mgt", "mgt-only"] {
        let dir = out.join(stage);
        let lines = metrics_lines(&dir.join("metrics.jsonl"));
        assert_eq!(lines.len(), 2, "{stage}");
        for l in &lines {
            let r = l["reward_mean"].as_f64().unwrap();
            // format + accuracy, each in [0, 1].
            assert!((0.0..=2.0).contains(&r), "{stage}: reward {r}");
            assert!(l["loss"].as_f64().unwrap().is_finite(), "{stage}: {l}");
        }
        assert!(
            dir.join("checkpoints").read_dir().unwrap().count() > 0,
            "{stage}"
        );
    }
    // FRE saw text only, MGT saw the multimodal sources.
    let fre = metrics_lines(&out.join("fre/metrics.jsonl"));
    assert!(fre
        .iter()
        .flat_map(|l| l["per_source"].as_object().unwrap().keys())
        .all(|s| s == "text-logic" || s == "text-compare"));
    let mgt = metrics_lines(&out.join("fre-mgt/metrics.jsonl"));
    assert!(mgt
        .iter()
        .flat_map(|l| l["per_source"].as_object().unwrap().keys())
        .all(|s| s == "visual-math" || s == "grid-agent"));
    assert_eq!(eval.steps["fre"], 2);
    assert_eq!(eval.steps["fre_mgt"], 2);
    assert!(out.join("config.resolved.toml").exists());

    // Resume: every stage is complete, so nothing trains again, and the
    // restored models give the same held-out results.
    let args = LmmR1Args {
        run: RunFlags {
            resume: true,
            ..tiny_args(tmp.path(), &out).run
        },
        ..tiny_args(tmp.path(), &out)
    };
    run(args).unwrap();
    let again: LmmR1Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(again.fre, eval.fre);
    assert_eq!(again.fre_mgt, eval.fre_mgt);
    assert_eq!(again.mgt_only, eval.mgt_only);
    assert_eq!(
        metrics_lines(&out.join("fre/metrics.jsonl")),
        fre,
        "resume must not retrain a finished stage"
    );
}

#[test]
fn real_mode_reads_fre_and_mgt_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset_dir(data.join("fre"), "data.jsonl", &TextLogic.generate(10, 3)).unwrap();
    let vm = VisualMath::new(VisualMathConfig {
        image_size: 56,
        ..Default::default()
    })
    .unwrap();
    write_dataset_dir(data.join("mgt"), "data.jsonl", &vm.generate(6, 3)).unwrap();
    write_dataset_dir(data.join("mgt-test"), "data.jsonl", &vm.generate(3, 4)).unwrap();
    let out = tmp.path().join("run");
    let args = LmmR1Args {
        data: Some(data),
        fre_steps: Some(1),
        mgt_steps: Some(1),
        text_test_size: Some(4),
        no_mgt_only: true,
        ..tiny_args(tmp.path(), &out)
    };
    run(args).unwrap();
    let eval: LmmR1Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    // fre: 4 of 10 rows held out; mgt: the separate mgt-test folder.
    assert_eq!(eval.base.text.n, 4);
    assert_eq!(eval.base.multimodal.n, 3);
    assert!(eval.mgt_only.is_none());
    assert!(std::fs::read_to_string(out.join("eval.md"))
        .unwrap()
        .contains("real data"));
}

#[test]
fn verified_targets_score_numbers_and_letters() {
    let registry = Registry::with_defaults();
    let ctx = RewardContext::at(0, 1);
    let number = VerifiedTarget {
        answer: "12".into(),
        options: vec![],
        verifier: "numeric".into(),
        groups: Default::default(),
    };
    let score = |t: &VerifiedTarget, s: &str| t.score_completion(&registry, s, &ctx).unwrap();
    assert_eq!(
        score(
            &number,
            "<think>The result is 12.</think><answer>12</answer>"
        ),
        (1.0, 1.0)
    );
    assert_eq!(
        score(&number, "<think>x</think><answer>13</answer>"),
        (1.0, 0.0)
    );
    assert_eq!(
        score(&number, "<answer>12</answer>").0,
        0.0,
        "no think block"
    );
    let letter = VerifiedTarget {
        answer: "B".into(),
        options: vec!["red".into(), "blue".into()],
        verifier: "multiple_choice".into(),
        groups: Default::default(),
    };
    assert_eq!(
        score(&letter, "<think>t</think><answer>B</answer>"),
        (1.0, 1.0)
    );
    assert_eq!(score(&letter, "<think>t</think><answer>A</answer>").1, 0.0);
    let unknown = VerifiedTarget {
        verifier: "no-such-verifier".into(),
        ..number
    };
    assert!(unknown.score_completion(&registry, "x", &ctx).is_err());
}

#[test]
fn bad_agent_share_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let args = LmmR1Args {
        agent_share: Some(1.5),
        ..tiny_args(tmp.path(), &tmp.path().join("run"))
    };
    let err = run(args).unwrap_err().to_string();
    assert!(err.contains("agent_share"), "{err}");
}
