//! COCO-style mAP for one image, as V-Triune computes it.
//!
//! V-Triune (`reward_server/verify.py::pack_for_map_score`) builds a one-image
//! COCO ground truth from the truth boxes (one category per label), feeds
//! every prediction whose label is a known category with score 1.0, and runs
//! its vendored `COCOeval` (bbox, area range `all` only, maxDets 100). This
//! module reproduces that evaluation: per category, detections in input
//! order (all scores tie and COCO sorts with a stable mergesort) are matched
//! to the best still-free truth at each IoU threshold
//! `linspace(0.5, 0.95, 10)`; precision is made monotone and sampled at the
//! 101 recall points `linspace(0, 1, 101)`; mAP averages over thresholds,
//! recall points and categories, mAP50/mAP75 over the single threshold.

/// One box `[x1, y1, x2, y2]` with its category index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CocoBox {
    pub bbox: [f64; 4],
    pub category: usize,
}

/// numpy's `linspace(start, stop, num)`: `i * step + start`, last = `stop`.
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = num.saturating_sub(1).max(1) as f64;
    let step = (stop - start) / div;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        if num > 1 {
            *last = stop;
        }
    }
    v
}

/// COCO's IoU on `[x, y, w, h]` boxes (pycocotools `bbIou`, non-crowd).
fn coco_iou(d: [f64; 4], g: [f64; 4]) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w.is_nan() || w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h.is_nan() || h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let u = d[2] * d[3] + g[2] * g[3] - i;
    i / u
}

fn xywh(b: [f64; 4]) -> [f64; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}

/// COCO's area range `all`: `[0, 1e5²]`.
const AREA_MAX: f64 = 1e10;
const MAX_DETS: usize = 100;

