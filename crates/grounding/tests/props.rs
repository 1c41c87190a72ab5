//! Property tests: parsers and geometry never panic, conversions round-trip exactly.

use proptest::prelude::*;
use vlrl_grounding::*;

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -2000.0f32..4000.0,
        1 => any::<f32>(),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(-0.0f32),
    ]
}

fn any_box() -> impl Strategy<Value = BBox> {
    (any_f32(), any_f32(), any_f32(), any_f32()).prop_map(|(a, b, c, d)| BBox::new(a, b, c, d))
}

/// Text that looks like model output often enough to reach deep parser paths.
fn model_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<|box_start|>".to_string()),
        Just("<|box_end|>".to_string()),
        Just("<|object_ref_start|>".to_string()),
        Just("<|object_ref_end|>".to_string()),
        Just("```json\n".to_string()),
        Just("```".to_string()),
        Just("{\"bbox_2d\": [".to_string()),
        Just("'bbox_2d': ".to_string()),
        Just("\"label\": \"a\"}".to_string()),
        Just("<answer>".to_string()),
        Just("</answer>".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("},".to_string()),
        Just("(".to_string()),
        Just("),".to_string()),
        any::<i32>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        Just(", ".to_string()),
        ".{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parsers_never_panic_on_arbitrary_utf8(s in any::<String>()) {
        let _ = parse_boxes(&s);
        let _ = parse_qwen2vl_tokens(&s);
        let _ = parse_qwen25vl_json(&s);
        let _ = parse_plain_lists(&s);
        let _ = extract_tag(&s, "answer");
        let _ = extract_last_tag(&s, "answer");
    }

    #[test]
    fn parsers_never_panic_on_model_like_text(s in model_text()) {
        let _ = parse_boxes(&s);
        let mut l = FocusLoop::new(ImageFrame::new(640, 480, 644, 476).unwrap(), FocusConfig { max_turns: 100, ..FocusConfig::default() });
        let _ = l.step(&s);
    }

    #[test]
    fn box_math_is_total(a in any_box(), b in any_box()) {
        let iou = a.iou(&b);
        prop_assert!((0.0..=1.0).contains(&iou));
        let g = a.giou(&b);
        prop_assert!((-1.0..=1.0).contains(&g));
        prop_assert!(a.area() >= 0.0);
        let _ = a.intersection(&b);
        let c = a.clamp(100.0, 50.0);
        prop_assert!(c.to_array().iter().all(|v| v.is_finite()));
        let _ = plan_zoom(a, 640, 480, &ZoomConfig::default());
    }

    #[test]
    fn iou_is_symmetric(a in any_box(), b in any_box()) {
        prop_assert_eq!(a.iou(&b), b.iou(&a));
    }

    #[test]
    fn f64_conversions_round_trip_exactly(
        w in 1u32..8000, h in 1u32..8000, rw in 1u32..8000, rh in 1u32..8000,
        b in any_box(),
    ) {
        let f = ImageFrame::new(w, h, rw, rh).unwrap();
        let spaces = [CoordSpace::Original, CoordSpace::Resized, CoordSpace::Grid1000, CoordSpace::Normalized];
        let v = b.to_array().map(f64::from);
        for from in spaces {
            for to in spaces {
                let back = f.convert_f64(f.convert_f64(v, from, to), to, from).map(|x| x as f32);
                if b.is_finite() {
                    prop_assert_eq!(back, b.to_array(), "{:?} -> {:?}", from, to);
                }
            }
        }
    }

    #[test]
    fn f32_conversions_round_trip_within_one_ulp(
        w in 1u32..8000, h in 1u32..8000, rw in 1u32..8000, rh in 1u32..8000,
        x1 in -1e4f32..1e4, y1 in -1e4f32..1e4, x2 in -1e4f32..1e4, y2 in -1e4f32..1e4,
    ) {
        let f = ImageFrame::new(w, h, rw, rh).unwrap();
        let spaces = [CoordSpace::Original, CoordSpace::Resized, CoordSpace::Grid1000, CoordSpace::Normalized];
        let b = BBox::new(x1, y1, x2, y2);
        for from in spaces {
            for to in spaces {
                let back = f.convert(f.convert(b, from, to), to, from);
                for (u, v) in back.to_array().iter().zip(b.to_array()) {
                    let ulp = f32::from_bits(v.abs().to_bits() + 1) - v.abs();
                    prop_assert!((u - v).abs() <= ulp, "{:?} -> {:?}: {} vs {}", from, to, u, v);
                }
            }
        }
    }

    #[test]
    fn smart_resize_invariants(h in 1u32..10000, w in 1u32..10000) {
        match smart_resize_default(h, w) {
            Ok((rh, rw)) => {
                prop_assert_eq!(rh % 28, 0);
                prop_assert_eq!(rw % 28, 0);
                let p = rh as u64 * rw as u64;
                prop_assert!(p >= 56 * 56, "{} {} -> {} {}", h, w, rh, rw);
                prop_assert!(p <= 14 * 14 * 4 * 1280);
            }
            Err(GroundingError::AspectRatio { .. }) => prop_assert!(h.max(w) as f64 / h.min(w) as f64 > 200.0),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn zoom_maps_back(x in 0f32..600.0, y in 0f32..440.0, bw in 1f32..300.0, bh in 1f32..300.0) {
        let b = BBox::new(x, y, (x + bw).min(640.0), (y + bh).min(480.0));
        let plan = plan_zoom(b, 640, 480, &ZoomConfig::default()).unwrap();
        let r = plan.region.as_bbox();
        // The crop contains the requested box and stays inside the image.
        prop_assert!(r.x1 <= b.x1 && r.y1 <= b.y1 && r.x2 >= b.x2 && r.y2 >= b.y2);
        prop_assert!(r.is_inside(640.0, 480.0));
        let back = plan.to_original(plan.from_original(b));
        for (u, v) in back.to_array().iter().zip(b.to_array()) {
            prop_assert!((u - v).abs() < 1e-3);
        }
    }
}
