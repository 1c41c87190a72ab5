//! Parity with tools/rewards_fixtures.py (a reimplementation of V-Triune's
//! detection reward and the ANLS / IoU formulas; see that script).

use serde::Deserialize;
use std::path::PathBuf;
use vlrl_grounding::ImageFrame;
use vlrl_rewards::detection::{det_iou, truth_boxes};
use vlrl_rewards::*;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/rewards")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[derive(Deserialize)]
struct DetCase {
    id: String,
    completion: String,
    solution: String,
    step: u64,
    total_steps: u64,
    mode: String,
    weights: DetWeights,
    quirks: bool,
    normalize_wh: Option<[u32; 2]>,
    expected: serde_json::Map<String, serde_json::Value>,
}

#[test]
fn vtriune_detection_reward_matches_reference() {
    let cases: Vec<DetCase> = serde_json::from_str(&fixture("detection_parity.json")).unwrap();
    assert!(cases.len() >= 500);
    let mut nonzero = 0;
    for c in &cases {
        let threshold = match c.mode.as_str() {
            "dynamic" => ThresholdMode::Dynamic(IouSchedule::default()),
            "average" => ThresholdMode::Average,
            t => ThresholdMode::Fixed(t.parse().unwrap()),
        };
        let cfg = DetectionConfig {
            threshold,
            weights: c.weights,
            reference_quirks: c.quirks,
            normalize_to_grid: c.normalize_wh.is_some(),
            ..DetectionConfig::default()
        };
        let v = DetectionVerifier::new(cfg);
        let mut ctx = RewardContext::at(c.step, c.total_steps);
        if let Some([w, h]) = c.normalize_wh {
            ctx = ctx.with_frame(ImageFrame::new(w, h, w, h).unwrap());
        }
        let truth = GroundTruth::Text(c.solution.clone());
        let exp = |k: &str| c.expected.get(k).and_then(|v| v.as_f64());
        let want = exp("final_score").unwrap();
        let got = truth_boxes(&truth, "answer").and_then(|t| v.breakdown(&c.completion, &t, &ctx));
        let final_score = got.map_or(0.0, |b| b.final_score);
        assert!(
            (final_score - want).abs() < 1e-9,
            "case {}: final {final_score} vs {want}\n{}",
            c.id,
            c.completion
        );
        if let (Some(b), Some(_)) = (got, exp("size_penalty")) {
            for (name, ours) in [
                ("size_penalty", b.size_penalty),
                ("iou_max_iou_first", b.iou_max_iou_first),
                ("iou_max_label_first", b.iou_max_label_first),
            ] {
                let theirs = exp(name).unwrap();
                assert!(
                    (ours - theirs).abs() < 1e-9,
                    "case {}: {name} {ours} vs {theirs}",
                    c.id
                );
            }
            // mAP is only computed when weighted; compare it then.
            let w = c.weights;
            if w.map > 0.0 || w.map50 > 0.0 || w.map75 > 0.0 {
                for (name, ours) in [("map", b.map), ("map50", b.map50), ("map75", b.map75)] {
                    let theirs = exp(name).unwrap();
                    assert!(
                        (ours - theirs).abs() < 1e-9,
                        "case {}: {name} {ours} vs {theirs}",
                        c.id
                    );
                }
            }
        }
        // The Verifier path gives the same value (as f32).
        let r = v.verify(&c.completion, &truth, &ctx);
        assert!(
            (f64::from(r.value) - want.clamp(0.0, 1.0)).abs() < 1e-6,
            "case {}",
            c.id
        );
        nonzero += usize::from(want > 0.0);
    }
    assert!(
        nonzero > cases.len() / 4,
        "fixture should exercise positive rewards ({nonzero})"
    );
}

#[derive(Deserialize)]
struct TextCase {
    pred: String,
    truths: Vec<String>,
    levenshtein: usize,
    nl: f64,
    anls: f64,
}

#[test]
fn anls_and_edit_distance_match_reference() {
    let cases: Vec<TextCase> = serde_json::from_str(&fixture("text_parity.json")).unwrap();
    for c in &cases {
        assert_eq!(
            levenshtein(&c.pred, &c.truths[0]),
            c.levenshtein,
            "{:?}",
            c.pred
        );
        assert!((normalized_edit_distance(&c.pred, &c.truths[0]) - c.nl).abs() < 1e-12);
        let refs: Vec<&str> = c.truths.iter().map(String::as_str).collect();
        assert!(
            (anls(&c.pred, &refs, 0.5) - c.anls).abs() < 1e-12,
            "{:?} {:?}",
            c.pred,
            c.truths
        );
        // Through the verifier (no normalization, so the fixture's raw strings apply).
        let v = OcrVerifier {
            lowercase: false,
            collapse_whitespace: false,
            ..OcrVerifier::default()
        };
        let r = v.verify(
            &format!("<answer>{}</answer>", c.pred),
            &GroundTruth::Texts(c.truths.clone()),
            &RewardContext::default(),
        );
        if c.pred.trim() == c.pred {
            assert!((f64::from(r.value) - c.anls).abs() < 1e-6);
        }
    }
}

#[derive(Deserialize)]
struct IouCase {
    a: [f64; 4],
    b: [f64; 4],
    iou: f64,
}

#[test]
fn iou_matches_reference() {
    let cases: Vec<IouCase> = serde_json::from_str(&fixture("iou_parity.json")).unwrap();
    for c in &cases {
        assert!((det_iou(&c.a, &c.b) - c.iou).abs() < 1e-12);
        let (a, b) = (c.a.map(|v| v as f32), c.b.map(|v| v as f32));
        let ba = vlrl_grounding::BBox::new(a[0], a[1], a[2], a[3]);
        let bb = vlrl_grounding::BBox::new(b[0], b[1], b[2], b[3]);
        assert!(
            (ba.iou_f64(&bb) - c.iou).abs() < 1e-12,
            "{:?} {:?}",
            c.a,
            c.b
        );
    }
}
