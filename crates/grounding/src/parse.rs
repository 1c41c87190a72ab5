//! Boxes out of model text, in every format real Qwen checkpoints emit.
//!
//! Parsers never fail: they return the boxes they could read (possibly none).
//! Boxes are returned as written (inverted or out-of-range boxes included) so
//! that verifiers and the focus loop can decide what to do with them.

use crate::bbox::BBox;
use crate::coords::CoordSpace;
use crate::text::extract_tag;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::LazyLock;

/// A box with an optional label, as written by the model or a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledBox {
    pub bbox: BBox,
    #[serde(default)]
    pub label: Option<String>,
}

impl LabeledBox {
    pub fn new(bbox: BBox, label: impl Into<String>) -> Self {
        Self {
            bbox,
            label: Some(label.into()),
        }
    }

    pub fn unlabeled(bbox: BBox) -> Self {
        Self { bbox, label: None }
    }
}

/// Which syntax the boxes were found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxFormat {
    /// `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` on a 0–1000 grid.
    Qwen2VlTokens,
    /// `{"bbox_2d": [...], "label": ...}` objects, fenced or not, single or listed.
    Qwen25VlJson,
    /// Bare `[x1, y1, x2, y2]` lists.
    PlainList,
}

impl BoxFormat {
    /// The coordinate space the checkpoint family writes this format in.
    pub fn native_space(self) -> Option<CoordSpace> {
        match self {
            BoxFormat::Qwen2VlTokens => Some(CoordSpace::Grid1000),
            BoxFormat::Qwen25VlJson => Some(CoordSpace::Resized),
            BoxFormat::PlainList => None,
        }
    }
}

/// Result of [`parse_boxes`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBoxes {
    pub format: BoxFormat,
    pub boxes: Vec<LabeledBox>,
}

const NUM: &str = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?";

static QWEN2VL_RE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        r"(?s)(?:<\|object_ref_start\|>(.*?)<\|object_ref_end\|>\s*)?<\|box_start\|>\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*,\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*<\|box_end\|>"
    );
    Regex::new(&pattern).unwrap_or_else(|_| unreachable_regex())
});

static QWEN2VL_LIST_RE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        r"(?s)(?:<\|object_ref_start\|>(.*?)<\|object_ref_end\|>\s*)?<\|box_start\|>\s*\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]\s*<\|box_end\|>"
    );
    Regex::new(&pattern).unwrap_or_else(|_| unreachable_regex())
});

static PLAIN_RE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(r"\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]");
    Regex::new(&pattern).unwrap_or_else(|_| unreachable_regex())
});

static FENCE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)```[A-Za-z]*\s*\n?(.*?)```").unwrap_or_else(|_| unreachable_regex())
});

/// The patterns above are constants checked by the unit tests; this keeps
/// `unwrap` out of library code while making a broken constant loud in tests.
fn unreachable_regex() -> Regex {
    // A pattern that never matches anything.
    Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable_regex())
}

fn num(s: Option<regex::Match<'_>>) -> f32 {
    s.and_then(|m| m.as_str().parse::<f32>().ok())
        .unwrap_or(f32::NAN)
}

/// Qwen2-VL box tokens: `<|object_ref_start|>dog<|object_ref_end|><|box_start|>(120,340),(560,980)<|box_end|>`.
/// The label is optional; a `[x1,y1,x2,y2]` list inside the box tokens is
/// accepted too. Coordinates are on Qwen2-VL's 0–1000 grid.
pub fn parse_qwen2vl_tokens(text: &str) -> Vec<LabeledBox> {
    if !text.contains("<|box_start|>") {
        return Vec::new();
    }
    let mut found: Vec<(usize, LabeledBox)> = Vec::new();
    for re in [&*QWEN2VL_RE, &*QWEN2VL_LIST_RE] {
        for c in re.captures_iter(text) {
            let start = c.get(0).map_or(0, |m| m.start());
            let label = c.get(1).map(|m| m.as_str().trim().to_string());
            let bbox = BBox::new(num(c.get(2)), num(c.get(3)), num(c.get(4)), num(c.get(5)));
            found.push((start, LabeledBox { bbox, label }));
        }
    }
    found.sort_by_key(|(s, _)| *s);
    found.into_iter().map(|(_, b)| b).collect()
}

