//! Format rewards: did the completion use the think/answer structure?

use crate::types::{GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use serde::{Deserialize, Serialize};

/// How strictly the structure is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FormatMode {
    /// R1-V / open-r1 `format_reward`: the whole completion must match
    /// `<think>.*?</think>\s*<answer>.*?</answer>` (`re.fullmatch`, DOTALL).
    /// With `single_blocks`, each tag must also occur exactly once.
    #[default]
    Strict,
    /// A think block followed somewhere later by an answer block; text
    /// around them is allowed.
    Lenient,
    /// V-Triune's `count_tags` (`reward_server/verify.py`, from open-r1):
    /// 0.25 for each of `"<think>\n"`, `"\n</think>\n"`, `"\n<answer>\n"`,
    /// `"\n</answer>"` occurring exactly once.
    TagCount,
    /// Only an answer block is required (no reasoning block).
    AnswerOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FormatConfig {
    pub mode: FormatMode,
    pub think_tag: String,
    pub answer_tag: String,
    /// Strict mode only: each opening and closing tag exactly once.
    pub single_blocks: bool,
}

impl Default for FormatConfig {
    fn default() -> Self {
        Self {
            mode: FormatMode::Strict,
            think_tag: "think".into(),
            answer_tag: "answer".into(),
            single_blocks: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FormatVerifier {
    cfg: FormatConfig,
    open_think: String,
    close_think: String,
    open_answer: String,
    close_answer: String,
}

impl FormatVerifier {
    pub fn new(cfg: FormatConfig) -> Self {
        Self {
            open_think: format!("<{}>", cfg.think_tag),
            close_think: format!("</{}>", cfg.think_tag),
            open_answer: format!("<{}>", cfg.answer_tag),
            close_answer: format!("</{}>", cfg.answer_tag),
            cfg,
        }
    }

    /// `re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL)`
    /// without a regex engine: the text starts with the think tag and ends
    /// with the closing answer tag, and some closing think tag (after the
    /// opening one) is followed by whitespace and an opening answer tag that
    /// ends before the final closing answer tag.
    fn strict_match(&self, text: &str) -> bool {
        let (ot, ct, oa, ca) = (
            &self.open_think,
            &self.close_think,
            &self.open_answer,
            &self.close_answer,
        );
        if !text.starts_with(ot.as_str())
            || !text.ends_with(ca.as_str())
            || text.len() < ot.len() + ca.len()
        {
            return false;
        }
        let answer_limit = text.len() - ca.len();
        let mut from = ot.len();
        while let Some(off) = text.get(from..).and_then(|r| r.find(ct.as_str())) {
            let after = from + off + ct.len();
            let rest = text.get(after..).unwrap_or("");
            let skipped = rest.len() - rest.trim_start().len();
            let open_at = after + skipped;
            if text
                .get(open_at..)
                .is_some_and(|r| r.starts_with(oa.as_str()))
                && open_at + oa.len() <= answer_limit
            {
                return true;
            }
            from += off + 1;
            while !text.is_char_boundary(from) {
                from += 1;
            }
        }
        false
    }

    pub fn config(&self) -> &FormatConfig {
        &self.cfg
    }

    /// The format score alone, in `[0, 1]`.
    pub fn score(&self, text: &str) -> f64 {
        match self.cfg.mode {
            FormatMode::Strict => {
                let matched = self.strict_match(text);
                let single = !self.cfg.single_blocks
                    || [
                        &self.open_think,
                        &self.close_think,
                        &self.open_answer,
                        &self.close_answer,
                    ]
                    .iter()
                    .all(|tag| text.matches(tag.as_str()).count() == 1);
                f64::from(u8::from(matched && single))
            }
            FormatMode::Lenient => {
                let ok = (|| {
                    let s = text.find(&self.open_think)? + self.open_think.len();
                    let e = s + text.get(s..)?.find(&self.close_think)? + self.close_think.len();
                    let rest = text.get(e..)?;
                    let a = rest.find(&self.open_answer)? + self.open_answer.len();
                    rest.get(a..)?.find(&self.close_answer)
                })()
                .is_some();
                f64::from(u8::from(ok))
            }
            FormatMode::TagCount => {
                let tags = [
                    format!("{}\n", self.open_think),
                    format!("\n{}\n", self.close_think),
                    format!("\n{}\n", self.open_answer),
                    format!("\n{}", self.close_answer),
                ];
                tags.iter()
                    .filter(|t| text.matches(t.as_str()).count() == 1)
                    .count() as f64
                    * 0.25
            }
            FormatMode::AnswerOnly => f64::from(u8::from(
                vlrl_grounding::extract_tag(text, &self.cfg.answer_tag).is_some(),
            )),
        }
    }
}

impl Default for FormatVerifier {
    fn default() -> Self {
        Self::new(FormatConfig::default())
    }
}

impl Verifier for FormatVerifier {
    fn name(&self) -> &str {
        "format"
    }

    fn verify(&self, completion: &str, _truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        Reward::named("format", self.score(completion))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(mode: FormatMode) -> FormatVerifier {
        FormatVerifier::new(FormatConfig {
            mode,
            ..FormatConfig::default()
        })
    }

    #[test]
    fn strict() {
        let f = v(FormatMode::Strict);
        assert_eq!(f.score("<think>a\nb</think>\n<answer>B</answer>"), 1.0);
        assert_eq!(f.score("<think>a</think><answer>B</answer>"), 1.0);
        assert_eq!(
            f.score(" <think>a</think><answer>B</answer>"),
            0.0,
            "fullmatch: no leading text"
        );
        assert_eq!(f.score("<think>a</think><answer>B</answer> extra"), 0.0);
        assert_eq!(f.score("<answer>B</answer>"), 0.0);
        // fullmatch lets `.*?` span extra tags; single_blocks rejects that.
        let twice = "<think>a</think><answer>B</answer><answer>C</answer>";
        assert_eq!(f.score(twice), 1.0);
        let single = FormatVerifier::new(FormatConfig {
            single_blocks: true,
            ..FormatConfig::default()
        });
        assert_eq!(single.score(twice), 0.0);
    }

    #[test]
    fn lenient_and_answer_only() {
        let f = v(FormatMode::Lenient);
        assert_eq!(
            f.score("Sure! <think>a</think> so <answer>B</answer> done"),
            1.0
        );
        assert_eq!(f.score("<answer>B</answer><think>a</think>"), 0.0);
        assert_eq!(v(FormatMode::AnswerOnly).score("x <answer>B</answer>"), 1.0);
        assert_eq!(v(FormatMode::AnswerOnly).score("x <answer>B"), 0.0);
    }

    #[test]
    fn tag_count_vtriune() {
        let f = v(FormatMode::TagCount);
        assert_eq!(
            f.score("<think>\nx\n</think>\n<answer>\n42\n</answer>"),
            1.0
        );
        // Missing newline after <think>: 0.75.
        assert_eq!(f.score("<think>x\n</think>\n<answer>\n42\n</answer>"), 0.75);
        assert_eq!(
            f.score("<answer>\n42\n</answer>"),
            0.25,
            "only `\\n</answer>` counts; `\\n<answer>\\n` needs a leading newline"
        );
        assert_eq!(f.score(""), 0.0);
    }

    #[test]
    fn fast_strict_path_equals_regex() {
        let f = v(FormatMode::Strict);
        // The specification: R1-V's fullmatch pattern.
        let re = regex::Regex::new(r"(?s)\A<think>.*?</think>\s*<answer>.*?</answer>\z").unwrap();
        let pieces = [
            "<think>",
            "</think>",
            "<answer>",
            "</answer>",
            " ",
            "\n",
            "x",
            "é",
            "<",
            ">",
        ];
        // All strings of up to 5 pieces (10^5 + ... ≈ 111k strings).
        let mut stack = vec![(String::new(), 0usize)];
        let mut n = 0;
        while let Some((s, depth)) = stack.pop() {
            assert_eq!(f.strict_match(&s), re.is_match(&s), "{s:?}");
            n += 1;
            if depth < 5 {
                for p in pieces {
                    stack.push((format!("{s}{p}"), depth + 1));
                }
            }
        }
        assert!(n > 10_000, "{n}");
    }

    #[test]
    fn custom_tags() {
        let f = FormatVerifier::new(FormatConfig {
            think_tag: "reason".into(),
            answer_tag: "final".into(),
            ..FormatConfig::default()
        });
        assert_eq!(f.score("<reason>r</reason><final>1</final>"), 1.0);
        assert_eq!(f.score("<think>r</think><answer>1</answer>"), 0.0);
    }
}
