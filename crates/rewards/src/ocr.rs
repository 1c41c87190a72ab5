//! OCR rewards: normalized edit similarity and ANLS.

use crate::text::{answer_region, normalize_whitespace_case};
use crate::types::{wrong_truth, GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use serde::{Deserialize, Serialize};

/// Levenshtein distance over Unicode scalar values (one-row DP, O(n·m) after
/// the common prefix and suffix, which never change the distance, are cut:
/// a near-miss answer costs little more than its differing middle).
pub fn levenshtein(a: &str, b: &str) -> usize {
    if a.is_ascii() && b.is_ascii() {
        edit_distance(a.as_bytes(), b.as_bytes())
    } else {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        edit_distance(&a, &b)
    }
}

fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    if a.is_empty() {
        return b.len();
    }
    // row[j] = distance between the first i items of `a` and of `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j + 1] + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// Normalized Levenshtein distance `d(a, b) / max(|a|, |b|)` (0 for two empty strings).
pub fn normalized_edit_distance(a: &str, b: &str) -> f64 {
    let n = a.chars().count().max(b.chars().count());
    if n == 0 {
        0.0
    } else {
        levenshtein(a, b) as f64 / n as f64
    }
}

/// ANLS for one answer (Biten et al., ICCV 2019, "Scene Text Visual Question
/// Answering"): `1 − NL` when `NL < τ`, else 0; the max over truth answers.
/// Worked example: "helo" vs "hello" → NL = 1/5 = 0.2 → 0.8; "xyz" vs
/// "hello" → NL = 1 ≥ 0.5 → 0.
pub fn anls(pred: &str, truths: &[&str], tau: f64) -> f64 {
    truths
        .iter()
        .map(|t| {
            let nl = normalized_edit_distance(pred, t);
            if nl < tau {
                1.0 - nl
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcrMode {
    /// `1 − NL`, best over truths.
    EditSimilarity,
    /// ANLS with threshold τ (0.5 in ST-VQA / DocVQA).
    Anls { tau: f64 },
}

impl Default for OcrMode {
    fn default() -> Self {
        OcrMode::Anls { tau: 0.5 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OcrVerifier {
    pub mode: OcrMode,
    /// Lowercase before comparing (ANLS's official evaluation does).
    pub lowercase: bool,
    /// Trim and collapse whitespace before comparing.
    pub collapse_whitespace: bool,
    pub answer_tag: String,
}

impl Default for OcrVerifier {
    fn default() -> Self {
        Self {
            mode: OcrMode::default(),
            lowercase: true,
            collapse_whitespace: true,
            answer_tag: "answer".into(),
        }
    }
}

impl OcrVerifier {
    fn norm(&self, s: &str) -> String {
        if self.collapse_whitespace {
            normalize_whitespace_case(s, self.lowercase)
        } else if self.lowercase {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    }
}

impl Verifier for OcrVerifier {
    fn name(&self) -> &str {
        match self.mode {
            OcrMode::EditSimilarity => "ocr",
            OcrMode::Anls { .. } => "anls",
        }
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let golds = truth.texts();
        if golds.is_empty() {
            return wrong_truth("text");
        }
        let pred = self.norm(answer_region(completion, &self.answer_tag, false).unwrap_or(""));
        let golds: Vec<String> = golds.iter().map(|g| self.norm(g)).collect();
        let refs: Vec<&str> = golds.iter().map(String::as_str).collect();
        let v = match self.mode {
            OcrMode::EditSimilarity => anls(&pred, &refs, f64::INFINITY),
            OcrMode::Anls { tau } => anls(&pred, &refs, tau),
        };
        Reward::named("accuracy", v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("héllo", "hello"), 1);
        assert_eq!(normalized_edit_distance("", ""), 0.0);
    }

    /// The textbook two-row DP over chars, without the prefix/suffix cut
    /// or the byte path.
    fn reference(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }

    proptest::proptest! {
        #[test]
        fn levenshtein_matches_the_textbook_dp(a in "[ab é]{0,12}", b in "[ab é]{0,12}") {
            proptest::prop_assert_eq!(levenshtein(&a, &b), reference(&a, &b));
        }
    }

    #[test]
    fn anls_worked_examples() {
        assert!((anls("helo", &["hello"], 0.5) - 0.8).abs() < 1e-12);
        assert_eq!(anls("xyz", &["hello"], 0.5), 0.0);
        // NL = 0.5 exactly is not < τ → 0.
        assert_eq!(anls("ab", &["cd", "xx"], 0.5), 0.0);
        assert_eq!(anls("abcd", &["abxx", "abcd"], 0.5), 1.0);
    }

    #[test]
    fn verifier_normalizes() {
        let v = OcrVerifier::default();
        let t = GroundTruth::Texts(vec!["STOP Sign".into()]);
        assert_eq!(
            v.verify(
                "<answer>  stop   sign </answer>",
                &t,
                &RewardContext::default()
            )
            .value,
            1.0
        );
        let raw = OcrVerifier {
            lowercase: false,
            mode: OcrMode::EditSimilarity,
            ..OcrVerifier::default()
        };
        // "stop sign" vs "STOP Sign": 5 substitutions over 9 chars.
        let r = raw
            .verify("<answer>stop sign</answer>", &t, &RewardContext::default())
            .value;
        assert!((r - (1.0 - 5.0 / 9.0) as f32).abs() < 1e-6);
    }
}
