//! Rotary position embedding as Qwen uses it: HF's `rotate_half` (the two
//! halves of the head dimension rotate together), not burn's interleaved
//! `RotaryEncoding`, and multimodal RoPE (M-RoPE, Qwen2-VL §2.1) where the
//! frequency pairs are split into temporal / height / width sections, each
//! rotated by its own position id. A text-only model is the special case of
//! three equal position rows, so one code path serves both.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

#[derive(Debug, Clone)]
pub struct RotaryEmbedding<B: Backend> {
    /// `[head_dim / 2]` inverse frequencies, computed in f32 as HF does.
    inv_freq: Tensor<B, 1>,
    /// Frequency pairs per (temporal, height, width) section; one section
    /// covering everything for plain RoPE.
    sections: Vec<usize>,
}

impl<B: Backend> RotaryEmbedding<B> {
    pub fn new(
        head_dim: usize,
        theta: f64,
        mrope_section: Option<&[usize]>,
        device: &B::Device,
    ) -> Self {
        let half = head_dim / 2;
        // HF: 1 / base ** (arange(0, dim, 2).float() / dim), all in f32.
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let sections = match mrope_section {
            Some(s) => s.to_vec(),
            None => vec![half],
        };
        Self {
            inv_freq: Tensor::from_data(TensorData::new(inv, [half]), device),
            sections,
        }
    }

    /// `cos`, `sin` of shape `[batch, 1, seq, head_dim]` for position ids of
    /// shape `[3, batch, seq]` (M-RoPE) — plain RoPE passes three equal rows.
    pub fn cos_sin(&self, position_ids: Tensor<B, 3, Int>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [axes, batch, seq] = position_ids.dims();
        let half = self.inv_freq.dims()[0];
        let pos = position_ids.float().reshape([axes, batch, seq, 1]);
        let inv = self.inv_freq.clone().reshape([1, 1, 1, half]);
        let freqs = pos * inv; // [axes, batch, seq, half]
        let freqs = if self.sections.len() == 1 {
            freqs.narrow(0, 0, 1).reshape([batch, seq, half])
        } else {
            let mut start = 0;
            let mut parts = Vec::with_capacity(self.sections.len());
            for (axis, &len) in self.sections.iter().enumerate() {
                parts.push(
                    freqs
                        .clone()
                        .narrow(0, axis % axes, 1)
                        .narrow(3, start, len)
                        .reshape([batch, seq, len]),
                );
                start += len;
            }
            Tensor::cat(parts, 2)
        };
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).unsqueeze_dim::<4>(1);
        (emb.clone().cos(), emb.sin())
    }
}

/// `x * cos + rotate_half(x) * sin` for `x` of shape `[batch, heads, seq, head_dim]`.
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// Position ids `[3, batch, seq]` for text: each row `offset + 0..seq`, or,
/// with a left-padding attention mask, HF generate's `cumsum(mask) - 1`
/// (padding slots get 1, as HF fills them).
pub fn text_position_ids<B: Backend>(
    batch: usize,
    seq: usize,
    offset: usize,
    attention_mask: Option<&[Vec<u8>]>,
    device: &B::Device,
) -> Tensor<B, 3, Int> {
    let mut ids = Vec::with_capacity(batch * seq);
    for b in 0..batch {
        match attention_mask.and_then(|m| m.get(b)) {
            Some(mask) => {
                let mut count = 0i64;
                for (i, &m) in mask.iter().enumerate() {
                    count += i64::from(m != 0);
                    if i >= mask.len().saturating_sub(seq) {
                        ids.push(if m != 0 { count - 1 } else { 1 });
                    }
                }
            }
            None => ids.extend((0..seq).map(|i| (offset + i) as i64)),
        }
    }
    let row: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids, [batch, seq]), device);
    row.unsqueeze_dim::<3>(0).repeat_dim(0, 3)
}
