//! `text-logic`: short arithmetic / logic word problems with one integer
//! answer (LMM-R1's text-only first stage, scaled down). Verifier `numeric`.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::Map;

use crate::row::Row;
use crate::synth::{sample_id, sample_rng, Sample, TaskGenerator};

/// The verifier key for integer answers.
pub const NUMERIC_VERIFIER: &str = "numeric";

const NAMES: [&str; 6] = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay"];
const ITEMS: [&str; 5] = ["apples", "coins", "books", "marbles", "stamps"];

/// The `text-logic` generator (no images).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextLogic;

impl TaskGenerator for TextLogic {
    fn name(&self) -> &'static str {
        "text-logic"
    }

    fn sample(&self, index: u64, seed: u64) -> Sample {
        let mut rng = sample_rng(self.name(), seed, index);
        let name = NAMES.choose(&mut rng).copied().unwrap_or("Ana");
        let other = NAMES
            .iter()
            .copied()
            .filter(|n| *n != name)
            .collect::<Vec<_>>();
        let other = other.choose(&mut rng).copied().unwrap_or("Ben");
        let item = ITEMS.choose(&mut rng).copied().unwrap_or("apples");
        let kind = rng.random_range(0..5u32);
        let (template, problem, answer, why): (&str, String, i64, String) = match kind {
            0 => {
                let (a, b) = (rng.random_range(2..20i64), rng.random_range(1..15i64));
                let c = rng.random_range(0..=a + b);
                (
                    "buy_give",
                    format!("{name} has {a} {item}, buys {b} more and gives {c} to {other}. How many {item} does {name} have now?"),
                    a + b - c,
                    format!("{a} + {b} - {c} = {}", a + b - c),
                )
            }
            1 => {
                let (rows, per) = (rng.random_range(2..9i64), rng.random_range(2..9i64));
                let removed = rng.random_range(0..=rows * per);
                (
                    "grid_remove",
                    format!("A box holds {rows} rows of {per} {item}. {removed} are taken out. How many are left?"),
                    rows * per - removed,
                    format!("{rows} * {per} - {removed} = {}", rows * per - removed),
                )
            }
            2 => {
                let (start, step) = (rng.random_range(-10..20i64), rng.random_range(-6..10i64));
                let terms: Vec<String> = (0..4).map(|k| (start + k * step).to_string()).collect();
                (
                    "sequence",
                    format!(
                        "What is the next number in the sequence {}?",
                        terms.join(", ")
                    ),
                    start + 4 * step,
                    format!(
                        "The step is {step}, so the next number is {}",
                        start + 4 * step
                    ),
                )
            }
            3 => {
                let (x, a, k) = (
                    rng.random_range(1..15i64),
                    rng.random_range(1..20i64),
                    rng.random_range(2..6i64),
                );
                (
                    "equation",
                    format!("If x + {a} = {}, what is {k} * x?", x + a),
                    k * x,
                    format!("x = {} - {a} = {x}, so {k} * x = {}", x + a, k * x),
                )
            }
            _ => {
                let (age, diff, years) = (
                    rng.random_range(5..40i64),
                    rng.random_range(1..15i64),
                    rng.random_range(1..10i64),
                );
                (
                    "ages",
                    format!("{name} is {age} years old and {other} is {diff} years older. What will the sum of their ages be in {years} years?"),
                    age + (age + diff) + 2 * years,
                    format!(
                        "{age} + {} = {} now, plus 2 * {years} = {}",
                        age + diff,
                        2 * age + diff,
                        2 * age + diff + 2 * years
                    ),
                )
            }
        };
        let mut meta = Map::new();
        meta.insert("template".into(), template.into());
        meta.insert("rationale".into(), why.into());
        let row = Row {
            id: sample_id(self.name(), seed, index),
            source: self.name().into(),
            problem: Some(problem),
            answer: Some(answer.to_string()),
            verifier: Some(NUMERIC_VERIFIER.into()),
            meta,
            ..Row::default()
        };
        Sample {
            row,
            images: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Re-derive each answer from the numbers in the text, so the stated
    /// answer is checked against the question, not against itself.
    #[test]
    fn answers_follow_from_the_text() {
        for s in TextLogic.generate(200, 3) {
            let text = s.row.problem.clone().unwrap();
            let nums: Vec<i64> = text
                .split(|c: char| !(c.is_ascii_digit() || c == '-'))
                .filter_map(|t| t.parse().ok())
                .collect();
            let answer: i64 = s.row.answer.as_deref().unwrap().parse().unwrap();
            let expected = match s.row.meta_str("template").unwrap() {
                "buy_give" => nums[0] + nums[1] - nums[2],
                "grid_remove" => nums[0] * nums[1] - nums[2],
                "sequence" => nums[3] + (nums[3] - nums[2]),
                "equation" => nums[2] * (nums[1] - nums[0]),
                "ages" => nums[0] + nums[0] + nums[1] + 2 * nums[2],
                other => panic!("unknown template {other}"),
            };
            assert_eq!(answer, expected, "{text}");
        }
    }
}