/// Reads one JSON item into boxes: an object with `bbox_2d` (or `bbox`), or a
/// list of such objects (nested lists flattened one level).
fn boxes_from_value(v: &Value, out: &mut Vec<LabeledBox>) {
    match v {
        Value::Array(items) => {
            for item in items {
                if item.is_object() {
                    boxes_from_value(item, out);
                } else if let Value::Array(inner) = item {
                    for x in inner.iter().filter(|x| x.is_object()) {
                        boxes_from_value(x, out);
                    }
                }
            }
        }
        Value::Object(map) => {
            let coords = map.get("bbox_2d").or_else(|| map.get("bbox"));
            let Some(Value::Array(c)) = coords else {
                return;
            };
            let nums: Vec<f32> = c
                .iter()
                .filter_map(|x| x.as_f64())
                .map(|x| x as f32)
                .collect();
            if nums.len() != 4 || c.len() != 4 {
                return;
            }
            let Some(bbox) = BBox::from_slice(&nums) else {
                return;
            };
            let label = match map.get("label") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            out.push(LabeledBox { bbox, label });
        }
        _ => {}
    }
}

/// At most this many JSON start positions are tried per text, so that
/// adversarial input (thousands of `[`) stays linear-ish.
const MAX_JSON_STARTS: usize = 64;

/// Parses JSON values starting at each `[` / `{` of `s`, skipping over any
/// value that parsed.
fn scan_json(s: &str, out: &mut Vec<LabeledBox>) {
    let mut pos = 0usize;
    let mut tries = 0usize;
    while tries < MAX_JSON_STARTS {
        let Some(rest) = s.get(pos..) else { break };
        let Some(off) = rest.find(['[', '{']) else {
            break;
        };
        let start = pos + off;
        tries += 1;
        let Some(tail) = s.get(start..) else { break };
        let mut stream = serde_json::Deserializer::from_str(tail).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                let before = out.len();
                boxes_from_value(&v, out);
                // Only skip the parsed value when it held boxes; otherwise a
                // box might sit inside it in a shape we did not read (e.g. a
                // dict wrapping a list), so step one character on.
                pos = if out.len() > before {
                    start + stream.byte_offset().max(1)
                } else {
                    start + 1
                };
            }
            _ => pos = start + 1,
        }
    }
}

/// V-Triune's repair for cut-off lists (`extract_bbox` in
/// `reward_server/utils/det_helper.py`): a list that does not end in `]`
/// is cut after its last complete object.
fn repair_truncated(s: &str) -> Option<String> {
    let t = s.trim_end();
    if t.ends_with(']') || !t.starts_with('[') {
        return None;
    }
    let head = t.rsplit_once("},").map_or(t, |(h, _)| h);
    Some(format!("{head}}}]"))
}

/// Qwen2.5-VL JSON boxes: `{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}`,
/// alone or in a list, inside a ```` ```json ```` fence or bare in the text,
/// with Python-style single quotes tolerated and a truncated final list
/// repaired. Coordinates are pixels of the resized image.
pub fn parse_qwen25vl_json(text: &str) -> Vec<LabeledBox> {
    if !text.contains("bbox") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in FENCE_RE.captures_iter(text) {
        if let Some(body) = c.get(1) {
            parse_json_region(body.as_str(), &mut out);
        }
    }
    if out.is_empty() {
        // An unterminated fence: take everything after it.
        let region = match text.rfind("```") {
            Some(i) if FENCE_RE.find(text).is_none() => text.get(i + 3..).unwrap_or(""),
            _ => text,
        };
        parse_json_region(region, &mut out);
    }
    out
}

fn parse_json_region(region: &str, out: &mut Vec<LabeledBox>) {
    let before = out.len();
    scan_json(region, out);
    if out.len() == before && region.contains('\'') {
        scan_json(&region.replace('\'', "\""), out);
    }
    if out.len() == before {
        let trimmed = region.trim().trim_start_matches("json").trim();
        if let Some(fixed) = repair_truncated(trimmed) {
            scan_json(&fixed.replace('\'', "\""), out);
        }
    }
}

/// Bare `[x1, y1, x2, y2]` lists (integers or decimals), inside `<answer>`
/// when such a block exists, else anywhere in the text.
pub fn parse_plain_lists(text: &str) -> Vec<LabeledBox> {
    let region = extract_tag(text, "answer").unwrap_or(text);
    PLAIN_RE
        .captures_iter(region)
        .map(|c| {
            LabeledBox::unlabeled(BBox::new(
                num(c.get(1)),
                num(c.get(2)),
                num(c.get(3)),
                num(c.get(4)),
            ))
        })
        .collect()
}

