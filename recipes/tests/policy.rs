//! The VLM policy scores completions exactly as it sampled them: the
//! log-probs recomputed by `token_logprobs` (left-padded prompts with images,
//! right-padded completions) equal the sampling log-probs — the invariant
//! GRPO's importance ratio rests on (ratio = 1 on the first update).

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Tensor;
use recipes::policy::{PromptVision, VlmPolicy};
use vlrl::backend::CpuTrain;
use vlrl::grpo::config::SamplingConfig;
use vlrl::grpo::policy::{Policy, Prompt, SequenceBatch};
use vlrl::grpo::rng::TrainRng;
use vlrl::qwen::Qwen2VL;

type B = CpuTrain;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn reference(key: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join("reference/preprocess/tensors.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(key)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn recomputed_logprobs_equal_sampling_logprobs() {
    let dir = fixtures().join("models/qwen2-vl-tiny");
    let model = Qwen2VL::<B>::from_dir(&dir, &Default::default()).unwrap();
    let policy = VlmPolicy::new(model, vec![502, 500], 500);
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("reference/qwen2-vl-tiny/cases.json")).unwrap(),
    )
    .unwrap();
    // one image (84x112 → 12 tokens) and two images (longer prompt).
    let prompt = |i: usize, images: &[(&str, [usize; 3])]| {
        let case = &cases["cases"][i];
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"][0].clone()).unwrap();
        let mut pixel_values = Vec::new();
        for (name, _) in images {
            pixel_values.extend(reference(&format!("{name}.pixel_values")));
        }
        Prompt {
            ids,
            extra: Arc::new(PromptVision {
                pixel_values,
                patch_dim: 1176,
                grid_thw: images.iter().map(|(_, g)| *g).collect(),
                second_per_grid_t: Vec::new(),
            }),
            source: "test".into(),
            target: String::new(),
        }
    };
    let prompts = vec![
        prompt(0, &[("rect_84x112", [1, 6, 8])]),
        prompt(1, &[("square_56x56", [1, 4, 4]), ("odd_33x57", [1, 4, 6])]),
    ];
    let sampling = SamplingConfig {
        max_new_tokens: 7,
        temperature: 0.9,
        top_p: 1.0,
    };
    let group = 3;
    let mut rng = TrainRng::seed_from_u64(5);
    let completions = policy.sample(&prompts, group, &sampling, &mut rng).unwrap();
    assert_eq!(completions.len(), 2);

    // Assemble the TRL layout: left-padded prompts, right-padded completions.
    let rows: Vec<(&Prompt<_>, &vlrl::grpo::policy::Completion)> = prompts
        .iter()
        .zip(&completions)
        .flat_map(|(p, cs)| cs.iter().map(move |c| (p, c)))
        .collect();
    let c = rows.iter().map(|(_, c)| c.ids.len()).max().unwrap();
    let device = Default::default();
    let batch = SequenceBatch::<B, _>::from_rows(
        rows.iter()
            .map(|(p, c)| (p.ids.as_slice(), c.ids.as_slice(), p.extra.clone())),
        &device,
    );
    let no_grad: Vec<f32> = policy
        .token_logprobs_no_grad(&batch, &sampling)
        .unwrap()
        .into_data()
        .into_vec()
        .unwrap();
    let out = policy.token_logprobs(&batch, &sampling, true).unwrap();
    let logp: Vec<f32> = out.logp.into_data().into_vec().unwrap();
    let entropy: Vec<f32> = out.entropy.unwrap().into_data().into_vec().unwrap();
    let mut max_err = 0f32;
    for (i, (_, co)) in rows.iter().enumerate() {
        for (j, &want) in co.logprobs.iter().enumerate() {
            max_err = max_err.max((logp[i * c + j] - want).abs());
            assert!(entropy[i * c + j] >= -1e-5);
        }
    }
    for (a, b) in logp.iter().zip(&no_grad) {
        assert!((a - b).abs() < 1e-5, "no-grad pass differs: {a} vs {b}");
    }
    eprintln!("max |Δlogp| sampled vs recomputed = {max_err:e}");
    assert!(max_err < 1e-4, "{max_err}");

    // One prompt pass per group (the default) vs one full pass per row:
    // equal log-probs, and equal gradients in the decoder and in the vision
    // tower (which the shared pass reaches once per prompt, through the
    // KV cache that every completion of the group reads).
    let full = VlmPolicy {
        share_prompts: false,
        ..policy.clone()
    };
    let grads_of = |p: &VlmPolicy<B>| {
        let out = p.token_logprobs(&batch, &sampling, false).unwrap();
        let loss = (out.logp.clone() * batch.completion_mask.clone()).sum();
        let grads = loss.backward();
        let visual = match &p.model.visual {
            vlrl::qwen::VisionTower::Qwen2(t) => t.patch_embed.grad(&grads).unwrap(),
            vlrl::qwen::VisionTower::Qwen25(_) => unreachable!("a Qwen2-VL fixture"),
        };
        let embed = p
            .model
            .language_model
            .embed_tokens
            .weight
            .grad(&grads)
            .unwrap();
        let vec =
            |t: Tensor<vlrl::backend::Cpu, 2>| -> Vec<f32> { t.into_data().into_vec().unwrap() };
        (
            out.logp.into_data().into_vec::<f32>().unwrap(),
            vec(embed),
            vec(visual),
        )
    };
    let (shared_logp, shared_embed, shared_visual) = grads_of(&policy);
    let (full_logp, full_embed, full_visual) = grads_of(&full);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let masked: Vec<usize> = batch
        .completion_mask
        .to_data()
        .iter::<f32>()
        .enumerate()
        .filter(|(_, m)| *m > 0.5)
        .map(|(i, _)| i)
        .collect();
    let logp_err = masked
        .iter()
        .map(|&i| (shared_logp[i] - full_logp[i]).abs())
        .fold(0f32, f32::max);
    let scale = |g: &[f32]| g.iter().fold(0f32, |m, x| m.max(x.abs()));
    eprintln!(
        "shared vs full pass: |Δlogp| {logp_err:e}, |Δgrad| embed {:e} (of {:e}), vision {:e} (of {:e})",
        max_diff(&shared_embed, &full_embed),
        scale(&full_embed),
        max_diff(&shared_visual, &full_visual),
        scale(&full_visual)
    );
    assert!(logp_err < 1e-5, "{logp_err}");
    assert!(
        scale(&full_visual) > 0.0,
        "the vision tower got no gradient"
    );
    assert!(max_diff(&shared_embed, &full_embed) <= 1e-5 * scale(&full_embed).max(1.0));
    assert!(max_diff(&shared_visual, &full_visual) <= 1e-5 * scale(&full_visual).max(1.0));
    // Different prompts/lengths really were exercised.
    assert!(
        rows.iter().any(|(_, c)| c.ids.len() != rows[0].1.ids.len())
            || batch.prompt_ids.dims()[1] != prompts[0].ids.len()
    );
}
