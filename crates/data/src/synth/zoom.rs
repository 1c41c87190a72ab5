//! `zoom-search`: a large cluttered image with one small coloured target; the
//! question asks for the target's colour or shape (Chain-of-Focus / V* style:
//! the answer needs a zoom into a small region). The target's box is in
//! `boxes` (pixels), so grounding rewards can score the zoom too.

use image::RgbImage;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::Map;

use crate::error::DataError;
use crate::omnimed::MULTIPLE_CHOICE_VERIFIER;
use crate::row::{format_multiple_choice, BoxLabel, Row};
use crate::synth::draw::{self, grey, Shape, NAMED_COLORS};
use crate::synth::{
    check_image_size, fixed_options, image_paths, sample_id, sample_rng, shuffle_options, Sample,
    TaskGenerator,
};

/// Configuration of [`ZoomSearch`].
#[derive(Debug, Clone, PartialEq)]
pub struct ZoomSearchConfig {
    /// Square image side; a positive multiple of 28.
    pub image_size: u32,
    /// Target "radius" in pixels (the target is about twice this wide).
    pub target_radius: f32,
    /// Grey distractor shapes scattered over the image.
    pub distractors: usize,
    /// Shuffle the options (V*-like). `false` keeps a fixed order, so the
    /// letter follows from what the target looks like: shapes in their
    /// listed order, the true colour at slot `colour index mod 4` among the
    /// other colours in listed order. A model too small to find a named
    /// option in a shuffled list needs it (the bundled model,
    /// docs/bundled-model.md).
    pub shuffle_options: bool,
}

impl Default for ZoomSearchConfig {
    fn default() -> Self {
        Self {
            image_size: 448,
            target_radius: 7.0,
            distractors: 40,
            shuffle_options: true,
        }
    }
}

/// The `zoom-search` generator.
#[derive(Debug, Clone)]
pub struct ZoomSearch {
    config: ZoomSearchConfig,
}

impl ZoomSearch {
    pub fn new(config: ZoomSearchConfig) -> Result<Self, DataError> {
        check_image_size("zoom-search", config.image_size, config.image_size)?;
        let max_r = config.image_size as f32 / 4.0;
        if !(config.target_radius >= 2.0 && config.target_radius <= max_r) {
            return Err(DataError::Config(format!(
                "zoom-search: target_radius must be in [2, {max_r}], got {}",
                config.target_radius
            )));
        }
        Ok(Self { config })
    }
}

impl TaskGenerator for ZoomSearch {
    fn name(&self) -> &'static str {
        "zoom-search"
    }

    fn sample(&self, index: u64, seed: u64) -> Sample {
        let mut rng = sample_rng(self.name(), seed, index);
        let size = self.config.image_size;
        let s = size as f32;
        let r = self.config.target_radius;
        let mut img = RgbImage::new(size, size);
        draw::fill(&mut img, grey(200.0));
        draw::noise(&mut img, &mut rng, 12);
        for _ in 0..self.config.distractors {
            let shape = Shape::ALL
                .choose(&mut rng)
                .copied()
                .unwrap_or(Shape::Circle);
            let dr = r * rng.random_range(0.8f32..1.6);
            let (x, y) = (rng.random_range(dr..s - dr), rng.random_range(dr..s - dr));
            shape.draw(&mut img, x, y, dr, grey(rng.random_range(60.0f32..150.0)));
        }
        let shape_idx = rng.random_range(0..Shape::ALL.len());
        let color_idx = rng.random_range(0..NAMED_COLORS.len());
        let shape = Shape::ALL[shape_idx];
        let (color_name, color) = NAMED_COLORS[color_idx];
        let margin = r + 2.0;
        let (cx, cy) = (
            rng.random_range(margin..s - margin),
            rng.random_range(margin..s - margin),
        );
        // A light halo keeps the target from merging into a distractor.
        draw::circle(&mut img, cx, cy, r * 1.3, grey(215.0));
        shape.draw(&mut img, cx, cy, r, color);

        let ask_colour = rng.random_bool(0.5);
        let (question, all_options, correct) = if ask_colour {
            let others: Vec<usize> = (0..NAMED_COLORS.len())
                .filter(|&i| i != color_idx)
                .collect();
            let picked: Vec<usize> = others.choose_multiple(&mut rng, 3).copied().collect();
            let mut opts = vec![color_name.to_string()];
            opts.extend(picked.iter().map(|&i| NAMED_COLORS[i].0.to_string()));
            (
                format!("What colour is the coloured {}?", shape.name()),
                opts,
                0,
            )
        } else {
            let opts: Vec<String> = Shape::ALL.iter().map(|s| s.name().to_string()).collect();
            (
                format!("What shape is the {color_name} object?"),
                opts,
                shape_idx,
            )
        };
        let answer_text = all_options.get(correct).cloned().unwrap_or_default();
        let (options, letter) = if self.config.shuffle_options {
            shuffle_options(&mut rng, all_options, correct)
        } else {
            // Colour questions draw 3 of the other colours: rank them by
            // NAMED_COLORS; shape questions list every shape already.
            let names = NAMED_COLORS.map(|(name, _)| name);
            fixed_options(all_options, correct, ask_colour.then_some(&names[..]))
        };
        let id = sample_id(self.name(), seed, index);
        let mut meta = Map::new();
        meta.insert("target_shape".into(), shape.name().into());
        meta.insert("target_color".into(), color_name.into());
        meta.insert("answer_text".into(), answer_text.into());
        meta.insert(
            "rationale".into(),
            format!(
                "The only coloured object is a {color_name} {}.",
                shape.name()
            )
            .into(),
        );
        meta.insert("image_size".into(), size.into());
        let row = Row {
            id: id.clone(),
            source: self.name().into(),
            problem: Some(format_multiple_choice(&question, &options)),
            images: image_paths(&id, 1),
            answer: Some(letter),
            options,
            boxes: vec![BoxLabel {
                bbox_2d: [cx - r, cy - r, cx + r, cy + r],
                label: Some(format!("{color_name} {}", shape.name())),
            }],
            verifier: Some(MULTIPLE_CHOICE_VERIFIER.into()),
            meta,
            ..Row::default()
        };
        Sample {
            row,
            images: vec![img],
        }
    }
}
