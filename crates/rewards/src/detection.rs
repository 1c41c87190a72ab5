//! Detection rewards: V-Triune's detection reward, and Hungarian-matched F1.
//!
//! V-Triune (Ma et al., 2025, "One RL to See Them All"; code
//! `reward_server/verify.py::DetectionVerifier` and
//! `reward_server/utils/det_helper.py`) scores a list of predicted boxes
//! against the truth boxes as follows, at an IoU threshold ε (fixed, the
//! average over 0.5…0.99, or Dynamic IoU's schedule of training progress):
//!
//! 1. match boxes greedily — max-IoU-first over all pairs (a label mismatch
//!    keeps the pair but scores IoU 0), or label-first (each truth box, in
//!    order, takes the best same-label free prediction) — keeping pairs with
//!    IoU ≥ ε;
//! 2. mean IoU = Σ matched IoU / #truth; miss rate = (#truth − #matched) /
//!    #truth; false-alarm rate = (#pred − #matched) / #pred;
//!    completeness = 1 − (miss + false alarm) / 2;
//!    score = mean IoU · (1 − w_c) + completeness · w_c;
//! 3. size penalty = 0.6^|#pred − #truth| multiplies every score;
//! 4. final = Σ wᵢ·scoreᵢ / Σ wᵢ over {max-IoU-first, label-first, mAP,
//!    mAP50, mAP75} (COCO mAP, see [`crate::coco`]).
//!
//! Worked example (checked in the tests): one truth `dog [0,0,100,100]`,
//! predictions `dog [0,0,100,90]` (IoU 0.9) and `cat [200,200,300,300]`,
//! ε = 0.85, only max-IoU-first weighted, w_c = 0: mean IoU 0.9, size penalty
//! 0.6 → reward 0.54.
//!
//! The reference's max-IoU-first loop has a Python scoping slip: it finds the
//! highest IoU but records the pair left in its loop variables (the *last*
//! free prediction and truth), not the arg-max. [`GreedyOrder::MaxIouFirst`]
//! matches the arg-max pair as the paper describes; set
//! `reference_quirks = true` to reproduce the code bit for bit (the parity
//! fixture checks both).

use crate::coco::{coco_map, CocoBox};
use crate::iou::IouSchedule;
use crate::types::{wrong_truth, GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use pathfinding::prelude::{kuhn_munkres, Matrix};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vlrl_grounding::extract_tag;

/// A detection box in `f64`, label lowercased.
#[derive(Debug, Clone, PartialEq)]
pub struct DetBox {
    pub bbox: [f64; 4],
    pub label: String,
}

/// V-Triune's `compute_iou`: 0 without positive-area overlap.
pub fn det_iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ix1 = a[0].max(b[0]);
    let iy1 = a[1].max(b[1]);
    let ix2 = a[2].min(b[2]);
    let iy2 = a[3].min(b[3]);
    if !(ix2 > ix1 && iy2 > iy1) {
        return 0.0;
    }
    let inter = (ix2 - ix1) * (iy2 - iy1);
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    let v = inter / union;
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn json_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // Python's isinstance(True, int) is True: the reference accepts booleans.
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// V-Triune's `extract_bbox`: the answer text must be (after repairs) one JSON
/// list of `{"bbox_2d": [x1,y1,x2,y2], "label": str}` objects. Repairs: `[[`/`]]`
/// collapsed, a list not ending in `]` cut after its last `},`, single quotes
/// made double, backslashes removed. Items with inverted corners or missing
/// fields are dropped, duplicates (same coordinates) removed; `None` when
/// nothing remains. (Python's `json` also accepts `NaN`/`Infinity`; those
/// texts are rejected here.)
pub fn vtriune_extract_boxes(text: &str) -> Option<Vec<DetBox>> {
    if text.trim().is_empty() {
        return None;
    }
    let mut s = text.replace("[[", "[").replace("]]", "]");
    if !s.ends_with(']') {
        let head = s.rsplit_once("},").map_or(s.as_str(), |(h, _)| h);
        s = format!("{head}}}]");
    }
    let s = s.replace('\'', "\"").replace('\\', "");
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&s) else {
        return None;
    };
    let mut out: Vec<DetBox> = Vec::new();
    for item in &items {
        let Value::Object(map) = item else { continue };
        let (Some(Value::Array(c)), Some(Value::String(label))) =
            (map.get("bbox_2d"), map.get("label"))
        else {
            continue;
        };
        let nums: Vec<f64> = c.iter().filter_map(json_number).collect();
        let [x1, y1, x2, y2] = nums.as_slice() else {
            continue;
        };
        if c.len() != 4 || !(x1 <= x2 && y1 <= y2) {
            continue;
        }
        let bbox = [*x1, *y1, *x2, *y2];
        if out.iter().any(|b| b.bbox == bbox) {
            continue;
        }
        out.push(DetBox {
            bbox,
            label: label.clone(),
        });
    }
    (!out.is_empty()).then_some(out)
}

