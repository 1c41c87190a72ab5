//! Sparse-to-dense frame schedule for Video-RTS test-time scaling
//! (Wang et al. 2025, `src/video_rts_eval.py`): answer with `start` frames
//! (32 in the paper); while the sampled answers disagree, double the frame
//! count up to the dataset's maximum (64 for MMVU / VideoMMMU, 128 for
//! Video-Holmes / Video-MME / LongVideoBench). The inference loop lives with
//! the recipe; this module only says which frames each round uses.
//!
//! Two ways to pick a denser set:
//! - [`Densify::Reference`]: every round is qwen-vl-utils' uniform rule with
//!   `nframes = n` (what the paper's code does by setting `nframes`); a round
//!   reuses an earlier frame only where the two linspaces happen to agree.
//! - [`Densify::Nested`]: each round keeps all frames of the previous round
//!   and adds the midpoints of its gaps (then of the largest remaining gaps
//!   until the count is reached), so a decoder only has to decode the new
//!   frames. The sets are still near-uniform.

use crate::error::SampleError;
use crate::sampling::{frame_range, linspace_indices, FrameRange, FRAME_FACTOR};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Densify {
    #[default]
    Reference,
    Nested,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ScheduleConfig {
    /// Frames in the first round (Video-RTS: 32).
    pub start: usize,
    /// Largest frame count (Video-RTS: 64 or 128 by dataset).
    pub max: usize,
    /// Growth factor per round (Video-RTS: 2).
    pub growth: usize,
    pub densify: Densify,
    pub video_start: Option<f64>,
    pub video_end: Option<f64>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            start: 32,
            max: 128,
            growth: 2,
            densify: Densify::Reference,
            video_start: None,
            video_end: None,
        }
    }
}

/// The frames of one round.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Round {
    /// Frame count of this round.
    pub nframes: usize,
    /// Frame indices, ascending (may repeat only when the video is shorter
    /// than the count, as qwen-vl-utils' rule repeats them).
    pub indices: Vec<usize>,
    /// Indices not used by any earlier round: what must be newly decoded.
    pub new_indices: Vec<usize>,
}

/// Frame counts for each round: `start`, `start·growth`, ... while `<= max`,
/// each capped to the frames available (rounded down to [`FRAME_FACTOR`]); a
/// round that would not add frames ends the schedule.
pub fn round_counts(
    config: &ScheduleConfig,
    frames_available: usize,
) -> Result<Vec<usize>, SampleError> {
    if config.start < FRAME_FACTOR {
        return Err(SampleError::InvalidOption {
            field: "start",
            reason: format!("must be at least {FRAME_FACTOR}, got {}", config.start),
        });
    }
    if config.growth < 2 {
        return Err(SampleError::InvalidOption {
            field: "growth",
            reason: format!("must be at least 2, got {}", config.growth),
        });
    }
    if config.max < config.start {
        return Err(SampleError::InvalidOption {
            field: "max",
            reason: format!("{} is below start {}", config.max, config.start),
        });
    }
    let cap = frames_available / FRAME_FACTOR * FRAME_FACTOR;
    if cap < FRAME_FACTOR {
        return Err(SampleError::FrameCountOutOfRange {
            nframes: config.start,
            min: FRAME_FACTOR,
            total_frames: frames_available,
        });
    }
    let mut counts: Vec<usize> = Vec::new();
    let mut n = config.start;
    while n <= config.max {
        let capped = n.min(cap);
        if counts.last().is_some_and(|&last| capped <= last) {
            break;
        }
        counts.push(capped);
        match n.checked_mul(config.growth) {
            Some(next) => n = next,
            None => break,
        }
    }
    Ok(counts)
}

