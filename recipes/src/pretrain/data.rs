//! Supervised examples for the bundled model: synthetic tasks in Med-R1's
//! prompt format (R1-V's question template), answered with a short
//! `<think>…</think><answer>…</answer>` trace, tokenized through the
//! checkpoint's own chat template.

use anyhow::{anyhow, Result};
use serde_json::json;
use vlrl::data::synth::{MedSynth, TextLogic, VisualMath, VisualMathConfig};
use vlrl::data::{QuestionType, Row, Sample, TaskGenerator};
use vlrl::qwen::QwenTokenizer;

/// R1-V / Med-R1's question template (`open_r1/grpo.py`), multiple choice.
pub const OPTION_TEMPLATE: &str =
    "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags.";
/// The same for numeric answers (R1-V's original wording).
pub const NUMBER_TEMPLATE: &str =
    "Output the thinking process in <think> </think> and final answer (number) in <answer> </answer> tags.";

/// The user text of a row in Med-R1's format: `{problem} {template}`.
pub fn prompt_text(row: &Row) -> String {
    let problem = row.prompt_text().unwrap_or_default();
    let template = if row.options.is_empty() {
        NUMBER_TEMPLATE
    } else {
        OPTION_TEMPLATE
    };
    format!("{problem} {template}")
}

/// The target trace: a one-line reason that names what the pixels show,
/// then the answer. With `describe`, a med-synth trace first describes the
/// whole image (modality, anatomy, and the lesion's kind, grade and place),
/// whatever the question: every example then supervises every visual fact,
/// not only the one asked about (the first bundled model, trained on the
/// short trace, never learned to see the lesions; docs/bundled-model.md).
pub fn response_text(row: &Row, describe: bool) -> String {
    let answer = row.answer.clone().unwrap_or_default();
    let think = match (row.meta_str("modality"), row.meta_str("answer_text")) {
        (Some(m), Some(a)) if describe => {
            format!(
                "{} It shows {a}, which is option {answer}.",
                describe_image(row, m)
            )
        }
        (Some(m), Some(a)) => {
            format!("This is a {m} image. It shows {a}, which is option {answer}.")
        }
        (None, Some(a)) => format!("It says {a}, which is option {answer}."),
        _ => format!("The result is {answer}."),
    };
    format!("<think>{think}</think><answer>{answer}</answer>")
}

/// `This is a {modality} image of the {anatomy} with {lesion}.`, from the
/// row's latent facts (med-synth's `meta`).
fn describe_image(row: &Row, modality: &str) -> String {
    let anatomy = row.meta_str("anatomy").unwrap_or("body");
    let lesion = match (
        row.meta_str("finding"),
        row.meta.get("grade").and_then(|g| g.as_u64()),
        row.meta_str("location"),
    ) {
        (Some(finding), Some(grade), Some(place)) => {
            format!("a grade {grade} {finding} in the {place}")
        }
        _ => "no lesion".to_string(),
    };
    format!("This is a {modality} image of the {anatomy} with {lesion}.")
}

/// The whole conversation as plain text without special tokens, for training
/// the BPE.
pub fn corpus_text(row: &Row, describe: bool) -> String {
    format!(
        "system\nYou are a helpful assistant.\nuser\n{}\nassistant\n{}\n",
        prompt_text(row),
        response_text(row, describe)
    )
}

/// Which generator a training index draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Med,
    TextLogic,
    VisualMath,
    OptionLookup,
}

/// The synthetic task mix: mostly med-synth, with a little text-logic and
/// visual-math (one in `1 / (2·side_rate)` each) so the other recipes start
/// from a model that has seen their formats.
#[derive(Debug, Clone)]
pub struct TaskMix {
    med: MedSynth,
    visual_math: VisualMath,
    /// Per mille of samples from each side task.
    side_per_mille: u64,
    /// Per mille of text-only option-lookup drills (see [`TaskMix::with_lookup`]).
    lookup_per_mille: u64,
    /// Question types whose options are shuffled whatever `med` does, and
    /// the generator that shuffles them (see [`TaskMix::with_shuffled_types`]).
    shuffled: Option<(Vec<QuestionType>, MedSynth)>,
}

