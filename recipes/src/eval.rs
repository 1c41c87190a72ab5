//! Greedy evaluation of a VLM policy on multiple-choice prompts, and the
//! accuracy tables of the papers (per modality, per question type; base vs
//! RL side by side) as Markdown and JSON.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vlrl::grpo::config::SamplingConfig;
use vlrl::grpo::policy::Prompt;
use vlrl::qwen::{MultimodalBatch, Qwen2VL, QwenTokenizer, SamplingParams};
use vlrl::rewards::{GroundTruth, Registry, RewardContext};

use crate::policy::VisionExtra;

/// Ground truth and grouping keys of one evaluation prompt (stored as JSON in
/// `Prompt::target`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChoiceTarget {
    pub answer: String,
    pub options: Vec<String>,
    /// Grouping keys for the tables, e.g. `{"modality": "CT", "task": "DD"}`.
    pub groups: BTreeMap<String, String>,
}

impl ChoiceTarget {
    /// `(format, accuracy)` of a decoded completion: the `format` and
    /// `multiple_choice` verifiers, each in [0, 1]. Training rewards and
    /// evaluation both score through here.
    pub fn score(
        &self,
        registry: &Registry,
        completion: &str,
        ctx: &RewardContext,
    ) -> Result<(f64, f64), vlrl::rewards::RewardError> {
        let truth = GroundTruth::Choice {
            answer: self.answer.clone(),
            options: self.options.clone(),
        };
        let verify = |key: &str| {
            registry
                .verify(key, completion, &truth, ctx)
                .map(|r| f64::from(r.value))
        };
        Ok((verify("format")?, verify("multiple_choice")?))
    }
}

/// A ground truth stored as JSON in `Prompt::target` that scores decoded
/// completions as `(format, accuracy)`, each in [0, 1], and names the table
/// groups of its prompt. Training rewards and evaluation share it.
pub trait EvalTarget: DeserializeOwned {
    fn score_completion(
        &self,
        registry: &Registry,
        completion: &str,
        ctx: &RewardContext,
    ) -> Result<(f64, f64), vlrl::rewards::RewardError>;

    /// Grouping keys for the tables (`{"set": "text", "task": "sequence"}`).
    fn groups(&self) -> &BTreeMap<String, String>;
}

impl EvalTarget for ChoiceTarget {
    fn score_completion(
        &self,
        registry: &Registry,
        completion: &str,
        ctx: &RewardContext,
    ) -> Result<(f64, f64), vlrl::rewards::RewardError> {
        self.score(registry, completion, ctx)
    }

    fn groups(&self) -> &BTreeMap<String, String> {
        &self.groups
    }
}

/// An answer checked by the verifier the data row names (`numeric`, `math`,
/// `exact`, `multiple_choice`, …), plus the `format` verifier: rows of mixed
/// kinds (visual-math has numeric and multiple-choice questions) in one set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifiedTarget {
    pub answer: String,
    /// Option texts (multiple choice only).
    #[serde(default)]
    pub options: Vec<String>,
    /// Registry key of the accuracy verifier.
    pub verifier: String,
    pub groups: BTreeMap<String, String>,
}

impl VerifiedTarget {
    /// The verifier's ground truth: `Choice` for `multiple_choice`, else the
    /// answer text (numeric verifiers parse it, string verifiers compare it).
    pub fn truth(&self) -> GroundTruth {
        if self.verifier == "multiple_choice" {
            GroundTruth::Choice {
                answer: self.answer.clone(),
                options: self.options.clone(),
            }
        } else {
            GroundTruth::Text(self.answer.clone())
        }
    }
}

impl EvalTarget for VerifiedTarget {
    fn score_completion(
        &self,
        registry: &Registry,
        completion: &str,
        ctx: &RewardContext,
    ) -> Result<(f64, f64), vlrl::rewards::RewardError> {
        let truth = self.truth();
        let verify = |key: &str| {
            registry
                .verify(key, completion, &truth, ctx)
                .map(|r| f64::from(r.value))
        };
        Ok((verify("format")?, verify(&self.verifier)?))
    }

