//! Sparse-to-dense test-time scaling (Video-RTS, `src/video_rts_eval.py`):
//! answer each question with few frames first, drawing several answers; if
//! they agree, stop; otherwise retry the unsolved questions with the next
//! (denser) frame count of the schedule, up to the maximum, where the
//! majority vote is accepted whatever the agreement ([`LastRound::Majority`];
//! or, with [`LastRound::Greedy`], the question is answered once, greedily).
//!
//! The loop is independent of the model: an [`AnswerSampler`] turns
//! `(question, round)` requests into completion texts, so the stopping rule
//! is unit-tested with a scripted sampler.

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The paper's placeholder when a completion has no `<answer>` block (it
/// takes part in the vote like any other answer).
pub const NO_ANSWER: &str = "No answer found";

/// One request to the sampler: question `item` at round `round`, which uses
/// `nframes` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub item: usize,
    pub round: usize,
    pub nframes: usize,
    /// Answer once, greedily, instead of drawing the round's samples.
    pub greedy: bool,
}

/// Produces the completions of a round.
pub trait AnswerSampler {
    /// For each request, the decoded completions of its answer samples
    /// (`samples` of them; the paper: 5 runs at rising temperature), or the
    /// one greedy completion of a `greedy` request.
    fn sample(&mut self, requests: &[Request]) -> Result<Vec<Vec<String>>>;
}

/// How a question's last round answers, once no denser round is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LastRound {
    /// The majority of the round's samples, like every other round (the
    /// paper).
    #[default]
    Majority,
    /// One greedy answer: the samples of the earlier rounds only decide
    /// whether to look at more frames, and a question they could not settle
    /// is answered as fixed dense sampling would answer it. Where sampled
    /// answers are noisier than the greedy one (a small model at
    /// temperature 1), this keeps that noise out of the final answer.
    Greedy,
}

/// When a round's answers count as agreeing, and how the last round
/// answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    /// Fraction of the samples that must give the majority answer; 1.0 =
    /// all of them (the paper: "unique_answers == 1").
    pub agreement: f64,
    pub last_round: LastRound,
}

impl StopRule {
    /// `agreement` with the paper's last round (the majority of its samples).
    pub fn paper(agreement: f64) -> Self {
        Self {
            agreement,
            last_round: LastRound::Majority,
        }
    }

    /// On a one-round schedule: greedy decoding, one answer per question.
    pub fn greedy() -> Self {
        Self {
            agreement: 1.0,
            last_round: LastRound::Greedy,
        }
    }

    /// Whether the majority answer has at least `ceil(agreement · n)` votes.
    pub fn agrees(&self, votes: usize, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        let need = ((self.agreement.clamp(0.0, 1.0) * n as f64) - 1e-9)
            .ceil()
            .max(1.0);
        votes as f64 >= need
    }
}

/// What the loop decided for one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub item: usize,
    /// Index of the round that answered it.
    pub round: usize,
    /// Frames of that round (the paper's "frames used").
    pub nframes: usize,
    /// Frames fed to the model over all its rounds.
    pub frames_processed: usize,
    /// Answer samples drawn over all its rounds.
    pub samples_drawn: usize,
    /// The round's answers agreed (before the last round).
    pub agreed: bool,
    /// Normalized answers of the deciding round.
    pub answers: Vec<String>,
    /// The majority answer (ties: first seen, like Python's `Counter`).
    pub majority: String,
    /// A completion of the deciding round whose answer is the majority.
    pub majority_text: String,
}

/// The text inside the first `<answer>…</answer>`, trimmed; the paper's
/// `extract_answer` (`No answer found` when absent).
pub fn extract_answer(text: &str) -> String {
    let Some(start) = text.find("<answer>") else {
        return NO_ANSWER.to_string();
    };
    let rest = &text[start + "<answer>".len()..];
    match rest.find("</answer>") {
        Some(end) => rest[..end].trim().to_string(),
        None => NO_ANSWER.to_string(),
    }
}

/// Case-insensitive answer key (the paper compares `prediction.upper()`);
/// surrounding brackets and a trailing period are dropped so that `(B)`,
/// `B.` and `b` vote together.
pub fn normalize_answer(answer: &str) -> String {
    answer
        .trim()
        .trim_end_matches('.')
        .trim_start_matches(['(', '['])
        .trim_end_matches([')', ']'])
        .trim()
        .to_uppercase()
}