/// A matched pair and the IoU it scores (0 for a label mismatch in max-IoU-first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub pred: usize,
    pub truth: usize,
    pub iou: f64,
}

fn iou_matrix(preds: &[DetBox], truths: &[DetBox]) -> Vec<Vec<f64>> {
    preds
        .iter()
        .map(|p| truths.iter().map(|t| det_iou(&p.bbox, &t.bbox)).collect())
        .collect()
}

/// Greedy max-IoU-first (`greedy_match_by_iou_max_iou_first`): repeatedly take
/// the highest-IoU free pair (first in scan order on ties) while it is ≥ ε.
/// With `reference_quirks`, record the pair the reference records instead
/// (last free prediction and last free truth, see the module docs).
pub fn greedy_max_iou_first(
    preds: &[DetBox],
    truths: &[DetBox],
    threshold: f64,
    reference_quirks: bool,
) -> Vec<Match> {
    let m = iou_matrix(preds, truths);
    let pl: Vec<String> = preds.iter().map(|p| p.label.to_lowercase()).collect();
    let tl: Vec<String> = truths.iter().map(|t| t.label.to_lowercase()).collect();
    let same = |p: usize, t: usize| pl.get(p).zip(tl.get(t)).is_some_and(|(a, b)| a == b);
    if reference_quirks {
        return greedy_reference_order(&m, preds.len(), truths.len(), threshold, same);
    }
    // Taking the global maximum each round (first in (pred, truth) order on
    // ties) equals scanning the pairs sorted by (−IoU, pred, truth) and
    // keeping those whose boxes are both free; pairs below ε never match.
    let mut pairs: Vec<(f64, usize, usize)> = m
        .iter()
        .enumerate()
        .flat_map(|(p, row)| row.iter().enumerate().map(move |(t, &v)| (v, p, t)))
        .filter(|(v, _, _)| *v >= threshold)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut used_p = vec![false; preds.len()];
    let mut used_t = vec![false; truths.len()];
    let mut out = Vec::new();
    for (v, p, t) in pairs {
        let (Some(up), Some(ut)) = (used_p.get(p).copied(), used_t.get(t).copied()) else {
            continue;
        };
        if up || ut {
            continue;
        }
        if let (Some(a), Some(b)) = (used_p.get_mut(p), used_t.get_mut(t)) {
            *a = true;
            *b = true;
        }
        out.push(Match {
            pred: p,
            truth: t,
            iou: if same(p, t) { v } else { 0.0 },
        });
    }
    out
}

/// The reference's loop, slip included: the round's maximum IoU is found,
/// but the pair recorded (and removed) is the last free prediction and the
/// last free truth.
fn greedy_reference_order(
    m: &[Vec<f64>],
    n_pred: usize,
    n_truth: usize,
    threshold: f64,
    same: impl Fn(usize, usize) -> bool,
) -> Vec<Match> {
    let mut free_p: Vec<usize> = (0..n_pred).collect();
    let mut free_t: Vec<usize> = (0..n_truth).collect();
    let mut out = Vec::new();
    while let (Some(&p), Some(&t)) = (free_p.last(), free_t.last()) {
        let mut best = -1.0f64;
        for &fp in &free_p {
            for &ft in &free_t {
                let v = m.get(fp).and_then(|r| r.get(ft)).copied().unwrap_or(0.0);
                if v > best {
                    best = v;
                }
            }
        }
        if best < threshold {
            break;
        }
        free_p.pop();
        free_t.pop();
        out.push(Match {
            pred: p,
            truth: t,
            iou: if same(p, t) { best } else { 0.0 },
        });
    }
    out
}