/// Tries the formats from most to least specific and returns the first that
/// yields boxes: Qwen2-VL tokens, Qwen2.5-VL JSON, plain lists.
pub fn parse_boxes(text: &str) -> Option<ParsedBoxes> {
    type Parser = fn(&str) -> Vec<LabeledBox>;
    let attempts: [(BoxFormat, Parser); 3] = [
        (BoxFormat::Qwen2VlTokens, parse_qwen2vl_tokens),
        (BoxFormat::Qwen25VlJson, parse_qwen25vl_json),
        (BoxFormat::PlainList, parse_plain_lists),
    ];
    attempts.into_iter().find_map(|(format, f)| {
        let boxes = f(text);
        (!boxes.is_empty()).then_some(ParsedBoxes { format, boxes })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_compile() {
        for re in [&*QWEN2VL_RE, &*QWEN2VL_LIST_RE, &*PLAIN_RE, &*FENCE_RE] {
            assert_ne!(re.as_str(), r"[^\s\S]");
        }
    }

    #[test]
    fn qwen2vl_tokens() {
        let t = "The dog is at <|object_ref_start|>the dog<|object_ref_end|><|box_start|>(120,340),(560,980)<|box_end|> and a cat <|box_start|>( 5 , 6 ),(7,8)<|box_end|>.";
        let b = parse_qwen2vl_tokens(t);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            LabeledBox::new(BBox::new(120.0, 340.0, 560.0, 980.0), "the dog")
        );
        assert_eq!(b[1], LabeledBox::unlabeled(BBox::new(5.0, 6.0, 7.0, 8.0)));
        let l = parse_qwen2vl_tokens("<|box_start|>[10, 20, 30, 40]<|box_end|>");
        assert_eq!(
            l,
            vec![LabeledBox::unlabeled(BBox::new(10.0, 20.0, 30.0, 40.0))]
        );
        assert!(parse_qwen2vl_tokens("<|box_start|>(1,2)<|box_end|>").is_empty());
    }

    #[test]
    fn qwen25vl_fenced_list() {
        let t = "Sure.\n```json\n[\n\t{\"bbox_2d\": [135, 114, 1016, 672], \"label\": \"dog\"},\n\t{\"bbox_2d\": [12.5, 0, 99, 40], \"label\": \"ball\"}\n]\n```";
        let b = parse_qwen25vl_json(t);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            LabeledBox::new(BBox::new(135.0, 114.0, 1016.0, 672.0), "dog")
        );
        assert_eq!(b[1].bbox, BBox::new(12.5, 0.0, 99.0, 40.0));
        assert_eq!(
            parse_boxes(t).map(|p| p.format),
            Some(BoxFormat::Qwen25VlJson)
        );
    }

    #[test]
    fn qwen25vl_single_object_and_quotes() {
        let b =
            parse_qwen25vl_json("<answer>{\"bbox_2d\": [1, 2, 3, 4], \"label\": \"x\"}</answer>");
        assert_eq!(b, vec![LabeledBox::new(BBox::new(1.0, 2.0, 3.0, 4.0), "x")]);
        let v = parse_qwen25vl_json("<answer> [{'bbox_2d': [240,76,600,320], 'label': 'dog', 'confidence': 0.95}] </answer>");
        assert_eq!(
            v,
            vec![LabeledBox::new(BBox::new(240.0, 76.0, 600.0, 320.0), "dog")]
        );
    }

    #[test]
    fn qwen25vl_truncated_list() {
        let t = "```json\n[{\"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}, {\"bbox_2d\": [5, 6, 7, 8], \"label\": \"b\"}, {\"bbox_2d\": [9, 1";
        let b = parse_qwen25vl_json(t);
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(b[1].label.as_deref(), Some("b"));
    }

    #[test]
    fn plain_lists() {
        let b = parse_plain_lists(
            "<think>maybe [0,0,1,1]</think><answer>[10.5, 20, 30.25, 40]</answer>",
        );
        assert_eq!(
            b,
            vec![LabeledBox::unlabeled(BBox::new(10.5, 20.0, 30.25, 40.0))]
        );
        let c = parse_plain_lists("boxes: [1,2,3,4] and [-5, 6e1, 7., .5]");
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].bbox, BBox::new(-5.0, 60.0, 7.0, 0.5));
        assert!(parse_plain_lists("[1,2,3]").is_empty());
        assert_eq!(
            parse_boxes("[1,2,3,4]").map(|p| p.format),
            Some(BoxFormat::PlainList)
        );
        assert!(parse_boxes("no boxes here").is_none());
    }
}
