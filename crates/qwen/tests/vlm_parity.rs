//! Parity of Qwen2-VL / Qwen2.5-VL composition with transformers: vision
//! features (our tower vs HF), logits (≤ 1e-4) with one and two images and
//! with a video, and greedy generation token for token.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use serde_json::Value;
use vlrl_qwen::generate::SamplingParams;
use vlrl_qwen::{MultimodalBatch, Qwen2VL, VisionInput};

const MODELS: [&str; 2] = ["qwen2-vl-tiny", "qwen2_5-vl-tiny"];

fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(values, [shape[0], shape[1]]),
        &Default::default(),
    )
}

fn stem(file: &Value) -> String {
    let f = file.as_str().unwrap();
    f.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".png")
        .to_string()
}

fn grids(v: &Value) -> Vec<[usize; 3]> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The batch of one fixture case, pixels from `reference/preprocess`.
fn batch(case: &Value) -> MultimodalBatch<B> {
    let images = case["image_files"].as_array().unwrap();
    let images = (!images.is_empty()).then(|| {
        let mut values = Vec::new();
        let mut rows = 0;
        for f in images {
            let (v, shape) = reference_tensor("preprocess", &format!("{}.pixel_values", stem(f)));
            values.extend(v);
            rows += shape[0];
        }
        VisionInput {
            pixel_values: tensor(values, &[rows, 1176]),
            grid_thw: grids(&case["image_grid_thw"]),
        }
    });
    let videos = (!case["video_files"].as_array().unwrap().is_empty()).then(|| {
        let (v, shape) = reference_tensor("preprocess", "video.pixel_values_videos");
        VisionInput {
            pixel_values: tensor(v, &shape),
            grid_thw: grids(&case["video_grid_thw"]),
        }
    });
    MultimodalBatch {
        input_ids: ids(&case["input_ids"]),
        attention_mask: mask(&case["attention_mask"]),
        images,
        videos,
        second_per_grid_ts: serde_json::from_value(case["second_per_grid_ts"].clone()).ok(),
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Compares logits with the reference (`logits` full, or `last_logits`).
fn check_logits(model: &str, case: &Value, logits: Tensor<B, 3>, what: &str) {
    let name = case["name"].as_str().unwrap();
    let key = case["logits_key"].as_str().unwrap();
    let (want, _) = reference_tensor(model, &format!("{name}.{key}"));
    let [b, s, v] = logits.dims();
    let got: Vec<f32> = if key == "last_logits" {
        logits
            .narrow(1, s - 1, 1)
            .reshape([b * v])
            .into_data()
            .into_vec()
            .unwrap()
    } else {
        logits.into_data().into_vec().unwrap()
    };
    let err = max_abs(&got, &want);
    eprintln!("{model}/{name} ({what}): max |Δlogits| = {err:e}");
    let tol = common::tolerance(1e-4, &want);
    assert!(err <= tol, "{model}/{name} ({what}): {err} > {tol}");
}

#[test]
fn composition_with_reference_features_matches_logits() {
    for model_name in MODELS {
        let model = Qwen2VL::<B>::from_dir(model_dir(model_name), &Default::default()).unwrap();
        for case in cases(model_name)["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let feature = |kind: &str| {
                let has = !case[format!("{kind}_files")].as_array().unwrap().is_empty();
                has.then(|| {
                    let (v, shape) = reference_tensor(model_name, &format!("{name}.{kind}_embeds"));
                    tensor(v, &shape)
                })
            };
            let prefill = model
                .prefill_with_features(&batch(case), feature("image"), feature("video"))
                .unwrap();
            check_logits(
                model_name,
                case,
                model.forward_prefill(prefill),
                "HF features",
            );
        }
    }
}

#[test]
fn full_model_matches_features_logits_and_generation() {
    for model_name in MODELS {
        let model = Qwen2VL::<B>::from_dir(model_dir(model_name), &Default::default()).unwrap();
        let fixture = cases(model_name);
        let pad = fixture["pad_token_id"].as_u64().unwrap() as u32;
        let stop: Vec<u32> = serde_json::from_value(fixture["eos_token_id"].clone()).unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let b = batch(case);
            for (input, kind) in [(&b.images, "image"), (&b.videos, "video")] {
                if let Some(input) = input {
                    let got = model
                        .visual
                        .encode(input.pixel_values.clone(), &input.grid_thw)
                        .unwrap();
                    let (want, _) = reference_tensor(model_name, &format!("{name}.{kind}_embeds"));
                    let err = max_abs(&got.into_data().into_vec::<f32>().unwrap(), &want);
                    eprintln!("{model_name}/{name}: max |Δ{kind} features| = {err:e}");
                    let tol = common::tolerance(1e-4, &want);
                    assert!(
                        err <= tol,
                        "{model_name}/{name} {kind} features: {err} > {tol}"
                    );
                }
            }
            check_logits(model_name, case, model.forward(&b).unwrap(), "our tower");
            let params = SamplingParams {
                max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
                stop_tokens: stop.clone(),
                ..Default::default()
            };
            let out = model.generate(&b, pad, &params).unwrap();
            for (row, want) in ids(&case["generated_ids_cache"]).iter().enumerate() {
                let got = &out.tokens[row];
                assert_eq!(
                    &want[..got.len()],
                    got.as_slice(),
                    "{model_name}/{name} row {row}"
                );
                assert!(want[got.len()..].iter().all(|&t| t == pad));
            }
        }
    }
}

