//! `video-events`: seeded synthetic clips with multiple-choice questions about
//! what happens over time, the tiny-scale stand-in for Video-RTS's video QA
//! benchmarks. Three question kinds, each with four options (chance 25%):
//!
//! - `order`: four shapes appear one after another and stay; "which shape
//!   appears first / last?" needs frames around the appearance times.
//! - `count`: one to four shapes each flash for a few frames; "how many shapes
//!   appear?" — a sparse frame sample misses short flashes, so denser sampling
//!   helps (the situation sparse-to-dense test-time scaling is made for).
//! - `change`: the background switches colour once; "what colour does it
//!   change to?" (the starting colour is one of the distractors).
//!
//! Every clip is a pure function of `(seed, index)` and its frames are drawn
//! on demand, so no video file is needed at tiny scale; [`write_dataset`]
//! writes clips as frame folders plus `data.jsonl` for the `--data` path.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use vlrl::data::row::option_letter;
use vlrl::data::synth::draw::{Shape, NAMED_COLORS};
use vlrl::data::synth::video::{video_event_row, VideoEvent, VideoEventSpec};
use vlrl::data::synth::{VideoSample, VideoTaskGenerator};
use vlrl::grpo::rng::TrainRng;

/// Name of the generator: rows' `source` and id prefix.
pub const NAME: &str = "video-events";

/// The question kinds of `video-events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum EventTask {
    Order,
    Count,
    Change,
}

impl EventTask {
    pub const ALL: [EventTask; 3] = [EventTask::Order, EventTask::Count, EventTask::Change];

    pub fn name(self) -> &'static str {
        match self {
            EventTask::Order => "order",
            EventTask::Count => "count",
            EventTask::Change => "change",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
            .with_context(|| format!("unknown video-events task `{name}` (order, count, change)"))
    }
}

/// Settings of the generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// Square frame side in pixels; a positive multiple of 28.
    pub frame_size: u32,
    /// Frames per clip.
    pub num_frames: u32,
    pub fps: f32,
    /// Question kinds, cycled by sample index.
    pub tasks: Vec<EventTask>,
    /// `true`: options in random order (as real benchmarks). `false`: a
    /// fixed order in which the letter follows from the answer alone, the
    /// convention of the bundled models (which cannot find a named option in
    /// a shuffled list, docs/bundled-model.md): colour `k` of the palette
    /// always takes slot `k mod 4`, so `order` and `change` pick their four
    /// colours one per slot; `count` lists 1–4 in either mode.
    pub shuffle_options: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            frame_size: 56,
            num_frames: 32,
            fps: 8.0,
            tasks: EventTask::ALL.to_vec(),
            shuffle_options: true,
        }
    }
}

/// One shape of a clip: drawn while `visible.0 <= frame < visible.1`,
/// moving linearly and bouncing off the borders.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneObject {
    pub shape: Shape,
    pub colour: [u8; 3],
    pub colour_name: &'static str,
    pub radius: f32,
    pub start: (f32, f32),
    /// Pixels per frame.
    pub velocity: (f32, f32),
    pub visible: (u32, u32),
}

impl SceneObject {
    pub fn describe(&self) -> String {
        format!("{} {}", self.colour_name, self.shape.name())
    }
}

/// Everything needed to draw a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub size: u32,
    pub num_frames: u32,
    pub fps: f32,
    /// `(first frame, colour)`, ascending by frame; the first starts at 0.
    pub backgrounds: Vec<(u32, [u8; 3])>,
    pub objects: Vec<SceneObject>,
}

impl Scene {
    /// Background colour at frame `index`.
    pub fn background(&self, index: u32) -> [u8; 3] {
        self.backgrounds
            .iter()
            .rev()
            .find(|(from, _)| *from <= index)
            .or(self.backgrounds.first())
            .map_or([40, 40, 40], |(_, c)| *c)
    }

