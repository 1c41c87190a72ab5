//! The Qwen2.5-VL vision tower (`Qwen2_5_VisionTransformerPretrainedModel`,
//! transformers 5.24 `modeling_qwen2_5_vl.py` + `vision_utils.get_vision_window_index`):
//! RMSNorm blocks with a SwiGLU MLP (with bias); most blocks attend inside
//! windows of `window_size` pixels, the `fullatt_block_indexes` blocks over
//! whole images/frames. Merge units (2x2 patches) are permuted into window
//! order before the blocks and the merged features are permuted back after.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::attention::{
    frame_cu_seqlens, rotary_tables, segment_runs, vision_position_ids, VisionAttention,
};
use crate::config::{Activation, Qwen25VisionConfig};
use crate::error::{VisionError, WeightError};
use crate::layers::{activate, Linear, RmsNorm};
use crate::tower_common::{check_inputs, group_rows, VisionOutput};
use crate::weights::{TensorStore, WeightLoader};

const EPS: f64 = 1e-6;

/// SwiGLU MLP: `down(act(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct SwiGluMlp<B: Backend> {
    /// Gate projection.
    pub gate_proj: Linear<B>,
    /// Up projection.
    pub up_proj: Linear<B>,
    /// Down projection.
    pub down_proj: Linear<B>,
}

/// One block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Module, Debug)]
pub struct Qwen25VisionBlock<B: Backend> {
    /// Pre-attention RMSNorm.
    pub norm1: RmsNorm<B>,
    /// Pre-MLP RMSNorm.
    pub norm2: RmsNorm<B>,
    /// Attention.
    pub attn: VisionAttention<B>,
    /// MLP.
    pub mlp: SwiGluMlp<B>,
}

/// Merger: RMSNorm, group 2x2 windows, Linear → GELU → Linear.
#[derive(Module, Debug)]
pub struct Qwen25PatchMerger<B: Backend> {
    /// RMSNorm over the tower width.
    pub ln_q: RmsNorm<B>,
    /// `mlp.0`.
    pub fc1: Linear<B>,
    /// `mlp.2`.
    pub fc2: Linear<B>,
    /// Rows per merge window.
    pub unit: usize,
}

/// Window permutation of merge units and the window `cu_seqlens` (in patches),
/// exactly as `get_vision_window_index`.
pub fn window_index(
    grid_thw: &[[usize; 3]],
    merge: usize,
    window_size: usize,
    patch_size: usize,
) -> (Vec<usize>, Vec<usize>) {
    let ws = (window_size / merge / patch_size).max(1);
    let unit = merge * merge;
    let mut index = Vec::new();
    let mut cu = vec![0usize];
    let mut offset = 0usize;
    for &[t, h, w] in grid_thw {
        let (lh, lw) = (h / merge, w / merge);
        // The reference pads to a multiple of the window (a full extra window
        // when already aligned; empty windows then vanish).
        let (nwh, nww) = ((lh + ws - lh % ws) / ws, (lw + ws - lw % ws) / ws);
        for ti in 0..t {
            for wy in 0..nwh {
                for wx in 0..nww {
                    let mut count = 0;
                    for y in wy * ws..(wy + 1) * ws {
                        for x in wx * ws..(wx + 1) * ws {
                            if y < lh && x < lw {
                                index.push(offset + ti * lh * lw + y * lw + x);
                                count += 1;
                            }
                        }
                    }
                    let last = cu.last().copied().unwrap_or(0);
                    if count > 0 {
                        cu.push(last + count * unit);
                    }
                }
            }
        }
        offset += t * lh * lw;
    }
    (index, cu)
}

/// The Qwen2.5-VL vision tower.
#[derive(Module, Debug)]
pub struct Qwen25VisionTower<B: Backend> {
    /// Conv3d kernel flattened to `[3·T·P·P, hidden_size]`.
    pub patch_embed: Param<Tensor<B, 2>>,
    /// Transformer blocks.
    pub blocks: Vec<Qwen25VisionBlock<B>>,
    /// Output merger.
    pub merger: Qwen25PatchMerger<B>,
    /// Configuration.
    #[module(skip)]
    pub config: Qwen25VisionConfig,
}

fn permute_units<B: Backend>(
    x: Tensor<B, 2>,
    unit: usize,
    index: &Tensor<B, 1, Int>,
) -> Tensor<B, 2> {
    let [n, c] = x.dims();
    group_rows(x, unit).select(0, index.clone()).reshape([n, c])
}