/// Greedy label-first (`greedy_match_by_iou_max_label_first`): each truth box
/// in order takes its highest-IoU free prediction with the same label
/// (first on ties) when that IoU is ≥ ε.
pub fn greedy_max_label_first(preds: &[DetBox], truths: &[DetBox], threshold: f64) -> Vec<Match> {
    let mut used = vec![false; preds.len()];
    let pl: Vec<String> = preds.iter().map(|p| p.label.to_lowercase()).collect();
    let mut out = Vec::new();
    for (t, tb) in truths.iter().enumerate() {
        let label = tb.label.to_lowercase();
        let mut best: Option<(usize, f64)> = None;
        for ((p, pb), plabel) in preds.iter().enumerate().zip(&pl) {
            if used.get(p).copied().unwrap_or(true) || *plabel != label {
                continue;
            }
            let v = det_iou(&pb.bbox, &tb.bbox);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((p, v));
            }
        }
        if let Some((p, v)) = best.filter(|(_, v)| *v >= threshold) {
            if let Some(u) = used.get_mut(p) {
                *u = true;
            }
            out.push(Match {
                pred: p,
                truth: t,
                iou: v,
            });
        }
    }
    out
}

/// IoU scaled to integers for `kuhn_munkres` (which needs `Ord` weights).
const HUNGARIAN_SCALE: f64 = 1e9;

/// Optimal one-to-one assignment maximizing the total IoU of pairs with
/// IoU ≥ ε (Kuhn–Munkres, from the `pathfinding` crate), label-compatible
/// pairs only when `use_labels`; unweighted leftovers are not matches.
pub fn hungarian_match(
    preds: &[DetBox],
    truths: &[DetBox],
    threshold: f64,
    use_labels: bool,
) -> Vec<Match> {
    if preds.is_empty() || truths.is_empty() {
        return Vec::new();
    }
    let m = iou_matrix(preds, truths);
    // Lowercased once: the score runs for every (pred, truth) pair.
    let pl: Vec<String> = preds.iter().map(|p| p.label.to_lowercase()).collect();
    let tl: Vec<String> = truths.iter().map(|t| t.label.to_lowercase()).collect();
    let score = |p: usize, t: usize| -> f64 {
        let ok = !use_labels || pl.get(p).zip(tl.get(t)).is_some_and(|(a, b)| a == b);
        let v = if ok {
            m.get(p).and_then(|r| r.get(t)).copied().unwrap_or(0.0)
        } else {
            0.0
        };
        // Pairs below the threshold weigh nothing, so the assignment
        // maximizes the IoU that will actually count.
        if v >= threshold {
            v
        } else {
            0.0
        }
    };
    // kuhn_munkres needs rows <= columns: put the shorter side on rows.
    let transpose = preds.len() > truths.len();
    let (rows, cols) = if transpose {
        (truths.len(), preds.len())
    } else {
        (preds.len(), truths.len())
    };
    let weights: Vec<i64> = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .map(|(r, c)| {
            let (p, t) = if transpose { (c, r) } else { (r, c) };
            (score(p, t) * HUNGARIAN_SCALE).round() as i64
        })
        .collect();
    let Ok(matrix) = Matrix::from_vec(rows, cols, weights) else {
        return Vec::new();
    };
    let (_, assignment) = kuhn_munkres(&matrix);
    let mut out: Vec<Match> = assignment
        .into_iter()
        .enumerate()
        .map(|(r, c)| if transpose { (c, r) } else { (r, c) })
        .map(|(p, t)| Match {
            pred: p,
            truth: t,
            iou: score(p, t),
        })
        .filter(|mm| mm.iou >= threshold && mm.iou > 0.0)
        .collect();
    out.sort_by_key(|mm| mm.truth);
    out
}

/// The scores V-Triune derives from a matching (`calculate_iou_score`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IouScores {
    pub mean_iou: f64,
    pub completeness: f64,
    pub precision: f64,
    pub recall: f64,
    pub weighted: f64,
}

