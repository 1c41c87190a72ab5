//! Deterministic synthetic task generators.
//!
//! Every generator implements [`TaskGenerator`]: sample `i` of seed `s` is a
//! pure function of `(generator, s, i)` (its own ChaCha8 stream), so
//! `generate(n, s)` is a prefix of `generate(n + k, s)` and the same seed gives
//! byte-identical rows and images on every machine. Images are kept in memory
//! ([`Sample::images`]); [`write_dataset_dir`] writes them as a dataset folder
//! (`data.jsonl` + PNGs) that [`crate::Dataset::load_jsonl`] reads back.

pub mod draw;
pub mod med;
pub mod text_logic;
pub mod video;
pub mod visual_math;
pub mod zoom;

use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::DataError;
use crate::paths::check_relative;
use crate::row::Row;
use crate::split::fnv1a;

pub use med::{MedSynth, MedSynthConfig};
pub use text_logic::TextLogic;
pub use video::{VideoEvent, VideoEventSpec, VideoSample, VideoTaskGenerator};
pub use visual_math::{VisualMath, VisualMathConfig};
pub use zoom::{ZoomSearch, ZoomSearchConfig};

/// One generated example: its row and the images its `images` paths name, in
/// the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub row: Row,
    pub images: Vec<RgbImage>,
}

/// A seeded generator of synthetic examples.
pub trait TaskGenerator {
    /// Generator name; also the rows' `source` and the id prefix.
    fn name(&self) -> &'static str;

    /// Sample `index` of `seed`. Pure: same arguments, same sample.
    fn sample(&self, index: u64, seed: u64) -> Sample;

    /// The first `n` samples of `seed`.
    fn generate(&self, n: usize, seed: u64) -> Vec<Sample> {
        (0..n as u64).map(|i| self.sample(i, seed)).collect()
    }
}

/// The RNG of sample `index` of generator `name` under `seed`: one ChaCha8
/// stream per sample, keyed by the generator's name so that two generators
/// with the same seed do not draw the same numbers.
pub fn sample_rng(name: &str, seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name.as_bytes()));
    rng.set_stream(index);
    rng
}

/// Row id of sample `index`: `<name>-<seed>-<index>`.
pub fn sample_id(name: &str, seed: u64, index: u64) -> String {
    format!("{name}-{seed}-{index}")
}

/// Image path(s) for a sample id, relative to the dataset root.
pub fn image_paths(id: &str, count: usize) -> Vec<String> {
    match count {
        0 => Vec::new(),
        1 => vec![format!("images/{id}.png")],
        n => (0..n).map(|k| format!("images/{id}_{k}.png")).collect(),
    }
}

/// Check that image sizes are positive multiples of 28 (Qwen2-VL's patch 14 x
/// merge 2), so a synthetic image maps to whole merged patches.
pub fn check_image_size(what: &str, width: u32, height: u32) -> Result<(), DataError> {
    if width == 0 || height == 0 || !width.is_multiple_of(28) || !height.is_multiple_of(28) {
        return Err(DataError::Config(format!(
            "{what}: image size {width}x{height} must be positive multiples of 28"
        )));
    }
    Ok(())
}

/// Write samples as a dataset folder: `<dir>/<jsonl_name>` (one row a line)
/// and each image at its row path (PNG). Returns the JSONL path.
pub fn write_dataset_dir(
    dir: impl AsRef<Path>,
    jsonl_name: &str,
    samples: &[Sample],
) -> Result<PathBuf, DataError> {
    let dir = dir.as_ref();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let jsonl_path = dir.join(jsonl_name);
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&jsonl_path).map_err(io(&jsonl_path))?);
    for sample in samples {
        if sample.row.images.len() != sample.images.len() {
            return Err(DataError::Config(format!(
                "sample `{}` names {} images but holds {}",
                sample.row.id,
                sample.row.images.len(),
                sample.images.len()
            )));
        }
        for (rel, img) in sample.row.images.iter().zip(&sample.images) {
            let rel_path = check_relative(rel).map_err(|e| {
                DataError::Config(format!("sample `{}` image `{rel}`: {e}", sample.row.id))
            })?;
            let path = dir.join(rel_path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            img.save_with_format(&path, image::ImageFormat::Png)
                .map_err(|source| DataError::ImageWrite {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
        }
        let line = serde_json::to_string(&sample.row).map_err(|source| DataError::Json {
            path: jsonl_path.clone(),
            source,
        })?;
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(io(&jsonl_path))?;
    }
    out.flush().map_err(io(&jsonl_path))?;
    Ok(jsonl_path)
}

/// Options in a fixed order, for models too small to find a named option
/// in a shuffled list: as listed, or, when the options are a drawn subset
/// of the known list `order` (such as 3 random distractors), the others in
/// `order` with the answer at slot `position in order mod n`, so the letter
/// is a function of the answer. Returns the options and the answer's letter.
pub(crate) fn fixed_options(
    options: Vec<String>,
    correct: usize,
    order: Option<&[&str]>,
) -> (Vec<String>, String) {
    let answer = options.get(correct).cloned().unwrap_or_default();
    let options = match order {
        Some(order) => {
            let rank = |o: &str| order.iter().position(|name| *name == o);
            let mut others: Vec<String> =
                options.iter().filter(|o| **o != answer).cloned().collect();
            others.sort_by_key(|o| rank(o));
            let slot = rank(&answer).unwrap_or(0) % options.len().max(1);
            others.insert(slot.min(others.len()), answer.clone());
            others
        }
        None => options,
    };
    let pos = options.iter().position(|o| *o == answer).unwrap_or(0);
    let letter = crate::row::option_letter(pos)
        .map(String::from)
        .unwrap_or_default();
    (options, letter)
}

/// Shuffle `options` (the correct one at `correct`) with `rng` and return the
/// new list and the correct letter, so the right letter is uniform over A-D.
pub(crate) fn shuffle_options(
    rng: &mut ChaCha8Rng,
    options: Vec<String>,
    correct: usize,
) -> (Vec<String>, String) {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..options.len()).collect();
    order.shuffle(rng);
    let shuffled: Vec<String> = order
        .iter()
        .filter_map(|&i| options.get(i).cloned())
        .collect();
    let pos = order.iter().position(|&i| i == correct).unwrap_or(0);
    let letter = crate::row::option_letter(pos)
        .map(String::from)
        .unwrap_or_default();
    (shuffled, letter)
}
