//! The multi-turn "chain of focus" loop as a state machine.
//!
//! Chain-of-Focus (Zhang et al., 2025, "Chain-of-Focus: Adaptive Visual
//! Search and Zooming for Multimodal Reasoning via RL") lets the model ask for
//! a zoomed view of a region; the crop is appended as a new image turn and
//! generation continues until the model answers. This type owns only the
//! decision: the caller generates text, feeds it to [`FocusLoop::step`], and
//! acts on the returned [`FocusAction`] (crop with [`FocusLoop::render`] and
//! append, or stop). No model is called here, so every rule is unit-testable.

use crate::bbox::BBox;
use crate::coords::{CoordSpace, ImageFrame};
use crate::crop::{plan_zoom, render_plan, ZoomConfig, ZoomPlan};
use crate::parse::{parse_boxes, LabeledBox};
use crate::text::extract_tag;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Rules of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FocusConfig {
    /// Model turns allowed, the answering turn included.
    pub max_turns: u32,
    /// Pixels of all images in the conversation (the first image included,
    /// as fed to the model) may not exceed this.
    pub max_total_pixels: u64,
    /// Tag that marks the final answer.
    pub answer_tag: String,
    /// Space the model writes boxes in, relative to the original image
    /// (Qwen2.5-VL: resized pixels; Qwen2-VL box tokens: 0–1000 grid).
    /// Qwen2-VL token boxes are always read as 0–1000, whatever this says.
    pub box_space: CoordSpace,
    /// Boxes narrower or shorter than this (original pixels) are rejected.
    pub min_box_side: f32,
    /// An invalid action ends the episode (otherwise the caller may re-prompt).
    pub stop_on_invalid: bool,
    pub zoom: ZoomConfig,
}

impl Default for FocusConfig {
    fn default() -> Self {
        Self {
            max_turns: 4,
            max_total_pixels: 4 * 14 * 14 * 4 * 1280,
            answer_tag: "answer".to_string(),
            box_space: CoordSpace::Resized,
            min_box_side: 1.0,
            stop_on_invalid: true,
            zoom: ZoomConfig::default(),
        }
    }
}

/// Why a turn was not a usable action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvalidReason {
    /// Neither an answer nor a box.
    NoAction,
    /// Empty answer block.
    EmptyAnswer,
    /// More than one box where one zoom region is expected.
    MultipleBoxes { count: usize },
    /// The box has NaN/inf, inverted corners or is too small.
    BadBox { bbox: [f32; 4], why: String },
    /// The box lies outside the image.
    OutsideImage { bbox: [f32; 4] },
    /// The last allowed turn did not answer.
    MaxTurnsReached { max_turns: u32 },
    /// The crop would push the conversation over the pixel budget.
    PixelBudgetExceeded { needed: u64, limit: u64 },
    /// `step` was called after the episode ended.
    AlreadyFinished,
}

/// What the caller should do after a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum FocusAction {
    /// The model answered; the episode is over.
    Answer { text: String },
    /// Crop `plan.region` (original pixels), scale to `plan.out_*`, append as
    /// a new image turn and continue generating.
    Zoom {
        request: LabeledBox,
        region: BBox,
        plan: ZoomPlan,
    },
    /// Unusable turn; the episode is over when `finished` is true.
    Invalid {
        reason: InvalidReason,
        finished: bool,
    },
}

/// Where the episode stands.
#[derive(Debug, Clone, PartialEq)]
pub enum FocusStatus {
    Running,
    Answered(String),
    Stopped(InvalidReason),
}

/// One episode of the focus loop for one image.
#[derive(Debug, Clone)]
pub struct FocusLoop {
    cfg: FocusConfig,
    frame: ImageFrame,
    turns: u32,
    total_pixels: u64,
    zooms: Vec<ZoomPlan>,
    status: FocusStatus,
}

impl FocusLoop {
    /// `frame` gives the original image size and the resized size the model
    /// saw; the first image is charged `resized_w × resized_h` pixels.
    pub fn new(frame: ImageFrame, cfg: FocusConfig) -> Self {
        let total_pixels = frame.resized_w as u64 * frame.resized_h as u64;
        Self {
            cfg,
            frame,
            turns: 0,
            total_pixels,
            zooms: Vec::new(),
            status: FocusStatus::Running,
        }
    }

    pub fn turns(&self) -> u32 {
        self.turns
    }

    pub fn total_pixels(&self) -> u64 {
        self.total_pixels
    }

    pub fn zooms(&self) -> &[ZoomPlan] {
        &self.zooms
    }

    pub fn status(&self) -> &FocusStatus {
        &self.status
    }