    /// Frame `index` (any index; objects keep moving past the end).
    pub fn frame(&self, index: u32) -> RgbImage {
        let mut img = RgbImage::from_pixel(self.size, self.size, Rgb(self.background(index)));
        let side = self.size as f32;
        for o in &self.objects {
            if index < o.visible.0 || index >= o.visible.1 {
                continue;
            }
            let bounce = |start: f32, v: f32| {
                let span = (side - 2.0 * o.radius).max(0.0);
                if span == 0.0 {
                    return side / 2.0;
                }
                let p = (start - o.radius + v * index as f32).rem_euclid(2.0 * span);
                o.radius + if p > span { 2.0 * span - p } else { p }
            };
            let (cx, cy) = (
                bounce(o.start.0, o.velocity.0),
                bounce(o.start.1, o.velocity.1),
            );
            o.shape.draw(&mut img, cx, cy, o.radius, o.colour);
        }
        img
    }

    /// Frames at `indices` (in the order given).
    pub fn frames_at(&self, indices: &[usize]) -> Vec<RgbImage> {
        indices
            .iter()
            .map(|&i| self.frame(u32::try_from(i).unwrap_or(u32::MAX)))
            .collect()
    }
}

/// One generated question: its row (video path, question, options, answer,
/// events in `meta`), the spec, and the scene that draws its frames.
#[derive(Debug, Clone, PartialEq)]
pub struct EventClip {
    pub sample: VideoSample,
    pub scene: Scene,
    pub task: EventTask,
}

impl EventClip {
    /// A reasoning trace that states every event of the clip, then the
    /// answer, in the bundled models' format (`<think>… It shows {answer},
    /// which is option {X}.</think><answer>{X}</answer>`): the SFT target of
    /// `recipes video-base`. Stating all events, not only the one asked
    /// about, makes every example supervise all of the clip's perception (the
    /// lesson of the second med model, docs/bundled-model.md).
    pub fn trace(&self) -> String {
        let row = &self.sample.row;
        let letter = row.answer.clone().unwrap_or_default();
        let answer_text = letter
            .bytes()
            .next()
            .and_then(|b| row.options.get(usize::from(b.wrapping_sub(b'A'))))
            .cloned()
            .unwrap_or_default();
        let names: Vec<String> = self
            .scene
            .objects
            .iter()
            .map(SceneObject::describe)
            .collect();
        let events = match self.task {
            EventTask::Order => format!("In order: {}.", names.join(", ")),
            EventTask::Count => format!(
                "I see {} {}: {}.",
                names.len(),
                if names.len() == 1 { "shape" } else { "shapes" },
                names.join(", ")
            ),
            EventTask::Change => {
                let name = |c: [u8; 3]| {
                    NAMED_COLORS
                        .iter()
                        .find(|(_, rgb)| *rgb == c)
                        .map_or("grey", |(n, _)| n)
                };
                match self.scene.backgrounds.as_slice() {
                    [(_, from), .., (_, to)] => {
                        format!(
                            "The background turns from {} to {}.",
                            name(*from),
                            name(*to)
                        )
                    }
                    _ => String::new(),
                }
            }
        };
        format!(
            "<think>{events} It shows {answer_text}, which is option {letter}.</think><answer>{letter}</answer>"
        )
    }
}

/// Option slots of a question (A–D).
const SLOTS: usize = 4;

/// Four palette indices, one for each slot `k mod 4` (in slot order), each
/// drawn among the palette colours of its slot.
fn one_colour_per_slot(rng: &mut TrainRng) -> Vec<usize> {
    (0..SLOTS)
        .map(|slot| {
            let members: Vec<usize> = (slot..NAMED_COLORS.len()).step_by(SLOTS).collect();
            members[rng.below(members.len())]
        })
        .collect()
}

/// The `video-events` generator.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoEvents {
    pub config: EventsConfig,
}

impl VideoEvents {
    pub fn new(config: EventsConfig) -> Result<Self> {
        if config.frame_size == 0 || !config.frame_size.is_multiple_of(28) {
            bail!(
                "video-events frame_size must be a positive multiple of 28, got {}",
                config.frame_size
            );
        }
        if config.num_frames < 8 {
            bail!(
                "video-events needs at least 8 frames per clip, got {}",
                config.num_frames
            );
        }
        if !(config.fps.is_finite() && config.fps > 0.0) {
            bail!("video-events fps must be positive, got {}", config.fps);
        }
        if config.tasks.is_empty() {
            bail!("video-events needs at least one task");
        }
        Ok(Self { config })
    }