impl<B: Backend> Qwen25VisionTower<B> {
    /// Loads the tower from checkpoint names under `prefix` (`"visual."` or `"model.visual."`).
    pub fn load(
        config: &Qwen25VisionConfig,
        store: &TensorStore,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, WeightError> {
        Self::build(config, WeightLoader::<B>::new(store, prefix, device))
    }

    /// A tower with deterministic random weights (benchmarks, tests, training from scratch).
    pub fn random(
        config: &Qwen25VisionConfig,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, WeightError> {
        Self::build(config, WeightLoader::<B>::random(seed, device))
    }

    fn build(
        config: &Qwen25VisionConfig,
        mut loader: WeightLoader<'_, B>,
    ) -> Result<Self, WeightError> {
        config.validate()?;
        let (d, f) = (config.hidden_size, config.intermediate_size);
        let patch_embed = loader.flattened_kernel(
            "patch_embed.proj.weight",
            &[
                d,
                config.in_channels,
                config.temporal_patch_size,
                config.patch_size,
                config.patch_size,
            ],
        );
        let blocks = (0..config.depth)
            .map(|i| {
                let p = format!("blocks.{i}");
                Qwen25VisionBlock {
                    norm1: RmsNorm::load(&mut loader, &format!("{p}.norm1"), d, EPS),
                    norm2: RmsNorm::load(&mut loader, &format!("{p}.norm2"), d, EPS),
                    attn: VisionAttention::load(
                        &mut loader,
                        &format!("{p}.attn"),
                        d,
                        config.num_heads,
                    ),
                    mlp: SwiGluMlp {
                        gate_proj: Linear::load(
                            &mut loader,
                            &format!("{p}.mlp.gate_proj"),
                            d,
                            f,
                            true,
                        ),
                        up_proj: Linear::load(&mut loader, &format!("{p}.mlp.up_proj"), d, f, true),
                        down_proj: Linear::load(
                            &mut loader,
                            &format!("{p}.mlp.down_proj"),
                            f,
                            d,
                            true,
                        ),
                    },
                }
            })
            .collect();
        let unit = config.spatial_merge_size * config.spatial_merge_size;
        let merger = Qwen25PatchMerger {
            ln_q: RmsNorm::load(&mut loader, "merger.ln_q", d, EPS),
            fc1: Linear::load(&mut loader, "merger.mlp.0", d * unit, d * unit, true),
            fc2: Linear::load(
                &mut loader,
                "merger.mlp.2",
                d * unit,
                config.out_hidden_size,
                true,
            ),
            unit,
        };
        loader.finish()?;
        Ok(Self {
            patch_embed,
            blocks,
            merger,
            config: config.clone(),
        })
    }

    /// Runs the tower on `pixel_values: [n, patch_dim]`.
    pub fn forward(
        &self,
        pixel_values: Tensor<B, 2>,
        grid_thw: &[[usize; 3]],
    ) -> Result<VisionOutput<B>, VisionError> {
        let c = &self.config;
        let merge = c.spatial_merge_size;
        let unit = merge * merge;
        check_inputs(pixel_values.dims(), c.patch_dim(), grid_thw, merge)?;
        let device = pixel_values.device();
        let (windows, cu_windows) = window_index(grid_thw, merge, c.window_size, c.patch_size);
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                windows.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [windows.len()],
            ),
            &device,
        );
        let mut reverse = vec![0i64; windows.len()];
        for (pos, &w) in windows.iter().enumerate() {
            if let Some(slot) = reverse.get_mut(w) {
                *slot = pos as i64;
            }
        }
        let reverse =
            Tensor::<B, 1, Int>::from_data(TensorData::new(reverse, [windows.len()]), &device);

        let positions = vision_position_ids(grid_thw, merge);
        let (cos, sin) = rotary_tables::<B>(
            &positions,
            c.hidden_size / c.num_heads,
            c.rope_theta(),
            &device,
        );
        let cos = permute_units(cos, unit, &index);
        let sin = permute_units(sin, unit, &index);
        let full_runs = segment_runs(&frame_cu_seqlens(grid_thw));
        let window_runs = segment_runs(&cu_windows);

        let mut x = permute_units(pixel_values.matmul(self.patch_embed.val()), unit, &index);
        for (i, block) in self.blocks.iter().enumerate() {
            let runs = if c.fullatt_block_indexes.contains(&i) {
                &full_runs
            } else {
                &window_runs
            };
            x = x.clone() + block.attn.forward(block.norm1.forward(x), &cos, &sin, runs);
            let h = block.norm2.forward(x.clone());
            let gate = activate(c.hidden_act, block.mlp.gate_proj.forward(h.clone()));
            x = x + block
                .mlp
                .down_proj
                .forward(gate * block.mlp.up_proj.forward(h));
        }
        let merged = group_rows(self.merger.ln_q.forward(x.clone()), unit);
        let merged = self
            .merger
            .fc2
            .forward(activate(Activation::Gelu, self.merger.fc1.forward(merged)));
        Ok(VisionOutput {
            last_hidden_state: x,
            merged: merged.select(0, reverse),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_index_matches_reference_layout() {
        // 4x6 patches, merge 2 → 2x3 units; window 56 px / 2 / 14 = 2 units.
        let (idx, cu) = window_index(&[[1, 4, 6]], 2, 56, 14);
        assert_eq!(idx, vec![0, 1, 3, 4, 2, 5]);
        assert_eq!(cu, vec![0, 16, 24]);
    }
}
