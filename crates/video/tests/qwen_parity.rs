//! Parity with qwen-vl-utils: `tests/fixtures/video/qwen_parity.json` was
//! made by `tools/video_parity.py`, which runs qwen-vl-utils' own
//! `fetch_video` (decord path, reader mocked), `smart_resize` and
//! `torch.linspace(...).round()`.

use serde_json::Value;
use vlrl_video::sampling::{linspace_indices, plan, smart_resize, FrameCount, SampleConfig};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/video/qwen_parity.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture present (run tools/video_parity.py)");
    serde_json::from_str(&text).unwrap()
}

fn config_from(options: &Value, patch_size: usize) -> SampleConfig {
    let f = |k: &str| options.get(k).and_then(Value::as_f64);
    let u = |k: &str| options.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let frames = match u("nframes") {
        Some(n) => FrameCount::Fixed(n),
        None => FrameCount::Fps {
            fps: f("fps").unwrap_or(vlrl_video::sampling::FPS),
            min_frames: u("min_frames"),
            max_frames: u("max_frames"),
        },
    };
    let resized = match (u("resized_height"), u("resized_width")) {
        (Some(h), Some(w)) => Some((h as u32, w as u32)),
        _ => None,
    };
    SampleConfig {
        frames,
        video_start: f("video_start"),
        video_end: f("video_end"),
        min_pixels: f("min_pixels"),
        max_pixels: f("max_pixels"),
        total_pixels: f("total_pixels"),
        resized,
        patch_size,
    }
}

#[test]
fn fetch_video_indices_fps_and_sizes_match() {
    let data = fixture();
    let cases = data["fetch_video"].as_array().unwrap();
    assert!(cases.len() > 400);
    let (mut ok, mut errors) = (0, 0);
    for (n, case) in cases.iter().enumerate() {
        let total = case["total_frames"].as_u64().unwrap() as usize;
        let fps = case["fps"].as_f64().unwrap();
        let height = case["height"].as_u64().unwrap() as u32;
        let width = case["width"].as_u64().unwrap() as u32;
        let patch = case["patch_size"].as_u64().unwrap() as usize;
        let config = config_from(&case["options"], patch);
        let result = plan(&config, total, fps, height, width);
        if case.get("error").is_some() {
            assert!(
                result.is_err(),
                "case {n} {case}: expected an error, got {result:?}"
            );
            errors += 1;
            continue;
        }
        let plan = result.unwrap_or_else(|e| panic!("case {n} {case}: {e}"));
        let want: Vec<usize> = case["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(plan.indices, want, "case {n} {case}");
        // serde_json's default float parsing may be 1 ulp off the printed value.
        let want_fps = case["sample_fps"].as_f64().unwrap();
        assert!(
            (plan.sample_fps - want_fps).abs() <= 4.0 * f64::EPSILON * want_fps,
            "case {n}"
        );
        assert_eq!(
            u64::from(plan.resized_height),
            case["resized_height"].as_u64().unwrap(),
            "case {n} {case}"
        );
        assert_eq!(
            u64::from(plan.resized_width),
            case["resized_width"].as_u64().unwrap(),
            "case {n} {case}"
        );
        ok += 1;
    }
    assert!(ok > 300 && errors > 20, "ok {ok}, errors {errors}");
}

#[test]
fn smart_resize_matches() {
    let data = fixture();
    for case in data["smart_resize"].as_array().unwrap() {
        let g = |k: &str| case[k].as_f64().unwrap();
        let out = smart_resize(
            g("height") as u32,
            g("width") as u32,
            g("factor") as usize,
            g("min_pixels"),
            g("max_pixels"),
        );
        // qwen-vl-utils returns a zero side for extreme shapes (e.g. 2809x22
        // under a 50k-pixel cap), which the later resize rejects; we return
        // the error at once.
        let want_zero = case.get("out").is_some_and(|o| o[0] == 0 || o[1] == 0);
        match case.get("out").filter(|_| !want_zero) {
            Some(want) => {
                let (h, w) = out.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(
                    [u64::from(h), u64::from(w)],
                    [want[0].as_u64().unwrap(), want[1].as_u64().unwrap()],
                    "{case}"
                );
            }
            None => assert!(out.is_err(), "{case}: expected error, got {out:?}"),
        }
    }
}

fn fnv1a(indices: &[usize]) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &i in indices {
        for b in (i as u64).to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn torch_linspace_round_matches_bit_for_bit() {
    let data = fixture();
    let sweep = data["linspace_round_fnv1a"].as_array().unwrap();
    assert!(sweep.len() > 10_000);
    for entry in sweep {
        let start = entry[0].as_u64().unwrap() as usize;
        let end = entry[1].as_u64().unwrap() as usize;
        let steps = entry[2].as_u64().unwrap() as usize;
        let got = fnv1a(&linspace_indices(start, end, steps));
        assert_eq!(
            got,
            entry[3].as_str().unwrap(),
            "linspace({start}, {end}, {steps})"
        );
    }
}
