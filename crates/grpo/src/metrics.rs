//! Per-step metrics: one JSON line per step, PNG curves.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{GrpoError, Result};

/// Reward and accuracy of one data source in a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceMetrics {
    /// Completions from this source.
    pub count: usize,
    /// Mean reward.
    pub reward: f64,
    /// Mean accuracy, when the reward function reports one.
    pub accuracy: Option<f64>,
}

/// Wall-clock seconds of the phases of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Sampling completions.
    pub rollout: f64,
    /// Reward functions.
    pub reward: f64,
    /// Old-policy log-probs (0 when reused from the update pass).
    pub old_logprob: f64,
    /// Reference log-probs.
    pub ref_logprob: f64,
    /// Forward/backward/optimizer passes.
    pub update: f64,
    /// Whole step.
    pub total: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based step number.
    pub step: u64,
    /// Mean raw reward (before overlong/KL shaping) of the trained rows.
    pub reward_mean: f64,
    /// Mean raw reward of every completion sampled this step, including
    /// groups dropped by dynamic sampling (equals `reward_mean` without it).
    pub sampled_reward_mean: f64,
    /// Its unbiased std.
    pub reward_std: f64,
    /// Mean accuracy over rows that report one.
    pub accuracy: Option<f64>,
    /// Per data source.
    pub per_source: BTreeMap<String, SourceMetrics>,
    /// Mean advantage magnitude.
    pub advantage_abs_mean: f64,
    /// Policy-gradient loss (mean over updates).
    pub pg_loss: f64,
    /// Total loss.
    pub loss: f64,
    /// KL to the reference (aggregated like the loss).
    pub kl: f64,
    /// Entropy (aggregated like the loss; 0 when not computed).
    pub entropy: f64,
    /// Clip fraction.
    pub clip_frac: f64,
    /// Dual-clip fraction.
    pub clip_frac_lower: f64,
    /// Clip-Cov / KL-Cov fraction.
    pub cov_frac: f64,
    /// Mean logπ_old − logπ_θ.
    pub ppo_kl: f64,
    /// Mean completion length.
    pub response_len_mean: f64,
    /// Fraction of completions cut at `max_new_tokens`.
    pub truncated_frac: f64,
    /// Global gradient norm before clipping (mean over updates).
    pub grad_norm: f64,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Optimizer updates done this step.
    pub updates: usize,
    /// Updates skipped for non-finite values this step.
    pub skipped_updates: usize,
    /// Groups trained on.
    pub groups: usize,
    /// Generation batches drawn (dynamic sampling draws more than one).
    pub gen_batches: usize,
    /// Timings.
    pub timings: Timings,
    /// Completion tokens trained on per second of step time.
    pub tokens_per_s: f64,
}

impl StepMetrics {
    /// The same metrics without wall-clock fields (for determinism checks).
    pub fn without_timings(&self) -> Self {
        Self {
            timings: Timings::default(),
            tokens_per_s: 0.0,
            ..self.clone()
        }
    }
}

/// Appends metrics lines to a JSONL file.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
}

impl MetricsWriter {
    /// Writes to `path` (created with its folder if missing). Lines of steps
    /// after `keep_until_step` are dropped, so a resumed run continues the
    /// file exactly where its checkpoint was taken.
    pub fn open(path: impl Into<PathBuf>, keep_until_step: u64) -> Result<Self> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| GrpoError::io(parent, e))?;
        }
        let kept: Vec<StepMetrics> = if path.exists() {
            read_metrics(&path)?
                .into_iter()
                .filter(|m| m.step <= keep_until_step)
                .collect()
        } else {
            Vec::new()
        };
        let mut text = String::new();
        for m in &kept {
            text.push_str(&to_line(m)?);
        }
        fs::write(&path, text).map_err(|e| GrpoError::io(&path, e))?;
        Ok(Self { path })
    }

    /// Appends one line and flushes it.
    pub fn write(&mut self, m: &StepMetrics) -> Result<()> {
        let line = to_line(m)?;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| GrpoError::io(&self.path, e))?;
        f.write_all(line.as_bytes())
            .map_err(|e| GrpoError::io(&self.path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn to_line(m: &StepMetrics) -> Result<String> {
    let mut s = serde_json::to_string(m).map_err(|e| GrpoError::Serialize {
        what: format!("metrics of step {}", m.step),
        reason: e.to_string(),
    })?;
    s.push('\n');
    Ok(s)
}

/// Reads a metrics file; errors name the line.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = fs::read_to_string(path).map_err(|e| GrpoError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| GrpoError::Serialize {
                what: format!("{}:{}", path.display(), i + 1),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Draws one curve as an RGB PNG (no text: plotters' font stack stays out of
/// the build; the file name says what is plotted). Returns false when there
/// is nothing to draw.
pub fn plot_series(path: &Path, values: &[(f64, f64)], width: u32, height: u32) -> Result<bool> {
    use plotters::prelude::*;
    let pts: Vec<(f64, f64)> = values
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() || width < 16 || height < 16 {
        return Ok(false);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let plot_err = |e: String| GrpoError::Serialize {
        what: path.display().to_string(),
        reason: e,
    };
    let mut buf = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        let area = root.margin(10, 10, 10, 10);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_err(e.to_string()))?;
        // Frame and a zero line, when zero is in range.
        chart
            .plotting_area()
            .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(|e| plot_err(e.to_string()))?;
        if y0 < 0.0 && y1 > 0.0 {
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, 0.0), (x1, 0.0)],
                    &RGBColor(180, 180, 180),
                ))
                .map_err(|e| plot_err(e.to_string()))?;
        }
        chart
            .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
            .map_err(|e| plot_err(e.to_string()))?;
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| plot_err("buffer size".into()))?;
    img.save(path).map_err(|e| plot_err(e.to_string()))?;
    Ok(true)
}

/// Writes `reward.png`, `accuracy.png`, `kl.png`, `entropy.png`,
/// `response_len.png`, `clip_frac.png`, `grad_norm.png` into `dir`.
pub fn plot_metrics(metrics: &[StepMetrics], dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).map_err(|e| GrpoError::io(dir, e))?;
    type Getter = fn(&StepMetrics) -> Option<f64>;
    let series: [(&str, Getter); 7] = [
        ("reward", |m| Some(m.reward_mean)),
        ("accuracy", |m| m.accuracy),
        ("kl", |m| Some(m.kl)),
        ("entropy", |m| Some(m.entropy)),
        ("response_len", |m| Some(m.response_len_mean)),
        ("clip_frac", |m| Some(m.clip_frac)),
        ("grad_norm", |m| Some(m.grad_norm)),
    ];
    let mut written = Vec::new();
    for (name, get) in series {
        let pts: Vec<(f64, f64)> = metrics
            .iter()
            .filter_map(|m| get(m).map(|v| (m.step as f64, v)))
            .collect();
        let p = dir.join(format!("{name}.png"));
        if plot_series(&p, &pts, 480, 320)? {
            written.push(p);
        }
    }
    Ok(written)
}
