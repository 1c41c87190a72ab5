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

/// The plots' only font: DejaVu Sans cut to printable ASCII (26 KB, licence
/// in `assets/DejaVuSans-LICENSE.txt`), so labels need no system fonts.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");
const FONT_NAME: &str = "vlrl-sans";

fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_NAME, plotters::style::FontStyle::Normal, FONT).is_ok()
    })
}

/// Trailing moving average over `window` points (the first points average
/// what they have), the trend line of a noisy RL curve.
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// Draws one curve as an RGB PNG: the title is the file's stem (`reward`,
/// `accuracy`, ...), x is the step, the raw values are drawn light and, with
/// 40 points or more, a moving average over a twentieth of them dark.
/// Returns false when there is nothing to draw.
pub fn plot_series(path: &Path, values: &[(f64, f64)], width: u32, height: u32) -> Result<bool> {
    use plotters::prelude::*;
    let pts: Vec<(f64, f64)> = values
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() || width < 64 || height < 64 {
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
    let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 };
    let (y0, y1) = (y0 - pad, y1 + pad);
    let plot_err = |e: String| GrpoError::Serialize {
        what: path.display().to_string(),
        reason: e,
    };
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace('_', " "))
        .unwrap_or_default();
    let text = register_font();
    let mut buf = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        let area = root.margin(8, 8, 8, 14);
        let mut builder = ChartBuilder::on(&area);
        if text {
            builder
                .caption(&title, (FONT_NAME, 18))
                .x_label_area_size(32)
                .y_label_area_size(52);
        }
        let mut chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_err(e.to_string()))?;
        if text {
            chart
                .configure_mesh()
                .light_line_style(RGBColor(235, 235, 235))
                .x_desc("step")
                .x_labels(6)
                .y_labels(6)
                .label_style((FONT_NAME, 12))
                .axis_desc_style((FONT_NAME, 13))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.3}"))
                .draw()
                .map_err(|e| plot_err(e.to_string()))?;
        } else {
            chart
                .plotting_area()
                .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
                .map_err(|e| plot_err(e.to_string()))?;
        }
        if y0 < 0.0 && y1 > 0.0 {
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, 0.0), (x1, 0.0)],
                    &RGBColor(180, 180, 180),
                ))
                .map_err(|e| plot_err(e.to_string()))?;
        }
        let window = pts.len() / 20;
        let smooth = window >= 2;
        let raw_color = if smooth {
            RGBColor(160, 185, 230)
        } else {
            BLUE
        };
        let trend = smooth.then(|| moving_average(&pts, window));
        chart
            .draw_series(LineSeries::new(pts, raw_color.stroke_width(1)))
            .map_err(|e| plot_err(e.to_string()))?;
        if let Some(trend) = trend {
            chart
                .draw_series(LineSeries::new(trend, RGBColor(0, 40, 140).stroke_width(2)))
                .map_err(|e| plot_err(e.to_string()))?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing_and_starts_on_what_it_has() {
        let pts: Vec<(f64, f64)> = [1.0, 3.0, 5.0, 7.0]
            .iter()
            .enumerate()
            .map(|(i, &y)| (i as f64, y))
            .collect();
        let avg = moving_average(&pts, 2);
        assert_eq!(avg, vec![(0.0, 1.0), (1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]);
        assert_eq!(moving_average(&pts, 0), pts);
    }

    /// The plot carries text (title, tick labels) and both curves: dark
    /// pixels appear outside the line colours, and the file decodes.
    #[test]
    fn plots_are_labelled_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accuracy.png");
        let pts: Vec<(f64, f64)> = (1..=60)
            .map(|i| (i as f64, 0.3 + 0.1 * ((i as f64) / 7.0).sin()))
            .collect();
        assert!(plot_series(&path, &pts, 480, 320).unwrap());
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (480, 320));
        // Text is drawn in black; the curves are blue.
        let black = img
            .pixels()
            .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
            .count();
        assert!(black > 200, "no text drawn ({black} black pixels)");
        let trend = img
            .pixels()
            .filter(|p| p[0] < 30 && p[1] < 80 && p[2] > 110)
            .count();
        assert!(trend > 50, "no moving average drawn ({trend} pixels)");
        assert!(!plot_series(&path, &[], 480, 320).unwrap());
    }
}