/// All rounds of the schedule for a video of `total_frames` frames at `fps`.
pub fn sparse_to_dense(
    config: &ScheduleConfig,
    total_frames: usize,
    fps: f64,
) -> Result<Vec<Round>, SampleError> {
    let range = frame_range(config.video_start, config.video_end, total_frames, fps)?;
    let counts = round_counts(config, range.len())?;
    let mut rounds: Vec<Round> = Vec::with_capacity(counts.len());
    let mut seen: Vec<usize> = Vec::new();
    for &n in &counts {
        let indices = match (config.densify, rounds.last()) {
            (Densify::Nested, Some(prev)) => densify_nested(&prev.indices, range, n),
            _ => linspace_indices(range.start, range.end, n),
        };
        let mut new_indices: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|i| seen.binary_search(i).is_err())
            .collect();
        new_indices.dedup();
        seen.extend_from_slice(&new_indices);
        seen.sort_unstable();
        rounds.push(Round {
            nframes: n,
            indices,
            new_indices,
        });
    }
    Ok(rounds)
}

/// Grow `previous` (ascending, inside `range`) to `target` distinct indices by
/// inserting gap midpoints, largest gap first (ties: earliest gap).
fn densify_nested(previous: &[usize], range: FrameRange, target: usize) -> Vec<usize> {
    let mut set: Vec<usize> = previous.to_vec();
    set.dedup();
    let target = target.min(range.len());
    while set.len() < target {
        // The widest gap between neighbours, including the ends of the range.
        let mut best: Option<(usize, usize, usize)> = None; // (width, lo, hi)
        let mut consider = |lo: usize, hi: usize, inclusive_lo: bool, inclusive_hi: bool| {
            // Free frames strictly inside (lo, hi), or including an open end.
            let first = if inclusive_lo { lo } else { lo + 1 };
            let last = if inclusive_hi {
                hi
            } else {
                hi.saturating_sub(1)
            };
            if first > last || (!inclusive_hi && hi == 0) {
                return;
            }
            let width = last - first + 1;
            if best.is_none_or(|(w, _, _)| width > w) {
                best = Some((width, first, last));
            }
        };
        match (set.first(), set.last()) {
            (Some(&first), Some(&last)) => {
                if first > range.start {
                    consider(range.start, first, true, false);
                }
                for pair in set.windows(2) {
                    if let [a, b] = *pair {
                        consider(a, b, false, false);
                    }
                }
                if last < range.end {
                    consider(last, range.end, false, true);
                }
            }
            _ => consider(range.start, range.end, true, true),
        }
        let Some((_, lo, hi)) = best else { break };
        let mid = lo + (hi - lo) / 2;
        let pos = set.partition_point(|&x| x < mid);
        set.insert(pos, mid);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_double_until_max() {
        let cfg = ScheduleConfig::default();
        assert_eq!(round_counts(&cfg, 10_000).unwrap(), vec![32, 64, 128]);
        let cfg64 = ScheduleConfig {
            max: 64,
            ..cfg.clone()
        };
        assert_eq!(round_counts(&cfg64, 10_000).unwrap(), vec![32, 64]);
        // a 50-frame clip caps at 50 and stops growing
        assert_eq!(round_counts(&cfg, 50).unwrap(), vec![32, 50]);
        assert_eq!(round_counts(&cfg, 31).unwrap(), vec![30]);
    }

    #[test]
    fn nested_rounds_are_supersets() {
        let cfg = ScheduleConfig {
            densify: Densify::Nested,
            ..ScheduleConfig::default()
        };
        let rounds = sparse_to_dense(&cfg, 3000, 30.0).unwrap();
        assert_eq!(rounds.len(), 3);
        for pair in rounds.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(b.indices.len(), b.nframes);
            assert!(a.indices.iter().all(|i| b.indices.contains(i)));
            assert_eq!(b.new_indices.len(), b.nframes - a.nframes);
            assert!(b.indices.windows(2).all(|w| w[0] < w[1]));
        }
        // first round is the reference rule
        assert_eq!(rounds[0].indices, linspace_indices(0, 2999, 32));
    }

    #[test]
    fn reference_rounds_follow_qwen_rule() {
        let rounds = sparse_to_dense(&ScheduleConfig::default(), 300, 30.0).unwrap();
        let counts: Vec<usize> = rounds.iter().map(|r| r.nframes).collect();
        assert_eq!(counts, vec![32, 64, 128]);
        for r in &rounds {
            assert_eq!(r.indices, linspace_indices(0, 299, r.nframes));
        }
    }
}
