//! Property tests: no verifier panics on any text, any ground truth, any
//! context, and every reward is finite and in [0, 1].
//!
//! 4 properties × 25,000 cases = 100,000 cases, each running every
//! registered verifier (≈ 20).

use proptest::prelude::*;
use std::sync::LazyLock;
use vlrl_grounding::{BBox, ImageFrame, LabeledBox};
use vlrl_rewards::*;

const CASES: u32 = 25_000;

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    Registry::from_toml_str(
        r#"
        [verifiers.det_full]
        kind = "detection"
        threshold = "average"
        reference_quirks = true
        normalize_to_grid = true
        weights = { iou_max_iou_first = 1.0, iou_max_label_first = 0.5, iou_completeness = 0.3, map = 1.0, map50 = 0.5, map75 = 0.5 }

        [verifiers.det_hungarian]
        kind = "detection"
        matching = "hungarian"
        threshold = { fixed = 0.5 }
        weights = { iou_max_iou_first = 1.0, iou_max_label_first = 1.0, map = 1.0 }

        [verifiers.iou_original]
        kind = "iou"
        boxes = { pred_space = "grid1000", truth_space = "original" }

        [verifiers.strict_single]
        kind = "format"
        single_blocks = true

        [verifiers.anls_raw]
        kind = "ocr"
        lowercase = false
        collapse_whitespace = false

        [combinations.mix]
        terms = [{ verifier = "format", weight = 0.5 }, { verifier = "math", weight = 1.0, name = "accuracy" }, { verifier = "det_full", weight = 0.25 }]
        "#,
    )
    .unwrap()
});

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -100.0f32..1200.0,
        1 => any::<f32>(),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
    ]
}

fn any_box() -> impl Strategy<Value = BBox> {
    (any_f32(), any_f32(), any_f32(), any_f32()).prop_map(|(a, b, c, d)| BBox::new(a, b, c, d))
}

fn any_truth() -> impl Strategy<Value = GroundTruth> {
    prop_oneof![
        ".{0,20}".prop_map(GroundTruth::Text),
        prop::collection::vec(".{0,12}", 0..4).prop_map(GroundTruth::Texts),
        (".{0,3}", prop::collection::vec(".{0,8}", 0..6)).prop_map(|(answer, options)| GroundTruth::Choice { answer, options }),
        any::<f64>().prop_map(GroundTruth::Number),
        any::<u64>().prop_map(GroundTruth::Count),
        any_box().prop_map(GroundTruth::Box),
        prop::collection::vec((any_box(), prop::option::of("[a-c]{0,3}")), 0..8)
            .prop_map(|v| GroundTruth::Boxes(v.into_iter().map(|(bbox, label)| LabeledBox { bbox, label }).collect())),
        Just(GroundTruth::Text("<answer>[{'bbox_2d': [10, 10, 200, 200], 'label': 'a'}, {'bbox_2d': [300, 300, 600, 600], 'label': 'b'}]</answer>".into())),
    ]
}

fn any_ctx() -> impl Strategy<Value = RewardContext> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::option::of((1u32..5000, 1u32..5000, 1u32..5000, 1u32..5000)),
    )
        .prop_map(|(s, t, f)| {
            let mut c = RewardContext::at(s, t);
            c.frame = f.and_then(|(a, b, c, d)| ImageFrame::new(a, b, c, d).ok());
            c
        })
}

/// Text built from pieces real completions contain, so parsers go deep.
fn model_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<think>\n".to_string()),
        Just("\n</think>\n".to_string()),
        Just("\n<answer>\n".to_string()),
        Just("\n</answer>".to_string()),
        Just("<answer>".to_string()),
        Just("</answer>".to_string()),
        Just("[{'bbox_2d': [".to_string()),
        Just("{\"bbox_2d\": [".to_string()),
        Just("], 'label': 'a'}".to_string()),
        Just("], \"label\": \"b\"}, ".to_string()),
        Just("]".to_string()),
        Just("[[".to_string()),
        Just("},".to_string()),
        Just("<|box_start|>(".to_string()),
        Just("),(".to_string()),
        Just(")<|box_end|>".to_string()),
        Just("\\boxed{".to_string()),
        Just("\\frac{".to_string()),
        Just("}{".to_string()),
        Just("}".to_string()),
        Just("^".to_string()),
        Just("%".to_string()),
        Just("(".to_string()),
        Just("1,000".to_string()),
        Just("The answer is ".to_string()),
        Just("B".to_string()),
        Just("three".to_string()),
        (-2000i64..2000).prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        Just("1e308".to_string()),
        Just(", ".to_string()),
        ".{0,6}",
    ];
    prop::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

