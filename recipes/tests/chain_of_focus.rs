//! Chain-of-Focus recipe on the bundled model: focus traces score as
//! correct and mask exactly the inserted image turn; wrong traces do not
//! score; a short SFT + multi-turn RL run writes every output, lowers the SFT
//! loss and resumes from its checkpoints.

mod common;

use std::path::PathBuf;

use recipes::chain_of_focus::episode::score_episode;
use recipes::chain_of_focus::task::{example_at, QuestionKind, TaskSpec};
use recipes::chain_of_focus::{
    focus_target, make_env, run_config, sft_example, task_spec, ChainOfFocusConfig, Mode,
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
            // The same episodes split by question kind.
            let by_kind: Vec<_> = QuestionKind::ALL
                .into_iter()
                .filter_map(|k| e.kind(mode, k))
                .collect();
            assert_eq!(by_kind.iter().map(|c| c.n).sum::<usize>(), 6, "{mode:?}");
            assert_eq!(
                by_kind.iter().map(|c| c.correct).sum::<usize>(),
                e.total(mode).correct
            );
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
    assert!(md.contains("| model | mode | colour | shape |"));

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

/// The committed config and `ChainOfFocusConfig::default()` (what library
/// users and the tests start from) describe the same run.
#[test]
fn the_committed_config_is_the_default() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let args = recipes::chain_of_focus::ChainOfFocusArgs {
        run: recipes::single_turn::RunFlags {
            config: Some(root.join("recipes/configs/chain-of-focus.toml")),
            ..Default::default()
        },
        ..Default::default()
    };
    let committed = args.resolve().unwrap();
    assert_eq!(committed, ChainOfFocusConfig::default());
}

/// `[sft] freeze` (the same freezing `zoom-base --freeze` goes through,
/// tested bit for bit below): a typo stops the run before the base
/// evaluation, naming the field.
#[test]
fn a_sft_freeze_typo_fails_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("cof"));
    cfg.sft.freeze = vec!["visul".into()];
    let err = format!("{:#}", run_config(&cfg, false).unwrap_err());
    assert!(err.contains("sft.freeze") && err.contains("visul"), "{err}");
    assert!(!dir.path().join("cof/eval-base.json").exists());
}

fn zoom_base_args(out: &std::path::Path) -> recipes::chain_of_focus::base::ZoomBaseArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: recipes::chain_of_focus::base::ZoomBaseArgs,
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Cli::parse_from(["zoom-base"]).args;
    args.config = root.join("recipes/configs/chain-of-focus.toml");
    args.init_from = model_dir();
    args.out = out.to_path_buf();
    args
}

#[test]
fn zoom_base_lessons_show_the_crop_at_the_crop_budget() {
    use recipes::chain_of_focus::base::{lesson_example, Lesson};
    // A crop budget unlike the first view's, so the test can tell them apart.
    let c = ChainOfFocusConfig {
        model: model_dir(),
        crop_pixels: 112 * 112,
        ..ChainOfFocusConfig::default()
    };
    let env = make_env(&c).unwrap();
    let spec = task_spec(&c);
    let ex = example_at(448, 5, 9, spec).unwrap();
    let image_tokens = |lesson| {
        let e = lesson_example(&c, &env, ex.clone(), lesson).unwrap();
        let grid = e.extra.vision.grid_thw.clone();
        assert_eq!(grid.len(), 1, "{lesson:?}: one image");
        let tokens: usize = grid.iter().map(|g| g[0] * g[1] * g[2] / 4).sum();
        let text = env
            .prompter
            .tokenizer
            .decode(&e.response_ids, false)
            .unwrap();
        (tokens, text, e.extra.image.width())
    };
    let (read_tokens, read_text, read_width) = image_tokens(Lesson::Read);
    let (glance_tokens, glance_text, glance_width) = image_tokens(Lesson::Glance);
    let (locate_tokens, locate_text, _) = image_tokens(Lesson::Locate);
    // The crop is seen at the crop budget (112x112 → 16 tokens), the first
    // view at the view budget (56x56 → 4 tokens).
    assert_eq!((read_tokens, glance_tokens, locate_tokens), (16, 4, 4));
    // The read lesson's image is the cut-out, not the 448-pixel original.
    assert!(read_width < glance_width, "{read_width} vs {glance_width}");
    // Reading and glancing answer alike; locating gives the trace's box.
    assert_eq!(read_text, glance_text);
    assert!(read_text.ends_with(&format!("<answer>{}</answer><|im_end|>", ex.answer)));
    assert!(
        locate_text.starts_with("<|box_start|>(") && locate_text.ends_with("<|box_end|><|im_end|>"),
        "{locate_text}"
    );
}

#[test]
fn zoom_base_trains_and_writes_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zoom-tiny");
    let mut args = zoom_base_args(&out);
    common::short_base_run(&mut args.train, 2);
    recipes::chain_of_focus::base::run(args).unwrap();
    let report = common::check_base_output(&out, "zoom_base_report.json", &model_dir());
    for lesson in ["read", "locate", "glance"] {
        assert_eq!(report["evals"][2]["lessons"][lesson]["n"], 2, "{lesson}");
    }
}

