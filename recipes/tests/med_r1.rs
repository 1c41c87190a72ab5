//! The med-r1 recipe end to end at toy size: data → prompts → base eval →
//! GRPO steps → RL eval → report files. Runs on the fixture Qwen2-VL
//! checkpoint (random weights), so it checks the plumbing, not learning;
//! learning on the bundled model is recorded in docs/results.md.

use std::path::PathBuf;

use recipes::med_r1::{run, MedR1Args};
use recipes::single_turn::RunFlags;

/// Arguments for a run on the fixture checkpoint (random weights) into
/// `out/run`, with the default config rewritten by `edit`.
fn fixture_args(out: &std::path::Path, edit: impl Fn(&str) -> String) -> MedR1Args {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = std::fs::read_to_string(root.join("recipes/configs/med-r1.toml")).unwrap();
    let text = edit(&base);
    assert_ne!(
        text, base,
        "the default config changed shape; update this test"
    );
    let config = out.join("med-r1.toml");
    std::fs::write(&config, text).unwrap();
    MedR1Args {
        run: RunFlags {
            config: Some(config),
            model: Some(root.join("tests/fixtures/models/qwen2-vl-tiny")),
            out: Some(out.join("run")),
            ..Default::default()
        },
        train_size: Some(16),
        test_size: Some(8),
        ..Default::default()
    }
}

#[test]
fn med_r1_runs_end_to_end_and_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let args = fixture_args(out.path(), |base| {
        base.replace("eval_max_new_tokens = 48", "eval_max_new_tokens = 8")
            .replace("max_new_tokens = 48", "max_new_tokens = 8")
            .replace("prompts_per_step = 8", "prompts_per_step = 2")
            .replace("group_size = 8", "group_size = 4")
            .replace("mini_batch_size = 64", "mini_batch_size = 8")
            .replace("micro_batch_size = 32", "micro_batch_size = 4")
    });
    run(MedR1Args {
        steps: Some(2),
        ..args
    })
    .unwrap();
    let run_dir = out.path().join("run");
    let report = std::fs::read_to_string(run_dir.join("eval.md")).unwrap();
    assert!(
        report.contains("By modality") && report.contains("GRPO"),
        "{report}"
    );
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["base"]["n"], 8);
    assert!(run_dir.join("config.resolved.toml").exists());
    // The default config also scores sampled answers (8 per question).
    assert!(report.contains("Sampled answers"), "{report}");
    assert_eq!(eval["sampled"]["samples_per_question"], 8);
    assert_eq!(eval["sampled"]["rl"]["n"], 8);
    let cells = &eval["sampled"]["base"]["by_group"]["task"];
    let answers: u64 = cells
        .as_object()
        .unwrap()
        .values()
        .map(|c| c[1].as_u64().unwrap())
        .sum();
    assert_eq!(answers, 64, "{cells}");
    // One graded greedy answer per held-out question, for reading the outputs.
    for name in ["samples-base.jsonl", "samples-rl.jsonl"] {
        let text = std::fs::read_to_string(run_dir.join(name)).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 8, "{name}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["index"], i);
            assert!(row["completion"].is_string() && row["groups"]["task"].is_string());
        }
    }
    // Training metrics are broken down by question type.
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let types = ["AI", "DD", "LG", "MR", "OBA"];
    assert!(
        first["per_source"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| types.contains(&k.as_str())),
        "{first}"
    );
}

/// The error of a split run on the fixture model (it fails before training).
fn split_error(split: recipes::med_r1::Split, group: Option<&str>) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let args = MedR1Args {
        run: RunFlags {
            model: Some(root.join("tests/fixtures/models/qwen2-vl-tiny")),
            out: Some(out.path().join("run")),
            ..Default::default()
        },
        split: Some(split),
        train_group: group.map(String::from),
        train_size: Some(40),
        test_size: Some(8),
        ..Default::default()
    };
    run(args).unwrap_err().to_string()
}

#[test]
fn split_without_group_is_a_clear_error() {
    let err = split_error(recipes::med_r1::Split::CrossModality, None);
    assert!(err.contains("--train-group"), "{err}");
}

