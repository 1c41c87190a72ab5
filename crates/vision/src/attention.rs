//! Vision self-attention with 2-D rotary embeddings, restricted to segments
//! (`cu_seqlens`: one image, one video frame, or one Qwen2.5-VL window).
//!
//! The rotary embedding is HF's `rotate_half` form (`x·cos + rotate_half(x)·sin`,
//! halves split, not interleaved pairs as burn's `RotaryEncoding`), with the
//! frequency layout of `Qwen2VLVisionRotaryEmbedding`: per token
//! `[h·f, w·f, h·f, w·f]` where `f` has `head_dim/4` entries
//! `θ^(−2i/(head_dim/2))`.
//!
//! Attention runs per segment without a dense `N x N` mask: consecutive
//! segments of equal length are batched into one `[n, heads, len, len]` product.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::layers::Linear;
use crate::weights::WeightLoader;

/// Spatial `(row, col)` patch positions in processor order (merge windows
/// contiguous), repeated per temporal step, for each `(t, h, w)` grid.
pub fn vision_position_ids(grid_thw: &[[usize; 3]], merge: usize) -> Vec<(usize, usize)> {
    let mut ids = Vec::new();
    for &[t, h, w] in grid_thw {
        for _ in 0..t {
            for bh in 0..h / merge {
                for bw in 0..w / merge {
                    for mh in 0..merge {
                        for mw in 0..merge {
                            ids.push((bh * merge + mh, bw * merge + mw));
                        }
                    }
                }
            }
        }
    }
    ids
}

/// `cu_seqlens` of per-frame attention: one segment of `h·w` per temporal step.
pub fn frame_cu_seqlens(grid_thw: &[[usize; 3]]) -> Vec<usize> {
    let mut cu = vec![0];
    for &[t, h, w] in grid_thw {
        for _ in 0..t {
            let last = cu.last().copied().unwrap_or(0);
            cu.push(last + h * w);
        }
    }
    cu
}

/// cos and sin tables `[n, head_dim]` for the given positions.
pub fn rotary_tables<B: Backend>(
    positions: &[(usize, usize)],
    head_dim: usize,
    theta: f64,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let spatial = head_dim / 2;
    // inv_freq = 1 / θ^(arange(0, spatial, 2) / spatial), in f32 as the reference.
    let inv_freq: Vec<f32> = (0..spatial)
        .step_by(2)
        .map(|j| 1.0 / (theta as f32).powf(j as f32 / spatial as f32))
        .collect();
    let quarter = inv_freq.len();
    let mut cos = Vec::with_capacity(positions.len() * head_dim);
    let mut sin = Vec::with_capacity(positions.len() * head_dim);
    let mut row = vec![0.0f32; 2 * quarter];
    for &(h, w) in positions {
        for (i, &f) in inv_freq.iter().enumerate() {
            row[i] = h as f32 * f;
            row[quarter + i] = w as f32 * f;
        }
        for _ in 0..2 {
            cos.extend(row.iter().map(|a| a.cos()));
            sin.extend(row.iter().map(|a| a.sin()));
        }
    }
    let n = positions.len();
    let dim = 4 * quarter;
    (
        Tensor::from_data(TensorData::new(cos, [n, dim]), device),
        Tensor::from_data(TensorData::new(sin, [n, dim]), device),
    )
}

/// `x·cos + rotate_half(x)·sin` for `x: [n, heads, head_dim]`, tables `[n, head_dim]`.
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 3>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [n, heads, dim] = x.dims();
    let half = dim / 2;
    let x1 = x.clone().slice([0..n, 0..heads, 0..half]);
    let x2 = x.clone().slice([0..n, 0..heads, half..dim]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
    x * cos.clone().unsqueeze_dim(1) + rotated * sin.clone().unsqueeze_dim(1)
}

/// Splits `cu_seqlens` into runs `(start, segment_len, count)` of consecutive
/// equal-length non-empty segments.
pub fn segment_runs(cu_seqlens: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for pair in cu_seqlens.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        if end <= start {
            continue;
        }
        let len = end - start;
        match runs.last_mut() {
            Some((s, l, c)) if *l == len && *s + *l * *c == start => *c += 1,
            _ => runs.push((start, len, 1)),
        }
    }
    runs
}

/// Multi-head self-attention of the vision blocks (`attn.qkv`, `attn.proj`).
#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    /// Fused q, k, v projection `[dim, 3·dim]`.
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    /// Number of heads.
    pub num_heads: usize,
}

impl<B: Backend> VisionAttention<B> {
    /// Loads `{name}.qkv` and `{name}.proj`.
    pub fn load(
        loader: &mut WeightLoader<'_, B>,
        name: &str,
        dim: usize,
        num_heads: usize,
    ) -> Self {
        Self {
            qkv: Linear::load(loader, &format!("{name}.qkv"), dim, 3 * dim, true),
            proj: Linear::load(loader, &format!("{name}.proj"), dim, dim, true),
            num_heads,
        }
    }

    /// `x: [n, dim]`; `runs` from [`segment_runs`] must cover `0..n` in order.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
        runs: &[(usize, usize, usize)],
    ) -> Tensor<B, 2> {
        let [n, dim] = x.dims();
        let heads = self.num_heads;
        let head_dim = dim / heads;
        let qkv = self.qkv.forward(x).reshape([n, 3, heads, head_dim]);
        let part = |i: usize| {
            qkv.clone()
                .slice([0..n, i..i + 1, 0..heads, 0..head_dim])
                .reshape([n, heads, head_dim])
        };
        let q = apply_rotary(part(0), cos, sin);
        let k = apply_rotary(part(1), cos, sin);
        let v = part(2);
        let scale = (head_dim as f64).powf(-0.5);
        let mut outputs = Vec::with_capacity(runs.len());
        for &(start, len, count) in runs {
            let rows = start..start + len * count;
            let take = |t: &Tensor<B, 3>| {
                t.clone()
                    .slice([rows.clone(), 0..heads, 0..head_dim])
                    .reshape([count, len, heads, head_dim])
                    .swap_dims(1, 2)
            };
            let (qs, ks, vs) = (take(&q), take(&k), take(&v));
            let scores = qs.matmul(ks.swap_dims(2, 3)) * scale;
            let probs = softmax(scores, 3);
            let out = probs.matmul(vs).swap_dims(1, 2).reshape([count * len, dim]);
            outputs.push(out);
        }
        let merged = if outputs.len() == 1 {
            outputs
                .pop()
                .unwrap_or_else(|| Tensor::zeros([n, dim], &qkv.device()))
        } else {
            Tensor::cat(outputs, 0)
        };
        self.proj.forward(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_merge_windows() {
        let ids = vision_position_ids(&[[1, 2, 4]], 2);
        assert_eq!(
            ids,
            vec![
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1),
                (0, 2),
                (0, 3),
                (1, 2),
                (1, 3)
            ]
        );
        assert_eq!(frame_cu_seqlens(&[[2, 2, 2], [1, 4, 2]]), vec![0, 4, 8, 16]);
    }

    #[test]
    fn runs_group_equal_segments() {
        assert_eq!(
            segment_runs(&[0, 4, 8, 8, 12, 14]),
            vec![(0, 4, 3), (12, 2, 1)]
        );
    }
}
