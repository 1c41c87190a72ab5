//! The video-rts recipe end to end at toy size on the bundled model: clips →
//! video prompts → base evaluation (greedy sparse / dense, majority, TTS) →
//! GRPO steps → RL evaluation → report files; plus the sparse-to-dense
//! stopping rule on the real model and the `--data` path (frame folders).
//! The stopping logic itself is unit-tested with a scripted sampler in
//! `recipes/src/video_rts/tts.rs`.

mod common;

use std::path::PathBuf;

use burn::module::AutodiffModule;
use recipes::single_turn::{Checkpoint, RunFlags};
use recipes::video_rts::tts::LastRound;
use recipes::video_rts::{
    datasets, evaluate_strategies, run, VideoPrompter, VideoRtsArgs, VideoRtsConfig, DENSE_GREEDY,
    DENSE_MAJORITY, SPARSE_GREEDY, TTS,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped config, shrunk. Each edit must find its line, so that a
/// change to the shipped config cannot silently leave the toy at full size.
/// Evaluation keeps the shipped answer budget (56 tokens hold the longest
/// trace): with less, answers stop before `<answer>`, and TTS would only
/// count "No answer found" agreeing with itself.
fn toy_config_text() -> String {
    let mut text = std::fs::read_to_string(root().join("recipes/configs/video-rts.toml")).unwrap();
    for (from, to) in [
        ("\nmax_new_tokens = 56", "\nmax_new_tokens = 24"),
        ("\nsamples = 8 ", "\nsamples = 3 "),
        // Two doublings (4 → 8 → 16) exercise more of the schedule.
        ("\nstart = 8 ", "\nstart = 4 "),
        ("prompts_per_step = 8", "prompts_per_step = 2"),
        ("group_size = 8", "group_size = 4"),
        ("mini_batch_size = 64", "mini_batch_size = 8"),
        ("micro_batch_size = 32", "micro_batch_size = 8"),
    ] {
        assert!(text.contains(from), "the shipped config has no `{from}`");
        text = text.replace(from, to);
    }
    text
}

fn toy_config() -> VideoRtsConfig {
    let mut c: VideoRtsConfig = toml::from_str(&toy_config_text()).unwrap();
    c.model = root().join("assets/video-tiny");
    c.test_size = 6;
    c.train_size = 6;
    c
}

#[test]
fn video_rts_runs_end_to_end_and_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let config = out.path().join("video-rts.toml");
    std::fs::write(&config, toy_config_text()).unwrap();
    let run_dir = out.path().join("run");
    let args = VideoRtsArgs {
        run: RunFlags {
            config: Some(config),
            model: Some(root().join("assets/video-tiny")),
            out: Some(run_dir.clone()),
            ..Default::default()
        },
        steps: Some(2),
        train_size: Some(8),
        test_size: Some(6),
        ..Default::default()
    };
    run(args).unwrap();

    let report = std::fs::read_to_string(run_dir.join("eval.md")).unwrap();
    assert!(
        report.contains("sparse-to-dense TTS") && report.contains("GRPO"),
        "{report}"
    );
    // Two paired comparisons (dense greedy, dense majority) per model and
    // TTS rule (the configured one and the relaxed one).
    let paired = report
        .split("## TTS against fixed dense frames")
        .nth(1)
        .unwrap_or_default();
    assert_eq!(
        paired.lines().filter(|l| l.starts_with("| base |")).count(),
        4,
        "{report}"
    );
    assert!(run_dir.join("config.resolved.toml").exists());
    assert!(run_dir.join("checkpoints").read_dir().unwrap().count() >= 1);
    let plots: Vec<_> = run_dir.join("plots").read_dir().unwrap().collect();
    assert!(!plots.is_empty(), "no PNG curves written");

    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    for line in metrics.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["reward_mean", "loss", "grad_norm", "entropy"] {
            let v = m[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite(), "{key} = {v} in {line}");
        }
    }

    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval.json")).unwrap()).unwrap();
    for model in ["base", "rl"] {
        let strategies = eval[model].as_array().unwrap();
        assert_eq!(strategies.len(), 5, "4 strategies + the relaxed TTS row");
        let frames = |i: usize| strategies[i]["avg_frames"].as_f64().unwrap();
        assert_eq!(
            frames(SPARSE_GREEDY),
            4.0,
            "greedy sparse uses the first round"
        );
        assert_eq!(
            frames(DENSE_GREEDY),
            16.0,
            "greedy dense uses tts.max frames"
        );
        assert_eq!(frames(DENSE_MAJORITY), 16.0);
        let tts = &strategies[TTS];
        assert!((4.0..=16.0).contains(&frames(TTS)), "{tts}");
        assert!(tts["avg_frames_processed"].as_f64().unwrap() >= frames(TTS));
        // 3 answers a round; a question that reaches 16 frames gets one
        // greedy answer there (3 + 3 + 1).
        let samples = tts["avg_samples"].as_f64().unwrap();
        assert!((3.0..=7.0).contains(&samples), "{tts}");
        // Same first-round answers, looser rule: at least as many questions
        // stop at the sparse count.
        let relaxed = &strategies[TTS + 1];
        let at_start = |s: &serde_json::Value| s["frames_histogram"]["4"].as_u64().unwrap_or(0);
        assert!(at_start(relaxed) >= at_start(tts), "{relaxed} vs {tts}");
        let questions = eval["questions"].as_array().unwrap();
        assert_eq!(questions.len(), 6);
        for s in strategies {
            assert_eq!(s["n"], 6);
            // Per question: the deciding round's answers and frames, whose
            // majority is what `correct` scored.
            let answers = s["answers"].as_array().unwrap();
            let per_question_frames = s["frames"].as_array().unwrap();
            assert_eq!((answers.len(), per_question_frames.len()), (6, 6), "{s}");
            for (i, votes) in answers.iter().enumerate() {
                let votes: Vec<String> = votes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                assert!(!votes.is_empty(), "{s}");
                let (top, _, _) = recipes::video_rts::tts::majority(&votes).unwrap();
                // 56 tokens hold the longest trace: every decided answer is
                // a letter, and the verifier scores that letter.
                let right = top == questions[i]["answer"].as_str().unwrap();
                assert_eq!(s["correct"][i].as_bool(), Some(right), "question {i}: {s}");
                let f = per_question_frames[i].as_u64().unwrap();
                assert!(s["frames_histogram"][f.to_string()].as_u64().unwrap() >= 1);
            }
            let correct = s["correct"].as_array().unwrap();
            assert_eq!(correct.len(), 6);
            let right = correct.iter().filter(|c| c.as_bool().unwrap()).count();
            assert!((s["accuracy"].as_f64().unwrap() - right as f64 / 6.0).abs() < 1e-12);
            let answers: u64 = s["answer_counts"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum();
            assert_eq!(answers, 6, "{s}");
            let acc = s["accuracy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc), "{s}");
        }
    }
}

/// With `agreement = 0` any majority stops the loop: every question is
/// answered at the first (sparse) round. With all samples required to agree
/// the frames stay within the schedule and more frames are never fewer.
#[test]
fn tts_stopping_rule_on_the_model_and_the_data_path() {
    let mut config = toy_config();
    let ckpt = Checkpoint::open(&config.model).unwrap();
    let prompter = VideoPrompter::new(&ckpt, &config);
    let model = ckpt.load().unwrap().valid();
    let (_, test) = datasets(&config).unwrap();

    config.tts.agreement = 0.0;
    // 4 → 8, and doubling again would pass 12: TTS's last round holds 8
    // frames, while the dense baselines are asked for 12.
    config.tts.max = 12;
    let loose = evaluate_strategies(&model, &prompter, &test, &config, 7).unwrap();
    let tts = &loose[TTS];
    assert_eq!(tts.avg_frames, 4.0, "{tts:?}");
    for at in [DENSE_GREEDY, DENSE_MAJORITY] {
        assert_eq!(loose[at].avg_frames, 12.0, "{:?}", loose[at]);
        assert!(loose[at].strategy.contains("12 frames"));
    }
    assert_eq!(tts.early_stop_rate, 1.0, "{tts:?}");
    assert_eq!(tts.avg_samples, 3.0);

    // The same clips written as frame folders and read back through `--data`
    // give identical prompts (PNG is lossless).
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<_> = {
        let generator =
            recipes::video_rts::events::VideoEvents::new(config.events.clone()).unwrap();
        (0..4u64).map(|i| generator.clip(i, 5)).collect()
    };
    recipes::video_rts::events::write_dataset(dir.path(), &clips).unwrap();
    let mut file_config = config.clone();
    file_config.data = Some(dir.path().join("data.jsonl"));
    let (train, held_out) = datasets(&file_config).unwrap();
    assert_eq!(train.len() + held_out.len(), 4);
    let from_file = train.iter().chain(&held_out).next().unwrap();
    let index = clips
        .iter()
        .position(|c| {
            file_config
                .prompt_template
                .replace("{question}", c.sample.row.problem.as_deref().unwrap())
                == from_file.text
        })
        .unwrap();
    let synthetic = recipes::video_rts::ClipSource::Synthetic(clips[index].scene.clone());
    let indices = [0, 9, 21, 31];
    assert_eq!(
        from_file.clip.frames(&indices).unwrap(),
        synthetic.frames(&indices).unwrap()
    );
    let a = prompter.prompt(from_file, &indices).unwrap();
    let token = |t: &str| ckpt.prompter.tokenizer.token_id(t).unwrap();
    let (video_pad, image_pad) = (token("<|video_pad|>"), token("<|image_pad|>"));
    // 4 frames of 56x56 → 2 temporal patches x 4x4 patches → 2·4 merged tokens
    assert_eq!(a.ids.iter().filter(|&&t| t == video_pad).count(), 2 * 4);
    assert!(!a.ids.contains(&image_pad));
    assert_eq!(a.extra.grid_thw, vec![[2, 4, 4]]);
}

/// With `last_round = "greedy"`, a question the sparse rounds could not
/// settle is answered once, greedily, on the dense round's frames: as fixed
/// dense greedy decoding answers it (same frames, same decoding).
#[test]
fn a_greedy_last_round_answers_like_dense_greedy() {
    let mut config = toy_config();
    config.test_size = 9;
    config.tts.extra_agreements.clear();
    config.tts.last_round = LastRound::Greedy;
    let ckpt = Checkpoint::open(&config.model).unwrap();
    let prompter = VideoPrompter::new(&ckpt, &config);
    let model = ckpt.load().unwrap().valid();
    let (_, test) = datasets(&config).unwrap();
    let r = evaluate_strategies(&model, &prompter, &test, &config, 3).unwrap();
    let (tts, dense) = (&r[TTS], &r[DENSE_GREEDY]);
    assert!(
        tts.strategy.contains("last round greedy"),
        "{}",
        tts.strategy
    );
    let mut at_last = 0;
    for i in 0..test.len() {
        if tts.frames[i] == config.tts.max {
            at_last += 1;
            assert_eq!(tts.answers[i].len(), 1, "one greedy answer: {tts:?}");
            assert_eq!(tts.answers[i], dense.answers[i], "question {i}");
            assert_eq!(tts.correct[i], dense.correct[i]);
        } else {
            assert_eq!(tts.answers[i].len(), config.tts.samples);
        }
    }
    // 3 samples at 4 and 8 frames from a model that reads 4 frames poorly:
    // some questions reach the last round.
    assert!(at_last > 0, "{tts:?}");
    let samples = tts.avg_samples * test.len() as f64;
    let expected: usize = (0..test.len())
        .map(|i| match tts.frames[i] {
            4 => 3,
            8 => 6,
            _ => 7,
        })
        .sum();
    assert_eq!(samples.round() as usize, expected, "{tts:?}");
}

/// Patches go to images or videos by the placeholder run they fill, in
/// order; prompts without video placeholders stack exactly as before.
/// Qwen2.5-VL's `second_per_grid_ts` follows the videos in stacking order;
/// a video without a value gets HF's default of 1 s, and batches where no
/// prompt gives one keep the model default (`None`).
#[test]
fn seconds_per_grid_follow_the_videos() {
    use recipes::policy::{second_per_grid_ts, PromptVision};
    let (image, video) = (889u32, 890u32);
    let clip = |seconds: Vec<f32>| PromptVision {
        pixel_values: vec![0.0; 8],
        patch_dim: 1,
        grid_thw: vec![[2, 2, 2]],
        second_per_grid_t: seconds,
    };
    let picture = PromptVision {
        pixel_values: vec![0.0; 4],
        patch_dim: 1,
        grid_thw: vec![[1, 2, 2]],
        second_per_grid_t: Vec::new(),
    };
    let video_ids = [886, video, video, 887];
    let image_ids = [886, image, 887];
    let (sparse, dense, unknown) = (clip(vec![2.0]), clip(vec![0.5]), clip(Vec::new()));
    let rows: [(&[u32], &PromptVision); 4] = [
        (&video_ids, &sparse),
        (&image_ids, &picture),
        (&video_ids, &unknown),
        (&video_ids, &dense),
    ];
    assert_eq!(
        second_per_grid_ts(&rows, image, video),
        Some(vec![2.0, 1.0, 0.5])
    );
    assert_eq!(
        second_per_grid_ts(
            &[(&video_ids, &unknown), (&image_ids, &picture)],
            image,
            video
        ),
        None
    );
}

#[test]
fn vision_patches_are_routed_by_placeholder_kind() {
    use recipes::policy::{stack_vision, stack_vision_routed, PromptVision};
    type B = vlrl::backend::Cpu;
    let (image, video) = (889u32, 890u32);
    let dim = 3;
    // a video (grid 2x2x2 = 8 patches, 2 merged tokens) then an image
    // (grid 1x2x2 = 4 patches, 1 token); rows numbered by patch
    let mixed = PromptVision {
        pixel_values: (0..12 * dim).map(|v| v as f32).collect(),
        patch_dim: dim,
        grid_thw: vec![[2, 2, 2], [1, 2, 2]],
        second_per_grid_t: Vec::new(),
    };
    let ids = [1, 886, video, video, 887, 5, 886, image, 887, 2];
    let plain = PromptVision {
        pixel_values: vec![0.5; 4 * dim],
        patch_dim: dim,
        grid_thw: vec![[1, 2, 2]],
        second_per_grid_t: Vec::new(),
    };
    let plain_ids = [886, image, 887];
    let device = Default::default();
    let (images, videos) = stack_vision_routed::<B>(
        &[(&ids, &mixed), (&plain_ids, &plain)],
        image,
        video,
        &device,
    );
    let (images, videos) = (images.unwrap(), videos.unwrap());
    assert_eq!(videos.grid_thw, vec![[2, 2, 2]]);
    assert_eq!(images.grid_thw, vec![[1, 2, 2], [1, 2, 2]]);
    let rows = |t: &burn::tensor::Tensor<B, 2>| t.to_data().to_vec::<f32>().unwrap();
    let v = rows(&videos.pixel_values);
    assert_eq!(v.len(), 8 * dim);
    assert_eq!(v[0], 0.0);
    let i = rows(&images.pixel_values);
    assert_eq!(i[0], (8 * dim) as f32, "the image rows follow the video's");
    assert_eq!(&i[4 * dim..], &vec![0.5; 4 * dim][..]);

    // image-only rows: the same tensor as `stack_vision`, no videos
    let (only, none) = stack_vision_routed::<B>(&[(&plain_ids, &plain)], image, video, &device);
    assert!(none.is_none());
    let reference = stack_vision::<B>(&[&plain], &device).unwrap();
    assert_eq!(
        rows(&only.unwrap().pixel_values),
        rows(&reference.pixel_values)
    );
}

/// `build_video` records `temporal_patch_size / sample_fps` as the HF
/// processor does, so sparse and dense samplings of one clip get temporal
/// ids spaced by real time on Qwen2.5-VL; a bad rate is an error.
#[test]
fn video_prompts_carry_seconds_per_temporal_patch() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let prompter = recipes::vl_prompt::VlPrompter::from_dir(&root.join("assets/med-tiny")).unwrap();
    let frames = vec![image::RgbImage::new(56, 56); 4];
    let processor = prompter.processor.clone();
    let (_, sparse) = prompter
        .build_video(&frames, "What changes?", &processor, Some(1.0))
        .unwrap();
    assert_eq!(
        sparse.second_per_grid_t,
        vec![processor.temporal_patch_size as f32 / 1.0]
    );
    let (_, default) = prompter
        .build_video(&frames, "What changes?", &processor, None)
        .unwrap();
    assert!(default.second_per_grid_t.is_empty());
    let err = prompter
        .build_video(&frames, "What changes?", &processor, Some(0.0))
        .unwrap_err();
    assert!(err.to_string().contains("fps"), "{err}");
}