pub fn iou_scores(
    matches: &[Match],
    n_pred: usize,
    n_truth: usize,
    completeness_weight: f64,
) -> IouScores {
    if n_truth == 0 {
        return IouScores::default();
    }
    let nt = n_truth as f64;
    let nm = matches.len() as f64;
    let mean_iou = if matches.is_empty() {
        0.0
    } else {
        matches.iter().map(|m| m.iou).sum::<f64>() / nt
    };
    let miss = (nt - nm) / nt;
    let false_alarm = if n_pred == 0 {
        0.0
    } else {
        (n_pred as f64 - nm) / n_pred as f64
    };
    let completeness = 1.0 - (miss + false_alarm) / 2.0;
    IouScores {
        mean_iou,
        completeness,
        precision: 1.0 - false_alarm,
        recall: 1.0 - miss,
        weighted: mean_iou * (1.0 - completeness_weight) + completeness * completeness_weight,
    }
}

/// V-Triune's IoU threshold choice (`DET_IOU_THRESHOLD`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    Fixed(f64),
    /// Mean of the weighted score over ε ∈ {0.5, 0.55, …, 0.95, 0.99}
    /// (the reference's default when the variable is unset).
    Average,
    /// Dynamic IoU: ε from the schedule of training progress.
    Dynamic(IouSchedule),
}

impl Default for ThresholdMode {
    fn default() -> Self {
        ThresholdMode::Dynamic(IouSchedule::default())
    }
}

/// The reference's threshold list for `average`.
pub const VTRIUNE_THRESHOLDS: [f64; 11] =
    [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99];

/// `det_reward_ratio`: weights of the five scores, plus the completeness
/// weight inside the IoU scores. The reference reads them per dataset row;
/// the default weighs max-IoU-first only, which with the Dynamic IoU
/// threshold is the paper's "IoU if IoU ≥ ε else 0" reward per box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetWeights {
    pub iou_max_iou_first: f64,
    pub iou_max_label_first: f64,
    pub iou_completeness: f64,
    pub map: f64,
    pub map50: f64,
    pub map75: f64,
}

impl Default for DetWeights {
    fn default() -> Self {
        Self {
            iou_max_iou_first: 1.0,
            iou_max_label_first: 0.0,
            iou_completeness: 0.0,
            map: 0.0,
            map50: 0.0,
            map75: 0.0,
        }
    }
}

impl DetWeights {
    /// The reference replaces missing or out-of-`[0, 1]` weights by 0.
    fn sanitized(&self) -> Self {
        let f = |v: f64| if (0.0..=1.0).contains(&v) { v } else { 0.0 };
        Self {
            iou_max_iou_first: f(self.iou_max_iou_first),
            iou_max_label_first: f(self.iou_max_label_first),
            iou_completeness: f(self.iou_completeness),
            map: f(self.map),
            map50: f(self.map50),
            map75: f(self.map75),
        }
    }
}

/// Matching used for the two IoU scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DetMatching {
    /// V-Triune's two greedy matchings.
    #[default]
    Greedy,
    /// Optimal assignment for both scores (labels required for the
    /// "label-first" score, ignored for the "max-IoU-first" one).
    Hungarian,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectionConfig {
    pub threshold: ThresholdMode,
    pub weights: DetWeights,
    /// `size_penalty = base^|#pred − #truth|` (V-Triune: 0.6).
    pub size_penalty_base: f64,
    pub matching: DetMatching,
    /// Reproduce the reference's max-IoU-first pairing slip.
    pub reference_quirks: bool,
    /// `det_verifier_normalized`: map predictions from resized pixels to the
    /// 0–1000 grid (`int(x / width · 1000)`), width/height from the context
    /// frame's resized size (the reference reads them from `image_grid_thw`).
    pub normalize_to_grid: bool,
    pub answer_tag: String,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            threshold: ThresholdMode::default(),
            weights: DetWeights::default(),
            size_penalty_base: 0.6,
            matching: DetMatching::Greedy,
            reference_quirks: false,
            normalize_to_grid: false,
            answer_tag: "answer".into(),
        }
    }
}

/// Every number the reference reports for one completion.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DetectionBreakdown {
    pub final_score: f64,
    pub size_penalty: f64,
    pub threshold: f64,
    pub iou_max_iou_first: f64,
    pub iou_max_label_first: f64,
    pub map: f64,
    pub map50: f64,
    pub map75: f64,
    pub precision: f64,
    pub recall: f64,
}

/// V-Triune's detection reward (see the module docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectionVerifier {
    pub config: DetectionConfig,
}

