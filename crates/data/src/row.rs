//! The row format: one JSON object per JSONL line.
//!
//! ```json
//! {"id": "cm-1", "source": "med-synth", "problem": "Which modality...\nA: CT\nB: MRI",
//!  "images": ["images/cm-1.png"], "answer": "A", "options": ["CT", "MRI"],
//!  "verifier": "multiple_choice", "meta": {"modality": "CT"}}
//! ```
//!
//! EasyR1 rows (`{"problem", "answer", "images"}`) are a subset and read as they
//! are; `image` (one string, as in R1-V / Med-R1 exports) is accepted for
//! `images`. Fields this format does not name are kept in [`Row::extra`] and
//! written back, never dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::RowError;
use crate::paths::check_relative;

/// One chat message (`messages` rows, OpenAI/Qwen style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: MessageContent,
}

/// Message content: plain text or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A typed content part, as in Qwen2-VL chat messages. An image/video part
/// may name its file; a part without one refers to the row's `images`/`video`
/// in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    Image {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
    },
    Video {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<String>,
    },
}

/// A labelled box, V-Triune style (`bbox_2d` = `[x1, y1, x2, y2]`, pixels of
/// the original image unless the row's `meta` says otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxLabel {
    #[serde(alias = "bbox")]
    pub bbox_2d: [f32; 4],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One dataset row. See the module docs for the JSON shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Row {
    /// Unique id. Rows without one (EasyR1) get `<file name>:<line>` at load.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Data source, for per-source metrics (e.g. `med-synth`, `omnimedvqa/ACRIMA`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// The full user text (question and, for multiple choice, the option lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Image paths relative to the data root.
    #[serde(
        default,
        alias = "image",
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub images: Vec<String>,
    /// Video path relative to the data root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// Ground truth, as text (numbers and booleans are read as their JSON text).
    #[serde(
        default,
        deserialize_with = "scalar_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub answer: Option<String>,
    /// Multiple-choice options in letter order (A, B, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boxes: Vec<BoxLabel>,
    /// Registry key of the verifier that scores this row (rewards crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// Free-form metadata (modality, question type, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    /// Fields not named above, kept so that nothing is silently dropped.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "`answer` must be a string, number or boolean, got {other}"
        ))),
    }
}

/// The letter of option `index` (0 → `A`).
pub fn option_letter(index: usize) -> Option<char> {
    u8::try_from(index)
        .ok()
        .filter(|&i| i < 26)
        .map(|i| char::from(b'A' + i))
}

/// Med-R1's multiple-choice text: the question, then one `X: option` line per
/// option (`scripts/data_process_split.py`, `convert_raw_data_to_sft_data`).
pub fn format_multiple_choice(question: &str, options: &[String]) -> String {
    let mut text = question.trim_end().to_string();
    for (i, opt) in options.iter().enumerate() {
        if let Some(letter) = option_letter(i) {
            text.push('\n');
            text.push(letter);
            text.push_str(": ");
            text.push_str(opt);
        }
    }
    text
}