#[test]
fn placeholder_feature_mismatch_is_an_error() {
    let model = Qwen2VL::<B>::from_dir(model_dir("qwen2-vl-tiny"), &Default::default()).unwrap();
    let case = &cases("qwen2-vl-tiny")["cases"][0];
    let mut b = batch(case);
    // One placeholder too many.
    let image = model.tokens().image_token_id;
    b.input_ids[0].push(image);
    b.attention_mask[0].push(1);
    let err = model.forward(&b).unwrap_err().to_string();
    assert!(
        err.contains("do not match") || err.contains("rope index"),
        "{err}"
    );
    // Images given but the prompt has no placeholder.
    let mut b = batch(case);
    b.input_ids[0].retain(|&t| t != image);
    b.attention_mask[0].truncate(b.input_ids[0].len());
    assert!(model.forward(&b).is_err());
}

/// Row `r` of a batch as a batch of its own, repeated `times`: its ids and
/// mask, and the slices of the stacked pixels its placeholders take (pixel
/// rows and grids are stacked in placeholder order; a grid of `t·h·w`
/// patches fills `t·h·w / 4` placeholders at merge size 2).
fn repeat_row(
    b: &MultimodalBatch<B>,
    r: usize,
    times: usize,
    tokens: [u32; 2],
) -> MultimodalBatch<B> {
    let pick = |input: &Option<VisionInput<B>>, token: u32| -> Option<VisionInput<B>> {
        let input = input.as_ref()?;
        let (mut grid, mut patch) = (0, 0);
        let mut mine = None;
        for (row, ids) in b.input_ids.iter().enumerate() {
            let wanted = ids.iter().filter(|&&t| t == token).count();
            let (first_grid, first_patch) = (grid, patch);
            let mut filled = 0;
            while filled < wanted {
                let [t, h, w] = input.grid_thw[grid];
                filled += t * h * w / 4;
                patch += t * h * w;
                grid += 1;
            }
            if row == r && wanted > 0 {
                mine = Some((first_grid..grid, first_patch..patch));
            }
        }
        let (grids, patches) = mine?;
        let pixels = input
            .pixel_values
            .clone()
            .narrow(0, patches.start, patches.len());
        Some(VisionInput {
            pixel_values: Tensor::cat(vec![pixels; times], 0),
            grid_thw: input.grid_thw[grids].repeat(times),
        })
    };
    MultimodalBatch {
        input_ids: vec![b.input_ids[r].clone(); times],
        attention_mask: vec![b.attention_mask[r].clone(); times],
        images: pick(&b.images, tokens[0]),
        videos: pick(&b.videos, tokens[1]),
        second_per_grid_ts: b
            .second_per_grid_ts
            .as_ref()
            .map(|s| s.iter().flat_map(|&x| vec![x; times]).collect()),
    }
}