    fn groups(&self) -> &BTreeMap<String, String> {
        &self.groups
    }
}

/// Accuracy of a model on an evaluation set, overall and per group value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvalResult {
    pub n: usize,
    pub accuracy: f64,
    /// Mean format reward (think/answer tags), 0-1.
    pub format: f64,
    /// `group key → group value → (correct, total)`.
    pub by_group: BTreeMap<String, BTreeMap<String, (usize, usize)>>,
    /// Every graded answer, in prompt order; written next to the tables as
    /// JSONL (`samples-<model>.jsonl`), not into the JSON report.
    #[serde(skip)]
    pub samples: Vec<EvalSample>,
}

/// One graded answer of an evaluation: what the model wrote and how it
/// scored, so a table cell can be traced back to the outputs behind it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvalSample {
    /// Index of the prompt in the evaluation set.
    pub index: usize,
    /// The prompt's grouping keys (modality, task, …).
    pub groups: BTreeMap<String, String>,
    /// The decoded completion (special tokens removed).
    pub completion: String,
    pub format: f64,
    pub accuracy: f64,
}

impl EvalResult {
    /// Writes [`EvalResult::samples`] as JSONL to `path`.
    pub fn write_samples(&self, path: &std::path::Path) -> Result<()> {
        let mut text = String::new();
        for s in &self.samples {
            text.push_str(&serde_json::to_string(s)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// How evaluation answers are drawn: greedy (the papers' tables), or
/// `samples` answers per prompt at `temperature` — the policy GRPO actually
/// optimizes, whose accuracy can move where the greedy answer does not.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Decoding {
    /// 0 = greedy.
    pub temperature: f32,
    /// Nucleus threshold (1.0 = off).
    pub top_p: f32,
    /// Answers per prompt (1 for greedy).
    pub samples: usize,
    /// Seed of the first batch (batch `i` uses `seed + i`).
    pub seed: u64,
}

impl Decoding {
    pub const GREEDY: Decoding = Decoding {
        temperature: 0.0,
        top_p: 1.0,
        samples: 1,
        seed: 0,
    };

    /// `samples` answers per prompt at `temperature` / `top_p`.
    pub fn sampled(temperature: f32, top_p: f32, samples: usize, seed: u64) -> Self {
        Self {
            temperature,
            top_p,
            samples: samples.max(1),
            seed,
        }
    }

    /// `samples` answers per prompt drawn as the rollouts draw them (their
    /// temperature and top-p); `None` for 0 samples (greedy only). Recipes
    /// pass one seed for every model they compare, so the comparison is
    /// paired.
    pub fn like_rollouts(sampling: &SamplingConfig, samples: usize, seed: u64) -> Option<Self> {
        (samples > 0).then(|| {
            Self::sampled(
                sampling.temperature as f32,
                sampling.top_p as f32,
                samples,
                seed,
            )
        })
    }
}

/// Runs greedy generation on `prompts` in batches and scores the answers with
/// the `multiple_choice` and `format` verifiers.
pub fn evaluate<B: Backend>(
    model: &Qwen2VL<B>,
    tokenizer: &QwenTokenizer,
    prompts: &[Prompt<VisionExtra>],
    stop_tokens: &[u32],
    pad_id: u32,
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<EvalResult> {
    evaluate_targets::<B, ChoiceTarget>(
        model,
        tokenizer,
        prompts,
        stop_tokens,
        pad_id,
        max_new_tokens,
        batch_size,
        Decoding::GREEDY,
    )
}

/// [`evaluate`] for any [`EvalTarget`] stored in the prompts' `target`, with
/// answers drawn per `decoding`. With several samples per prompt, accuracy,
/// format and every table cell are means over all answers.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_targets<B: Backend, T: EvalTarget>(
    model: &Qwen2VL<B>,
    tokenizer: &QwenTokenizer,
    prompts: &[Prompt<VisionExtra>],
    stop_tokens: &[u32],
    pad_id: u32,
    max_new_tokens: usize,
    batch_size: usize,
    decoding: Decoding,
) -> Result<EvalResult> {
    let registry = Registry::with_defaults();
    let ctx = RewardContext::at(0, 1);
    let device = model.language_model.embed_tokens.weight.device();
    let t = model.tokens();
    let mut params = SamplingParams {
        max_new_tokens,
        stop_tokens: stop_tokens.to_vec(),
        suppress_tokens: vec![t.image_token_id, t.video_token_id],
        temperature: decoding.temperature,
        top_p: (decoding.top_p < 1.0).then_some(decoding.top_p),
        ..Default::default()
    };
    // Each prompt `samples` times in a row: (prompt index, prompt).
    let k = decoding.samples.max(1);
    let expanded: Vec<(usize, &Prompt<VisionExtra>)> = prompts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| std::iter::repeat_n((i, p), k))
        .collect();
    let mut result = EvalResult::default();
    let (mut correct, mut format_sum) = (0usize, 0f64);
    for (batch_index, entries) in expanded.chunks(batch_size.max(1)).enumerate() {
        params.seed = decoding.seed.wrapping_add(batch_index as u64);
        let chunk: Vec<&Prompt<VisionExtra>> = entries.iter().map(|(_, p)| *p).collect();
        let (input_ids, attention_mask) = vlrl::qwen::generate::left_pad(
            &chunk.iter().map(|p| p.ids.clone()).collect::<Vec<_>>(),
            pad_id,
        );
        // Patches go to the image or video tower by the placeholder they
        // fill, so video prompts evaluate like image prompts.
        let rows: Vec<(&[u32], &crate::policy::PromptVision)> = chunk
            .iter()
            .map(|p| (p.ids.as_slice(), p.extra.as_ref()))
            .collect();
        let (images, videos) = crate::policy::stack_vision_routed::<B>(
            &rows,
            t.image_token_id,
            t.video_token_id,
            &device,
        );
        let batch = MultimodalBatch {
            input_ids,
            attention_mask,
            images,
            videos,
            second_per_grid_ts: crate::policy::second_per_grid_ts(
                &rows,
                t.image_token_id,
                t.video_token_id,
            ),
        };
        let out = model.generate(&batch, pad_id, &params)?;
        for (&(index, prompt), tokens) in entries.iter().zip(out.tokens) {
            let text = tokenizer.decode(&tokens, true)?;
            let target: T = serde_json::from_str(&prompt.target)?;
            let (format, accuracy) = target.score_completion(&registry, &text, &ctx)?;
            let ok = accuracy >= 0.999;
            format_sum += format;
            correct += usize::from(ok);
            result.samples.push(EvalSample {
                index,
                groups: target.groups().clone(),
                completion: text,
                format,
                accuracy,
            });
            for (key, value) in target.groups() {
                let cell = result
                    .by_group
                    .entry(key.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default();
                cell.0 += usize::from(ok);
                cell.1 += 1;
            }
        }
    }
    result.n = prompts.len();
    let answers = expanded.len().max(1) as f64;
    result.accuracy = correct as f64 / answers;
    result.format = format_sum / answers;
    Ok(result)
}

/// A Markdown table: one column per value of `group`, rows = the named runs.
pub fn markdown_table(group: &str, runs: &[(&str, &EvalResult)]) -> String {
    let mut values: Vec<String> = runs
        .iter()
        .flat_map(|(_, r)| {
            r.by_group
                .get(group)
                .into_iter()
                .flat_map(|m| m.keys().cloned())
        })
        .collect();
    values.sort();
    values.dedup();
    let mut s = format!("| model | {} | overall |\n|---|", values.join(" | "));
    s.push_str(&"---|".repeat(values.len() + 1));
    s.push('\n');
    for (name, r) in runs {
        s.push_str(&format!("| {name} |"));
        for v in &values {
            match r.by_group.get(group).and_then(|m| m.get(v)) {
                Some(&(c, n)) if n > 0 => {
                    s.push_str(&format!(" {:.1} |", 100.0 * c as f64 / n as f64))
                }
                _ => s.push_str(" – |"),
            }
        }
        s.push_str(&format!(" {:.1} |\n", 100.0 * r.accuracy));
    }
    s
}