impl TaskMix {
    pub fn new(image_size: u32, side_per_mille: u64) -> Result<Self> {
        Self::with_options(image_size, side_per_mille, true)
    }

    /// As [`TaskMix::new`], choosing whether med-synth shuffles its options.
    pub fn with_options(
        image_size: u32,
        side_per_mille: u64,
        shuffle_options: bool,
    ) -> Result<Self> {
        let med = MedSynth::new(vlrl::data::synth::MedSynthConfig {
            image_size,
            shuffle_options,
            ..Default::default()
        })?;
        let visual_math = VisualMath::new(VisualMathConfig {
            image_size,
            ..Default::default()
        })?;
        Ok(Self {
            med,
            visual_math,
            side_per_mille,
            lookup_per_mille: 0,
            shuffled: None,
        })
    }

    /// Adds text-only option-lookup drills: a med-synth option list and
    /// "Which option says {text}?", answered `It says {text}, which is option
    /// {X}.` They target the step the image questions need after reading
    /// the pixels (find the named option, return its letter). Tried in
    /// stint 3 of the bundled model at 30%: the small model did not learn
    /// them either (docs/bundled-model.md). The other sources keep their
    /// indices, so a run with drills continues a run without them.
    pub fn with_lookup(mut self, per_mille: u64) -> Self {
        self.lookup_per_mille = per_mille;
        self
    }

    /// Restricts med-synth to `types` (balanced over them, each cycled
    /// through the eight modalities).
    pub fn with_question_types(mut self, types: &[QuestionType]) -> Result<Self> {
        self.med = MedSynth::new(vlrl::data::synth::MedSynthConfig {
            question_types: types.to_vec(),
            ..self.med.config().clone()
        })?;
        match self.shuffled.take() {
            Some((shuffled, _)) => self.with_shuffled_types(&shuffled),
            None => Ok(self),
        }
    }

    /// Shuffles the options of questions of `types` (same image, latents
    /// and answer; only the option order and so the letter differ), while
    /// the other types keep the mix's order. With fixed order elsewhere, the
    /// model learns to name these answers but not their letters in the fixed
    /// order that evaluation and RL use, leaving the letters to RL ("v4" of
    /// stop 13 did this for modality recognition, docs/bundled-model.md).
    pub fn with_shuffled_types(mut self, types: &[QuestionType]) -> Result<Self> {
        self.shuffled = if types.is_empty() {
            None
        } else {
            let generator = MedSynth::new(vlrl::data::synth::MedSynthConfig {
                shuffle_options: true,
                ..self.med.config().clone()
            })?;
            Some((types.to_vec(), generator))
        };
        Ok(self)
    }

    /// Deterministic source of training index `i`.
    pub fn source(&self, i: u64) -> Source {
        // A fixed multiplicative hash spreads the side tasks evenly.
        let h = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 1000;
        if h < self.side_per_mille {
            Source::TextLogic
        } else if h < 2 * self.side_per_mille {
            Source::VisualMath
        } else if h < 2 * self.side_per_mille + self.lookup_per_mille {
            Source::OptionLookup
        } else {
            Source::Med
        }
    }

    /// Training sample `i` of `seed`.
    pub fn train_sample(&self, i: u64, seed: u64) -> Sample {
        match self.source(i) {
            Source::Med => match &self.shuffled {
                Some((types, generator)) if types.contains(&self.med.question_type(i)) => {
                    generator.sample(i, seed)
                }
                _ => self.med.sample(i, seed),
            },
            Source::TextLogic => TextLogic.sample(i, seed),
            Source::VisualMath => self.visual_math.sample(i, seed),
            Source::OptionLookup => self.lookup_sample(i, seed),
        }
    }

