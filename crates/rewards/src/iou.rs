//! Single-box grounding rewards: IoU and V-Triune's Dynamic IoU.

use crate::types::{wrong_truth, GroundTruth, Reward, RewardContext};
use crate::verifier::Verifier;
use serde::{Deserialize, Serialize};
use vlrl_grounding::{parse_boxes, BBox, CoordSpace};

/// A step function of training progress `p = step / total_steps`.
///
/// V-Triune (Ma et al., 2025, "One RL to See Them All", `reward_server/verify.py`):
/// ε = 0.85 while p ≤ 0.10, 0.95 while p ≤ 0.25, then 0.99.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IouSchedule {
    /// `(upto, threshold)`: `threshold` applies while `progress <= upto`;
    /// checked in order.
    pub stages: Vec<(f64, f64)>,
    /// Threshold after the last stage.
    pub last: f64,
}

impl Default for IouSchedule {
    fn default() -> Self {
        Self {
            stages: vec![(0.10, 0.85), (0.25, 0.95)],
            last: 0.99,
        }
    }
}

impl IouSchedule {
    pub fn constant(threshold: f64) -> Self {
        Self {
            stages: Vec::new(),
            last: threshold,
        }
    }

    pub fn threshold(&self, progress: f64) -> f64 {
        self.stages
            .iter()
            .find(|(upto, _)| progress <= *upto)
            .map_or(self.last, |(_, t)| *t)
    }
}

/// Where boxes come from and what space they are in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BoxSpaces {
    pub answer_tag: String,
    /// Space of predicted boxes; Qwen2-VL box tokens are always read as the
    /// 0–1000 grid.
    pub pred_space: CoordSpace,
    /// Space of the ground-truth box.
    pub truth_space: CoordSpace,
}

impl Default for BoxSpaces {
    fn default() -> Self {
        Self {
            answer_tag: "answer".into(),
            pred_space: CoordSpace::Resized,
            truth_space: CoordSpace::Resized,
        }
    }
}

impl BoxSpaces {
    /// First predicted box, converted into the truth's space. `Err` names
    /// why there is none (a part name).
    pub fn predicted_box(
        &self,
        completion: &str,
        ctx: &RewardContext,
    ) -> Result<BBox, &'static str> {
        let region =
            vlrl_grounding::extract_tag(completion, &self.answer_tag).unwrap_or(completion);
        let parsed = parse_boxes(region).ok_or("no_box")?;
        let first = parsed.boxes.first().ok_or("no_box")?.bbox;
        let from = match parsed.format.native_space() {
            Some(CoordSpace::Grid1000) => CoordSpace::Grid1000,
            _ => self.pred_space,
        };
        if from == self.truth_space {
            return Ok(first);
        }
        let frame = ctx.frame.ok_or("missing_frame")?;
        Ok(frame.convert(first, from, self.truth_space))
    }
}

/// Reward = IoU of the first predicted box with the truth box.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IouVerifier {
    pub boxes: BoxSpaces,
}

impl Verifier for IouVerifier {
    fn name(&self) -> &str {
        "iou"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, ctx: &RewardContext) -> Reward {
        let GroundTruth::Box(gold) = truth else {
            return wrong_truth("box");
        };
        match self.boxes.predicted_box(completion, ctx) {
            Ok(b) => {
                let iou = b.iou_f64(gold);
                Reward::named("accuracy", iou).with_part("iou", iou)
            }
            Err(why) => Reward::named("accuracy", 0.0).with_part(why, 1.0),
        }
    }
}

/// Dynamic IoU (V-Triune): reward = IoU when IoU ≥ ε(progress), else 0.
///
/// Worked example: IoU 0.9 at 5% of training (ε = 0.85) gives 0.9; the
/// same box at 20% (ε = 0.95) gives 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicIouVerifier {
    pub boxes: BoxSpaces,
    pub schedule: IouSchedule,
}

impl Verifier for DynamicIouVerifier {
    fn name(&self) -> &str {
        "dynamic_iou"
    }

    fn verify(&self, completion: &str, truth: &GroundTruth, ctx: &RewardContext) -> Reward {
        let GroundTruth::Box(gold) = truth else {
            return wrong_truth("box");
        };
        let eps = self.schedule.threshold(ctx.progress());
        match self.boxes.predicted_box(completion, ctx) {
            Ok(b) => {
                let iou = b.iou_f64(gold);
                let r = if iou >= eps { iou } else { 0.0 };
                Reward::named("accuracy", r)
                    .with_part("iou", iou)
                    .with_part("iou_threshold", eps)
            }
            Err(why) => Reward::named("accuracy", 0.0)
                .with_part(why, 1.0)
                .with_part("iou_threshold", eps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlrl_grounding::ImageFrame;

    #[test]
    fn schedule_matches_vtriune() {
        let s = IouSchedule::default();
        assert_eq!(s.threshold(0.0), 0.85);
        assert_eq!(s.threshold(0.10), 0.85);
        assert_eq!(s.threshold(0.100001), 0.95);
        assert_eq!(s.threshold(0.25), 0.95);
        assert_eq!(s.threshold(0.5), 0.99);
        assert_eq!(s.threshold(f64::NAN), 0.99);
    }

    #[test]
    fn dynamic_iou_worked_example() {
        // Truth 100x100; prediction shifted 5 px right → IoU 95·100/(2·10000 − 9500) = 0.904761…
        let gold = GroundTruth::Box(BBox::new(0.0, 0.0, 100.0, 100.0));
        let text = "<answer>[5, 0, 105, 100]</answer>";
        let v = DynamicIouVerifier::default();
        let early = v.verify(text, &gold, &RewardContext::at(5, 100));
        assert!((early.value - 9500.0 / 10500.0).abs() < 1e-6);
        assert_eq!(
            v.verify(text, &gold, &RewardContext::at(20, 100)).value,
            0.0
        );
        let plain = IouVerifier::default().verify(text, &gold, &RewardContext::at(20, 100));
        assert!((plain.value - 9500.0 / 10500.0).abs() < 1e-6);
    }

    #[test]
    fn spaces_and_missing() {
        let gold = GroundTruth::Box(BBox::new(320.0, 120.0, 640.0, 480.0));
        let v = IouVerifier {
            boxes: BoxSpaces {
                truth_space: CoordSpace::Original,
                ..BoxSpaces::default()
            },
        };
        let ctx = RewardContext::default().with_frame(ImageFrame::new(640, 480, 644, 476).unwrap());
        // Qwen2-VL grid tokens, converted to original pixels.
        let r = v.verify("<|box_start|>(500,250),(1000,1000)<|box_end|>", &gold, &ctx);
        assert!((r.value - 1.0).abs() < 1e-6, "{r:?}");
        // Resized-pixel JSON without a frame cannot be compared.
        let m = v.verify("{\"bbox_2d\": [1,2,3,4]}", &gold, &RewardContext::default());
        assert_eq!(m.value, 0.0);
        assert_eq!(m.part("missing_frame"), Some(1.0));
        assert_eq!(v.verify("nothing", &gold, &ctx).part("no_box"), Some(1.0));
    }
}
