use crate::types::{GroundTruth, Reward, RewardContext};

/// Maps a completion to a reward in `[0, 1]`.
///
/// Contract (property-tested): `verify` never panics, whatever the text, and
/// returns a finite `value` in `[0, 1]`. Object safe and `Send + Sync`, so a
/// registry can hand out `Arc<dyn Verifier>` to rollout workers.
pub trait Verifier: Send + Sync + std::fmt::Debug {
    /// A short stable name (used in logs and part names).
    fn name(&self) -> &str;

    fn verify(&self, completion: &str, truth: &GroundTruth, ctx: &RewardContext) -> Reward;
}