/// Scoring completions against shared prompts (one prompt pass, the KV
/// cache reused by every completion) gives the logits of the full forward
/// over each `prompt + completion` row, for images, videos, left-padded
/// prompts and right-padded completions of different lengths.
#[test]
fn shared_prompt_scoring_matches_the_full_forward() {
    for model_name in MODELS {
        let model = Qwen2VL::<B>::from_dir(model_dir(model_name), &Default::default()).unwrap();
        let t = model.tokens().clone();
        let pad = cases(model_name)["pad_token_id"].as_u64().unwrap() as u32;
        for case in cases(model_name)["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let prompts = batch(case);
            let unique = prompts.input_ids.len();
            // Three completions per prompt, interleaved across prompts,
            // with 5, 3 and 1 real tokens (right-padded to 5).
            let c = 5;
            let mut prompt_of_row = Vec::new();
            let (mut completions, mut masks) = (Vec::new(), Vec::new());
            for g in 0..3 {
                for u in 0..unique {
                    let real = 5 - 2 * g;
                    let ids: Vec<u32> = (0..c)
                        .map(|i| {
                            if i < real {
                                20 + (37 * (u + 1) * (g + 2) * (i + 3)) as u32 % 400
                            } else {
                                pad
                            }
                        })
                        .collect();
                    prompt_of_row.push(u);
                    masks.push((0..c).map(|i| u8::from(i < real)).collect::<Vec<u8>>());
                    completions.push(ids);
                }
            }
            let shared = model
                .completion_logits(&prompts, &prompt_of_row, &completions, &masks)
                .unwrap();
            let [rows, cc, vocab] = shared.dims();
            assert_eq!([rows, cc], [3 * unique, c]);
            let shared = shared.into_data().into_vec::<f32>().unwrap();
            let p = prompts.input_ids[0].len();
            let (mut worst, mut tol) = (0f32, 0f32);
            for (row, &u) in prompt_of_row.iter().enumerate() {
                let mut full = repeat_row(&prompts, u, 1, [t.image_token_id, t.video_token_id]);
                full.input_ids[0].extend(&completions[row]);
                full.attention_mask[0].extend(&masks[row]);
                let logits = model.forward(&full).unwrap().narrow(1, p - 1, c);
                let want = logits.into_data().into_vec::<f32>().unwrap();
                for i in (0..c).filter(|&i| masks[row][i] == 1) {
                    let got = &shared[(row * c + i) * vocab..(row * c + i + 1) * vocab];
                    let exp = &want[i * vocab..(i + 1) * vocab];
                    worst = worst.max(max_abs(got, exp));
                    tol = tol.max(common::tolerance(1e-4, exp));
                }
            }
            eprintln!("{model_name}/{name}: max |Δlogit| shared vs full = {worst:e}");
            assert!(worst <= tol, "{model_name}/{name}: {worst} > {tol}");
        }
    }
}

#[test]
fn shared_prompt_scoring_rejects_bad_rows() {
    let model = Qwen2VL::<B>::from_dir(model_dir("qwen2-vl-tiny"), &Default::default()).unwrap();
    let prompts = batch(&cases("qwen2-vl-tiny")["cases"][0]);
    let image = model.tokens().image_token_id;
    let score = |rows: &[usize], ids: Vec<Vec<u32>>| {
        let masks: Vec<Vec<u8>> = ids.iter().map(|r| vec![1; r.len()]).collect();
        model
            .completion_logits(&prompts, rows, &ids, &masks)
            .unwrap_err()
            .to_string()
    };
    let err = score(&[1], vec![vec![5, 6]]);
    assert!(
        err.contains("prompt 1") && err.contains("1 prompts"),
        "{err}"
    );
    let err = score(&[0], vec![vec![5, image]]);
    assert!(err.contains("placeholders"), "{err}");
    let err = score(&[0, 0], vec![vec![5, 6], vec![5]]);
    assert!(err.contains("one length"), "{err}");
    let err = score(&[0], vec![vec![5, 100_000]]);
    assert!(err.contains("outside the vocabulary"), "{err}");
}

