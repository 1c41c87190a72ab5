//! Accuracy rewards: multiple choice, exact/normalized strings, numbers, math.

use crate::number::{eval_expr, latex_to_plain, numbers_match, parse_answer_number};
use crate::text::{answer_region, last_boxed, normalize_answer, normalize_whitespace_case};
use crate::types::{wrong_truth, GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// Where to find the answer in a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerConfig {
    pub answer_tag: String,
    /// Without an answer block the reward is 0 (otherwise the whole
    /// completion is the answer, as in R1-V).
    pub require_tag: bool,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            answer_tag: "answer".into(),
            require_tag: false,
        }
    }
}

impl AnswerConfig {
    fn region<'a>(&self, completion: &'a str) -> Option<&'a str> {
        answer_region(completion, &self.answer_tag, self.require_tag)
    }
}

// ---------------------------------------------------------------- choice

static LEADING_LETTER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\s*[\(\[]?\s*([A-Za-z])\s*(?:[\)\]\.:,]|\s|$)").ok());
static STATED_LETTER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?\s*([A-Z])\s*[\)\]]?(?:[\s\.,:;]|$)").ok()
});

/// Letter of the option an answer picks: a leading letter (`B`, `(B)`,
/// `B.`, `B) cat`), a stated letter (`the answer is B`), or the text of
/// exactly one option.
pub fn choice_letter(answer: &str, options: &[String]) -> Option<char> {
    let in_range = |c: char| {
        options.is_empty()
            || (c as u32)
                .checked_sub('A' as u32)
                .is_some_and(|i| (i as usize) < options.len())
    };
    if let Some(c) = LEADING_LETTER
        .as_ref()
        .and_then(|r| r.captures(answer))
        .and_then(|c| c.get(1))
    {
        let letter = c.as_str().chars().next().map(|c| c.to_ascii_uppercase());
        // A lone lowercase word like "a cat" is text, not a letter, unless it is the whole answer.
        let whole = answer
            .trim()
            .trim_matches(|c: char| "()[].:,".contains(c))
            .len()
            == 1;
        if let Some(l) = letter.filter(|l| in_range(*l)) {
            if c.as_str().chars().all(|ch| ch.is_ascii_uppercase()) || whole {
                return Some(l);
            }
        }
    }
    if let Some(c) = STATED_LETTER
        .as_ref()
        .and_then(|r| r.captures(answer))
        .and_then(|c| c.get(1))
    {
        if let Some(l) = c
            .as_str()
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase())
            .filter(|l| in_range(*l))
        {
            return Some(l);
        }
    }
    let norm = normalize_answer(answer);
    if norm.is_empty() {
        return None;
    }
    let letter = |i: usize| char::from_u32('A' as u32 + i as u32);
    if let Some(i) = options.iter().position(|o| normalize_answer(o) == norm) {
        return letter(i);
    }
    let mut contained = options.iter().enumerate().filter(|(_, o)| {
        let o = normalize_answer(o);
        !o.is_empty() && format!(" {norm} ").contains(&format!(" {o} "))
    });
    match (contained.next(), contained.next()) {
        (Some((i, _)), None) => letter(i),
        _ => None,
    }
}

/// Multiple-choice accuracy (R1-V / Med-R1): 1 when the picked letter equals
/// the truth's letter. Truth: [`GroundTruth::Choice`], or a one-letter
/// [`GroundTruth::Text`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MultipleChoiceVerifier {
    pub answer: AnswerConfig,
}

impl Verifier for MultipleChoiceVerifier {
    fn name(&self) -> &str {
        "multiple_choice"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let (gold, options) = match truth {
            GroundTruth::Choice { answer, options } => (answer.as_str(), options.as_slice()),
            GroundTruth::Text(t) => (t.as_str(), &[][..]),
            _ => return wrong_truth("choice"),
        };
        let Some(gold) = choice_letter(gold, options) else {
            return wrong_truth("choice");
        };
        let Some(region) = self.answer.region(completion) else {
            return Reward::named("accuracy", 0.0);
        };
        let picked = choice_letter(region, options);
        Reward::named("accuracy", f64::from(u8::from(picked == Some(gold))))
    }
}

// ---------------------------------------------------------------- strings

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    /// Byte-equal after trimming.
    Exact,
    /// Case-insensitive, whitespace collapsed.
    CaseInsensitive,
    /// SQuAD normalization (punctuation and articles dropped).
    #[default]
    Normalized,
}

/// String accuracy against any of the truth's texts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StringMatchVerifier {
    pub mode: StringMatch,
    pub answer: AnswerConfig,
}

impl StringMatchVerifier {
    pub fn new(mode: StringMatch) -> Self {
        Self {
            mode,
            answer: AnswerConfig::default(),
        }
    }

