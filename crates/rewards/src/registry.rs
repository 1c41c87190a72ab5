//! Verifiers by name, weighted combinations, and their TOML configuration.
//!
//! Each dataset row names its verifier by a string key (V-Triune's
//! `reward_verifier`); a [`Registry`] maps keys to shared verifiers.
//!
//! ```toml
//! [verifiers.acc]            # a configured verifier under a new key
//! kind = "numeric"
//! rel_tol = 0.01
//!
//! [combinations.med_r1]      # a weighted sum, itself a verifier
//! terms = [
//!   { verifier = "format", weight = 0.5 },
//!   { verifier = "multiple_choice", weight = 1.0, name = "accuracy" },
//! ]
//! ```

use crate::accuracy::{
    MathVerifier, MultipleChoiceVerifier, NumericVerifier, StringMatch, StringMatchVerifier,
};
use crate::counting::{CountMode, CountingVerifier};
use crate::detection::{DetectionConfig, DetectionF1Verifier, DetectionVerifier};
use crate::format::{FormatConfig, FormatMode, FormatVerifier};
use crate::iou::{DynamicIouVerifier, IouVerifier};
use crate::ocr::{OcrMode, OcrVerifier};
use crate::types::{GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RewardError {
    #[error("unknown verifier `{key}`{context}; known: {known}")]
    UnknownVerifier {
        key: String,
        context: String,
        known: String,
    },
    #[error("combination `{name}`: {why}")]
    BadCombination { name: String, why: String },
    #[error("reward config {path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("reward config {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One configured verifier (`kind` selects the type; other fields are its options).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifierSpec {
    Format(FormatConfig),
    MultipleChoice(MultipleChoiceVerifier),
    StringMatch(StringMatchVerifier),
    Numeric(NumericVerifier),
    Math(MathVerifier),
    Iou(IouVerifier),
    DynamicIou(DynamicIouVerifier),
    Detection(DetectionConfig),
    DetectionF1(DetectionF1Verifier),
    Counting(CountingVerifier),
    Ocr(OcrVerifier),
}

impl VerifierSpec {
    pub fn build(&self) -> Arc<dyn Verifier> {
        match self {
            VerifierSpec::Format(c) => Arc::new(FormatVerifier::new(c.clone())),
            VerifierSpec::MultipleChoice(v) => Arc::new(v.clone()),
            VerifierSpec::StringMatch(v) => Arc::new(v.clone()),
            VerifierSpec::Numeric(v) => Arc::new(v.clone()),
            VerifierSpec::Math(v) => Arc::new(v.clone()),
            VerifierSpec::Iou(v) => Arc::new(v.clone()),
            VerifierSpec::DynamicIou(v) => Arc::new(v.clone()),
            VerifierSpec::Detection(c) => Arc::new(DetectionVerifier::new(c.clone())),
            VerifierSpec::DetectionF1(v) => Arc::new(v.clone()),
            VerifierSpec::Counting(v) => Arc::new(v.clone()),
            VerifierSpec::Ocr(v) => Arc::new(v.clone()),
        }
    }
}

/// One term of a combination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TermSpec {
    /// Registry key of the verifier.
    pub verifier: String,
    pub weight: f32,
    /// Part name for this term's value (default: the key). Name the terms
    /// `format` and `accuracy` to feed [`crate::SourceMetrics`].
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CombinationSpec {
    pub terms: Vec<TermSpec>,
}

/// The whole `[rewards]`-style config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardsConfig {
    pub verifiers: BTreeMap<String, VerifierSpec>,
    pub combinations: BTreeMap<String, CombinationSpec>,
}