impl DetectionVerifier {
    pub fn new(config: DetectionConfig) -> Self {
        Self { config }
    }

    fn scores_at(&self, preds: &[DetBox], truths: &[DetBox], thr: f64) -> (IouScores, IouScores) {
        let wc = self.config.weights.sanitized().iou_completeness;
        let (a, b) = match self.config.matching {
            DetMatching::Greedy => (
                greedy_max_iou_first(preds, truths, thr, self.config.reference_quirks),
                greedy_max_label_first(preds, truths, thr),
            ),
            DetMatching::Hungarian => (
                hungarian_match(preds, truths, thr, false),
                hungarian_match(preds, truths, thr, true),
            ),
        };
        // Hungarian without labels still scores label mismatches as 0, like greedy.
        let a: Vec<Match> = a
            .into_iter()
            .map(|m| {
                let same = preds
                    .get(m.pred)
                    .zip(truths.get(m.truth))
                    .is_some_and(|(p, t)| p.label.to_lowercase() == t.label.to_lowercase());
                Match {
                    iou: if same { m.iou } else { 0.0 },
                    ..m
                }
            })
            .collect();
        (
            iou_scores(&a, preds.len(), truths.len(), wc),
            iou_scores(&b, preds.len(), truths.len(), wc),
        )
    }

    /// Scores already-parsed boxes (labels compared lowercased).
    pub fn score_boxes(
        &self,
        preds: &[DetBox],
        truths: &[DetBox],
        ctx: &RewardContext,
    ) -> DetectionBreakdown {
        if preds.is_empty() || truths.is_empty() {
            return DetectionBreakdown::default();
        }
        let w = self.config.weights.sanitized();
        let diff = preds.len().abs_diff(truths.len()) as f64;
        let size_penalty = self.config.size_penalty_base.powf(diff);
        let (threshold, (s_iou, s_label)) = match &self.config.threshold {
            ThresholdMode::Fixed(t) => (*t, self.scores_at(preds, truths, *t)),
            ThresholdMode::Dynamic(s) => {
                let t = s.threshold(ctx.progress());
                (t, self.scores_at(preds, truths, t))
            }
            ThresholdMode::Average => {
                let mut a = IouScores::default();
                let mut b = IouScores::default();
                for t in VTRIUNE_THRESHOLDS {
                    let (x, y) = self.scores_at(preds, truths, t);
                    a.weighted += x.weighted / VTRIUNE_THRESHOLDS.len() as f64;
                    b.weighted += y.weighted / VTRIUNE_THRESHOLDS.len() as f64;
                }
                (f64::NAN, (a, b))
            }
        };
        let need_map = w.map > 0.0 || w.map50 > 0.0 || w.map75 > 0.0;
        let (map, map50, map75) = if need_map {
            map_scores(preds, truths)
        } else {
            (0.0, 0.0, 0.0)
        };
        let norm = w.iou_max_iou_first + w.iou_max_label_first + w.map + w.map50 + w.map75;
        let final_score = if norm > 0.0 {
            size_penalty
                * (s_iou.weighted * w.iou_max_iou_first
                    + s_label.weighted * w.iou_max_label_first
                    + map * w.map
                    + map50 * w.map50
                    + map75 * w.map75)
                / norm
        } else {
            0.0
        };
        DetectionBreakdown {
            final_score,
            size_penalty,
            threshold,
            iou_max_iou_first: s_iou.weighted,
            iou_max_label_first: s_label.weighted,
            map,
            map50,
            map75,
            precision: s_iou.precision,
            recall: s_iou.recall,
        }
    }

    /// Parses the completion like the reference (first answer block, trimmed,
    /// lowercased, `extract_bbox`), normalizes if configured, and scores.
    pub fn breakdown(
        &self,
        completion: &str,
        truths: &[DetBox],
        ctx: &RewardContext,
    ) -> Option<DetectionBreakdown> {
        let answer = extract_tag(completion.trim(), &self.config.answer_tag)?
            .trim()
            .to_lowercase();
        let mut preds = vtriune_extract_boxes(&answer)?;
        if self.config.normalize_to_grid {
            let frame = ctx.frame?;
            let (w, h) = (frame.resized_w as f64, frame.resized_h as f64);
            for p in &mut preds {
                let [x1, y1, x2, y2] = p.bbox;
                p.bbox = [
                    (x1 / w * 1000.0).trunc(),
                    (y1 / h * 1000.0).trunc(),
                    (x2 / w * 1000.0).trunc(),
                    (y2 / h * 1000.0).trunc(),
                ];
            }
        }
        let truths: Vec<DetBox> = truths
            .iter()
            .map(|t| DetBox {
                bbox: t.bbox,
                label: t.label.to_lowercase(),
            })
            .collect();
        Some(self.score_boxes(&preds, &truths, ctx))
    }
}

