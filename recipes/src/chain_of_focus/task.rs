//! The synthetic V*-like task and its focus traces.
//!
//! `zoom-search` images (`vlrl_data::synth::ZoomSearch`: one small coloured
//! target among grey distractors; "what colour / what shape is it?") are
//! drawn at several resolutions with the target's size fixed in pixels, so
//! the larger the image, the smaller the target in the model's
//! fixed-budget first view — V*'s situation (the paper evaluates 8
//! resolutions from 224 to 4K). A zoom into the target's region restores it.
//!
//! MM-CoF's traces come from a visual agent that searches the image and picks
//! the key region; here the generator knows the target's box, so the trace
//! is written directly: a zoom turn with a box around the target, then an
//! answer turn that names what the zoomed view shows.

use std::sync::Arc;

use anyhow::{Context, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use vlrl::data::synth::{TaskGenerator, ZoomSearch, ZoomSearchConfig};

/// What the question asks about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionKind {
    Colour,
    Shape,
}

impl QuestionKind {
    pub const ALL: [Self; 2] = [Self::Colour, Self::Shape];

    pub fn name(self) -> &'static str {
        match self {
            Self::Colour => "colour",
            Self::Shape => "shape",
        }
    }
}

/// One zoom-search question at one resolution.
#[derive(Debug, Clone)]
pub struct FocusExample {
    pub image: Arc<RgbImage>,
    /// Question with its option lines.
    pub question: String,
    pub options: Vec<String>,
    /// Correct option letter.
    pub answer: String,
    pub color: String,
    pub shape: String,
    /// Target box in original pixels.
    pub target_box: [f32; 4],
    /// Square image side in pixels.
    pub size: u32,
    pub kind: QuestionKind,
}

/// How the task is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskSpec {
    /// Target "radius" in pixels, the same at every resolution.
    pub target_radius: f32,
    /// Distractors of a 448-pixel image; scaled with the image area.
    pub distractors_448: usize,
    /// Whether zoom-search shuffles its options.
    pub shuffle_options: bool,
}