/// The whole recipe (rollouts, update, greedy and TTS evaluation) on a
/// Qwen2.5-VL checkpoint, whose video rotary ids read `second_per_grid_ts`:
/// the per-video seconds must line up with the stacked videos everywhere.
#[test]
fn video_rts_runs_on_qwen2_5_vl() {
    let out = tempfile::tempdir().unwrap();
    let config = out.path().join("video-rts.toml");
    std::fs::write(
        &config,
        toy_config_text()
            .replace("max_new_tokens = 24", "max_new_tokens = 6")
            .replace("eval_max_new_tokens = 56", "eval_max_new_tokens = 6"),
    )
    .unwrap();
    let run_dir = out.path().join("run");
    let args = VideoRtsArgs {
        run: RunFlags {
            config: Some(config),
            model: Some(root().join("tests/fixtures/models/qwen2_5-vl-tiny")),
            out: Some(run_dir.clone()),
            ..Default::default()
        },
        steps: Some(1),
        train_size: Some(4),
        test_size: Some(3),
        ..Default::default()
    };
    run(args).unwrap();
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    assert!(run_dir.join("eval.md").exists());
}

fn base_args(out: &std::path::Path) -> recipes::video_rts::base::VideoBaseArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: recipes::video_rts::base::VideoBaseArgs,
    }
    let mut args = Cli::parse_from(["video-base"]).args;
    args.config = root().join("recipes/configs/video-rts.toml");
    args.init_from = root().join("assets/med-tiny");
    args.out = out.to_path_buf();
    args
}