/// COCO mAP with one category per distinct truth label; predictions with
/// other labels are dropped (`pack_for_map_score`).
fn map_scores(preds: &[DetBox], truths: &[DetBox]) -> (f64, f64, f64) {
    let mut cats: Vec<&str> = Vec::new();
    for t in truths {
        if !cats.contains(&t.label.as_str()) {
            cats.push(t.label.as_str());
        }
    }
    let cat = |l: &str| cats.iter().position(|c| *c == l);
    let g: Vec<CocoBox> = truths
        .iter()
        .filter_map(|t| {
            cat(&t.label).map(|c| CocoBox {
                bbox: t.bbox,
                category: c,
            })
        })
        .collect();
    let p: Vec<CocoBox> = preds
        .iter()
        .filter_map(|t| {
            cat(&t.label).map(|c| CocoBox {
                bbox: t.bbox,
                category: c,
            })
        })
        .collect();
    coco_map(&p, &g, cats.len())
}

/// Truth boxes from a ground truth: labeled boxes, or a reference-style
/// solution string (`<answer>[{'bbox_2d': …}]</answer>`).
pub fn truth_boxes(truth: &GroundTruth, answer_tag: &str) -> Option<Vec<DetBox>> {
    match truth {
        GroundTruth::Boxes(b) => Some(
            b.iter()
                .map(|lb| DetBox {
                    bbox: lb.bbox.to_array().map(f64::from),
                    label: lb.label.clone().unwrap_or_default().to_lowercase(),
                })
                .collect(),
        ),
        GroundTruth::Box(b) => Some(vec![DetBox {
            bbox: b.to_array().map(f64::from),
            label: String::new(),
        }]),
        GroundTruth::Text(s) => {
            let a = extract_tag(s.trim(), answer_tag)
                .unwrap_or(s)
                .trim()
                .to_lowercase();
            vtriune_extract_boxes(&a)
        }
        _ => None,
    }
}

impl Verifier for DetectionVerifier {
    fn name(&self) -> &str {
        "detection"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, ctx: &RewardContext) -> Reward {
        let Some(truths) = truth_boxes(truth, &self.config.answer_tag).filter(|t| !t.is_empty())
        else {
            return wrong_truth("boxes");
        };
        match self.breakdown(completion, &truths, ctx) {
            Some(b) => Reward::named("accuracy", b.final_score)
                .with_part("size_penalty", b.size_penalty)
                .with_part("iou_threshold", b.threshold)
                .with_part("iou_max_iou_first", b.iou_max_iou_first)
                .with_part("iou_max_label_first", b.iou_max_label_first)
                .with_part("map", b.map)
                .with_part("map50", b.map50)
                .with_part("map75", b.map75)
                .with_part("precision", b.precision)
                .with_part("recall", b.recall),
            None => Reward::named("accuracy", 0.0).with_part("no_box", 1.0),
        }
    }
}

/// Precision / recall / F1 at an IoU threshold with Hungarian matching
/// (labels must agree when `use_labels`). Reward = F1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectionF1Verifier {
    pub threshold: f64,
    pub use_labels: bool,
    pub answer_tag: String,
}

impl Default for DetectionF1Verifier {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            use_labels: true,
            answer_tag: "answer".into(),
        }
    }
}

