//! Parity of the Qwen2 language model with Hugging Face transformers:
//! logits (≤ 1e-4), greedy generation with and without KV cache, chat
//! template rendering and tokenizer ids, on the fixture checkpoints.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use vlrl_qwen::generate::SamplingParams;
use vlrl_qwen::rope::text_position_ids;
use vlrl_qwen::{AttentionMask, Qwen2, QwenTokenizer};

const MODELS: [&str; 2] = ["qwen2-tiny", "qwen2-sharded-bf16"];

fn load(name: &str) -> Qwen2<B> {
    Qwen2::<B>::from_dir(model_dir(name), &Default::default()).unwrap()
}

#[test]
fn logits_match_transformers() {
    for name in MODELS {
        let model = load(name);
        let fixture = cases(name);
        let tol = fixture["tolerance_logits_abs"].as_f64().unwrap() as f32;
        for case in fixture["cases"].as_array().unwrap() {
            let Some(shape) = case.get("logits_shape") else {
                continue;
            };
            let case_name = case["name"].as_str().unwrap();
            let input = ids(&case["input_ids"]);
            let padding = mask(&case["attention_mask"]);
            let (batch, seq) = (input.len(), input[0].len());
            let flat: Vec<i64> = input.iter().flatten().map(|&t| t as i64).collect();
            let device = Default::default();
            let tokens: Tensor<B, 2, Int> =
                Tensor::from_data(TensorData::new(flat, [batch, seq]), &device);
            let padded = padding.iter().flatten().any(|&m| m == 0);
            let positions = text_position_ids::<B>(batch, seq, 0, Some(&padding), &device);
            let attn =
                AttentionMask::causal(batch, seq, 0, padded.then_some(padding.as_slice()), &device);
            let logits = model.forward(tokens, positions, &attn, None);
            let got = logits.into_data().into_vec::<f32>().unwrap();
            let (want, want_shape) = reference_tensor(name, &format!("{case_name}.logits"));
            let vocab = *want_shape.last().unwrap();
            assert_eq!(got.len(), want.len(), "{name}/{case_name}: shape {shape}");
            let mut max_err = 0f32;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let pos = i / vocab;
                if padding[pos / seq][pos % seq] == 1 {
                    max_err = max_err.max((g - w).abs());
                }
            }
            eprintln!("{name}/{case_name}: max |Δlogits| = {max_err:e}");
            let tol = common::tolerance(tol, &want);
            assert!(
                max_err <= tol,
                "{name}/{case_name}: max abs error {max_err} > {tol}"
            );
        }
    }
}

#[test]
fn greedy_generation_matches_with_and_without_cache() {
    for name in MODELS {
        let model = load(name);
        let fixture = cases(name);
        let pad = fixture["pad_token_id"].as_u64().unwrap() as u32;
        let gen_cfg =
            vlrl_qwen::GenerationConfig::from_file(model_dir(name).join("generation_config.json"))
                .unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let Some(expected) = case.get("generated_ids_cache") else {
                continue;
            };
            let expected = ids(expected);
            assert_eq!(expected, ids(&case["generated_ids_no_cache"]));
            let padding = mask(&case["attention_mask"]);
            let prompts: Vec<Vec<u32>> = ids(&case["input_ids"])
                .into_iter()
                .zip(&padding)
                .map(|(row, m)| {
                    row.into_iter()
                        .zip(m)
                        .filter(|(_, &m)| m == 1)
                        .map(|(t, _)| t)
                        .collect()
                })
                .collect();
            let params = SamplingParams {
                max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
                stop_tokens: gen_cfg.eos_token_ids(),
                ..Default::default()
            };
            for use_cache in [true, false] {
                let out = model.generate(&prompts, pad, &params, use_cache).unwrap();
                for (row, want) in expected.iter().enumerate() {
                    let got = &out.tokens[row];
                    assert_eq!(
                        &want[..got.len()],
                        got.as_slice(),
                        "{name}/{} row {row} cache={use_cache}",
                        case["name"]
                    );
                    assert!(
                        want[got.len()..].iter().all(|&t| t == pad),
                        "{name}: stopped early"
                    );
                    assert_eq!(out.logprobs[row].len(), got.len());
                    assert!(out.logprobs[row].iter().all(|l| l.is_finite() && *l <= 0.0));
                }
            }
        }
    }
}

#[test]
fn chat_template_and_tokenizer_match() {
    for name in MODELS {
        let tok = QwenTokenizer::from_dir(model_dir(name)).unwrap();
        let fixture = cases(name);
        for case in fixture["cases"].as_array().unwrap() {
            let Some(messages) = case.get("messages") else {
                continue;
            };
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let rendered = tok.apply_chat_template(messages, add).unwrap();
            assert_eq!(
                rendered,
                case["rendered"].as_str().unwrap(),
                "{name}/{}",
                case["name"]
            );
            if let Some(without) = case.get("rendered_without_generation_prompt") {
                assert_eq!(
                    tok.apply_chat_template(messages, false).unwrap(),
                    without.as_str().unwrap()
                );
            }
            assert_eq!(
                vec![tok.encode(&rendered).unwrap()],
                ids(&case["input_ids"])
            );
        }
        for case in fixture["tokenizer_cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let got = tok.encode(text).unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(got, want, "{name}: tokenizer case {}", case["name"]);
            assert_eq!(
                tok.decode(&got, false).unwrap(),
                case["decoded"].as_str().unwrap()
            );
            assert_eq!(
                tok.decode(&got, true).unwrap(),
                case["decoded_skip_special"].as_str().unwrap()
            );
        }
    }
}
