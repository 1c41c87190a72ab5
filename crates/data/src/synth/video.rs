//! `video-events`: the interface only. Frames are rendered by `vlrl-video`
//! (which owns decoding and frame sampling); this crate fixes what a
//! generator hands over (a [`VideoEventSpec`] saying what happens when) and
//! the row shape (`video` path, question, options, answer, events in `meta`).

use serde::{Deserialize, Serialize};
use serde_json::Map;

use crate::omnimed::MULTIPLE_CHOICE_VERIFIER;
use crate::row::{format_multiple_choice, Row};

/// One event in a synthetic clip, in frame indices (`end_frame` exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoEvent {
    /// What happens, e.g. `"red circle appears"`.
    pub label: String,
    pub start_frame: u32,
    pub end_frame: u32,
}

/// Everything a renderer needs to draw the clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoEventSpec {
    pub width: u32,
    pub height: u32,
    pub num_frames: u32,
    pub fps: f32,
    pub events: Vec<VideoEvent>,
}

impl VideoEventSpec {
    /// Events must lie within the clip and have positive length.
    pub fn is_consistent(&self) -> bool {
        self.fps > 0.0
            && self
                .events
                .iter()
                .all(|e| e.start_frame < e.end_frame && e.end_frame <= self.num_frames)
    }
}

/// A generated video question: its row (with `video` set to where the
/// renderer should write the clip) and the spec to render.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSample {
    pub row: Row,
    pub spec: VideoEventSpec,
}

/// A seeded generator of video questions (implemented in `vlrl-video`).
pub trait VideoTaskGenerator {
    fn name(&self) -> &'static str;
    /// Sample `index` of `seed`; pure, like [`crate::TaskGenerator::sample`].
    fn sample(&self, index: u64, seed: u64) -> VideoSample;
    fn generate(&self, n: usize, seed: u64) -> Vec<VideoSample> {
        (0..n as u64).map(|i| self.sample(i, seed)).collect()
    }
}

/// The row shape of a multiple-choice video question: `video` =
/// `videos/<id>.<ext>`, Med-R1-style option lines, events in `meta.events`.
pub fn video_event_row(
    id: &str,
    source: &str,
    ext: &str,
    question: &str,
    options: Vec<String>,
    answer_letter: &str,
    spec: &VideoEventSpec,
) -> Row {
    let mut meta = Map::new();
    meta.insert(
        "events".into(),
        serde_json::to_value(&spec.events).unwrap_or_default(),
    );
    meta.insert("num_frames".into(), spec.num_frames.into());
    meta.insert("fps".into(), f64::from(spec.fps).into());
    Row {
        id: id.to_string(),
        source: source.to_string(),
        problem: Some(format_multiple_choice(question, &options)),
        video: Some(format!("videos/{id}.{ext}")),
        answer: Some(answer_letter.to_string()),
        options,
        verifier: Some(MULTIPLE_CHOICE_VERIFIER.into()),
        meta,
        ..Row::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_shape_round_trips() {
        let spec = VideoEventSpec {
            width: 56,
            height: 56,
            num_frames: 16,
            fps: 4.0,
            events: vec![VideoEvent {
                label: "red circle appears".into(),
                start_frame: 3,
                end_frame: 9,
            }],
        };
        assert!(spec.is_consistent());
        let row = video_event_row(
            "v-0",
            "video-events",
            "gif",
            "What appears first?",
            vec!["a".into(), "b".into()],
            "A",
            &spec,
        );
        row.validate().unwrap();
        let back: Row = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        assert_eq!(back, row);
        let events: Vec<VideoEvent> = serde_json::from_value(back.meta["events"].clone()).unwrap();
        assert_eq!(events, spec.events);
    }
}
