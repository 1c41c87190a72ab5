//! Rollout batches: everything known about the sampled completions of one
//! training step, kept on the host so that mini-batches, micro-batches and
//! data-parallel shards are plain row subsets.

use burn::tensor::backend::AutodiffBackend;

use crate::policy::SequenceBatch;

/// One completion of the rollout batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    /// Index of the prompt in [`RolloutBatch::extras`].
    pub prompt_index: usize,
    /// Group id (rows with the same prompt draw share it).
    pub group: usize,
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Completion token ids.
    pub completion_ids: Vec<u32>,
    /// True when generation hit `max_new_tokens`.
    pub truncated: bool,
    /// Data-source tag.
    pub source: String,
    /// Reward from the reward function.
    pub score: f64,
    /// Accuracy reported by the reward function, if any.
    pub accuracy: Option<f64>,
    /// Reward after overlong shaping and KL-in-reward: what advantages use.
    pub reward: f64,
    /// Log-probs of the completion under the sampling policy (per token).
    pub old_logp: Vec<f32>,
    /// Log-probs under the reference policy, when a reference is used.
    pub ref_logp: Option<Vec<f32>>,
    /// Advantage of the completion.
    pub advantage: f64,
    /// Per-token trained flags of a multi-turn episode ([`Episode::loss_mask`]);
    /// `None`: every token trained.
    ///
    /// [`Episode::loss_mask`]: crate::policy::Episode::loss_mask
    pub loss_mask: Option<Vec<bool>>,
    /// Index into [`RolloutBatch::completion_extras`] when the completion
    /// has its own scoring extra; `None`: the prompt's.
    pub completion_extra: Option<usize>,
}

impl RolloutRow {
    /// Whether completion token `t` is trained (policy-generated).
    pub fn is_trained(&self, t: usize) -> bool {
        t < self.completion_ids.len()
            && self
                .loss_mask
                .as_ref()
                .is_none_or(|m| m.get(t).copied().unwrap_or(false))
    }

    /// Number of trained tokens.
    pub fn trained_len(&self) -> usize {
        crate::policy::trained_len(self.completion_ids.len(), self.loss_mask.as_deref())
    }
}

/// The rows of one step plus the prompts' extra inputs.
#[derive(Debug, Clone)]
pub struct RolloutBatch<E> {
    /// Completions, grouped by prompt (`group_size` consecutive rows).
    pub rows: Vec<RolloutRow>,
    /// Extra inputs per prompt.
    pub extras: Vec<E>,
    /// Extra inputs of multi-turn completions that carry their own
    /// (indexed by [`RolloutRow::completion_extra`]).
    pub completion_extras: Vec<E>,
}

/// Host-side `[n, width]` matrices of a row subset.
#[derive(Debug, Clone)]
pub struct HostMatrices {
    /// Width (longest completion of the subset, at least 1).
    pub width: usize,
    /// Completion lengths (inserted tokens included).
    pub lens: Vec<usize>,
    /// 1 at trained tokens (valid and, for multi-turn episodes,
    /// policy-generated), 0 at padding and inserted tokens.
    pub mask: Vec<f32>,
    /// Old log-probs (0 at padding).
    pub old_logp: Vec<f32>,
    /// Reference log-probs (0 at padding), if every row has them.
    pub ref_logp: Option<Vec<f32>>,
    /// Advantages broadcast over valid tokens (0 at padding).
    pub advantages: Vec<f32>,
}

impl<E: Clone> RolloutBatch<E> {
    /// Padded model inputs of the rows `idx` on `device` (pad id 0).
    pub fn sequence_batch<B: AutodiffBackend>(
        &self,
        idx: &[usize],
        device: &B::Device,
    ) -> SequenceBatch<B, E> {
        // A row without its extra (a bug upstream) is left out whole, so
        // rows and extras stay aligned and the row count shows the loss.
        let rows = idx
            .iter()
            .filter_map(|&i| self.rows.get(i))
            .filter_map(|r| {
                let extra = r
                    .completion_extra
                    .and_then(|i| self.completion_extras.get(i))
                    .or_else(|| self.extras.get(r.prompt_index))
                    .cloned()?;
                Some((r.prompt_ids.as_slice(), r.completion_ids.as_slice(), extra))
            });
        SequenceBatch::from_rows(rows, device)
    }

    /// Host matrices of the rows `idx`, padded to their longest completion.
    pub fn host_matrices(&self, idx: &[usize]) -> HostMatrices {
        let rows: Vec<&RolloutRow> = idx.iter().filter_map(|&i| self.rows.get(i)).collect();
        let width = rows
            .iter()
            .map(|r| r.completion_ids.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let n = rows.len();
        let mut mask = vec![0f32; n * width];
        let mut old = vec![0f32; n * width];
        let mut adv = vec![0f32; n * width];
        let has_ref = !rows.is_empty() && rows.iter().all(|r| r.ref_logp.is_some());
        let mut refl = vec![0f32; n * width];
        for (i, r) in rows.iter().enumerate() {
            for t in 0..r.completion_ids.len() {
                if !r.is_trained(t) {
                    continue;
                }
                mask[i * width + t] = 1.0;
                old[i * width + t] = r.old_logp.get(t).copied().unwrap_or(0.0);
                adv[i * width + t] = r.advantage as f32;
                if let Some(rl) = &r.ref_logp {
                    refl[i * width + t] = rl.get(t).copied().unwrap_or(0.0);
                }
            }
        }
        HostMatrices {
            width,
            lens: rows.iter().map(|r| r.completion_ids.len()).collect(),
            mask,
            old_logp: old,
            ref_logp: has_ref.then_some(refl),
            advantages: adv,
        }
    }
}