    fn norm(&self, s: &str) -> String {
        match self.mode {
            StringMatch::Exact => s.trim().to_string(),
            StringMatch::CaseInsensitive => normalize_whitespace_case(s, true),
            StringMatch::Normalized => normalize_answer(s),
        }
    }
}

impl Verifier for StringMatchVerifier {
    fn name(&self) -> &str {
        match self.mode {
            StringMatch::Exact => "exact",
            StringMatch::CaseInsensitive => "case_insensitive",
            StringMatch::Normalized => "normalized",
        }
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let golds = truth.texts();
        if golds.is_empty() {
            return wrong_truth("text");
        }
        let Some(region) = self.answer.region(completion) else {
            return Reward::named("accuracy", 0.0);
        };
        let pred = self.norm(region);
        let hit = golds.iter().any(|g| self.norm(g) == pred);
        Reward::named("accuracy", f64::from(u8::from(hit)))
    }
}

// ---------------------------------------------------------------- numbers

/// Numeric accuracy: `|pred − truth| ≤ max(abs_tol, rel_tol·|truth|)`.
/// Video-RTS scores numerical answers with 1% relative tolerance; the default
/// here is strict (1e-6) — set `rel_tol = 0.01` for Video-RTS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NumericVerifier {
    pub rel_tol: f64,
    pub abs_tol: f64,
    pub answer: AnswerConfig,
}

impl Default for NumericVerifier {
    fn default() -> Self {
        Self {
            rel_tol: 1e-6,
            abs_tol: 1e-9,
            answer: AnswerConfig::default(),
        }
    }
}

impl Verifier for NumericVerifier {
    fn name(&self) -> &str {
        "numeric"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let gold = match truth {
            GroundTruth::Number(n) => Some(*n),
            GroundTruth::Count(n) => Some(*n as f64),
            GroundTruth::Text(t) => {
                parse_answer_number(t).map(|p| if p.percent { p.value / 100.0 } else { p.value })
            }
            _ => None,
        };
        let Some(gold) = gold.filter(|g| g.is_finite()) else {
            return wrong_truth("number");
        };
        let Some(region) = self.answer.region(completion) else {
            return Reward::named("accuracy", 0.0);
        };
        let hit = parse_answer_number(region)
            .is_some_and(|p| numbers_match(p, gold, self.rel_tol, self.abs_tol));
        Reward::named("accuracy", f64::from(u8::from(hit)))
    }
}

// ---------------------------------------------------------------- math

/// Simple math equivalence (a small stand-in for `math-verify`, which V-Triune
/// and open-r1 use): the `\boxed{}` content (else the answer block) and the
/// truth are compared as numbers when both evaluate (fractions, `\frac`,
/// `\sqrt`, `\pi`, powers, percentages; relative tolerance `rel_tol`), else
/// as normalized LaTeX strings (spaces, `\left`/`\right`, `$`, `\dfrac`
/// removed; case folded).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MathVerifier {
    pub rel_tol: f64,
    pub answer: AnswerConfig,
}

impl Default for MathVerifier {
    fn default() -> Self {
        Self {
            rel_tol: 1e-6,
            answer: AnswerConfig::default(),
        }
    }
}