#[test]
fn event_traces_fit_the_generation_budget() {
    let config: VideoRtsConfig = toml::from_str(
        &std::fs::read_to_string(root().join("recipes/configs/video-rts.toml")).unwrap(),
    )
    .unwrap();
    let ckpt = Checkpoint::open(&root().join("assets/med-tiny")).unwrap();
    let g = recipes::video_rts::events::VideoEvents::new(config.events.clone()).unwrap();
    let budget = config
        .eval_max_new_tokens
        .min(config.grpo.sampling.max_new_tokens);
    let mut longest = 0;
    for i in 0..300 {
        let trace = g.clip(i, 1).trace();
        let n = ckpt
            .prompter
            .tokenizer
            .encode(&format!("{trace}<|im_end|>"))
            .unwrap()
            .len();
        if n > longest {
            eprintln!("{n} tokens: {trace}");
        }
        longest = longest.max(n);
    }
    assert!(
        longest <= budget,
        "the longest trace takes {longest} tokens, over the budget of {budget}"
    );
}

#[test]
fn video_base_trains_and_writes_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("video-tiny");
    let mut args = base_args(&out);
    common::short_base_run(&mut args.train, 3);
    recipes::video_rts::base::run(args).unwrap();
    common::check_base_output(
        &out,
        "video_base_report.json",
        &root().join("assets/med-tiny"),
    );
}