/// `(majority answer, its votes, index of its first occurrence)`; `None`
/// for no answers.
pub fn majority(answers: &[String]) -> Option<(String, usize, usize)> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, a) in answers.iter().enumerate() {
        counts.entry(a.as_str()).or_insert((0, i)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
        .map(|(a, (votes, first))| (a.to_string(), votes, first))
}

/// Runs the loop. `rounds[i]` are the frame counts of question `i`'s
/// schedule (ascending; at least one each).
pub fn run(
    rounds: &[Vec<usize>],
    rule: StopRule,
    sampler: &mut dyn AnswerSampler,
) -> Result<Vec<Decision>> {
    if let Some(i) = rounds.iter().position(Vec::is_empty) {
        bail!("question {i} has an empty frame schedule");
    }
    let mut decisions: Vec<Option<Decision>> = vec![None; rounds.len()];
    let mut processed = vec![0usize; rounds.len()];
    let mut drawn = vec![0usize; rounds.len()];
    let depth = rounds.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..depth {
        let requests: Vec<Request> = rounds
            .iter()
            .enumerate()
            .filter(|(i, r)| decisions[*i].is_none() && round < r.len())
            .map(|(item, r)| Request {
                item,
                round,
                nframes: r[round],
                greedy: rule.last_round == LastRound::Greedy && round + 1 == r.len(),
            })
            .collect();
        if requests.is_empty() {
            break;
        }
        let texts = sampler.sample(&requests)?;
        if texts.len() != requests.len() {
            bail!(
                "the sampler answered {} of {} requests",
                texts.len(),
                requests.len()
            );
        }
        for (request, texts) in requests.iter().zip(texts) {
            let item = request.item;
            processed[item] += request.nframes;
            drawn[item] += texts.len();
            let answers: Vec<String> = texts
                .iter()
                .map(|t| normalize_answer(&extract_answer(t)))
                .collect();
            let Some((majority, votes, first)) = majority(&answers) else {
                bail!("the sampler returned no completion for question {item}");
            };
            let agreed = rule.agrees(votes, answers.len());
            let last = round + 1 == rounds[item].len();
            if agreed || last {
                decisions[item] = Some(Decision {
                    item,
                    round,
                    nframes: request.nframes,
                    frames_processed: processed[item],
                    samples_drawn: drawn[item],
                    agreed: agreed && !last,
                    majority_text: texts.get(first).cloned().unwrap_or_default(),
                    majority,
                    answers,
                });
            }
        }
    }
    decisions
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.ok_or_else(|| anyhow::anyhow!("question {i} was never decided")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripted answers: `script[item][round]` is the list of answer letters.
    struct Scripted {
        script: Vec<Vec<Vec<&'static str>>>,
        calls: Vec<Vec<Request>>,
    }

    impl AnswerSampler for Scripted {
        fn sample(&mut self, requests: &[Request]) -> Result<Vec<Vec<String>>> {
            self.calls.push(requests.to_vec());
            Ok(requests
                .iter()
                .map(|r| {
                    let answers = &self.script[r.item][r.round];
                    // A greedy request answers once: the script's last entry.
                    let answers = if r.greedy {
                        &answers[answers.len() - 1..]
                    } else {
                        &answers[..]
                    };
                    answers
                        .iter()
                        .map(|a| format!("<think>x</think><answer>{a}</answer>"))
                        .collect()
                })
                .collect())
        }
    }

    #[test]
    fn stops_when_all_samples_agree() {
        let mut s = Scripted {
            script: vec![
                // agrees at once
                vec![vec!["A", "a", "(A)", "A."], vec!["B"; 4], vec!["C"; 4]],
                // disagrees, then agrees on round 1
                vec![vec!["A", "B", "A", "A"], vec!["C"; 4], vec!["D"; 4]],
                // never agrees: majority at the last round
                vec![
                    vec!["A", "B", "C", "D"],
                    vec!["A", "B", "A", "C"],
                    vec!["D", "B", "B", "C"],
                ],
            ],
            calls: Vec::new(),
        };
        let rounds = vec![vec![4, 8, 16]; 3];
        let d = run(&rounds, StopRule::paper(1.0), &mut s).unwrap();
        assert_eq!(
            (d[0].round, d[0].nframes, d[0].majority.as_str()),
            (0, 4, "A")
        );
        assert!(d[0].agreed);
        assert_eq!(d[0].frames_processed, 4);
        assert_eq!(
            (d[1].round, d[1].nframes, d[1].majority.as_str()),
            (1, 8, "C")
        );
        assert_eq!(d[1].frames_processed, 12);
        assert_eq!(d[1].samples_drawn, 8);
        assert_eq!(
            (d[2].round, d[2].nframes, d[2].majority.as_str()),
            (2, 16, "B")
        );
        assert!(!d[2].agreed);
        assert_eq!(d[2].frames_processed, 28);
        // only unsolved questions are asked again
        let asked: Vec<Vec<usize>> = s
            .calls
            .iter()
            .map(|c| c.iter().map(|r| r.item).collect())
            .collect();
        assert_eq!(asked, vec![vec![0, 1, 2], vec![1, 2], vec![2]]);
        assert!(d[2].majority_text.contains("<answer>B</answer>"));
    }

    #[test]
    fn a_greedy_last_round_answers_once() {
        let script = || {
            vec![
                // agrees at once: the greedy last round is never asked
                vec![vec!["A", "A", "A"], vec!["B", "B", "C"]],
                // disagrees: the last round's majority is B, its greedy C
                vec![vec!["A", "B", "A"], vec!["B", "B", "C"]],
            ]
        };
        let rule = StopRule {
            agreement: 1.0,
            last_round: LastRound::Greedy,
        };
        let mut s = Scripted {
            script: script(),
            calls: Vec::new(),
        };
        let d = run(&[vec![4, 8], vec![4, 8]], rule, &mut s).unwrap();
        assert_eq!((d[0].round, d[0].majority.as_str()), (0, "A"));
        assert_eq!((d[1].round, d[1].majority.as_str()), (1, "C"));
        assert_eq!(d[1].answers, vec!["C".to_string()]);
        assert_eq!(d[1].samples_drawn, 4);
        assert!(!d[1].agreed);
        let greedy: Vec<Vec<bool>> = s
            .calls
            .iter()
            .map(|c| c.iter().map(|r| r.greedy).collect())
            .collect();
        assert_eq!(greedy, vec![vec![false, false], vec![true]]);
        // the paper's rule takes the last round's majority
        let mut s = Scripted {
            script: script(),
            calls: Vec::new(),
        };
        let d = run(&[vec![4, 8], vec![4, 8]], StopRule::paper(1.0), &mut s).unwrap();
        assert_eq!((d[1].majority.as_str(), d[1].samples_drawn), ("B", 6));
        // a one-round schedule under the greedy rule is greedy decoding
        let mut s = Scripted {
            script: vec![vec![vec!["A", "D"]]],
            calls: Vec::new(),
        };
        let d = run(&[vec![16]], StopRule::greedy(), &mut s).unwrap();
        assert_eq!((d[0].majority.as_str(), d[0].samples_drawn), ("D", 1));
    }

    #[test]
    fn majority_threshold_and_ties() {
        let rule = StopRule::paper(0.6);
        assert!(rule.agrees(3, 5));
        assert!(!rule.agrees(2, 5));
        assert!(StopRule::paper(1.0).agrees(5, 5));
        assert!(!StopRule::paper(1.0).agrees(4, 5));
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // a tie goes to the answer seen first
        assert_eq!(
            majority(&v(&["B", "A", "A", "B"])).unwrap(),
            ("B".into(), 2, 0)
        );
        assert_eq!(majority(&v(&["C", "A", "A"])).unwrap(), ("A".into(), 2, 1));
        assert_eq!(majority(&[]), None);
    }

    #[test]
    fn answers_are_extracted_like_the_paper() {
        assert_eq!(extract_answer("<think>t</think><answer> B </answer>"), "B");
        assert_eq!(extract_answer("no tags"), NO_ANSWER);
        assert_eq!(extract_answer("<answer>B"), NO_ANSWER);
        assert_eq!(normalize_answer("(c)."), "C");
        // a missing answer is a vote too: all-missing agrees
        let mut s = Scripted {
            script: vec![vec![vec!["", ""], vec!["A", "A"]]],
            calls: Vec::new(),
        };
        let d = run(&[vec![2, 4]], StopRule::paper(1.0), &mut s).unwrap();
        assert_eq!(d[0].round, 0);
        assert!(run(&[vec![]], StopRule::paper(1.0), &mut s).is_err());
    }

    #[test]
    fn per_item_schedules_may_differ() {
        let mut s = Scripted {
            script: vec![
                vec![vec!["A", "B"]],
                vec![vec!["A", "B"], vec!["B", "A"], vec!["B", "B"]],
            ],
            calls: Vec::new(),
        };
        let d = run(&[vec![2], vec![2, 4, 6]], StopRule::paper(1.0), &mut s).unwrap();
        assert_eq!((d[0].round, d[0].nframes), (0, 2));
        assert!(!d[0].agreed);
        assert_eq!((d[1].round, d[1].nframes, d[1].agreed), (2, 6, false));
        assert_eq!(d[1].frames_processed, 12);
    }
}
