//! `grid-agent`: a one-move planning task in the spirit of LMM-R1's agent
//! domain (Sokoban: push boxes to targets on a drawn grid, answer with the
//! next move). Scaled down to what a 56-pixel image carries: an `n × n` grid
//! with an agent (blue disc) and a goal (green square). Questions:
//!
//! - `move`: the goal shares the agent's row or column, so exactly one of
//!   up / down / left / right brings the agent closer (multiple choice,
//!   options always in that order, answer letter);
//! - `steps`: how many single-cell moves reach the goal (the Manhattan
//!   distance; numeric).
//!
//! Deterministic like every `vlrl-data` generator: sample `i` of seed `s` is
//! a pure function of `(s, i)`.

use image::RgbImage;
use serde_json::Map;
use vlrl::data::row::{format_multiple_choice, Row};
use vlrl::data::synth::draw::{self, grey, Shape};
use vlrl::data::synth::{image_paths, sample_id, Sample, TaskGenerator};
use vlrl::grpo::rng::TrainRng;

/// The moves in option order (A = up, …).
pub const MOVES: [&str; 4] = ["up", "down", "left", "right"];

const AGENT_COLOR: [u8; 3] = [30, 60, 220];
const GOAL_COLOR: [u8; 3] = [30, 170, 40];

/// The `grid-agent` generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridAgent {
    /// Image side in pixels (a multiple of 28 for Qwen2-VL's merged patches).
    pub image_size: u32,
    /// Cells per side (≥ 2).
    pub cells: u32,
}

impl Default for GridAgent {
    fn default() -> Self {
        Self {
            image_size: 56,
            cells: 4,
        }
    }
}

/// A cell `(column, row)`, row 0 at the top.
pub type Cell = (u32, u32);

/// The move (index into [`MOVES`]) that brings `agent` one cell closer to a
/// `goal` in the same row or column; `None` otherwise (or when equal).
pub fn move_towards(agent: Cell, goal: Cell) -> Option<usize> {
    match (agent, goal) {
        ((ax, ay), (gx, gy)) if ax == gx && gy < ay => Some(0),
        ((ax, ay), (gx, gy)) if ax == gx && gy > ay => Some(1),
        ((ax, ay), (gx, gy)) if ay == gy && gx < ax => Some(2),
        ((ax, ay), (gx, gy)) if ay == gy && gx > ax => Some(3),
        _ => None,
    }
}

/// Single-cell moves from `agent` to `goal` (Manhattan distance).
pub fn steps_between(agent: Cell, goal: Cell) -> u32 {
    agent.0.abs_diff(goal.0) + agent.1.abs_diff(goal.1)
}

impl GridAgent {
    fn draw(&self, agent: Cell, goal: Cell) -> RgbImage {
        let size = self.image_size;
        let s = size as f32;
        let n = self.cells.max(2);
        let cell = s / n as f32;
        let mut img = RgbImage::new(size, size);
        draw::fill(&mut img, grey(245.0));
        for k in 0..=n {
            let p = (k as f32 * cell).min(s - 1.0);
            draw::line(&mut img, (p, 0.0), (p, s), 1.0, grey(170.0));
            draw::line(&mut img, (0.0, p), (s, p), 1.0, grey(170.0));
        }
        let centre = |(c, r): Cell| ((c as f32 + 0.5) * cell, (r as f32 + 0.5) * cell);
        let (gx, gy) = centre(goal);
        Shape::Square.draw(&mut img, gx, gy, cell * 0.4, GOAL_COLOR);
        let (ax, ay) = centre(agent);
        draw::circle(&mut img, ax, ay, cell * 0.35, AGENT_COLOR);
        img
    }
}