#[test]
fn video_base_refuses_to_overwrite_its_start_or_reuse_the_recipe_clips() {
    let mut args = base_args(&root().join("assets/med-tiny"));
    let err = recipes::video_rts::base::run(args.clone()).unwrap_err();
    assert!(format!("{err:#}").contains("--out must differ"), "{err:#}");
    let dir = tempfile::tempdir().unwrap();
    args.out = dir.path().join("x");
    // The recipe's test stream is seed + 1_000_003 = 1_000_003 (recipe seed 0);
    // the base's SFT stream is --seed + 7_000_001.
    args.seed = 1_000_003u64.wrapping_sub(7_000_001);
    let err = recipes::video_rts::base::run(args.clone()).unwrap_err();
    assert!(
        format!("{err:#}").contains("would repeat the recipe"),
        "{err:#}"
    );
    args.seed = 17;
    args.frames = vec![4, 0];
    let err = recipes::video_rts::base::run(args).unwrap_err();
    assert!(format!("{err:#}").contains("--frames"), "{err:#}");
}

/// The committed `assets/video-tiny` reads video where its starting point
/// (`assets/med-tiny`) does not: background-change questions at the dense
/// frame count and, since its third stint, at TTS's sparse first round too
/// (docs/bundled-model.md: stint 2 answered 6/30 at 8 frames, stint 3 30/30).
#[test]
fn the_bundled_video_model_reads_the_background_change() {
    let mut config = toy_config();
    config.events.tasks = vec![recipes::video_rts::events::EventTask::Change];
    config.test_size = 12;
    config.train_size = 0;
    config.eval_batch_size = 12;
    config.eval_max_new_tokens = 40;
    let (_, test) = datasets(&config).unwrap();
    let correct = |model: &str, frames: usize| {
        let ckpt = Checkpoint::open(&root().join(model)).unwrap();
        let prompter = VideoPrompter::new(&ckpt, &config);
        let model = ckpt.load().unwrap().valid();
        let r = recipes::video_rts::greedy_at(&model, &prompter, &test, &config, frames).unwrap();
        (r.accuracy * test.len() as f64).round() as usize
    };
    let video = [8, 16].map(|frames| correct("assets/video-tiny", frames));
    let med = correct("assets/med-tiny", 16);
    eprintln!("background changes answered: video-tiny {video:?}/12 at 8 and 16 frames, med-tiny {med}/12");
    assert!(
        video.iter().all(|&v| v >= 11),
        "video-tiny: {video:?}/12 background changes"
    );
    assert!(med <= 6, "med-tiny: {med}/12 background changes");
}