fn meta_str(row: &vlrl::data::Row, key: &str) -> String {
    row.meta
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Example `index` at `size` under `seed` (pure: same arguments, same
/// example; each size has its own seed stream).
pub fn example_at(size: u32, index: u64, seed: u64, spec: TaskSpec) -> Result<FocusExample> {
    let area = (size as f64 / 448.0).powi(2);
    let generator = ZoomSearch::new(ZoomSearchConfig {
        image_size: size,
        target_radius: spec.target_radius,
        distractors: ((spec.distractors_448 as f64 * area).round() as usize).max(2),
        shuffle_options: spec.shuffle_options,
    })
    .with_context(|| format!("zoom-search at {size} px"))?;
    let stream = seed.wrapping_mul(1_000_003).wrapping_add(size as u64);
    let sample = generator.sample(index, stream);
    let row = sample.row;
    let image = sample
        .images
        .into_iter()
        .next()
        .context("zoom-search sample without an image")?;
    let question = row.problem.clone().context("row without a question")?;
    let kind = if question.starts_with("What colour") {
        QuestionKind::Colour
    } else {
        QuestionKind::Shape
    };
    let target_box = row
        .boxes
        .first()
        .map(|b| b.bbox_2d)
        .context("zoom-search row without a target box")?;
    Ok(FocusExample {
        image: Arc::new(image),
        question,
        options: row.options.clone(),
        answer: row.answer.clone().unwrap_or_default(),
        color: meta_str(&row, "target_color"),
        shape: meta_str(&row, "target_shape"),
        target_box,
        size,
        kind,
    })
}

/// `per_size` examples at each of `sizes`.
pub fn generate_examples(
    sizes: &[u32],
    per_size: usize,
    seed: u64,
    spec: TaskSpec,
) -> Result<Vec<FocusExample>> {
    let mut out = Vec::with_capacity(sizes.len() * per_size);
    for &size in sizes {
        for index in 0..per_size as u64 {
            out.push(example_at(size, index, seed, spec)?);
        }
    }
    Ok(out)
}

/// The zoom box of a trace, on Qwen2-VL's 0–1000 grid: the image is cut
/// into `grid × grid` cells (with `grid` = 4 and a 56-pixel first view, one
/// cell is one 14-pixel ViT patch, the finest place the model can tell the
/// target is in); the box spans the target's cell plus a quarter cell on
/// each side, shifted inside the image. Few distinct values, so a tiny model
/// can learn to write them.
pub fn zoom_box_grid(target: [f32; 4], size: u32, grid: u32) -> [u32; 4] {
    let g = grid.max(1) as f64;
    let [cx, cy] = target_cell(target, size, grid);
    let axis = |cell: u32| -> (u32, u32) {
        let cell = cell as f64;
        let width = 1.5 / g;
        let start = ((cell - 0.25) / g).clamp(0.0, (1.0 - width).max(0.0));
        let end = (start + width).min(1.0);
        (
            (start * 1000.0).round() as u32,
            (end * 1000.0).round() as u32,
        )
    };
    let (x1, x2) = axis(cx);
    let (y1, y2) = axis(cy);
    [x1, y1, x2, y2]
}

/// `[column, row]` of the `grid × grid` cell that holds the centre of
/// `target` (original pixels of a `size`-pixel square image).
pub fn target_cell(target: [f32; 4], size: u32, grid: u32) -> [u32; 2] {
    let g = grid.max(1) as f64;
    let s = size.max(1) as f64;
    let axis = |lo: f32, hi: f32| {
        let centre = ((lo + hi) as f64 / 2.0 / s).clamp(0.0, 1.0);
        (centre * g).floor().min(g - 1.0) as u32
    };
    [axis(target[0], target[2]), axis(target[1], target[3])]
}

/// A box on Qwen2-VL's 0–1000 grid in its box tokens.
pub fn box_text(b: [u32; 4]) -> String {
    format!(
        "<|box_start|>({},{}),({},{})<|box_end|>",
        b[0], b[1], b[2], b[3]
    )
}

/// The zoom turn of a trace (before the `<|im_end|>` stop token).
pub fn zoom_turn_text(b: [u32; 4]) -> String {
    format!("<think>Find the coloured object.</think>{}", box_text(b))
}

/// The answer turn of a trace: what the (zoomed) view shows, then the
/// letter, like the bundled model's training traces.
pub fn answer_turn_text(ex: &FocusExample) -> String {
    format!(
        "<think>It shows a {} {}, which is option {}.</think><answer>{}</answer>",
        ex.color, ex.shape, ex.answer, ex.answer
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_box_holds_the_target_with_margin() {
        let spec = TaskSpec {
            target_radius: 6.0,
            distractors_448: 40,
            shuffle_options: true,
        };
        let examples = generate_examples(&[112, 448], 40, 3, spec).unwrap();
        assert_eq!(examples.len(), 80);
        for ex in &examples {
            let b = zoom_box_grid(ex.target_box, ex.size, 4);
            let s = ex.size as f32 / 1000.0;
            let (x1, y1, x2, y2) = (
                b[0] as f32 * s,
                b[1] as f32 * s,
                b[2] as f32 * s,
                b[3] as f32 * s,
            );
            let t = ex.target_box;
            assert!(
                x1 <= t[0] && t[2] <= x2 && y1 <= t[1] && t[3] <= y2,
                "{b:?} vs {t:?} at {}",
                ex.size
            );
            assert!(b[2] - b[0] == 375 && b[3] - b[1] == 375, "{b:?}");
            assert!(ex.options.len() == 4 && !ex.color.is_empty() && !ex.shape.is_empty());
        }
        let colour = examples
            .iter()
            .filter(|e| e.kind == QuestionKind::Colour)
            .count();
        assert!(
            colour > 20 && colour < 60,
            "{colour} colour questions of 80"
        );
    }

    #[test]
    fn target_cell_and_zoom_box_of_known_targets() {
        // Centre (10, 10) of a 112-px image: the top-left cell of 4×4.
        assert_eq!(target_cell([5.0, 5.0, 15.0, 15.0], 112, 4), [0, 0]);
        // Centre (111, 60): last column, third row; off-image centres clamp.
        assert_eq!(target_cell([106.0, 55.0, 116.0, 65.0], 112, 4), [3, 2]);
        assert_eq!(target_cell([300.0, -50.0, 320.0, -30.0], 112, 4), [3, 0]);
        // The middle cell of 3×3 plus a quarter cell per side: 0.25 → 0.75.
        let middle = [140.0, 140.0, 160.0, 160.0];
        assert_eq!(target_cell(middle, 300, 3), [1, 1]);
        assert_eq!(zoom_box_grid(middle, 300, 3), [250, 250, 750, 750]);
        // A corner cell's box is shifted inside the image.
        assert_eq!(
            zoom_box_grid([0.0, 0.0, 10.0, 10.0], 300, 3),
            [0, 0, 500, 500]
        );
    }

    #[test]
    fn traces_name_the_answer() {
        let spec = TaskSpec {
            target_radius: 6.0,
            distractors_448: 40,
            shuffle_options: true,
        };
        let ex = &generate_examples(&[224], 1, 1, spec).unwrap()[0];
        let text = answer_turn_text(ex);
        assert!(text.ends_with(&format!("<answer>{}</answer>", ex.answer)));
        assert!(zoom_turn_text([0, 375, 375, 750])
            .contains("<|box_start|>(0,375),(375,750)<|box_end|>"));
    }
}