    pub fn is_finished(&self) -> bool {
        self.status != FocusStatus::Running
    }

    fn invalid(&mut self, reason: InvalidReason, force_stop: bool) -> FocusAction {
        let finished = force_stop || self.cfg.stop_on_invalid;
        if finished {
            self.status = FocusStatus::Stopped(reason.clone());
        }
        FocusAction::Invalid { reason, finished }
    }

    /// Decides what the model's turn `text` asks for and updates the state.
    pub fn step(&mut self, text: &str) -> FocusAction {
        if self.is_finished() {
            return FocusAction::Invalid {
                reason: InvalidReason::AlreadyFinished,
                finished: true,
            };
        }
        self.turns = self.turns.saturating_add(1);
        if let Some(answer) = extract_tag(text, &self.cfg.answer_tag) {
            let answer = answer.trim();
            if answer.is_empty() {
                return self.invalid(InvalidReason::EmptyAnswer, self.turns >= self.cfg.max_turns);
            }
            self.status = FocusStatus::Answered(answer.to_string());
            return FocusAction::Answer {
                text: answer.to_string(),
            };
        }
        if self.turns >= self.cfg.max_turns {
            return self.invalid(
                InvalidReason::MaxTurnsReached {
                    max_turns: self.cfg.max_turns,
                },
                true,
            );
        }
        let Some(parsed) = parse_boxes(text) else {
            return self.invalid(InvalidReason::NoAction, false);
        };
        let space = parsed
            .format
            .native_space()
            .filter(|s| *s == CoordSpace::Grid1000)
            .unwrap_or(self.cfg.box_space);
        let [request] = parsed.boxes.as_slice() else {
            return self.invalid(
                InvalidReason::MultipleBoxes {
                    count: parsed.boxes.len(),
                },
                false,
            );
        };
        let region = self
            .frame
            .convert(request.bbox, space, CoordSpace::Original);
        if let Err(reason) = self.check_box(region) {
            return self.invalid(reason, false);
        }
        let plan = match plan_zoom(region, self.frame.orig_w, self.frame.orig_h, &self.cfg.zoom) {
            Ok(p) => p,
            Err(e) => {
                let reason = match e {
                    crate::GroundingError::OutsideImage { bbox, .. } => {
                        InvalidReason::OutsideImage { bbox }
                    }
                    other => InvalidReason::BadBox {
                        bbox: region.to_array(),
                        why: other.to_string(),
                    },
                };
                return self.invalid(reason, false);
            }
        };
        let needed = self.total_pixels.saturating_add(plan.out_pixels());
        if needed > self.cfg.max_total_pixels {
            return self.invalid(
                InvalidReason::PixelBudgetExceeded {
                    needed,
                    limit: self.cfg.max_total_pixels,
                },
                true,
            );
        }
        self.total_pixels = needed;
        self.zooms.push(plan);
        FocusAction::Zoom {
            request: request.clone(),
            region,
            plan,
        }
    }

    fn check_box(&self, b: BBox) -> Result<(), InvalidReason> {
        let arr = b.to_array();
        if !b.is_finite() {
            return Err(InvalidReason::BadBox {
                bbox: arr,
                why: "non-finite coordinate".into(),
            });
        }
        if !b.is_valid() {
            return Err(InvalidReason::BadBox {
                bbox: arr,
                why: "x1 > x2 or y1 > y2".into(),
            });
        }
        if b.width() < self.cfg.min_box_side || b.height() < self.cfg.min_box_side {
            return Err(InvalidReason::BadBox {
                bbox: arr,
                why: format!("side below {} px", self.cfg.min_box_side),
            });
        }
        Ok(())
    }