fn math_string(s: &str) -> String {
    let p = latex_to_plain(s);
    let mut out = String::with_capacity(p.len());
    for c in p.chars().filter(|c| !c.is_whitespace()) {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out.truncate(out.trim_end_matches('.').len());
    out
}

/// `true` when `pred` and `gold` denote the same value (see [`MathVerifier`]).
pub fn math_equivalent(pred: &str, gold: &str, rel_tol: f64) -> bool {
    let (p, g) = (math_string(pred), math_string(gold));
    if p.is_empty() {
        return false;
    }
    match (eval_expr(&p), eval_expr(&g)) {
        (Some(a), Some(b)) => (a - b).abs() <= (rel_tol * b.abs()).max(1e-12),
        _ => p == g,
    }
}

impl Verifier for MathVerifier {
    fn name(&self) -> &str {
        "math"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let golds = truth.texts();
        if golds.is_empty() {
            return wrong_truth("text");
        }
        let pred = match last_boxed(completion) {
            Some(b) => b,
            None => match self.answer.region(completion) {
                Some(r) => last_boxed(r).unwrap_or(r),
                None => return Reward::named("accuracy", 0.0),
            },
        };
        let hit = golds
            .iter()
            .any(|g| math_equivalent(pred, last_boxed(g).unwrap_or(g), self.rel_tol));
        Reward::named("accuracy", f64::from(u8::from(hit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RewardContext {
        RewardContext::default()
    }

    fn choice(answer: &str) -> GroundTruth {
        GroundTruth::Choice {
            answer: answer.into(),
            options: vec![
                "CT".into(),
                "MRI".into(),
                "X-Ray".into(),
                "Ultrasound".into(),
            ],
        }
    }

    #[test]
    fn multiple_choice_forms() {
        let v = MultipleChoiceVerifier::default();
        let t = choice("B");
        for ok in [
            "<answer>B</answer>",
            "<answer>(B)</answer>",
            "<answer>B. MRI</answer>",
            "<answer> b </answer>",
            "<answer>The answer is B.</answer>",
            "<answer>MRI</answer>",
            "<answer>It is an MRI scan</answer>",
            "B",
        ] {
            assert_eq!(v.verify(ok, &t, &ctx()).value, 1.0, "{ok}");
        }
        for bad in [
            "<answer>C</answer>",
            "<answer>CT or MRI</answer>",
            "<answer></answer>",
            "<answer>E</answer>",
            "",
        ] {
            assert_eq!(v.verify(bad, &t, &ctx()).value, 0.0, "{bad}");
        }
        assert_eq!(
            v.verify("<answer>A</answer>", &GroundTruth::Text("A".into()), &ctx())
                .value,
            1.0
        );
        assert!(v
            .verify("A", &GroundTruth::Number(1.0), &ctx())
            .part("wrong_ground_truth:choice")
            .is_some());
    }

    #[test]
    fn strings() {
        let t = GroundTruth::Texts(vec!["The Eiffel Tower".into(), "eiffel tower paris".into()]);
        assert_eq!(
            StringMatchVerifier::new(StringMatch::Normalized)
                .verify("<answer>eiffel tower.</answer>", &t, &ctx())
                .value,
            1.0
        );
        assert_eq!(
            StringMatchVerifier::new(StringMatch::Exact)
                .verify("<answer>eiffel tower.</answer>", &t, &ctx())
                .value,
            0.0
        );
        assert_eq!(
            StringMatchVerifier::new(StringMatch::Exact)
                .verify("<answer> The Eiffel Tower </answer>", &t, &ctx())
                .value,
            1.0
        );
        assert_eq!(
            StringMatchVerifier::new(StringMatch::CaseInsensitive)
                .verify("<answer>the  eiffel TOWER</answer>", &t, &ctx())
                .value,
            1.0
        );
    }

    #[test]
    fn numeric() {
        let v = NumericVerifier::default();
        assert_eq!(
            v.verify(
                "<answer>1,000</answer>",
                &GroundTruth::Number(1000.0),
                &ctx()
            )
            .value,
            1.0
        );
        assert_eq!(
            v.verify(
                "<answer>3.50 dollars</answer>",
                &GroundTruth::Text("3.5".into()),
                &ctx()
            )
            .value,
            1.0
        );
        assert_eq!(
            v.verify("<answer>1/2</answer>", &GroundTruth::Number(0.5), &ctx())
                .value,
            1.0
        );
        assert_eq!(
            v.verify("<answer>50%</answer>", &GroundTruth::Number(0.5), &ctx())
                .value,
            1.0
        );
        assert_eq!(
            v.verify("<answer>50%</answer>", &GroundTruth::Number(50.0), &ctx())
                .value,
            1.0
        );
        assert_eq!(
            v.verify("<answer>101</answer>", &GroundTruth::Number(100.0), &ctx())
                .value,
            0.0
        );
        let rts = NumericVerifier {
            rel_tol: 0.01,
            ..NumericVerifier::default()
        };
        assert_eq!(
            rts.verify("<answer>101</answer>", &GroundTruth::Number(100.0), &ctx())
                .value,
            1.0
        );
        assert_eq!(
            rts.verify(
                "<answer>101.5</answer>",
                &GroundTruth::Number(100.0),
                &ctx()
            )
            .value,
            0.0
        );
    }

    #[test]
    fn math() {
        let v = MathVerifier::default();
        let half = GroundTruth::Text("\\frac{1}{2}".into());
        assert_eq!(v.verify("so \\boxed{0.5}", &half, &ctx()).value, 1.0);
        assert_eq!(
            v.verify("<answer>\\dfrac{2}{4}</answer>", &half, &ctx())
                .value,
            1.0
        );
        assert_eq!(v.verify("<answer>1/3</answer>", &half, &ctx()).value, 0.0);
        assert_eq!(
            v.verify(
                "\\boxed{2\\sqrt{2}}",
                &GroundTruth::Text("\\sqrt{8}".into()),
                &ctx()
            )
            .value,
            1.0
        );
        assert_eq!(
            v.verify("\\boxed{x+1}", &GroundTruth::Text("x + 1".into()), &ctx())
                .value,
            1.0
        );
        assert_eq!(
            v.verify("\\boxed{x+2}", &GroundTruth::Text("x + 1".into()), &ctx())
                .value,
            0.0
        );
        assert_eq!(
            v.verify(
                "\\boxed{42}",
                &GroundTruth::Text("\\boxed{42}".into()),
                &ctx()
            )
            .value,
            1.0
        );
    }
}
