//! `text-compare`: short text-only comparison problems with one integer
//! answer, an easier FRE source next to `text-logic` for a model that cannot
//! yet do multi-step arithmetic (the bundled model answers `text-logic` with
//! a near-constant number). Two templates:
//!
//! - `larger`: "Which number is larger, 17 or 42?" → 42 (the answer is one of
//!   the numbers in the question);
//! - `bar_gap`: the text-only twin of visual-math's bar-chart question — "The
//!   red bar is 7 units tall and the blue bar is 3 units tall. How many units
//!   taller is the red bar than the blue bar?" → 4 (heights 1-8, as drawn in
//!   visual-math), the kind of text reasoning LMM-R1's FRE stage is meant to
//!   carry over to images.
//!
//! Deterministic like every `vlrl-data` generator.

use serde_json::Map;
use vlrl::data::row::Row;
use vlrl::data::synth::draw::NAMED_COLORS;
use vlrl::data::synth::{sample_id, Sample, TaskGenerator};
use vlrl::grpo::rng::TrainRng;

/// The `text-compare` generator (no images).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextCompare;

impl TaskGenerator for TextCompare {
    fn name(&self) -> &'static str {
        "text-compare"
    }

    fn sample(&self, index: u64, seed: u64) -> Sample {
        let mut rng = TrainRng::derive(seed ^ 0x7465_7874_636d_7072, index);
        let mut meta = Map::new();
        let (template, problem, answer, why) = if rng.below(2) == 0 {
            let a = 1 + rng.below(60) as i64;
            let mut b = 1 + rng.below(60) as i64;
            if b == a {
                b = if a < 60 { a + 1 } else { a - 1 };
            }
            (
                "larger",
                format!("Which number is larger, {a} or {b}?"),
                a.max(b),
                format!("{} > {}", a.max(b), a.min(b)),
            )
        } else {
            let n = NAMED_COLORS.len();
            let c1 = rng.below(n);
            let c2 = (c1 + 1 + rng.below(n - 1)) % n;
            let hi = 2 + rng.below(7) as i64; // 2..=8
            let lo = 1 + rng.below((hi - 1) as usize) as i64; // 1..hi
            let (name_hi, name_lo) = (NAMED_COLORS[c1].0, NAMED_COLORS[c2].0);
            // Either bar may be named first.
            let (first, h1, second, h2) = if rng.below(2) == 0 {
                (name_hi, hi, name_lo, lo)
            } else {
                (name_lo, lo, name_hi, hi)
            };
            (
                "bar_gap",
                format!(
                    "The {first} bar is {h1} units tall and the {second} bar is {h2} units tall. How many units taller is the {name_hi} bar than the {name_lo} bar?"
                ),
                hi - lo,
                format!("{hi} - {lo} = {}", hi - lo),
            )
        };
        meta.insert("template".into(), template.into());
        meta.insert("rationale".into(), why.into());
        Sample {
            row: Row {
                id: sample_id(self.name(), seed, index),
                source: self.name().into(),
                problem: Some(problem),
                answer: Some(answer.to_string()),
                verifier: Some("numeric".into()),
                meta,
                ..Row::default()
            },
            images: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Re-derive each answer from the numbers in the text.
    #[test]
    fn answers_follow_from_the_text() {
        let mut seen = [0usize; 2];
        for s in TextCompare.generate(300, 2) {
            let text = s.row.problem.clone().unwrap();
            let nums: Vec<i64> = text
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|t| t.parse().ok())
                .collect();
            let answer: i64 = s.row.answer.as_deref().unwrap().parse().unwrap();
            match s.row.meta_str("template").unwrap() {
                "larger" => {
                    seen[0] += 1;
                    assert_ne!(nums[0], nums[1], "{text}");
                    assert_eq!(answer, nums[0].max(nums[1]), "{text}");
                }
                "bar_gap" => {
                    seen[1] += 1;
                    assert_eq!(answer, (nums[0] - nums[1]).abs(), "{text}");
                    assert!((1..=7).contains(&answer), "{text}");
                    // The question names the taller bar first.
                    let asked = text.split("How many units taller is the ").nth(1).unwrap();
                    let taller = asked.split(' ').next().unwrap();
                    let stated = text
                        .split(&format!("{taller} bar is "))
                        .nth(1)
                        .unwrap()
                        .split(' ')
                        .next()
                        .unwrap()
                        .parse::<i64>()
                        .unwrap();
                    assert_eq!(stated, nums[0].max(nums[1]), "{text}");
                }
                other => panic!("unknown template {other}"),
            }
        }
        assert!(seen.iter().all(|&k| k > 100), "{seen:?}");
        assert_eq!(TextCompare.sample(3, 9), TextCompare.sample(3, 9));
    }
}