/// `(precision, recall, f1)` of a matching.
pub fn precision_recall_f1(n_matched: usize, n_pred: usize, n_truth: usize) -> (f64, f64, f64) {
    let p = if n_pred == 0 {
        0.0
    } else {
        n_matched as f64 / n_pred as f64
    };
    let r = if n_truth == 0 {
        0.0
    } else {
        n_matched as f64 / n_truth as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

impl Verifier for DetectionF1Verifier {
    fn name(&self) -> &str {
        "detection_f1"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, _ctx: &RewardContext) -> Reward {
        let Some(truths) = truth_boxes(truth, &self.answer_tag).filter(|t| !t.is_empty()) else {
            return wrong_truth("boxes");
        };
        let region = extract_tag(completion, &self.answer_tag).unwrap_or(completion);
        let preds: Vec<DetBox> = vlrl_grounding::parse_boxes(region)
            .map(|p| {
                p.boxes
                    .into_iter()
                    .map(|b| DetBox {
                        bbox: b.bbox.to_array().map(f64::from),
                        label: b.label.unwrap_or_default().to_lowercase(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let m = hungarian_match(&preds, &truths, self.threshold, self.use_labels);
        let (p, r, f) = precision_recall_f1(m.len(), preds.len(), truths.len());
        Reward::named("accuracy", f)
            .with_part("precision", p)
            .with_part("recall", r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(label: &str, b: [f64; 4]) -> DetBox {
        DetBox {
            bbox: b,
            label: label.into(),
        }
    }

    #[test]
    fn extract_like_reference() {
        let b = vtriune_extract_boxes(
            "[{'bbox_2d': [240,76,600,320], 'label': 'dog', 'confidence': 0.95}]",
        )
        .unwrap();
        assert_eq!(b, vec![d("dog", [240.0, 76.0, 600.0, 320.0])]);
        // Truncated list repaired; inverted and duplicate boxes dropped.
        let t = "[{'bbox_2d': [1,2,3,4], 'label': 'a'}, {'bbox_2d': [1,2,3,4], 'label': 'b'}, {'bbox_2d': [5,2,3,4], 'label': 'c'}, {'bbox_2d': [9,9";
        assert_eq!(
            vtriune_extract_boxes(t).unwrap(),
            vec![d("a", [1.0, 2.0, 3.0, 4.0])]
        );
        assert!(
            vtriune_extract_boxes("here: [{'bbox_2d': [1,2,3,4], 'label': 'a'}]").is_none(),
            "whole text must be JSON"
        );
        assert!(
            vtriune_extract_boxes("{'bbox_2d': [1,2,3,4], 'label': 'a'}").is_none(),
            "a single object is not a list"
        );
        assert!(vtriune_extract_boxes("").is_none());
    }

    #[test]
    fn worked_example_from_module_docs() {
        let v = DetectionVerifier::new(DetectionConfig {
            threshold: ThresholdMode::Fixed(0.85),
            ..DetectionConfig::default()
        });
        let preds = [
            d("dog", [0.0, 0.0, 100.0, 90.0]),
            d("cat", [200.0, 200.0, 300.0, 300.0]),
        ];
        let truths = [d("dog", [0.0, 0.0, 100.0, 100.0])];
        let b = v.score_boxes(&preds, &truths, &RewardContext::default());
        assert!((b.iou_max_iou_first - 0.9).abs() < 1e-12);
        assert!((b.size_penalty - 0.6).abs() < 1e-12);
        assert!((b.final_score - 0.54).abs() < 1e-12);
        assert_eq!((b.precision, b.recall), (0.5, 1.0));
    }

    #[test]
    fn completeness_and_label_first() {
        // Two truths, one good prediction: miss 0.5, false alarm 0 → completeness 0.75.
        let w = DetWeights {
            iou_max_iou_first: 0.0,
            iou_max_label_first: 1.0,
            iou_completeness: 0.5,
            ..DetWeights::default()
        };
        let v = DetectionVerifier::new(DetectionConfig {
            threshold: ThresholdMode::Fixed(0.5),
            weights: w,
            ..DetectionConfig::default()
        });
        let truths = [
            d("car", [0.0, 0.0, 10.0, 10.0]),
            d("car", [20.0, 20.0, 30.0, 30.0]),
        ];
        let preds = [d("car", [0.0, 0.0, 10.0, 10.0])];
        let b = v.score_boxes(&preds, &truths, &RewardContext::default());
        // mean IoU = 1/2; weighted = 0.5·0.5 + 0.75·0.5 = 0.625; × 0.6.
        assert!((b.iou_max_label_first - 0.625).abs() < 1e-12);
        assert!((b.final_score - 0.375).abs() < 1e-12);
    }

    #[test]
    fn dynamic_threshold_and_label_mismatch() {
        let v = DetectionVerifier::default();
        let truths = [d("dog", [0.0, 0.0, 100.0, 100.0])];
        let preds = [d("dog", [0.0, 0.0, 100.0, 90.0])];
        assert!(
            (v.score_boxes(&preds, &truths, &RewardContext::at(1, 10))
                .final_score
                - 0.9)
                .abs()
                < 1e-12
        );
        assert_eq!(
            v.score_boxes(&preds, &truths, &RewardContext::at(2, 10))
                .final_score,
            0.0,
            "ε = 0.95 > 0.9"
        );
        let late = v.score_boxes(&preds, &truths, &RewardContext::at(3, 10));
        assert_eq!((late.threshold, late.final_score), (0.99, 0.0));
        let wrong = [d("cat", [0.0, 0.0, 100.0, 90.0])];
        assert_eq!(
            v.score_boxes(&wrong, &truths, &RewardContext::at(1, 10))
                .final_score,
            0.0
        );
    }

    #[test]
    fn reference_quirk_pairs_last_boxes() {
        // Best pair is (pred 0, truth 0) with IoU 1, but the reference records
        // (last pred, last truth) with score 1 only if their labels agree.
        let truths = [
            d("a", [0.0, 0.0, 10.0, 10.0]),
            d("b", [50.0, 50.0, 60.0, 60.0]),
        ];
        let preds = [
            d("a", [0.0, 0.0, 10.0, 10.0]),
            d("b", [50.0, 50.0, 60.0, 60.0]),
        ];
        let fixed = greedy_max_iou_first(&preds, &truths, 0.5, false);
        assert_eq!(
            fixed,
            vec![
                Match {
                    pred: 0,
                    truth: 0,
                    iou: 1.0
                },
                Match {
                    pred: 1,
                    truth: 1,
                    iou: 1.0
                }
            ]
        );
        let quirk = greedy_max_iou_first(&preds, &truths, 0.5, true);
        assert_eq!(
            quirk,
            vec![
                Match {
                    pred: 1,
                    truth: 1,
                    iou: 1.0
                },
                Match {
                    pred: 0,
                    truth: 0,
                    iou: 1.0
                }
            ]
        );
        let swapped = [preds[1].clone(), preds[0].clone()];
        let q2 = greedy_max_iou_first(&swapped, &truths, 0.5, true);
        assert_eq!(
            q2[0],
            Match {
                pred: 1,
                truth: 1,
                iou: 0.0
            },
            "labels a vs b"
        );
    }

    #[test]
    fn hungarian_beats_greedy() {
        // The optimal assignment is never worse than greedy in total IoU.
        let truths = [
            d("x", [0.0, 0.0, 10.0, 10.0]),
            d("x", [4.0, 0.0, 14.0, 10.0]),
        ];
        let preds = [
            d("x", [2.0, 0.0, 12.0, 10.0]),
            d("x", [-1.0, 0.0, 9.0, 10.0]),
        ];
        let g = greedy_max_iou_first(&preds, &truths, 0.5, false);
        let h = hungarian_match(&preds, &truths, 0.5, true);
        assert_eq!(h.len(), 2);
        let total = |m: &[Match]| m.iter().map(|x| x.iou).sum::<f64>();
        assert!(total(&h) >= total(&g));
        let (p, r, f) = precision_recall_f1(1, 2, 4);
        assert_eq!((p, r), (0.5, 0.25));
        assert!((f - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn verifier_end_to_end() {
        let v = DetectionVerifier::default();
        let truth = GroundTruth::Text(
            "<answer> [{'bbox_2d': [386, 183, 973, 758], 'label': 'dog'}] </answer>".into(),
        );
        let r = v.verify("<think>\n..\n</think>\n<answer>\n[{'bbox_2d': [386, 183, 973, 758], 'label': 'Dog'}]\n</answer>", &truth, &RewardContext::at(0, 10));
        assert_eq!(r.value, 1.0);
        assert_eq!(
            v.verify("nothing", &truth, &RewardContext::default()).value,
            0.0
        );
        let f1 = DetectionF1Verifier::default();
        let rr = f1.verify(
            "<answer>[{\"bbox_2d\": [386, 183, 973, 758], \"label\": \"dog\"}]</answer>",
            &truth,
            &RewardContext::default(),
        );
        assert_eq!(rr.value, 1.0);
    }
}