/// Batches stacked row-wise (their pixels and grids in row order).
fn concat(parts: Vec<MultimodalBatch<B>>) -> MultimodalBatch<B> {
    let join = |inputs: Vec<&Option<VisionInput<B>>>| -> Option<VisionInput<B>> {
        let inputs: Vec<&VisionInput<B>> = inputs.into_iter().flatten().collect();
        (!inputs.is_empty()).then(|| VisionInput {
            pixel_values: Tensor::cat(inputs.iter().map(|v| v.pixel_values.clone()).collect(), 0),
            grid_thw: inputs.iter().flat_map(|v| v.grid_thw.clone()).collect(),
        })
    };
    MultimodalBatch {
        input_ids: parts.iter().flat_map(|p| p.input_ids.clone()).collect(),
        attention_mask: parts
            .iter()
            .flat_map(|p| p.attention_mask.clone())
            .collect(),
        images: join(parts.iter().map(|p| &p.images).collect()),
        videos: join(parts.iter().map(|p| &p.videos).collect()),
        second_per_grid_ts: parts
            .iter()
            .map(|p| p.second_per_grid_ts.clone())
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat()),
    }
}

/// A group's samples from one prompt pass with its cache copied equal the
/// samples of the prompt repeated in the batch (same seed, temperature 0.9),
/// token for token and log-prob for log-prob, left padding included.
#[test]
fn copied_prompt_cache_samples_like_a_repeated_batch() {
    for model_name in MODELS {
        let model = Qwen2VL::<B>::from_dir(model_dir(model_name), &Default::default()).unwrap();
        let t = model.tokens().clone();
        let pad = cases(model_name)["pad_token_id"].as_u64().unwrap() as u32;
        let params = SamplingParams {
            max_new_tokens: 6,
            temperature: 0.9,
            seed: 11,
            ..Default::default()
        };
        let mut copies_differ = false;
        for case in cases(model_name)["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let prompts = batch(case);
            let copies = 3;
            let repeated = concat(
                (0..prompts.input_ids.len())
                    .map(|r| repeat_row(&prompts, r, copies, [t.image_token_id, t.video_token_id]))
                    .collect(),
            );
            let want = model.generate(&repeated, pad, &params).unwrap();
            let got = model
                .generate_copies(&prompts, copies, pad, &params)
                .unwrap();
            // On CUDA, TF32 matmuls round a batch of one prompt and of three
            // apart, so a sample may branch off; up to where it does, the
            // log-probs agree. On the CPU the samples are identical.
            let cuda = cfg!(feature = "cuda");
            let logprob_tol = if cuda { 1e-2 } else { 1e-5 };
            for (row, (g, w)) in got.tokens.iter().zip(&want.tokens).enumerate() {
                if !cuda {
                    assert_eq!(g, w, "{model_name}/{name} row {row}");
                    assert_eq!(got.finished[row], want.finished[row]);
                }
                let same = g.iter().zip(w).take_while(|(a, b)| a == b).count();
                for t in 0..same {
                    let (a, b) = (got.logprobs[row][t], want.logprobs[row][t]);
                    assert!(
                        (a - b).abs() <= logprob_tol,
                        "{model_name}/{name} row {row} token {t}: {a} vs {b}"
                    );
                }
            }
            assert_eq!(got.tokens.len(), copies * prompts.input_ids.len());
            copies_differ |= got.tokens[0] != got.tokens[1] || got.tokens[1] != got.tokens[2];
        }
        // The copies are sampled apart, not one sample repeated.
        assert!(
            copies_differ,
            "{model_name}: every group's copies were identical"
        );
    }
}