impl TaskGenerator for GridAgent {
    fn name(&self) -> &'static str {
        "grid-agent"
    }

    fn sample(&self, index: u64, seed: u64) -> Sample {
        // The generator's own stream (name-keyed, as vlrl-data's are).
        let mut rng = TrainRng::derive(seed ^ 0x6772_6964_6167_6e74, index);
        let n = self.cells.max(2) as usize;
        let cell = |rng: &mut TrainRng| (rng.below(n) as u32, rng.below(n) as u32);
        let agent = cell(&mut rng);
        let kind_move = rng.below(2) == 0;
        let goal = if kind_move {
            // Same row or column, a different cell.
            let along_row = rng.below(2) == 0;
            let other = (agent_axis(agent, along_row) as usize + 1 + rng.below(n - 1)) % n;
            if along_row {
                (other as u32, agent.1)
            } else {
                (agent.0, other as u32)
            }
        } else {
            let mut g = cell(&mut rng);
            while g == agent {
                g = cell(&mut rng);
            }
            g
        };
        let id = sample_id(self.name(), seed, index);
        let intro = "The blue circle is the agent and the green square is the goal on the grid.";
        let mut meta = Map::new();
        meta.insert("agent".into(), serde_json::json!([agent.0, agent.1]));
        meta.insert("goal".into(), serde_json::json!([goal.0, goal.1]));
        let options: Vec<String> = MOVES.iter().map(|m| (*m).to_string()).collect();
        let (problem, answer, options, verifier) = match move_towards(agent, goal) {
            Some(m) if kind_move => {
                meta.insert("task".into(), "move".into());
                meta.insert(
                    "rationale".into(),
                    format!("The goal is {} of the agent.", direction_word(m)).into(),
                );
                let letter = vlrl::data::row::option_letter(m)
                    .map(String::from)
                    .unwrap_or_default();
                (
                    format_multiple_choice(
                        &format!("{intro} Which move brings the agent closer to the goal?"),
                        &options,
                    ),
                    letter,
                    options,
                    "multiple_choice",
                )
            }
            _ => {
                let steps = steps_between(agent, goal);
                meta.insert("task".into(), "steps".into());
                meta.insert(
                    "rationale".into(),
                    format!("The goal is {steps} moves away.").into(),
                );
                (
                    format!("{intro} How many moves does the agent need to reach the goal?"),
                    steps.to_string(),
                    Vec::new(),
                    "numeric",
                )
            }
        };
        let row = Row {
            id: id.clone(),
            source: self.name().into(),
            problem: Some(problem),
            images: image_paths(&id, 1),
            answer: Some(answer),
            options,
            verifier: Some(verifier.into()),
            meta,
            ..Row::default()
        };
        Sample {
            row,
            images: vec![self.draw(agent, goal)],
        }
    }
}

fn agent_axis(agent: Cell, along_row: bool) -> u32 {
    if along_row {
        agent.0
    } else {
        agent.1
    }
}

fn direction_word(m: usize) -> &'static str {
    match m {
        0 => "above",
        1 => "below",
        2 => "left",
        _ => "right",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_from_the_drawn_positions() {
        let g = GridAgent::default();
        let mut kinds = [0usize; 2];
        for s in g.generate(200, 5) {
            let pos = |k: &str| {
                let v = s.row.meta.get(k).unwrap().as_array().unwrap().clone();
                (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32)
            };
            let (agent, goal) = (pos("agent"), pos("goal"));
            assert_ne!(agent, goal);
            // The agent's pixel colour is at its cell centre.
            let cell = 56.0 / 4.0;
            let px = s.images[0].get_pixel(
                ((agent.0 as f32 + 0.5) * cell) as u32,
                ((agent.1 as f32 + 0.5) * cell) as u32,
            );
            assert_eq!(px.0, AGENT_COLOR);
            match s.row.meta_str("task").unwrap() {
                "move" => {
                    kinds[0] += 1;
                    let m = move_towards(agent, goal).unwrap();
                    let letter = vlrl::data::row::option_letter(m).unwrap().to_string();
                    assert_eq!(s.row.answer.as_deref(), Some(letter.as_str()));
                    assert_eq!(s.row.options.len(), 4);
                }
                "steps" => {
                    kinds[1] += 1;
                    let want = agent.0.abs_diff(goal.0) + agent.1.abs_diff(goal.1);
                    assert_eq!(s.row.answer, Some(want.to_string()));
                }
                other => panic!("unknown task {other}"),
            }
        }
        assert!(kinds.iter().all(|&k| k > 60), "{kinds:?}");
        assert_eq!(g.sample(7, 1), g.sample(7, 1));
        assert_ne!(g.sample(7, 1).row.problem, None);
    }

    #[test]
    fn moves_point_at_the_goal() {
        assert_eq!(move_towards((1, 2), (1, 0)), Some(0));
        assert_eq!(move_towards((1, 2), (1, 3)), Some(1));
        assert_eq!(move_towards((3, 2), (0, 2)), Some(2));
        assert_eq!(move_towards((0, 2), (3, 2)), Some(3));
        assert_eq!(move_towards((0, 0), (1, 1)), None);
        assert_eq!(steps_between((0, 0), (3, 2)), 5);
    }
}