#[test]
fn train_frames_take_one_count_or_a_cycled_list() {
    use recipes::video_rts::FrameCounts;
    let dir = tempfile::tempdir().unwrap();
    let resolve = |toml: &str, flag: Option<Vec<usize>>| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        VideoRtsArgs {
            run: RunFlags {
                config: Some(path),
                ..Default::default()
            },
            train_frames: flag,
            ..Default::default()
        }
        .resolve()
    };
    let c = resolve("train_frames = [8, 16]\n", None).unwrap();
    assert_eq!(c.train_frames, FrameCounts::Cycle(vec![8, 16]));
    assert_eq!(
        (0..3).map(|i| c.train_frames.get(i)).collect::<Vec<_>>(),
        [8, 16, 8]
    );
    let c = resolve("train_frames = 16\n", None).unwrap();
    assert_eq!(c.train_frames, FrameCounts::One(16));
    let c = resolve("train_frames = 16\n", Some(vec![4, 8])).unwrap();
    assert_eq!(c.train_frames, FrameCounts::Cycle(vec![4, 8]));
    let c = resolve("", Some(vec![12])).unwrap();
    assert_eq!(c.train_frames, FrameCounts::One(12));
    for bad in [
        "train_frames = [8, 0]\n",
        "train_frames = []\n",
        "train_frames = 0\n",
    ] {
        let err = resolve(bad, None).unwrap_err();
        assert!(
            format!("{err:#}").contains("train_frames"),
            "{bad}: {err:#}"
        );
    }
}