#[test]
fn unknown_group_lists_the_groups_there_are() {
    let err = split_error(
        recipes::med_r1::Split::CrossTask,
        Some("Modality Recognition"),
    );
    assert!(
        err.contains("Modality Recognition") && err.contains("AI, DD, LG, MR, OBA"),
        "{err}"
    );
}

#[test]
fn every_listed_group_must_exist() {
    let err = split_error(recipes::med_r1::Split::CrossTask, Some("MR, AII"));
    assert!(
        err.contains("\"AII\"") && err.contains("AI, DD, LG, MR, OBA"),
        "{err}"
    );
}

/// A freeze pattern that matches no parameter stops the run before the
/// base evaluation, naming the field and the pattern.
#[test]
fn a_freeze_typo_fails_before_anything_runs() {
    let out = tempfile::tempdir().unwrap();
    let args = fixture_args(out.path(), |base| {
        base.replace("[grpo]\n", "[grpo]\nfreeze = [\"visul\"]\n")
    });
    let err = format!("{:#}", run(args).unwrap_err());
    assert!(
        err.contains("grpo.freeze") && err.contains("visul"),
        "{err}"
    );
    assert!(!out.path().join("run/eval.json").exists());
}

#[test]
fn missing_model_names_the_fix() {
    let out = tempfile::tempdir().unwrap();
    let args = MedR1Args {
        run: RunFlags {
            model: Some(out.path().join("nope")),
            out: Some(out.path().join("run")),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = run(args).unwrap_err().to_string();
    assert!(err.contains("pretrain"), "{err}");
}

/// Learning, not just plumbing: GRPO from the bundled model on a fixed set
/// of 8 training questions (every step sees all 8, 8 completions each)
/// raises the sampled accuracy on them. Fixed seed; the held-out effect of
/// the full default run is recorded in docs/results.md.
#[test]
fn grpo_raises_the_bundled_models_accuracy_on_its_training_questions() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let config = out.path().join("med-r1.toml");
    let base = std::fs::read_to_string(root.join("recipes/configs/med-r1.toml")).unwrap();
    std::fs::write(
        &config,
        base.replace("model = \"assets/med-tiny\"", "")
            .replace("max_new_tokens = 48", "max_new_tokens = 40"),
    )
    .unwrap();
    let steps = 14;
    let args = MedR1Args {
        run: RunFlags {
            config: Some(config),
            model: Some(root.join("assets/med-tiny")),
            out: Some(out.path().join("run")),
            lr: Some(5e-4),
            seed: Some(3),
            ..Default::default()
        },
        steps: Some(steps),
        train_size: Some(8),
        test_size: Some(8),
        ..Default::default()
    };
    run(args).unwrap();
    let metrics = std::fs::read_to_string(out.path().join("run/metrics.jsonl")).unwrap();
    let accuracy: Vec<f64> = metrics
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["accuracy"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(accuracy.len(), steps as usize);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&accuracy[..4]), mean(&accuracy[accuracy.len() - 4..]));
    eprintln!("sampled accuracy per step: {accuracy:?}");
    assert!(
        last >= first + 0.1,
        "sampled accuracy on the training questions: first 4 steps {first:.3}, last 4 {last:.3} ({accuracy:?})"
    );
}

/// `--group-size` that no longer divides the configured batches refits them
/// instead of failing validation after the base evaluation.
#[test]
fn a_new_group_size_refits_the_batches() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let args = MedR1Args {
        run: RunFlags {
            config: Some(root.join("recipes/configs/med-r1.toml")),
            group_size: Some(6),
            lr: Some(1e-5),
            ..Default::default()
        },
        ..Default::default()
    };
    let c = args.resolve().unwrap();
    assert_eq!(c.grpo.group_size, 6);
    assert_eq!(c.grpo.optim.lr, 1e-5);
    assert_eq!(c.grpo.mini_batch_size, 48, "8 prompts x 6");
    assert!(48usize.is_multiple_of(c.grpo.micro_batch_size));
    c.grpo.validate().unwrap();
}