/// `(mAP@[.5:.95], mAP50, mAP75)` over `categories` categories. Returns
/// zeros when no prediction has a known category (as V-Triune does). A value
/// is -1 only when no category has a non-ignored truth box (COCO's "absent").
pub fn coco_map(preds: &[CocoBox], truths: &[CocoBox], categories: usize) -> (f64, f64, f64) {
    if !preds.iter().any(|p| p.category < categories) {
        return (0.0, 0.0, 0.0);
    }
    let iou_thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    // precision[t][r] summed over categories that count, and how many count.
    let mut sums = vec![0.0f64; iou_thrs.len()];
    let mut sum_all = 0.0f64;
    let mut counted = 0usize;
    for k in 0..categories {
        // Truths: non-ignored first (stable), as COCO sorts by the ignore flag.
        let mut gts: Vec<([f64; 4], bool)> = truths
            .iter()
            .filter(|g| g.category == k)
            .map(|g| {
                let area = (g.bbox[2] - g.bbox[0]) * (g.bbox[3] - g.bbox[1]);
                (xywh(g.bbox), !(0.0..=AREA_MAX).contains(&area))
            })
            .collect();
        gts.sort_by_key(|(_, ig)| *ig);
        let dts: Vec<[f64; 4]> = preds
            .iter()
            .filter(|p| p.category == k)
            .take(MAX_DETS)
            .map(|p| xywh(p.bbox))
            .collect();
        let npig = gts.iter().filter(|(_, ig)| !ig).count();
        if npig == 0 {
            continue;
        }
        counted += 1;
        let ious: Vec<Vec<f64>> = dts
            .iter()
            .map(|d| gts.iter().map(|(g, _)| coco_iou(*d, *g)).collect())
            .collect();
        for (t, &thr) in iou_thrs.iter().enumerate() {
            let mut gt_matched = vec![false; gts.len()];
            let mut tp = 0.0f64;
            let mut fp = 0.0f64;
            let mut pr = Vec::with_capacity(dts.len());
            let mut rc = Vec::with_capacity(dts.len());
            for (d, dt) in dts.iter().enumerate() {
                let mut best = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for (g, (_, ig)) in gts.iter().enumerate() {
                    if gt_matched[g] {
                        continue;
                    }
                    if let Some(mi) = m {
                        if !gts[mi].1 && *ig {
                            break;
                        }
                    }
                    let iou = ious[d][g];
                    if iou < best {
                        continue;
                    }
                    best = iou;
                    m = Some(g);
                }
                let (matched, ignored) = match m {
                    Some(g) => {
                        gt_matched[g] = true;
                        (true, gts[g].1)
                    }
                    None => {
                        let area = dt[2] * dt[3];
                        (false, !(0.0..=AREA_MAX).contains(&area))
                    }
                };
                if !ignored {
                    if matched {
                        tp += 1.0;
                    } else {
                        fp += 1.0;
                    }
                }
                rc.push(tp / npig as f64);
                pr.push(tp / (fp + tp + f64::EPSILON));
            }
            for i in (1..pr.len()).rev() {
                if pr[i] > pr[i - 1] {
                    pr[i - 1] = pr[i];
                }
            }
            let mut total = 0.0;
            for &r in &rec_thrs {
                let idx = rc.partition_point(|&x| x < r);
                match pr.get(idx) {
                    Some(p) => total += p,
                    None => break,
                }
            }
            sums[t] += total;
            sum_all += total;
        }
    }
    if counted == 0 {
        return (-1.0, -1.0, -1.0);
    }
    let per = (counted * rec_thrs.len()) as f64;
    let t50 = iou_thrs.iter().position(|&t| t == 0.5);
    let t75 = iou_thrs.iter().position(|&t| t == 0.75);
    let at = |t: Option<usize>| t.and_then(|t| sums.get(t)).map_or(-1.0, |s| s / per);
    (sum_all / (per * iou_thrs.len() as f64), at(t50), at(t75))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f64, y1: f64, x2: f64, y2: f64, c: usize) -> CocoBox {
        CocoBox {
            bbox: [x1, y1, x2, y2],
            category: c,
        }
    }

    #[test]
    fn thresholds_match_numpy() {
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[8], 0.8999999999999999);
        assert_eq!(linspace(0.0, 1.0, 101)[29], 0.29);
    }

    #[test]
    fn perfect_and_empty() {
        let g = [b(0.0, 0.0, 10.0, 10.0, 0), b(20.0, 20.0, 30.0, 30.0, 1)];
        // COCO's precision tp / (tp + fp + eps) stays one ulp below 1.
        let (m, m50, m75) = coco_map(&g, &g, 2);
        assert!([m, m50, m75].iter().all(|v| (v - 1.0).abs() < 1e-15));
        assert_eq!(coco_map(&[], &g, 2), (0.0, 0.0, 0.0));
    }

    #[test]
    fn hand_computed_single_category() {
        // One truth, two detections: first misses (fp), second hits (IoU 1).
        // At every threshold: tp/fp sequence fp,tp → rc [0, 1], pr [0, 0.5]
        // → envelope [0.5, 0.5]; recall points 0..1 all map to 0.5 → AP 0.5.
        let g = [b(0.0, 0.0, 10.0, 10.0, 0)];
        let p = [b(50.0, 50.0, 60.0, 60.0, 0), b(0.0, 0.0, 10.0, 10.0, 0)];
        let (m, m50, m75) = coco_map(&p, &g, 1);
        assert!((m - 0.5).abs() < 1e-12 && (m50 - 0.5).abs() < 1e-12 && (m75 - 0.5).abs() < 1e-12);
        // IoU 0.81 (10x9 inside 10x10... here 9/10 overlap = 0.9): counts at thresholds ≤ 0.9.
        let q = [b(0.0, 0.0, 10.0, 9.0, 0)];
        let (m, m50, m75) = coco_map(&q, &g, 1);
        assert!((m50 - 1.0).abs() < 1e-15 && (m75 - 1.0).abs() < 1e-15);
        // Thresholds 0.5..0.85 and 0.8999999999999999 pass (IoU 0.9 >= it); 0.95 fails → 9/10.
        assert!((m - 0.9).abs() < 1e-12, "{m}");
    }
}