    /// An option-lookup drill (whatever the mix's share of drills).
    pub fn lookup_sample(&self, i: u64, seed: u64) -> Sample {
        option_lookup(self.med.sample(i, seed), i)
    }

    /// Held-out med-synth samples (another seed: other latents and images).
    pub fn med_sample(&self, i: u64, seed: u64) -> Sample {
        self.med.sample(i, seed)
    }
}

/// The option-lookup drill built on a med-synth row's options: the target
/// option is chosen by the index, not by the image (which is dropped).
fn option_lookup(sample: Sample, i: u64) -> Sample {
    let row = sample.row;
    let n = row.options.len().max(1);
    let pick = (i.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as usize % n;
    let text = row.options.get(pick).cloned().unwrap_or_default();
    let letter = vlrl::data::row::option_letter(pick).map(String::from);
    let mut meta = serde_json::Map::new();
    meta.insert("answer_text".into(), text.clone().into());
    let question = format!("Which option says {text}?");
    Sample {
        row: Row {
            id: format!("{}-lookup", row.id),
            source: "option-lookup".into(),
            problem: Some(vlrl::data::row::format_multiple_choice(
                &question,
                &row.options,
            )),
            answer: letter,
            options: row.options,
            meta,
            ..Row::default()
        },
        images: Vec::new(),
    }
}

/// A tokenized example.
#[derive(Debug, Clone)]
pub struct Example {
    /// Prompt ids with the image placeholder expanded.
    pub prompt: Vec<u32>,
    /// Target ids: the trace and `<|im_end|>`.
    pub response: Vec<u32>,
    pub sample: Sample,
}

/// Tokenizes samples with the checkpoint's chat template.
pub struct Encoder<'a> {
    pub tokenizer: &'a QwenTokenizer,
    pub image_pad: u32,
    pub im_end: u32,
    /// Merged vision tokens per image (4 for a 56x56 image).
    pub tokens_per_image: usize,
    /// Whether target traces describe the whole image ([`response_text`]).
    pub describe: bool,
}

impl Encoder<'_> {
    /// Prompt ids of a sample (chat template, generation prompt added).
    pub fn prompt(&self, sample: &Sample) -> Result<Vec<u32>> {
        let row = &sample.row;
        let mut content = Vec::new();
        for _ in &sample.images {
            content.push(json!({"type": "image"}));
        }
        content.push(json!({"type": "text", "text": prompt_text(row)}));
        let messages = json!([{ "role": "user", "content": content }]);
        let text = self.tokenizer.apply_chat_template(&messages, true)?;
        let ids = self.tokenizer.encode(&text)?;
        let mut out = Vec::with_capacity(ids.len() + 8);
        for id in ids {
            if id == self.image_pad {
                out.extend(std::iter::repeat_n(id, self.tokens_per_image));
            } else {
                out.push(id);
            }
        }
        let pads = out.iter().filter(|&&t| t == self.image_pad).count();
        if pads != sample.images.len() * self.tokens_per_image {
            return Err(anyhow!(
                "sample {}: {pads} image tokens for {} images",
                row.id,
                sample.images.len()
            ));
        }
        Ok(out)
    }

    pub fn example(&self, sample: Sample) -> Result<Example> {
        let prompt = self.prompt(&sample)?;
        let mut response = self
            .tokenizer
            .encode(&response_text(&sample.row, self.describe))?;
        response.push(self.im_end);
        Ok(Example {
            prompt,
            response,
            sample,
        })
    }
}

/// The answer inside `<answer>…</answer>` (trimmed), if the tags are there.
pub fn parse_answer(text: &str) -> Option<&str> {
    let start = text.find("<answer>")? + "<answer>".len();
    let end = start + text.get(start..)?.find("</answer>")?;
    text.get(start..end).map(str::trim)
}

