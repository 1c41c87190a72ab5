//! Counting rewards.

use crate::number::parse_answer_number;
use crate::text::answer_region;
use crate::types::{wrong_truth, GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CountMode {
    /// 1 when the count is exactly right.
    #[default]
    Exact,
    /// `max(0, 1 − |pred − truth| / max(truth, 1))`: partial credit for near misses.
    RelativeError,
}

const WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// A count from an answer: a number (last one stated) or a number word up to twenty.
pub fn parse_count(answer: &str) -> Option<f64> {
    if let Some(n) = parse_answer_number(answer) {
        return Some(n.value);
    }
    let lower = answer.to_lowercase();
    lower
        .split(|c: char| !c.is_alphabetic())
        .filter_map(|w| WORDS.iter().position(|x| *x == w))
        .next_back()
        .map(|i| i as f64)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CountingVerifier {
    pub mode: CountMode,
    pub answer_tag: String,
}

impl Default for CountingVerifier {
    fn default() -> Self {
        Self {
            mode: CountMode::Exact,
            answer_tag: "answer".into(),
        }
    }
}

impl Verifier for CountingVerifier {
    fn name(&self) -> &str {
        match self.mode {
            CountMode::Exact => "counting",
            CountMode::RelativeError => "counting_relative",
        }
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let gold = match truth {
            GroundTruth::Count(c) => *c as f64,
            GroundTruth::Number(n) if n.is_finite() => *n,
            GroundTruth::Text(t) => match parse_count(t) {
                Some(v) => v,
                None => return wrong_truth("count"),
            },
            _ => return wrong_truth("count"),
        };
        let region = answer_region(completion, &self.answer_tag, false).unwrap_or("");
        let Some(pred) = parse_count(region) else {
            return Reward::named("accuracy", 0.0);
        };
        let err = (pred - gold).abs();
        let v = match self.mode {
            CountMode::Exact => f64::from(u8::from(err < 1e-9)),
            CountMode::RelativeError => (1.0 - err / gold.abs().max(1.0)).max(0.0),
        };
        Reward::named("accuracy", v).with_part("abs_error", err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let c = RewardContext::default();
        let exact = CountingVerifier::default();
        assert_eq!(
            exact
                .verify("<answer>3</answer>", &GroundTruth::Count(3), &c)
                .value,
            1.0
        );
        assert_eq!(
            exact
                .verify(
                    "<answer>There are three apples.</answer>",
                    &GroundTruth::Count(3),
                    &c
                )
                .value,
            1.0
        );
        assert_eq!(
            exact
                .verify("<answer>4</answer>", &GroundTruth::Count(3), &c)
                .value,
            0.0
        );
        let rel = CountingVerifier {
            mode: CountMode::RelativeError,
            ..CountingVerifier::default()
        };
        // |8 − 10| / 10 = 0.2 → 0.8.
        assert!(
            (rel.verify("<answer>8</answer>", &GroundTruth::Count(10), &c)
                .value
                - 0.8)
                .abs()
                < 1e-6
        );
        assert_eq!(
            rel.verify("<answer>30</answer>", &GroundTruth::Count(10), &c)
                .value,
            0.0
        );
        // Truth 0: denominator 1 → answer 0 scores 1, answer 1 scores 0.
        assert_eq!(
            rel.verify("<answer>0</answer>", &GroundTruth::Count(0), &c)
                .value,
            1.0
        );
        assert_eq!(
            rel.verify("<answer>1</answer>", &GroundTruth::Count(0), &c)
                .value,
            0.0
        );
    }
}