impl RewardsConfig {
    pub fn from_toml_str(s: &str, path: &str) -> Result<Self, RewardError> {
        toml::from_str(s).map_err(|source| RewardError::Toml {
            path: path.to_string(),
            source,
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, RewardError> {
        let p = path.display().to_string();
        let s = std::fs::read_to_string(path).map_err(|source| RewardError::Io {
            path: p.clone(),
            source,
        })?;
        Self::from_toml_str(&s, &p)
    }
}

/// `Σ wᵢ·rᵢ / Σ wᵢ` over its terms (normalized, like V-Triune's reward
/// server, so the result stays in `[0, 1]`; negative weights are rejected).
/// Each term's value is kept as a part under its name.
#[derive(Debug, Clone)]
pub struct Combination {
    name: String,
    terms: Vec<(Cow<'static, str>, f32, Arc<dyn Verifier>)>,
    weight_sum: f64,
}

impl Combination {
    pub fn new(
        name: impl Into<String>,
        terms: Vec<(String, f32, Arc<dyn Verifier>)>,
    ) -> Result<Self, RewardError> {
        let name = name.into();
        let bad = |why: &str| RewardError::BadCombination {
            name: name.clone(),
            why: why.to_string(),
        };
        if terms.is_empty() {
            return Err(bad("no terms"));
        }
        if terms.iter().any(|(_, w, _)| !(w.is_finite() && *w >= 0.0)) {
            return Err(bad("weights must be finite and >= 0"));
        }
        let weight_sum: f64 = terms.iter().map(|(_, w, _)| f64::from(*w)).sum();
        if weight_sum <= 0.0 {
            return Err(bad("weights sum to 0"));
        }
        let terms = terms
            .into_iter()
            .map(|(n, w, v)| (Cow::Owned(n), w, v))
            .collect();
        Ok(Self {
            name,
            terms,
            weight_sum,
        })
    }
}

impl Verifier for Combination {
    fn name(&self) -> &str {
        &self.name
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, ctx: &RewardContext) -> Reward {
        let mut total = 0.0f64;
        let mut parts = Vec::with_capacity(self.terms.len());
        for (name, w, v) in &self.terms {
            let r = v.verify(completion, truth, ctx);
            total += f64::from(*w) * f64::from(r.value);
            parts.push((name.clone(), r.value));
        }
        let mut out = Reward::new(total / self.weight_sum);
        out.parts = parts;
        out
    }
}

/// Verifiers by string key.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    map: HashMap<String, Arc<dyn Verifier>>,
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Built-in keys with default options: `format`, `format_lenient`,
    /// `format_tag_count`, `multiple_choice`, `exact`, `normalized`,
    /// `numeric`, `math`, `iou`, `dynamic_iou`, `detection`, `detection_f1`,
    /// `counting`, `counting_relative`, `ocr`, `anls`.
    pub fn with_defaults() -> Self {
        let mut r = Self::empty();
        let fmt = |mode| {
            FormatVerifier::new(FormatConfig {
                mode,
                ..FormatConfig::default()
            })
        };
        r.insert("format", Arc::new(fmt(FormatMode::Strict)));
        r.insert("format_lenient", Arc::new(fmt(FormatMode::Lenient)));
        r.insert("format_tag_count", Arc::new(fmt(FormatMode::TagCount)));
        r.insert(
            "multiple_choice",
            Arc::new(MultipleChoiceVerifier::default()),
        );
        r.insert(
            "exact",
            Arc::new(StringMatchVerifier::new(StringMatch::Exact)),
        );
        r.insert(
            "normalized",
            Arc::new(StringMatchVerifier::new(StringMatch::Normalized)),
        );
        r.insert("numeric", Arc::new(NumericVerifier::default()));
        r.insert("math", Arc::new(MathVerifier::default()));
        r.insert("iou", Arc::new(IouVerifier::default()));
        r.insert("dynamic_iou", Arc::new(DynamicIouVerifier::default()));
        r.insert("detection", Arc::new(DetectionVerifier::default()));
        r.insert("detection_f1", Arc::new(DetectionF1Verifier::default()));
        r.insert("counting", Arc::new(CountingVerifier::default()));
        r.insert(
            "counting_relative",
            Arc::new(CountingVerifier {
                mode: CountMode::RelativeError,
                ..CountingVerifier::default()
            }),
        );
        r.insert(
            "ocr",
            Arc::new(OcrVerifier {
                mode: OcrMode::EditSimilarity,
                ..OcrVerifier::default()
            }),
        );
        r.insert("anls", Arc::new(OcrVerifier::default()));
        r
    }

    /// Defaults, then the config's verifiers (which may override built-in
    /// keys), then its combinations (which may use any of them, and earlier
    /// combinations in key order).
    pub fn from_config(cfg: &RewardsConfig) -> Result<Self, RewardError> {
        let mut r = Self::with_defaults();
        for (key, spec) in &cfg.verifiers {
            r.insert(key, spec.build());
        }
        for (name, spec) in &cfg.combinations {
            let mut terms = Vec::with_capacity(spec.terms.len());
            for t in &spec.terms {
                let v = r.get_in(&t.verifier, &format!(" (in combination `{name}`)"))?;
                terms.push((
                    t.name.clone().unwrap_or_else(|| t.verifier.clone()),
                    t.weight,
                    v,
                ));
            }
            r.insert(name, Arc::new(Combination::new(name.clone(), terms)?));
        }
        Ok(r)
    }

    pub fn from_toml_str(s: &str) -> Result<Self, RewardError> {
        Self::from_config(&RewardsConfig::from_toml_str(s, "<string>")?)
    }

    pub fn insert(&mut self, key: impl Into<String>, v: Arc<dyn Verifier>) {
        self.map.insert(key.into(), v);
    }

    pub fn get(&self, key: &str) -> Result<Arc<dyn Verifier>, RewardError> {
        self.get_in(key, "")
    }

    fn get_in(&self, key: &str, context: &str) -> Result<Arc<dyn Verifier>, RewardError> {
        self.map
            .get(key)
            .cloned()
            .ok_or_else(|| RewardError::UnknownVerifier {
                key: key.to_string(),
                context: context.to_string(),
                known: self.keys().join(", "),
            })
    }

    /// Sorted keys.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.map.keys().cloned().collect();
        k.sort();
        k
    }

    /// Looks up `key` and verifies (the per-row entry point).
    pub fn verify(
        &self,
        key: &str,
        completion: &str,
        truth: &GroundTruth,
        ctx: &RewardContext,
    ) -> Result<Reward, RewardError> {
        Ok(self.get(key)?.verify(completion, truth, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + ?Sized>() {}

    #[test]
    fn trait_object_is_send_sync() {
        assert_send_sync::<dyn Verifier>();
        assert_send_sync::<Registry>();
    }

    #[test]
    fn combination_from_toml() {
        let r = Registry::from_toml_str(
            r#"
            [verifiers.acc_rts]
            kind = "numeric"
            rel_tol = 0.01

            [combinations.med_r1]
            terms = [
              { verifier = "format", weight = 0.5 },
              { verifier = "multiple_choice", weight = 1.0, name = "accuracy" },
            ]

            [combinations.video_num]
            terms = [{ verifier = "format", weight = 0.1 }, { verifier = "acc_rts", weight = 1.0, name = "accuracy" }]
            "#,
        )
        .unwrap();
        let truth = GroundTruth::Choice {
            answer: "B".into(),
            options: vec![],
        };
        let ctx = RewardContext::default();
        let full = r
            .verify("med_r1", "<think>x</think><answer>B</answer>", &truth, &ctx)
            .unwrap();
        assert_eq!(full.value, 1.0);
        // Format only: 0.5 / 1.5.
        let f = r
            .verify("med_r1", "<think>x</think><answer>C</answer>", &truth, &ctx)
            .unwrap();
        assert!((f.value - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(f.part("format"), Some(1.0));
        assert_eq!(f.part("accuracy"), Some(0.0));
        // Accuracy only: 1.0 / 1.5.
        let a = r.verify("med_r1", "B", &truth, &ctx).unwrap();
        assert!((a.value - 2.0 / 3.0).abs() < 1e-6);
        let n = r
            .verify(
                "video_num",
                "<think>.</think><answer>101</answer>",
                &GroundTruth::Number(100.0),
                &ctx,
            )
            .unwrap();
        assert_eq!(n.value, 1.0);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Registry::from_toml_str(
            "[combinations.c]\nterms = [{ verifier = \"nope\", weight = 1.0 }]",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("nope") && msg.contains("combination `c`") && msg.contains("format"),
            "{msg}"
        );
        let bad = Registry::from_toml_str(
            "[combinations.c]\nterms = [{ verifier = \"format\", weight = -1.0 }]",
        )
        .unwrap_err();
        assert!(bad.to_string().contains("weights"));
        let toml_err = Registry::from_toml_str("[verifiers.x]\nkind = \"nonsense\"").unwrap_err();
        assert!(matches!(toml_err, RewardError::Toml { .. }));
        assert!(Registry::with_defaults().get("missing").is_err());
    }

    #[test]
    fn detection_spec_from_toml() {
        let r = Registry::from_toml_str(
            r#"
            [verifiers.det]
            kind = "detection"
            threshold = { fixed = 0.5 }
            weights = { iou_max_iou_first = 1.0, map = 1.0, iou_completeness = 0.3 }
            "#,
        )
        .unwrap();
        let truth = GroundTruth::Text("[{'bbox_2d': [0, 0, 10, 10], 'label': 'a'}]".into());
        let v = r
            .verify(
                "det",
                "<answer>[{'bbox_2d': [0, 0, 10, 10], 'label': 'a'}]</answer>",
                &truth,
                &RewardContext::default(),
            )
            .unwrap();
        assert_eq!(v.value, 1.0);
    }
}