impl Row {
    /// Check what a row promises independent of the filesystem: a prompt is
    /// present, media paths are relative and stay in the root, boxes are
    /// finite and ordered, a letter answer names an existing option.
    pub fn validate(&self) -> Result<(), RowError> {
        let has_messages = self.messages.as_ref().is_some_and(|m| !m.is_empty());
        let has_problem = self.problem.as_ref().is_some_and(|p| !p.trim().is_empty());
        if !has_messages && !has_problem {
            return Err(RowError::NoPrompt);
        }
        for path in self.media_paths() {
            check_relative(path).map_err(|source| RowError::MediaPath {
                path: path.to_string(),
                source,
            })?;
        }
        for (i, b) in self.boxes.iter().enumerate() {
            let [x1, y1, x2, y2] = b.bbox_2d;
            if !b.bbox_2d.iter().all(|v| v.is_finite()) || x2 < x1 || y2 < y1 {
                return Err(RowError::Field {
                    field: format!("boxes[{i}]"),
                    reason: format!(
                        "expected finite [x1, y1, x2, y2] with x1<=x2, y1<=y2, got {:?}",
                        b.bbox_2d
                    ),
                });
            }
        }
        if !self.options.is_empty() {
            if let Some(answer) = &self.answer {
                let a = answer.trim();
                let is_letter = a.len() == 1 && a.chars().all(|c| c.is_ascii_uppercase());
                if is_letter && self.option_index(a).is_none() {
                    return Err(RowError::Field {
                        field: "answer".into(),
                        reason: format!("letter {a} but only {} options", self.options.len()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every media path the row refers to: `images`, `video`, and files named
    /// inside message parts.
    pub fn media_paths(&self) -> impl Iterator<Item = &str> {
        let from_messages = self
            .messages
            .iter()
            .flatten()
            .filter_map(|m| match &m.content {
                MessageContent::Parts(parts) => Some(parts),
                MessageContent::Text(_) => None,
            })
            .flatten()
            .filter_map(|p| match p {
                ContentPart::Image { image } => image.as_deref(),
                ContentPart::Video { video } => video.as_deref(),
                ContentPart::Text { .. } => None,
            });
        self.images
            .iter()
            .map(String::as_str)
            .chain(self.video.as_deref())
            .chain(from_messages)
    }

    /// Index of an option letter (`"B"` → 1) if this row has that option.
    pub fn option_index(&self, letter: &str) -> Option<usize> {
        let mut chars = letter.trim().chars();
        let c = chars.next()?;
        if chars.next().is_some() || !c.is_ascii_uppercase() {
            return None;
        }
        let idx = usize::from(c as u8 - b'A');
        (idx < self.options.len()).then_some(idx)
    }

    /// A string field of `meta`.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta.get(key).and_then(Value::as_str)
    }

    /// The user-facing text: `problem`, or the text of the last user message.
    pub fn prompt_text(&self) -> Option<String> {
        if let Some(p) = &self.problem {
            return Some(p.clone());
        }
        let msg = self
            .messages
            .as_ref()?
            .iter()
            .rev()
            .find(|m| m.role == "user")?;
        Some(match &msg.content {
            MessageContent::Text(t) => t.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easyr1_row_reads_as_is() {
        let row: Row = serde_json::from_str(
            r#"{"problem": "<image>How many?", "answer": 3, "images": ["a/b.png"]}"#,
        )
        .unwrap();
        assert_eq!(row.answer.as_deref(), Some("3"));
        assert_eq!(row.images, vec!["a/b.png"]);
        assert!(row.extra.is_empty());
        row.validate().unwrap();
    }

    #[test]
    fn single_image_alias_and_unknown_fields_kept() {
        let row: Row = serde_json::from_str(
            r#"{"problem": "q", "image": "x.png", "solution": "<answer> A </answer>"}"#,
        )
        .unwrap();
        assert_eq!(row.images, vec!["x.png"]);
        assert_eq!(
            row.extra.get("solution").and_then(Value::as_str),
            Some("<answer> A </answer>")
        );
        let back = serde_json::to_string(&row).unwrap();
        assert!(back.contains("solution"), "{back}");
    }

    #[test]
    fn messages_row_with_parts() {
        let row: Row = serde_json::from_str(
            r#"{"id":"m","messages":[{"role":"user","content":[{"type":"image","image":"i.png"},{"type":"text","text":"what?"}]},
                {"role":"assistant","content":"B"}], "answer":"B", "options":["x","y"]}"#,
        )
        .unwrap();
        row.validate().unwrap();
        assert_eq!(row.media_paths().collect::<Vec<_>>(), vec!["i.png"]);
        assert_eq!(row.prompt_text().as_deref(), Some("what?"));
        assert_eq!(row.option_index("B"), Some(1));
        assert_eq!(row.option_index("C"), None);
    }

    #[test]
    fn validation_failures() {
        let no_prompt: Row = serde_json::from_str(r#"{"answer":"1"}"#).unwrap();
        assert!(matches!(no_prompt.validate(), Err(RowError::NoPrompt)));
        let escaping: Row =
            serde_json::from_str(r#"{"problem":"q","images":["../x.png"]}"#).unwrap();
        assert!(matches!(
            escaping.validate(),
            Err(RowError::MediaPath { .. })
        ));
        let bad_box: Row =
            serde_json::from_str(r#"{"problem":"q","boxes":[{"bbox_2d":[5,5,1,1]}]}"#).unwrap();
        assert!(matches!(bad_box.validate(), Err(RowError::Field { .. })));
        let bad_letter: Row =
            serde_json::from_str(r#"{"problem":"q","options":["a","b"],"answer":"D"}"#).unwrap();
        assert!(matches!(bad_letter.validate(), Err(RowError::Field { .. })));
    }

    #[test]
    fn multiple_choice_format_matches_med_r1() {
        let text = format_multiple_choice("Which?", &["CT".into(), "MRI".into()]);
        assert_eq!(text, "Which?\nA: CT\nB: MRI");
    }
}