    /// Renders a zoom plan returned by [`FocusLoop::step`] on the original image.
    pub fn render(image: &RgbImage, plan: &ZoomPlan) -> RgbImage {
        render_plan(image, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crop::CropRegion;

    fn frame() -> ImageFrame {
        // 1000x500 original, resized to 1008x504 (resized ≈ original).
        ImageFrame::new(1000, 500, 1008, 504).unwrap()
    }

    fn cfg() -> FocusConfig {
        FocusConfig {
            box_space: CoordSpace::Original,
            zoom: ZoomConfig {
                context_frac: 0.0,
                min_pixels: 0,
                ..ZoomConfig::default()
            },
            ..FocusConfig::default()
        }
    }

    #[test]
    fn zoom_then_answer() {
        let mut l = FocusLoop::new(frame(), cfg());
        let a = l.step("<think>the sign is small</think>```json\n[{\"bbox_2d\": [100, 100, 300, 200], \"label\": \"sign\"}]\n```");
        let FocusAction::Zoom {
            region,
            plan,
            request,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(region, BBox::new(100.0, 100.0, 300.0, 200.0));
        assert_eq!(
            plan.region,
            CropRegion {
                x: 100,
                y: 100,
                width: 200,
                height: 100
            }
        );
        assert_eq!(request.label.as_deref(), Some("sign"));
        assert_eq!(l.total_pixels(), 1008 * 504 + 200 * 100);
        let b = l.step("<think>it says STOP</think><answer> STOP </answer>");
        assert_eq!(
            b,
            FocusAction::Answer {
                text: "STOP".into()
            }
        );
        assert_eq!(l.status(), &FocusStatus::Answered("STOP".into()));
        assert_eq!(l.turns(), 2);
        assert!(matches!(
            l.step("<answer>x</answer>"),
            FocusAction::Invalid {
                reason: InvalidReason::AlreadyFinished,
                ..
            }
        ));
    }

    #[test]
    fn qwen2vl_tokens_are_grid_coordinates() {
        let mut l = FocusLoop::new(frame(), cfg());
        let a = l.step("<|box_start|>(100,200),(300,400)<|box_end|>");
        let FocusAction::Zoom { region, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(region, BBox::new(100.0, 100.0, 300.0, 200.0));
    }

    #[test]
    fn resized_space_is_mapped_to_original() {
        let mut l = FocusLoop::new(
            frame(),
            FocusConfig {
                box_space: CoordSpace::Resized,
                ..cfg()
            },
        );
        let FocusAction::Zoom { region, .. } = l.step("[504, 252, 1008, 504]") else {
            panic!()
        };
        assert_eq!(region, BBox::new(500.0, 250.0, 1000.0, 500.0));
    }

    #[test]
    fn invalid_actions() {
        let mut l = FocusLoop::new(
            frame(),
            FocusConfig {
                stop_on_invalid: false,
                ..cfg()
            },
        );
        assert_eq!(
            l.step("I am not sure."),
            FocusAction::Invalid {
                reason: InvalidReason::NoAction,
                finished: false
            }
        );
        let two = l.step("[1,1,50,50] [60,60,90,90]");
        assert_eq!(
            two,
            FocusAction::Invalid {
                reason: InvalidReason::MultipleBoxes { count: 2 },
                finished: false
            }
        );
        let inv = l.step("[50,50,10,10]");
        assert!(
            matches!(
                inv,
                FocusAction::Invalid {
                    reason: InvalidReason::BadBox { .. },
                    finished: false
                }
            ),
            "{inv:?}"
        );
        // 4th turn of 4 without an answer ends the episode.
        let last = l.step("[1,1,50,50]");
        assert_eq!(
            last,
            FocusAction::Invalid {
                reason: InvalidReason::MaxTurnsReached { max_turns: 4 },
                finished: true
            }
        );
        assert!(l.is_finished());
    }

    #[test]
    fn outside_and_empty_answer() {
        let mut l = FocusLoop::new(
            frame(),
            FocusConfig {
                stop_on_invalid: false,
                ..cfg()
            },
        );
        assert!(matches!(
            l.step("[2000, 2000, 2100, 2100]"),
            FocusAction::Invalid {
                reason: InvalidReason::OutsideImage { .. },
                ..
            }
        ));
        assert!(matches!(
            l.step("<answer>  </answer>"),
            FocusAction::Invalid {
                reason: InvalidReason::EmptyAnswer,
                ..
            }
        ));
    }

    #[test]
    fn pixel_budget() {
        let budget = 1008 * 504 + 200 * 100 + 10;
        let mut l = FocusLoop::new(
            frame(),
            FocusConfig {
                max_total_pixels: budget,
                ..cfg()
            },
        );
        assert!(matches!(
            l.step("[100, 100, 300, 200]"),
            FocusAction::Zoom { .. }
        ));
        let over = l.step("[0, 0, 10, 10]");
        let FocusAction::Invalid {
            reason: InvalidReason::PixelBudgetExceeded { needed, limit },
            finished: true,
        } = over
        else {
            panic!("{over:?}")
        };
        assert_eq!(limit, budget);
        assert_eq!(needed, 1008 * 504 + 200 * 100 + 28 * 28);
        assert_eq!(l.zooms().len(), 1);
    }

    #[test]
    fn render_matches_plan() {
        let img = RgbImage::new(1000, 500);
        let mut l = FocusLoop::new(frame(), cfg());
        let FocusAction::Zoom { plan, .. } = l.step("[10, 10, 110, 60]") else {
            panic!()
        };
        assert_eq!(
            FocusLoop::render(&img, &plan).dimensions(),
            (plan.out_width, plan.out_height)
        );
    }
}