/// Whether a completion's answer matches the row's (case-insensitive; a
/// multiple-choice answer may be `B` or `B: text`).
pub fn is_correct(completion: &str, row: &Row) -> bool {
    let (Some(got), Some(want)) = (parse_answer(completion), row.answer.as_deref()) else {
        return false;
    };
    if got.eq_ignore_ascii_case(want) {
        return true;
    }
    !row.options.is_empty()
        && got
            .split([':', '.', ')', ' '])
            .next()
            .is_some_and(|l| l.eq_ignore_ascii_case(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer("<think>x</think><answer> B </answer>"),
            Some("B")
        );
        assert_eq!(parse_answer("<answer>B"), None);
        assert_eq!(parse_answer("no tags"), None);
        let row = Row {
            answer: Some("C".into()),
            options: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            ..Row::default()
        };
        assert!(is_correct("<answer>c</answer>", &row));
        assert!(is_correct("<answer>C: c</answer>", &row));
        assert!(!is_correct("<answer>D</answer>", &row));
        assert!(!is_correct("C", &row));
    }

    #[test]
    fn a_described_trace_names_every_visual_fact() {
        let mix = TaskMix::with_options(56, 50, false).unwrap();
        let (mut with_lesion, mut without) = (0, 0);
        for i in 0..40 {
            let row = mix.med_sample(i, 1).row;
            let short = response_text(&row, false);
            let long = response_text(&row, true);
            let meta = |k: &str| row.meta_str(k).unwrap().to_string();
            assert!(long.starts_with(&format!(
                "<think>This is a {} image of the {} with ",
                meta("modality"),
                meta("anatomy")
            )));
            // Both end the same way: answer text, letter, answer tag.
            let tail = short.split(" It shows ").nth(1).unwrap();
            assert!(long.ends_with(tail), "{long} / {short}");
            if let Some(place) = row.meta_str("location") {
                let grade = row.meta["grade"].as_u64().unwrap();
                let lesion = format!("a grade {grade} {} in the {place}.", meta("finding"));
                assert!(long.contains(&lesion), "{long}");
                with_lesion += 1;
            } else {
                assert!(long.contains("with no lesion."), "{long}");
                without += 1;
            }
        }
        assert!(with_lesion > 0 && without > 0);
    }

    #[test]
    fn sft_can_leave_question_types_out() {
        let asked = [QuestionType::DiseaseDiagnosis, QuestionType::LesionGrading];
        let mix = TaskMix::with_options(56, 50, false)
            .unwrap()
            .with_question_types(&asked)
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let row = mix.train_sample(i, 2).row;
            if row.source == "med-synth" {
                seen.insert(QuestionType::of_row(&row).unwrap());
            }
        }
        assert_eq!(seen, asked.into_iter().collect());
        assert!(TaskMix::new(56, 50)
            .unwrap()
            .with_question_types(&[])
            .is_err());
    }

    #[test]
    fn shuffled_types_keep_the_image_and_answer_but_not_the_order() {
        let fixed = TaskMix::with_options(56, 0, false).unwrap();
        let mixed = fixed
            .clone()
            .with_shuffled_types(&[QuestionType::ModalityRecognition])
            .unwrap();
        let (mut reordered, mut modality) = (0, 0);
        for i in 0..400 {
            let (a, b) = (fixed.train_sample(i, 6), mixed.train_sample(i, 6));
            assert_eq!(a.images, b.images);
            assert_eq!(a.row.meta_str("answer_text"), b.row.meta_str("answer_text"));
            if QuestionType::of_row(&a.row) == Some(QuestionType::ModalityRecognition) {
                modality += 1;
                reordered += usize::from(a.row.options != b.row.options);
            } else {
                assert_eq!(a.row, b.row);
            }
        }
        assert!(
            modality > 50 && reordered > modality / 2,
            "{reordered}/{modality}"
        );
    }

    #[test]
    fn the_mix_is_mostly_med_and_deterministic() {
        let mix = TaskMix::new(56, 50).unwrap();
        let med = (0..2000).filter(|&i| mix.source(i) == Source::Med).count();
        assert!((1700..1900).contains(&med), "{med}");
        assert_eq!(mix.train_sample(17, 3), mix.train_sample(17, 3));
    }
}