/// A 20-step `video-base` run validated and checkpointed every 10 steps.
fn checkpointed_base_args(out: &std::path::Path) -> recipes::video_rts::base::VideoBaseArgs {
    let mut args = base_args(out);
    common::short_base_run(&mut args.train, 2);
    args.train.steps = 20;
    args.train.eval_every = 10;
    args.train.save_every = 10;
    args
}

/// A cut-off `video-base` run resumed from its last checkpoint ends with
/// the same weights, loss curve and validations as the run never cut off.
#[test]
fn video_base_resumes_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("video-tiny");
    let mut args = checkpointed_base_args(&out);
    recipes::video_rts::base::run(args.clone()).unwrap();
    let read = |f: &str| std::fs::read(out.join(f)).unwrap();
    let report = |bytes: Vec<u8>| {
        let mut r: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        r.as_object_mut().unwrap().remove("train_seconds");
        r
    };
    let (weights, full) = (
        read("model.safetensors"),
        report(read("video_base_report.json")),
    );
    // Cut off after step 10: its checkpoint is the newest one left.
    std::fs::remove_dir_all(out.join("resume/step-00000020")).unwrap();
    std::fs::remove_file(out.join("model.safetensors")).unwrap();
    args.train.resume = true;
    recipes::video_rts::base::run(args.clone()).unwrap();
    assert!(
        read("model.safetensors") == weights,
        "resumed weights differ"
    );
    let mut resumed = report(read("video_base_report.json"));
    assert_eq!(resumed["resumed_after"], 10);
    resumed.as_object_mut().unwrap().remove("resumed_after");
    assert_eq!(resumed, full);
    // Other settings cannot continue that run: another --freeze, another lr.
    let mut frozen = args.clone();
    frozen.train.freeze = vec!["visual".into()];
    let err = recipes::video_rts::base::run(frozen).unwrap_err();
    assert!(format!("{err:#}").contains("other settings"), "{err:#}");
    args.train.lr *= 2.0;
    let err = recipes::video_rts::base::run(args).unwrap_err();
    assert!(format!("{err:#}").contains("other settings"), "{err:#}");
}

