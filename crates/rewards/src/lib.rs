#![doc = include_str!("../README.md")]

pub mod accuracy;
pub mod coco;
pub mod counting;
pub mod detection;
pub mod format;
pub mod iou;
pub mod metrics;
pub mod number;
pub mod ocr;
pub mod registry;
pub mod text;
pub mod types;
pub mod verifier;

pub use accuracy::{
    math_equivalent, AnswerConfig, MathVerifier, MultipleChoiceVerifier, NumericVerifier,
    StringMatch, StringMatchVerifier,
};
pub use counting::{CountMode, CountingVerifier};
pub use detection::{
    DetBox, DetMatching, DetWeights, DetectionBreakdown, DetectionConfig, DetectionF1Verifier,
    DetectionVerifier, ThresholdMode,
};
pub use format::{FormatConfig, FormatMode, FormatVerifier};
pub use iou::{BoxSpaces, DynamicIouVerifier, IouSchedule, IouVerifier};
pub use metrics::{SourceMetrics, SourceSummary};
pub use ocr::{anls, levenshtein, normalized_edit_distance, OcrMode, OcrVerifier};
pub use registry::{
    Combination, CombinationSpec, Registry, RewardError, RewardsConfig, TermSpec, VerifierSpec,
};
pub use types::{GroundTruth, Reward, RewardContext};
pub use verifier::Verifier;
