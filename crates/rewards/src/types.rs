//! The values every verifier exchanges.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use vlrl_grounding::{BBox, ImageFrame, LabeledBox};

/// A scalar reward in `[0, 1]` and its named components.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reward {
    pub value: f32,
    pub parts: Vec<(Cow<'static, str>, f32)>,
}

/// Maps NaN to 0 and clamps into `[0, 1]`, so no verifier can leak a value
/// outside the contract whatever its arithmetic did.
pub fn sanitize(v: f64) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0) as f32
    }
}

impl Reward {
    pub fn new(value: f64) -> Self {
        Self {
            value: sanitize(value),
            parts: Vec::new(),
        }
    }

    pub fn zero() -> Self {
        Self::new(0.0)
    }

    /// A reward whose only part is itself under `name`.
    pub fn named(name: &'static str, value: f64) -> Self {
        let v = sanitize(value);
        Self {
            value: v,
            parts: vec![(Cow::Borrowed(name), v)],
        }
    }

    /// Adds a component (not clamped: components may be raw diagnostics;
    /// non-finite values are stored as 0).
    pub fn with_part(mut self, name: impl Into<Cow<'static, str>>, value: f64) -> Self {
        // Finite in f32 too: an f64 like 1e300 would become inf.
        let v = value as f32;
        let v = if v.is_finite() { v } else { 0.0 };
        self.parts.push((name.into(), v));
        self
    }

    pub fn part(&self, name: &str) -> Option<f32> {
        self.parts.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// What the dataset row says is right. Serialized externally tagged:
/// `{"text": "cat"}`, `{"choice": {"answer": "B", "options": [...]}}`,
/// `{"number": 3.5}`, `{"boxes": [{"bbox": {...}, "label": "dog"}]}`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundTruth {
    /// One reference string (exact/normalized match, math, OCR).
    Text(String),
    /// Several acceptable strings (any may match; OCR/ANLS takes the max).
    Texts(Vec<String>),
    /// A multiple-choice answer letter, with the option texts in order
    /// (option `i` has letter `A + i`).
    Choice {
        answer: String,
        #[serde(default)]
        options: Vec<String>,
    },
    Number(f64),
    Count(u64),
    /// One box (grounding); its coordinate space is the verifier's `truth_space`.
    Box(BBox),
    /// Labeled boxes (detection).
    Boxes(Vec<LabeledBox>),
}

impl GroundTruth {
    /// Reference strings, for verifiers that compare text.
    pub fn texts(&self) -> Vec<Cow<'_, str>> {
        match self {
            GroundTruth::Text(s) => vec![Cow::Borrowed(s.as_str())],
            GroundTruth::Texts(v) => v.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
            GroundTruth::Choice { answer, .. } => vec![Cow::Borrowed(answer.as_str())],
            GroundTruth::Number(n) => vec![Cow::Owned(n.to_string())],
            GroundTruth::Count(n) => vec![Cow::Owned(n.to_string())],
            GroundTruth::Box(_) | GroundTruth::Boxes(_) => Vec::new(),
        }
    }

    /// Short name of the variant, for error parts and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            GroundTruth::Text(_) => "text",
            GroundTruth::Texts(_) => "texts",
            GroundTruth::Choice { .. } => "choice",
            GroundTruth::Number(_) => "number",
            GroundTruth::Count(_) => "count",
            GroundTruth::Box(_) => "box",
            GroundTruth::Boxes(_) => "boxes",
        }
    }
}

/// Per-call context: training progress for schedules (Dynamic IoU), and the
/// image geometry for box verifiers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RewardContext {
    pub step: u64,
    pub total_steps: u64,
    /// Original and resized size of the (first) image.
    pub frame: Option<ImageFrame>,
}

impl RewardContext {
    pub fn at(step: u64, total_steps: u64) -> Self {
        Self {
            step,
            total_steps,
            frame: None,
        }
    }

    pub fn with_frame(mut self, frame: ImageFrame) -> Self {
        self.frame = Some(frame);
        self
    }

    /// `step / total_steps` (V-Triune's `step_ratio`); 0 when the total is unknown.
    pub fn progress(&self) -> f64 {
        if self.total_steps == 0 {
            0.0
        } else {
            self.step as f64 / self.total_steps as f64
        }
    }
}

/// A reward for a ground truth the verifier cannot use (a dataset error, not
/// a model error): 0, flagged in `parts` so metrics can surface it.
pub fn wrong_truth(expected: &'static str) -> Reward {
    Reward::zero().with_part(Cow::Owned(format!("wrong_ground_truth:{expected}")), 1.0)
}