/// `--freeze visual` trains the language model and leaves the vision tower
/// bit for bit as it started; a pattern that matches nothing is refused.
#[test]
fn zoom_base_freeze_keeps_the_vision_tower() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frozen");
    let mut args = zoom_base_args(&out);
    common::short_base_run(&mut args.train, 2);
    args.train.steps = 4;
    args.train.eval_every = 0;
    args.train.freeze = vec!["visual".into()];
    recipes::chain_of_focus::base::run(args).unwrap();
    let start = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    let end = std::fs::read(out.join("model.safetensors")).unwrap();
    let start = safetensors::SafeTensors::deserialize(&start).unwrap();
    let end = safetensors::SafeTensors::deserialize(&end).unwrap();
    let (mut kept_visual, mut changed_text) = (0, 0);
    for (name, before) in start.tensors() {
        let same = before.data() == end.tensor(&name).unwrap().data();
        if name.starts_with("visual.") {
            assert!(same, "{name} changed although frozen");
            kept_visual += 1;
        } else if !same {
            changed_text += 1;
        }
    }
    assert!(kept_visual > 10, "{kept_visual} vision tensors");
    assert!(
        changed_text > 10,
        "{changed_text} language-model tensors trained"
    );

    let mut args = zoom_base_args(&dir.path().join("typo"));
    common::short_base_run(&mut args.train, 2);
    args.train.freeze = vec!["visul".into()];
    let err = recipes::chain_of_focus::base::run(args).unwrap_err();
    assert!(
        format!("{err:#}").contains("`visul` matches no parameter"),
        "{err:#}"
    );
}

#[test]
fn zoom_base_refuses_to_overwrite_its_start_or_reuse_the_recipe_images() {
    let mut args = zoom_base_args(&model_dir());
    let err = recipes::chain_of_focus::base::run(args.clone()).unwrap_err();
    assert!(format!("{err:#}").contains("--out must differ"), "{err:#}");
    let dir = tempfile::tempdir().unwrap();
    args.out = dir.path().join("x");
    // This seed's training stream is the recipe's test stream (seed 0).
    args.seed = 1_000_003u64.wrapping_sub(8_000_017);
    let err = recipes::chain_of_focus::base::run(args).unwrap_err();
    assert!(format!("{err:#}").contains("would repeat"), "{err:#}");
    assert!(!dir.path().join("x").exists());
}

/// Greedy one-turn answers of `model` to the first `n` colour questions of
/// the recipe's held-out stream at `size`, asked on the first view.
fn colour_answers_from_the_first_view(model: PathBuf, size: u32, n: usize) -> usize {
    use recipes::chain_of_focus::episode::run_episodes;
    use vlrl::qwen::SamplingParams;
    let c = ChainOfFocusConfig {
        model,
        ..ChainOfFocusConfig::default()
    };
    let env = make_env(&c).unwrap();
    let spec = task_spec(&c);
    let questions: Vec<_> = (0..)
        .map(|i| example_at(size, i, c.seed + 1_000_003, spec).unwrap())
        .filter(|ex| ex.kind == recipes::chain_of_focus::task::QuestionKind::Colour)
        .take(n)
        .collect();
    let prompts: Vec<_> = questions
        .iter()
        .map(|ex| {
            let text = c.direct_prompt.replace("{question}", &ex.question);
            env.prompt(ex.image.clone(), &text).unwrap()
        })
        .collect();
    let rows: Vec<_> = prompts
        .iter()
        .map(|(ids, extra)| (ids.as_slice(), extra.as_ref()))
        .collect();
    let model =
        vlrl::qwen::Qwen2VL::<vlrl::backend::Cpu>::from_dir(&c.model, &Default::default()).unwrap();
    let params = SamplingParams {
        max_new_tokens: c.turn_max_new_tokens,
        stop_tokens: env.stop_tokens.clone(),
        ..Default::default()
    };
    let outs = run_episodes(&model, &env, &rows, &params, 1).unwrap();
    let registry = Registry::with_defaults();
    questions
        .iter()
        .zip(&prompts)
        .zip(outs)
        .filter(|((ex, (_, extra)), out)| {
            let target = focus_target(&c, &env, ex, Mode::Direct).unwrap();
            score_episode(&env, &registry, extra.frame, &target, &out.ids)
                .unwrap()
                .accuracy
                > 0.5
        })
        .count()
}

/// `assets/zoom-tiny` reads the target's colour, even at 448 px where it
/// is 2 px wide in the first view; med-tiny, which it continues, does not.
#[test]
fn the_bundled_focus_model_reads_the_target_colour() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let zoom = colour_answers_from_the_first_view(root.join("assets/zoom-tiny"), 448, 16);
    let med = colour_answers_from_the_first_view(model_dir(), 448, 16);
    eprintln!("colour questions at 448 px: zoom-tiny {zoom}/16, med-tiny {med}/16");
    assert!(zoom >= 13, "zoom-tiny: {zoom}/16");
    assert!(med <= 8, "med-tiny: {med}/16");
}
