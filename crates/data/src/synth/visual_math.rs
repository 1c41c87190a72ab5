//! `visual-math`: counting shapes and reading a bar chart (LMM-R1's
//! multimodal stage, scaled down). Counting and "how many units taller"
//! questions are numeric; "which bar is tallest/shortest" is multiple choice.

use image::RgbImage;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde_json::{json, Map};

use crate::error::DataError;
use crate::omnimed::MULTIPLE_CHOICE_VERIFIER;
use crate::row::{format_multiple_choice, Row};
use crate::synth::draw::{self, grey, Shape, NAMED_COLORS};
use crate::synth::text_logic::NUMERIC_VERIFIER;
use crate::synth::{
    check_image_size, fixed_options, image_paths, sample_id, sample_rng, shuffle_options, Sample,
    TaskGenerator,
};

/// Configuration of [`VisualMath`].
#[derive(Debug, Clone, PartialEq)]
pub struct VisualMathConfig {
    /// Square image side; a positive multiple of 28.
    pub image_size: u32,
    /// Shuffle the options of "which bar is tallest/shortest" (the
    /// default). When off, the options list the bars left to right, so the
    /// letter is the position of the answer bar in the image: a tiny model
    /// can learn that from pixels, but not a named option's place in a
    /// shuffled list (docs/bundled-model.md).
    pub shuffle_options: bool,
}

impl Default for VisualMathConfig {
    fn default() -> Self {
        Self {
            image_size: 112,
            shuffle_options: true,
        }
    }
}

/// The `visual-math` generator.
#[derive(Debug, Clone)]
pub struct VisualMath {
    config: VisualMathConfig,
}

impl VisualMath {
    pub fn new(config: VisualMathConfig) -> Result<Self, DataError> {
        check_image_size("visual-math", config.image_size, config.image_size)?;
        Ok(Self { config })
    }
}

/// Place up to `n` non-overlapping discs of radius `r` (bounded attempts, so
/// crowded configurations place fewer; callers count what was placed).
fn place(rng: &mut rand_chacha::ChaCha8Rng, n: usize, r: f32, size: f32) -> Vec<(f32, f32)> {
    let mut out: Vec<(f32, f32)> = Vec::with_capacity(n);
    let mut attempts = 0;
    while out.len() < n && attempts < 500 {
        attempts += 1;
        let (x, y) = (
            rng.random_range(r + 1.0..size - r - 1.0),
            rng.random_range(r + 1.0..size - r - 1.0),
        );
        let min_d = 2.0 * r + 2.0;
        if out
            .iter()
            .all(|&(px, py)| (px - x) * (px - x) + (py - y) * (py - y) >= min_d * min_d)
        {
            out.push((x, y));
        }
    }
    out
}

impl TaskGenerator for VisualMath {
    fn name(&self) -> &'static str {
        "visual-math"
    }

    fn sample(&self, index: u64, seed: u64) -> Sample {
        let mut rng = sample_rng(self.name(), seed, index);
        let size = self.config.image_size;
        let s = size as f32;
        let mut img = RgbImage::new(size, size);
        draw::fill(&mut img, grey(250.0));
        let id = sample_id(self.name(), seed, index);
        let mut meta = Map::new();
        let kind = rng.random_range(0..3u32);
        let (problem, answer, options, verifier) = if kind == 0 {
            // Count one shape among others.
            let target = *Shape::ALL.choose(&mut rng).unwrap_or(&Shape::Circle);
            let r = s / 16.0;
            let want_target = rng.random_range(1..=6usize);
            let want_other = rng.random_range(0..=5usize);
            let spots = place(&mut rng, want_target + want_other, r, s);
            let mut count = 0usize;
            let others: Vec<Shape> = Shape::ALL.into_iter().filter(|&x| x != target).collect();
            for (k, &(x, y)) in spots.iter().enumerate() {
                let shape = if k < want_target {
                    count += 1;
                    target
                } else {
                    *others.choose(&mut rng).unwrap_or(&Shape::Square)
                };
                let color = NAMED_COLORS
                    .choose(&mut rng)
                    .map(|c| c.1)
                    .unwrap_or([0, 0, 0]);
                shape.draw(&mut img, x, y, r, color);
            }
            meta.insert("task".into(), "count".into());
            meta.insert(
                "rationale".into(),
                format!("There are {count} {}s.", target.name()).into(),
            );
            meta.insert("target_shape".into(), target.name().into());
            (
                format!("How many {}s are in the image?", target.name()),
                count.to_string(),
                Vec::new(),
                NUMERIC_VERIFIER,
            )
        } else {
            // Bar chart: 4 bars of distinct colours and distinct heights on a
            // unit grid (one grid line per unit, so heights can be read).
            let mut colours: Vec<usize> = (0..NAMED_COLORS.len()).collect();
            colours.shuffle(&mut rng);
            colours.truncate(4);
            let mut heights: Vec<i64> = (1..=8).collect();
            heights.shuffle(&mut rng);
            heights.truncate(4);
            let unit = (s - 16.0) / 9.0;
            let base = s - 8.0;
            for u in 0..=8 {
                let y = base - u as f32 * unit;
                draw::line(&mut img, (4.0, y), (s - 4.0, y), 1.0, grey(215.0));
            }
            let slot = (s - 16.0) / 4.0;
            for (k, (&c, &h)) in colours.iter().zip(&heights).enumerate() {
                let x0 = 8.0 + k as f32 * slot + slot * 0.15;
                let x1 = x0 + slot * 0.7;
                draw::rect(
                    &mut img,
                    [x0, base - h as f32 * unit, x1, base],
                    NAMED_COLORS[c].1,
                );
            }
            let names: Vec<String> = colours
                .iter()
                .map(|&c| NAMED_COLORS[c].0.to_string())
                .collect();
            meta.insert("task".into(), "bars".into());
            let listing: Vec<String> = names
                .iter()
                .zip(&heights)
                .map(|(n, h)| format!("{n} {h}"))
                .collect();
            meta.insert(
                "rationale".into(),
                format!("Bar heights: {}.", listing.join(", ")).into(),
            );
            meta.insert(
                "bars".into(),
                json!(names
                    .iter()
                    .zip(&heights)
                    .map(|(n, h)| json!({"color": n, "height": h}))
                    .collect::<Vec<_>>()),
            );
            if kind == 1 {
                let tallest = rng.random_bool(0.5);
                let pick = if tallest {
                    heights.iter().enumerate().max_by_key(|(_, h)| **h)
                } else {
                    heights.iter().enumerate().min_by_key(|(_, h)| **h)
                };
                let correct = pick.map(|(i, _)| i).unwrap_or(0);
                let (opts, letter) = if self.config.shuffle_options {
                    shuffle_options(&mut rng, names.clone(), correct)
                } else {
                    fixed_options(names.clone(), correct, None)
                };
                let word = if tallest { "tallest" } else { "shortest" };
                (
                    format_multiple_choice(&format!("Which bar is the {word}?"), &opts),
                    letter,
                    opts,
                    MULTIPLE_CHOICE_VERIFIER,
                )
            } else {
                let mut pair: Vec<usize> = (0..4).collect();
                pair.shuffle(&mut rng);
                let (a, b) = (pair[0], pair[1]);
                let (hi, lo) = if heights[a] >= heights[b] {
                    (a, b)
                } else {
                    (b, a)
                };
                (
                    format!(
                        "How many units taller is the {} bar than the {} bar?",
                        names[hi], names[lo]
                    ),
                    (heights[hi] - heights[lo]).to_string(),
                    Vec::new(),
                    NUMERIC_VERIFIER,
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
            images: vec![img],
        }
    }
}