/// A run that reached `--stop-accuracy` at a checkpoint step stays stopped
/// when resumed, instead of training on to `--steps`.
#[test]
fn video_base_resumed_after_an_accuracy_stop_stays_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("video-tiny");
    let mut args = checkpointed_base_args(&out);
    args.train.stop_accuracy = 0.0;
    recipes::video_rts::base::run(args.clone()).unwrap();
    let weights = std::fs::read(out.join("model.safetensors")).unwrap();
    args.train.resume = true;
    recipes::video_rts::base::run(args).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("video_base_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["steps"], 10);
    assert_eq!(report["resumed_after"], 10);
    assert!(
        report["stop_reason"]
            .as_str()
            .unwrap()
            .starts_with("stop_accuracy"),
        "{report}"
    );
    assert!(std::fs::read(out.join("model.safetensors")).unwrap() == weights);
}

#[test]
fn paired_difference_counts_discordant_questions() {
    use recipes::video_rts::{paired_difference, StrategyResult};
    let result = |correct: &[bool]| StrategyResult {
        correct: correct.to_vec(),
        ..Default::default()
    };
    // a right on 3 questions b missed, b right on 1 a missed, 4 ties.
    let a = result(&[true, true, true, false, true, false, true, false]);
    let b = result(&[false, false, false, true, true, false, true, false]);
    let d = paired_difference(&a, &b).unwrap();
    assert_eq!((d.only_a, d.only_b), (3, 1));
    assert!((d.points - 25.0).abs() < 1e-9, "{d:?}");
    // Differences 1,1,1,-1,0,0,0,0: mean 0.25, sample variance 0.5, SE = sqrt(0.5 / 8).
    assert!(
        (d.standard_error - 100.0 * (0.5f64 / 8.0).sqrt()).abs() < 1e-9,
        "{d:?}"
    );
    assert_eq!(paired_difference(&a, &result(&[true])), None);
    assert_eq!(paired_difference(&result(&[]), &result(&[])), None);
}

#[test]
fn strategy_results_written_before_per_question_correctness_still_load() {
    let mut old = serde_json::to_value(recipes::video_rts::StrategyResult {
        n: 3,
        accuracy: 2.0 / 3.0,
        correct: vec![true, false, true],
        ..Default::default()
    })
    .unwrap();
    old.as_object_mut().unwrap().remove("correct");
    let r: recipes::video_rts::StrategyResult = serde_json::from_value(old).unwrap();
    assert_eq!((r.n, r.correct.len()), (3, 0));
}
