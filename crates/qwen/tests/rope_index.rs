//! `get_rope_index` against transformers 5.24 (`tools/make_fixtures.py`):
//! exact equality of every position id and rope delta, for Qwen2-VL and
//! Qwen2.5-VL, on synthetic sequences and on the processor-built VLM cases.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use vlrl_qwen::rope_index::{
    get_rope_index, GridThw, RopeIndex, RopeIndexConfig, RopeIndexError, VisionKind,
};

const IMAGE: u32 = 512;
const VIDEO: u32 = 513;
const VSTART: u32 = 509;
const VEND: u32 = 510;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference")
}

fn load(rel: &str) -> Value {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn mask(v: &Value) -> Vec<Vec<bool>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() != 0)
                .collect()
        })
        .collect()
}

fn grids(v: &Value) -> Vec<GridThw> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|g| {
                    let g: Vec<usize> = g
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap() as usize)
                        .collect();
                    GridThw::new(g[0], g[1], g[2])
                })
                .collect()
        })
        .unwrap_or_default()
}

fn seconds(v: Option<&Value>) -> Option<Vec<f32>> {
    v.and_then(|s| s.as_array())
        .map(|a| a.iter().map(|x| x.as_f64().unwrap() as f32).collect())
}

/// `[3][batch][seq]` nested JSON -> flat axis-major vector.
fn flat_positions(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|axis| axis.as_array().unwrap().iter())
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

