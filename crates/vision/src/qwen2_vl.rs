//! The Qwen2-VL vision tower (`Qwen2VisionTransformerPretrainedModel`,
//! transformers 5.24 `modeling_qwen2_vl.py`): Conv3d patch embedding (as a
//! matmul over flattened patches), blocks of LayerNorm → 2-D-rotary attention
//! per image/frame → LayerNorm → QuickGELU MLP, and the PatchMerger
//! (LayerNorm, then an MLP over each 2x2 merge window).

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::attention::{
    frame_cu_seqlens, rotary_tables, segment_runs, vision_position_ids, VisionAttention,
};
use crate::config::{Activation, Qwen2VisionConfig};
use crate::error::{VisionError, WeightError};
use crate::layers::{activate, LayerNorm, Linear};
use crate::tower_common::{check_inputs, group_rows, VisionOutput};
use crate::weights::{TensorStore, WeightLoader};

const EPS: f64 = 1e-6;

/// One block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Module, Debug)]
pub struct Qwen2VisionBlock<B: Backend> {
    /// Pre-attention LayerNorm.
    pub norm1: LayerNorm<B>,
    /// Pre-MLP LayerNorm.
    pub norm2: LayerNorm<B>,
    /// Attention.
    pub attn: VisionAttention<B>,
    /// MLP up projection.
    pub fc1: Linear<B>,
    /// MLP down projection.
    pub fc2: Linear<B>,
}

/// PatchMerger: LayerNorm, group 2x2 windows, Linear → GELU → Linear.
#[derive(Module, Debug)]
pub struct PatchMerger<B: Backend> {
    /// LayerNorm over the tower width.
    pub ln_q: LayerNorm<B>,
    /// `mlp.0`.
    pub fc1: Linear<B>,
    /// `mlp.2`.
    pub fc2: Linear<B>,
    /// Rows per merge window (`spatial_merge_size²`).
    pub unit: usize,
}

impl<B: Backend> PatchMerger<B> {
    /// Merges `[n, width]` into `[n / unit, out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = group_rows(self.ln_q.forward(x), self.unit);
        self.fc2
            .forward(activate(Activation::Gelu, self.fc1.forward(x)))
    }
}

/// The Qwen2-VL vision tower.
#[derive(Module, Debug)]
pub struct Qwen2VisionTower<B: Backend> {
    /// Conv3d kernel flattened to `[3·T·P·P, embed_dim]`.
    pub patch_embed: Param<Tensor<B, 2>>,
    /// Transformer blocks.
    pub blocks: Vec<Qwen2VisionBlock<B>>,
    /// Output merger.
    pub merger: PatchMerger<B>,
    /// Configuration.
    #[module(skip)]
    pub config: Qwen2VisionConfig,
}

impl<B: Backend> Qwen2VisionTower<B> {
    /// Loads the tower from checkpoint names under `prefix` (`"visual."` in
    /// published checkpoints, `"model.visual."` in transformers-5 saves).
    /// Errors list missing names, shape mismatches, and unused names under `prefix`.
    pub fn load(
        config: &Qwen2VisionConfig,
        store: &TensorStore,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, WeightError> {
        Self::build(config, WeightLoader::<B>::new(store, prefix, device))
    }

    /// A tower with deterministic random weights (benchmarks, tests, training from scratch).
    pub fn random(
        config: &Qwen2VisionConfig,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, WeightError> {
        Self::build(config, WeightLoader::<B>::random(seed, device))
    }

    fn build(
        config: &Qwen2VisionConfig,
        mut loader: WeightLoader<'_, B>,
    ) -> Result<Self, WeightError> {
        config.validate()?;
        let d = config.embed_dim;
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
                Qwen2VisionBlock {
                    norm1: LayerNorm::load(&mut loader, &format!("{p}.norm1"), d, EPS),
                    norm2: LayerNorm::load(&mut loader, &format!("{p}.norm2"), d, EPS),
                    attn: VisionAttention::load(
                        &mut loader,
                        &format!("{p}.attn"),
                        d,
                        config.num_heads,
                    ),
                    fc1: Linear::load(
                        &mut loader,
                        &format!("{p}.mlp.fc1"),
                        d,
                        config.mlp_hidden(),
                        true,
                    ),
                    fc2: Linear::load(
                        &mut loader,
                        &format!("{p}.mlp.fc2"),
                        config.mlp_hidden(),
                        d,
                        true,
                    ),
                }
            })
            .collect();
        let unit = config.spatial_merge_size * config.spatial_merge_size;
        let merger = PatchMerger {
            ln_q: LayerNorm::load(&mut loader, "merger.ln_q", d, EPS),
            fc1: Linear::load(&mut loader, "merger.mlp.0", d * unit, d * unit, true),
            fc2: Linear::load(
                &mut loader,
                "merger.mlp.2",
                d * unit,
                config.hidden_size,
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

    /// Runs the tower on `pixel_values: [n, patch_dim]` (from
    /// [`crate::preprocess_images`] / [`crate::preprocess_video`]).
    pub fn forward(
        &self,
        pixel_values: Tensor<B, 2>,
        grid_thw: &[[usize; 3]],
    ) -> Result<VisionOutput<B>, VisionError> {
        let c = &self.config;
        check_inputs(
            pixel_values.dims(),
            c.patch_dim(),
            grid_thw,
            c.spatial_merge_size,
        )?;
        let device = pixel_values.device();
        let positions = vision_position_ids(grid_thw, c.spatial_merge_size);
        let (cos, sin) = rotary_tables::<B>(
            &positions,
            c.embed_dim / c.num_heads,
            c.rope_theta(),
            &device,
        );
        let runs = segment_runs(&frame_cu_seqlens(grid_thw));
        let mut x = pixel_values.matmul(self.patch_embed.val());
        for block in &self.blocks {
            x = x.clone()
                + block
                    .attn
                    .forward(block.norm1.forward(x), &cos, &sin, &runs);
            let h = block.fc1.forward(block.norm2.forward(x.clone()));
            x = x + block.fc2.forward(activate(c.hidden_act, h));
        }
        let merged = self.merger.forward(x.clone());
        Ok(VisionOutput {
            last_hidden_state: x,
            merged,
        })
    }
}
