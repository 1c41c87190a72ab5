//! Parsing arbitrary input never panics.

use proptest::prelude::*;
use vlrl_data::{check_relative, parse_row, Row};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_row_never_panics_on_any_string(line in any::<String>()) {
        let _ = parse_row(&line);
    }

    #[test]
    fn parse_row_never_panics_on_json_like_text(line in r#"[{}\[\]":,0-9a-z_ .\-/\\]{0,80}"#) {
        let _ = parse_row(&line);
    }

    #[test]
    fn parse_row_never_panics_on_row_shaped_objects(
        problem in proptest::option::of(".{0,20}"),
        images in proptest::collection::vec("[a-z./\\\\:]{0,12}", 0..3),
        answer in proptest::option::of(-1000i64..1000),
        options in proptest::collection::vec(".{0,6}", 0..5),
        letter in "[A-Z]{0,2}",
        bbox in proptest::collection::vec(-1e6f64..1e6, 4),
    ) {
        let mut obj = serde_json::json!({"images": images, "options": options, "boxes": [{"bbox_2d": bbox}]});
        if let Some(p) = problem { obj["problem"] = p.into(); }
        obj["answer"] = match answer { Some(a) => a.into(), None => letter.into() };
        let line = obj.to_string();
        if let Ok(Some(row)) = parse_row(&line) {
            // A row that parses also survives a write/read round trip.
            let again: Row = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
            prop_assert_eq!(again, row);
        }
    }

    #[test]
    fn check_relative_never_panics(path in any::<String>()) {
        let _ = check_relative(&path);
    }
}
