//! smart_resize against transformers' Qwen2-VL implementation (table written
//! by tools/rewards_fixtures.py).

use serde::Deserialize;
use vlrl_grounding::{smart_resize_default, GroundingError};

#[derive(Deserialize)]
struct Case {
    h: u32,
    w: u32,
    resized: Option<[u32; 2]>,
}

#[test]
fn smart_resize_matches_transformers() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rewards/smart_resize.json"
    );
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    assert!(cases.len() > 300);
    for c in cases {
        match (smart_resize_default(c.h, c.w), c.resized) {
            (Ok((rh, rw)), Some([eh, ew])) => assert_eq!((rh, rw), (eh, ew), "{}x{}", c.h, c.w),
            (Err(GroundingError::AspectRatio { .. }), None) => {}
            (got, want) => panic!("{}x{}: {got:?} vs {want:?}", c.h, c.w),
        }
    }
}