fn deltas(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn config_for(family: &str, doc: &Value) -> RopeIndexConfig {
    let merge = doc["spatial_merge_size"].as_u64().unwrap() as usize;
    let image = doc["image_token_id"].as_u64().unwrap() as u32;
    let video = doc["video_token_id"].as_u64().unwrap() as u32;
    match family {
        "qwen2_vl" => RopeIndexConfig::qwen2_vl(image, video, merge),
        "qwen2_5_vl" => {
            let tps = doc["tokens_per_second"].as_f64().unwrap() as f32;
            RopeIndexConfig::qwen2_5_vl(image, video, merge, tps)
        }
        other => panic!("unknown family {other}"),
    }
}

fn assert_matches(got: &RopeIndex, positions: &Value, rope_deltas: &Value, what: &str) {
    let want = flat_positions(positions);
    assert_eq!(got.positions(), want.as_slice(), "{what}: position_ids");
    assert_eq!(
        got.rope_deltas(),
        deltas(rope_deltas).as_slice(),
        "{what}: rope_deltas"
    );
}

#[test]
fn synthetic_sequences_match_transformers_for_both_families() {
    let doc = load("rope_index/cases.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input_ids = ids(&case["input_ids"]);
        let attention = mask(&case["attention_mask"]);
        let images = grids(&case["image_grid_thw"]);
        let videos = grids(&case["video_grid_thw"]);
        let secs = seconds(case.get("second_per_grid_ts"));
        for family in ["qwen2_vl", "qwen2_5_vl"] {
            let config = config_for(family, &doc);
            let got = get_rope_index(
                &config,
                &input_ids,
                Some(attention.as_slice()),
                &images,
                &videos,
                secs.as_deref(),
            )
            .unwrap_or_else(|e| panic!("{name}/{family}: {e}"));
            assert_eq!(got.shape(), [3, input_ids.len(), input_ids[0].len()]);
            let reference = &case[family];
            assert_matches(
                &got,
                &reference["position_ids"],
                &reference["rope_deltas"],
                &format!("{name}/{family}"),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * cases.len());
}

#[test]
fn processor_built_vlm_cases_match_transformers() {
    for (model, family) in [
        ("qwen2-vl-tiny", "qwen2_vl"),
        ("qwen2_5-vl-tiny", "qwen2_5_vl"),
    ] {
        let doc = load(&format!("{model}/cases.json"));
        let config = config_for(family, &doc);
        for case in doc["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let input_ids = ids(&case["input_ids"]);
            let attention = mask(&case["attention_mask"]);
            let secs = seconds(case.get("second_per_grid_ts"));
            let got = get_rope_index(
                &config,
                &input_ids,
                Some(attention.as_slice()),
                &grids(&case["image_grid_thw"]),
                &grids(&case["video_grid_thw"]),
                secs.as_deref(),
            )
            .unwrap_or_else(|e| panic!("{model}/{name}: {e}"));
            assert_matches(
                &got,
                &case["position_ids"],
                &case["rope_deltas"],
                &format!("{model}/{name}"),
            );
        }
    }
}

/// While decoding with a KV cache, transformers feeds each new token the id
/// `attended tokens before it + rope_delta` on all three axes (captured from
/// `generate` by the fixture script).
#[test]
fn decode_positions_match_transformers_generate() {
    for (model, family) in [
        ("qwen2-vl-tiny", "qwen2_vl"),
        ("qwen2_5-vl-tiny", "qwen2_5_vl"),
    ] {
        let doc = load(&format!("{model}/cases.json"));
        let config = config_for(family, &doc);
        for case in doc["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let input_ids = ids(&case["input_ids"]);
            let attention = mask(&case["attention_mask"]);
            let secs = seconds(case.get("second_per_grid_ts"));
            let index = get_rope_index(
                &config,
                &input_ids,
                Some(attention.as_slice()),
                &grids(&case["image_grid_thw"]),
                &grids(&case["video_grid_thw"]),
                secs.as_deref(),
            )
            .unwrap();
            let steps = case["decode_position_ids"].as_array().unwrap();
            assert_eq!(
                steps.len(),
                case["max_new_tokens"].as_u64().unwrap() as usize - 1
            );
            for (k, step) in steps.iter().enumerate() {
                for (axis, per_row) in step.as_array().unwrap().iter().enumerate() {
                    for (row, want) in per_row.as_array().unwrap().iter().enumerate() {
                        let prompt = attention[row].iter().filter(|&&m| m).count();
                        assert_eq!(
                            index.decode_position(row, prompt + k),
                            want.as_i64(),
                            "{model}/{name}: step {k} axis {axis} row {row}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn no_mask_equals_all_ones_mask() {
    let config = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2);
    let row = [vec![1, 2, VSTART, IMAGE, IMAGE, VEND, 3]];
    let grid = [GridThw::new(1, 2, 4)];
    let a = get_rope_index::<_, Vec<bool>>(&config, &row, None, &grid, &[], None).unwrap();
    let ones = [vec![true; 7]];
    let b = get_rope_index(&config, &row, Some(ones.as_slice()), &grid, &[], None).unwrap();
    assert_eq!(a, b);
    // text 0..3, image (t, h, w) = (3,3,3),(3,3,4), then max(1,2)=2 further: 5, 6.
    assert_eq!(a.row(0, 0).unwrap(), &[0, 1, 2, 3, 3, 5, 6]);
    assert_eq!(a.row(1, 0).unwrap(), &[0, 1, 2, 3, 3, 5, 6]);
    assert_eq!(a.row(2, 0).unwrap(), &[0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(a.rope_deltas(), &[0]);
    assert_eq!(a.decode_position(0, 7), Some(7));
    assert!(a.row(3, 0).is_none() && a.row(0, 1).is_none());
}

#[test]
fn decode_position_continues_after_the_largest_id() {
    let config = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2);
    let mut row = vec![7, VSTART];
    row.extend(std::iter::repeat_n(IMAGE, 12)); // 1 x 8 x 6 grid -> 4 x 3 merged
    row.extend([VEND, 8]);
    let got = get_rope_index::<_, Vec<bool>>(
        &config,
        &[row.clone()],
        None,
        &[GridThw::new(1, 8, 6)],
        &[],
        None,
    )
    .unwrap();
    let max = (0..3)
        .flat_map(|a| got.row(a, 0).unwrap().to_vec())
        .max()
        .unwrap();
    assert_eq!(got.decode_position(0, row.len()), Some(max + 1));
}

#[test]
fn more_placeholder_runs_than_grids_is_an_error() {
    let config = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2);
    let row = [vec![VSTART, IMAGE, VEND, 5, VSTART, IMAGE, VEND]];
    let err =
        get_rope_index::<_, Vec<bool>>(&config, &row, None, &[GridThw::new(1, 2, 2)], &[], None)
            .unwrap_err();
    assert_eq!(
        err,
        RopeIndexError::MissingGrid {
            kind: VisionKind::Image,
            row: 0,
            position: 5,
            available: 1
        }
    );
    assert!(err.to_string().contains("more image placeholder runs"));
}

#[test]
fn placeholder_count_must_match_its_grid() {
    let config = RopeIndexConfig::qwen2_5_vl(IMAGE, VIDEO, 2, 2.0);
    let row = [vec![1, VIDEO, VIDEO, VIDEO, 2]];
    let err = get_rope_index::<_, Vec<bool>>(
        &config,
        &row,
        None,
        &[],
        &[GridThw::new(2, 2, 2)],
        Some(&[1.0]),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        RopeIndexError::PlaceholderCount {
            kind: VisionKind::Video,
            found: 3,
            expected: 2,
            ..
        }
    ));
}

#[test]
fn unused_grids_are_an_error() {
    let config = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2);
    let row = [vec![1, 2, 3]];
    let err =
        get_rope_index::<_, Vec<bool>>(&config, &row, None, &[GridThw::new(1, 2, 2)], &[], None)
            .unwrap_err();
    assert_eq!(
        err,
        RopeIndexError::UnusedGrids {
            kind: VisionKind::Image,
            used: 0,
            total: 1
        }
    );
}

#[test]
fn malformed_inputs_are_errors() {
    let q2 = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2);
    let rows = [vec![1, 2, 3], vec![1, 2]];
    assert!(matches!(
        get_rope_index::<_, Vec<bool>>(&q2, &rows, None, &[], &[], None),
        Err(RopeIndexError::RaggedBatch {
            row: 1,
            expected: 3,
            found: 2
        })
    ));
    let row = [vec![1, 2, 3]];
    let short = [vec![true, true]];
    assert!(matches!(
        get_rope_index(&q2, &row, Some(short.as_slice()), &[], &[], None),
        Err(RopeIndexError::MaskLength {
            row: 0,
            mask_len: 2,
            ids_len: 3
        })
    ));
    let two: [Vec<bool>; 2] = [vec![true; 3], vec![true; 3]];
    assert!(matches!(
        get_rope_index(&q2, &row, Some(two.as_slice()), &[], &[], None),
        Err(RopeIndexError::MaskRowCount {
            mask_rows: 2,
            id_rows: 1
        })
    ));
    assert!(matches!(
        get_rope_index::<_, Vec<bool>>(&q2, &row, None, &[GridThw::new(1, 3, 2)], &[], None),
        Err(RopeIndexError::BadGrid {
            kind: VisionKind::Image,
            index: 0,
            ..
        })
    ));
    assert!(matches!(
        get_rope_index::<_, Vec<bool>>(&q2, &row, None, &[], &[GridThw::new(0, 2, 2)], None),
        Err(RopeIndexError::BadGrid {
            kind: VisionKind::Video,
            ..
        })
    ));
    let zero = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 0);
    assert_eq!(
        get_rope_index::<_, Vec<bool>>(&zero, &row, None, &[], &[], None),
        Err(RopeIndexError::ZeroMergeSize)
    );
    let q25 = RopeIndexConfig::qwen2_5_vl(IMAGE, VIDEO, 2, 2.0);
    let video_row = [vec![VIDEO]];
    let g = [GridThw::new(1, 2, 2)];
    assert!(matches!(
        get_rope_index::<_, Vec<bool>>(&q25, &video_row, None, &[], &g, Some(&[])),
        Err(RopeIndexError::SecondsCount {
            found: 0,
            expected: 1
        })
    ));
    assert!(matches!(
        get_rope_index::<_, Vec<bool>>(&q25, &video_row, None, &[], &g, Some(&[f32::NAN])),
        Err(RopeIndexError::BadSeconds { index: 0, .. })
    ));
}

#[test]
fn empty_batch_and_fully_masked_rows_do_not_panic() {
    let config = RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2);
    let none: [Vec<u32>; 0] = [];
    let got = get_rope_index::<_, Vec<bool>>(&config, &none, None, &[], &[], None).unwrap();
    assert_eq!(got.shape(), [3, 0, 0]);
    let rows = [vec![500u32, 500]];
    let masked = [vec![false, false]];
    let got = get_rope_index(&config, &rows, Some(masked.as_slice()), &[], &[], None).unwrap();
    assert_eq!(got.positions(), &[0; 6]);
    assert_eq!(got.rope_deltas(), &[0]);
}

fn arb_token() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..600, 1 => Just(IMAGE), 1 => Just(VIDEO)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary ids, masks, grids and seconds: an `Ok` or a typed error, never a panic.
    #[test]
    fn never_panics(
        rows in prop::collection::vec(prop::collection::vec(arb_token(), 0..24), 0..4),
        mask_bits in prop::collection::vec(any::<bool>(), 0..100),
        image_grids in prop::collection::vec((0usize..4, 0usize..9, 0usize..9), 0..4),
        video_grids in prop::collection::vec((0usize..4, 0usize..9, 0usize..9), 0..3),
        secs in prop::option::of(prop::collection::vec(-1.0f32..5.0, 0..4)),
        merge in 0usize..4,
        qwen25 in any::<bool>(),
        use_mask in any::<bool>(),
    ) {
        let config = if qwen25 {
            RopeIndexConfig::qwen2_5_vl(IMAGE, VIDEO, merge, 2.0)
        } else {
            RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, merge)
        };
        let images: Vec<GridThw> = image_grids.iter().map(|&(t, h, w)| GridThw::new(t, h, w)).collect();
        let videos: Vec<GridThw> = video_grids.iter().map(|&(t, h, w)| GridThw::new(t, h, w)).collect();
        let masks: Vec<Vec<bool>> = rows
            .iter()
            .enumerate()
            .map(|(r, row)| (0..row.len()).map(|c| mask_bits.get(r * 24 + c).copied().unwrap_or(true)).collect())
            .collect();
        let result = get_rope_index(
            &config,
            &rows,
            use_mask.then_some(masks.as_slice()),
            &images,
            &videos,
            secs.as_deref(),
        );
        if let Ok(index) = result {
            prop_assert_eq!(index.positions().len(), 3 * index.batch() * index.seq_len());
            prop_assert_eq!(index.rope_deltas().len(), index.batch());
        }
    }

    /// Text-only rows: positions are 0..n on every axis (over attended tokens) and deltas 0.
    #[test]
    fn text_only_is_plain_arange(row in prop::collection::vec(0u32..500, 1..40), qwen25 in any::<bool>()) {
        let config = if qwen25 {
            RopeIndexConfig::qwen2_5_vl(IMAGE, VIDEO, 2, 2.0)
        } else {
            RopeIndexConfig::qwen2_vl(IMAGE, VIDEO, 2)
        };
        let rows = std::slice::from_ref(&row);
        let got = get_rope_index::<_, Vec<bool>>(&config, rows, None, &[], &[], None).unwrap();
        let arange: Vec<i64> = (0..row.len() as i64).collect();
        for axis in 0..3 {
            prop_assert_eq!(got.row(axis, 0).unwrap(), arange.as_slice());
        }
        prop_assert_eq!(got.rope_deltas(), &[0]);
    }
}