    /// Clip `index` of `seed`: a pure function of both.
    pub fn clip(&self, index: u64, seed: u64) -> EventClip {
        let c = &self.config;
        let task = c
            .tasks
            .get((index % c.tasks.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or(EventTask::Order);
        let mut rng = TrainRng::derive(seed, index.wrapping_add(0x5EED_0000_0000));
        let n = c.num_frames;
        let side = c.frame_size as f32;
        let radius = side / 9.0;
        let mut colours: Vec<usize> = (0..NAMED_COLORS.len()).collect();
        rng.shuffle(&mut colours);
        let object = |rng: &mut TrainRng, colour: usize, visible: (u32, u32)| {
            let (name, rgb) = NAMED_COLORS[colour % NAMED_COLORS.len()];
            let speed = 0.5 + rng.next_f64() as f32;
            let angle = rng.next_f64() as f32 * std::f32::consts::TAU;
            SceneObject {
                shape: Shape::ALL[rng.below(Shape::ALL.len())],
                colour: rgb,
                colour_name: name,
                radius,
                start: (
                    radius + rng.next_f64() as f32 * (side - 2.0 * radius),
                    radius + rng.next_f64() as f32 * (side - 2.0 * radius),
                ),
                velocity: (speed * angle.cos(), speed * angle.sin()),
                visible,
            }
        };
        let dark = [40, 40, 40];
        let (question, options, correct, objects, backgrounds) = match task {
            EventTask::Order => {
                // Four distinct appearance frames in the first 3/4 of the
                // clip, at least two frames apart.
                let slots = ((n * 3 / 4) / 2).max(4) as usize;
                let mut picks: Vec<usize> = (0..slots).collect();
                rng.shuffle(&mut picks);
                let mut starts: Vec<u32> = picks[..4].iter().map(|&s| 2 * s as u32).collect();
                starts.sort_unstable();
                if !c.shuffle_options {
                    colours = one_colour_per_slot(&mut rng);
                    rng.shuffle(&mut colours);
                }
                let objects: Vec<SceneObject> = starts
                    .iter()
                    .zip(&colours)
                    .map(|(&s, &colour)| object(&mut rng, colour, (s, n)))
                    .collect();
                let last = rng.below(2) == 1;
                let question = format!(
                    "Which shape appears {} in the video?",
                    if last { "last" } else { "first" }
                );
                let answer = if last { objects.len() - 1 } else { 0 };
                let mut order: Vec<usize> = (0..objects.len()).collect();
                if c.shuffle_options {
                    rng.shuffle(&mut order);
                } else {
                    // Slot k holds the object whose colour is k mod 4.
                    order.sort_by_key(|&i| colours[i] % SLOTS);
                }
                let options = order.iter().map(|&i| objects[i].describe()).collect();
                let correct = order.iter().position(|&i| i == answer).unwrap_or(0);
                (question, options, correct, objects, vec![(0, dark)])
            }
            EventTask::Count => {
                let count = 1 + rng.below(4);
                let objects = (0..count)
                    .map(|k| {
                        let len = 2 + rng.below(5) as u32;
                        let start = rng.below(n.saturating_sub(len) as usize + 1) as u32;
                        object(&mut rng, colours[k], (start, start + len))
                    })
                    .collect();
                let question = "How many shapes appear during the video?".to_string();
                let options = (1..=4).map(|k| k.to_string()).collect();
                (question, options, count - 1, objects, vec![(0, dark)])
            }
            EventTask::Change => {
                if !c.shuffle_options {
                    // Four colours, one per slot: `to` and `from` among them.
                    colours = one_colour_per_slot(&mut rng);
                    rng.shuffle(&mut colours);
                }
                let (from, to) = (colours[0], colours[1]);
                let at = n / 4 + rng.below((n / 2) as usize) as u32;
                let clutter = SceneObject {
                    colour: [128, 128, 128],
                    colour_name: "grey",
                    ..object(&mut rng, 0, (0, n))
                };
                let mut choices = vec![to, from, colours[2], colours[3]];
                let mut order: Vec<usize> = (0..4).collect();
                if c.shuffle_options {
                    rng.shuffle(&mut order);
                } else {
                    order.sort_by_key(|&i| choices[i] % SLOTS);
                }
                choices = order.iter().map(|&i| choices[i]).collect();
                let options = choices
                    .iter()
                    .map(|&i| NAMED_COLORS[i % NAMED_COLORS.len()].0.to_string())
                    .collect();
                let correct = order.iter().position(|&i| i == 0).unwrap_or(0);
                let question = "What colour does the background change to?".to_string();
                let backgrounds = vec![
                    (0, NAMED_COLORS[from % NAMED_COLORS.len()].1),
                    (at, NAMED_COLORS[to % NAMED_COLORS.len()].1),
                ];
                (question, options, correct, vec![clutter], backgrounds)
            }
        };
        let mut events: Vec<VideoEvent> = objects
            .iter()
            .map(|o| VideoEvent {
                label: format!("{} visible", o.describe()),
                start_frame: o.visible.0,
                end_frame: o.visible.1,
            })
            .collect();
        for pair in backgrounds.windows(2) {
            if let [_, (at, colour)] = pair {
                let name = NAMED_COLORS
                    .iter()
                    .find(|(_, c)| c == colour)
                    .map_or("?", |(name, _)| name);
                events.push(VideoEvent {
                    label: format!("background turns {name}"),
                    start_frame: *at,
                    end_frame: n,
                });
            }
        }
        let spec = VideoEventSpec {
            width: c.frame_size,
            height: c.frame_size,
            num_frames: n,
            fps: c.fps,
            events,
        };
        let id = format!("{NAME}-{seed}-{index}");
        let letter = option_letter(correct).map(String::from).unwrap_or_default();
        let mut row = video_event_row(&id, NAME, "frames", &question, options, &letter, &spec);
        row.meta.insert("task".into(), task.name().into());
        EventClip {
            sample: VideoSample { row, spec },
            scene: Scene {
                size: c.frame_size,
                num_frames: n,
                fps: c.fps,
                backgrounds,
                objects,
            },
            task,
        }
    }
}

impl VideoTaskGenerator for VideoEvents {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample(&self, index: u64, seed: u64) -> VideoSample {
        self.clip(index, seed).sample
    }
}

/// Writes clips as a dataset folder: `videos/<id>.frames/frame_00000.png`, …
/// (read back by `vlrl_video::FrameDir` at the clip's fps) and `data.jsonl`.
pub fn write_dataset(dir: &Path, clips: &[EventClip]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let jsonl = dir.join("data.jsonl");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&jsonl).with_context(|| format!("creating {}", jsonl.display()))?,
    );
    for clip in clips {
        let rel = clip
            .sample
            .row
            .video
            .clone()
            .context("video-events row without a video path")?;
        let frames = dir.join(&rel);
        std::fs::create_dir_all(&frames)
            .with_context(|| format!("creating {}", frames.display()))?;
        for i in 0..clip.scene.num_frames {
            let path = frames.join(format!("frame_{i:05}.png"));
            clip.scene
                .frame(i)
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        writeln!(out, "{}", serde_json::to_string(&clip.sample.row)?)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn generator() -> VideoEvents {
        VideoEvents::new(EventsConfig::default()).unwrap()
    }

    #[test]
    fn clips_are_deterministic_and_valid() {
        let g = generator();
        for i in 0..30 {
            let a = g.clip(i, 3);
            assert_eq!(a, g.clip(i, 3));
            a.sample.row.validate().unwrap();
            assert!(a.sample.spec.is_consistent());
            assert_eq!(a.sample.row.options.len(), 4);
            assert_eq!(a.scene.frame(5).dimensions(), (56, 56));
        }
        assert_ne!(g.clip(0, 3).scene, g.clip(0, 4).scene);
    }

    #[test]
    fn answers_follow_the_scene() {
        let g = generator();
        let mut letters = std::collections::BTreeSet::new();
        for i in 0..60 {
            let clip = g.clip(i, 11);
            let row = &clip.sample.row;
            let answer = row.answer.clone().unwrap();
            letters.insert(answer.clone());
            let idx = (answer.as_bytes()[0] - b'A') as usize;
            let text = &row.options[idx];
            match clip.task {
                EventTask::Count => {
                    assert_eq!(text, &clip.scene.objects.len().to_string());
                    // every flash is visible in at least one frame
                    for o in &clip.scene.objects {
                        assert!(o.visible.0 < o.visible.1 && o.visible.1 <= 32);
                    }
                }
                EventTask::Order => {
                    let q = row.problem.clone().unwrap();
                    let target = if q.contains("first") {
                        clip.scene.objects.first()
                    } else {
                        clip.scene.objects.last()
                    };
                    assert_eq!(text, &target.unwrap().describe());
                    let starts: Vec<u32> = clip.scene.objects.iter().map(|o| o.visible.0).collect();
                    assert!(starts.windows(2).all(|w| w[0] + 2 <= w[1]));
                }
                EventTask::Change => {
                    let (at, colour) = clip.scene.backgrounds[1];
                    let name = NAMED_COLORS.iter().find(|(_, c)| *c == colour).unwrap().0;
                    assert_eq!(text, name);
                    assert_ne!(clip.scene.background(at - 1), colour);
                    assert_eq!(clip.scene.background(at), colour);
                }
            }
        }
        assert!(
            letters.len() >= 3,
            "answers spread over letters: {letters:?}"
        );
    }

    #[test]
    fn fixed_order_puts_each_colour_in_its_slot() {
        let g = VideoEvents::new(EventsConfig {
            shuffle_options: false,
            ..EventsConfig::default()
        })
        .unwrap();
        let slot_of = |name: &str| {
            NAMED_COLORS
                .iter()
                .position(|(n, _)| name.starts_with(n))
                .unwrap()
                % SLOTS
        };
        let mut letters = std::collections::BTreeMap::<EventTask, BTreeSet<String>>::new();
        for i in 0..90 {
            let clip = g.clip(i, 5);
            let row = &clip.sample.row;
            row.validate().unwrap();
            let answer = row.answer.clone().unwrap();
            letters.entry(clip.task).or_default().insert(answer.clone());
            let idx = (answer.as_bytes()[0] - b'A') as usize;
            match clip.task {
                EventTask::Order | EventTask::Change => {
                    // Every option sits in its colour's slot, so the answer's
                    // letter is a function of the answer text alone.
                    for (k, option) in row.options.iter().enumerate() {
                        assert_eq!(slot_of(option), k, "{option} in {:?}", row.options);
                    }
                    assert_eq!(slot_of(&row.options[idx]), idx);
                }
                EventTask::Count => {
                    assert_eq!(row.options, ["1", "2", "3", "4"]);
                    assert_eq!(row.options[idx], clip.scene.objects.len().to_string());
                }
            }
            if clip.task == EventTask::Change {
                // The starting colour is one of the distractors.
                let from = clip.scene.backgrounds[0].1;
                let from = NAMED_COLORS.iter().find(|(_, c)| *c == from).unwrap().0;
                assert!(row.options.iter().any(|o| o == from));
                assert_ne!(row.options[idx], from);
            }
        }
        for (task, seen) in letters {
            assert!(
                seen.len() >= 3,
                "{task:?} answers spread over letters: {seen:?}"
            );
        }
    }

    #[test]
    fn traces_state_the_events_and_end_with_the_answer() {
        for shuffle_options in [true, false] {
            let g = VideoEvents::new(EventsConfig {
                shuffle_options,
                ..EventsConfig::default()
            })
            .unwrap();
            for i in 0..30 {
                let clip = g.clip(i, 8);
                let trace = clip.trace();
                let row = &clip.sample.row;
                let letter = row.answer.clone().unwrap();
                let idx = (letter.as_bytes()[0] - b'A') as usize;
                assert!(
                    trace.ends_with(&format!(
                        "{}, which is option {letter}.</think><answer>{letter}</answer>",
                        row.options[idx]
                    )),
                    "{trace}"
                );
                for o in &clip.scene.objects {
                    if clip.task != EventTask::Change {
                        assert!(
                            trace.contains(&o.describe()),
                            "{trace} lacks {}",
                            o.describe()
                        );
                    }
                }
                match clip.task {
                    EventTask::Order => {
                        let first = clip.scene.objects[0].describe();
                        assert!(trace.starts_with(&format!("<think>In order: {first}, ")));
                    }
                    EventTask::Count => {
                        let n = clip.scene.objects.len();
                        assert!(
                            trace.starts_with(&format!("<think>I see {n} shape")),
                            "{trace}"
                        );
                    }
                    EventTask::Change => {
                        assert!(
                            trace.contains(&format!("to {}.", row.options[idx])),
                            "{trace}"
                        );
                    }
                }
            }
        }
    }
}