fn check_all(text: &str, truth: &GroundTruth, ctx: &RewardContext) -> Result<(), TestCaseError> {
    for key in REGISTRY.keys() {
        let v = REGISTRY.get(&key).unwrap();
        let r = v.verify(text, truth, ctx);
        prop_assert!(
            r.value.is_finite() && (0.0..=1.0).contains(&r.value),
            "{key}: {r:?} for {text:?} / {truth:?}"
        );
        prop_assert!(r.parts.iter().all(|(_, p)| p.is_finite()), "{key}: {r:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_utf8_never_panics(text in any::<String>(), truth in any_truth(), ctx in any_ctx()) {
        check_all(&text, &truth, &ctx)?;
    }

    #[test]
    fn model_like_text_never_panics(text in model_text(), truth in any_truth(), ctx in any_ctx()) {
        check_all(&text, &truth, &ctx)?;
    }

    #[test]
    fn wild_predicted_boxes_never_panic(
        boxes in prop::collection::vec((any_f32(), any_f32(), any_f32(), any_f32(), "[a-c]"), 0..12),
        truth in any_truth(),
        ctx in any_ctx(),
    ) {
        let items: Vec<String> = boxes.iter().map(|(a, b, c, d, l)| format!("{{'bbox_2d': [{a}, {b}, {c}, {d}], 'label': '{l}'}}")).collect();
        let text = format!("<think>\nx\n</think>\n<answer>\n[{}]\n</answer>", items.join(", "));
        check_all(&text, &truth, &ctx)?;
    }

    #[test]
    fn detection_scores_stay_in_range(
        preds in prop::collection::vec((0u16..1000, 0u16..1000, 1u16..400, 1u16..400, 0usize..3), 1..20),
        truths in prop::collection::vec((0u16..1000, 0u16..1000, 1u16..400, 1u16..400, 0usize..3), 1..20),
        step in 0u64..100,
    ) {
        let to_box = |(x, y, w, h, l): (u16, u16, u16, u16, usize)| detection::DetBox {
            bbox: [f64::from(x), f64::from(y), f64::from(x) + f64::from(w), f64::from(y) + f64::from(h)],
            label: ["a", "b", "c"][l].to_string(),
        };
        let p: Vec<_> = preds.into_iter().map(to_box).collect();
        let t: Vec<_> = truths.into_iter().map(to_box).collect();
        let all = DetWeights { iou_max_iou_first: 1.0, iou_max_label_first: 1.0, iou_completeness: 0.5, map: 1.0, map50: 1.0, map75: 1.0 };
        for matching in [DetMatching::Greedy, DetMatching::Hungarian] {
            let v = DetectionVerifier::new(DetectionConfig { weights: all, matching, ..DetectionConfig::default() });
            let b = v.score_boxes(&p, &t, &RewardContext::at(step, 100));
            for x in [b.final_score, b.iou_max_iou_first, b.iou_max_label_first, b.map, b.map50, b.map75, b.size_penalty] {
                prop_assert!((0.0..=1.0 + 1e-12).contains(&x), "{b:?}");
            }
        }
        let m = detection::hungarian_match(&p, &t, 0.5, true);
        let g = detection::greedy_max_label_first(&p, &t, 0.5);
        // Optimal assignment never has fewer total IoU than a greedy one that obeys the same rules.
        let total = |v: &[detection::Match]| v.iter().map(|x| x.iou).sum::<f64>();
        prop_assert!(total(&m) + 1e-6 >= total(&g), "hungarian {} < greedy {}", total(&m), total(&g));
    }
}
