//! Pieces shared by both towers: input checks, patch embedding, outputs.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::VisionError;

/// Outputs of a vision tower, named as `BaseModelOutputWithPooling` in transformers 5.
#[derive(Debug, Clone)]
pub struct VisionOutput<B: Backend> {
    /// Block outputs before the merger, `[num_patches, width]`. For Qwen2.5-VL
    /// these rows are in window order, exactly as the reference returns them.
    pub last_hidden_state: Tensor<B, 2>,
    /// Merged features for the language model, `[num_patches / merge², out_width]`,
    /// in processor order (the reference's `pooler_output`).
    pub merged: Tensor<B, 2>,
}

/// Checks `pixel_values: [n, patch_dim]` against `grid_thw`.
pub fn check_inputs(
    dims: [usize; 2],
    patch_dim: usize,
    grid_thw: &[[usize; 3]],
    merge: usize,
) -> Result<usize, VisionError> {
    if grid_thw.is_empty() {
        return Err(VisionError::Input("grid_thw is empty".into()));
    }
    let mut total = 0usize;
    for (i, &[t, h, w]) in grid_thw.iter().enumerate() {
        if t == 0 || h == 0 || w == 0 || !h.is_multiple_of(merge) || !w.is_multiple_of(merge) {
            return Err(VisionError::Input(format!(
                "grid_thw[{i}] = [{t}, {h}, {w}]: sizes must be positive and h, w multiples of {merge}"
            )));
        }
        total = t
            .checked_mul(h)
            .and_then(|x| x.checked_mul(w))
            .and_then(|x| x.checked_add(total))
            .ok_or_else(|| VisionError::Input("grid_thw overflows".into()))?;
    }
    if dims[0] != total {
        return Err(VisionError::Input(format!(
            "pixel_values has {} patches, grid_thw implies {total}",
            dims[0]
        )));
    }
    if dims[1] != patch_dim {
        return Err(VisionError::Input(format!(
            "pixel_values rows have {} values, the patch embedding expects {patch_dim}",
            dims[1]
        )));
    }
    Ok(total)
}

/// Groups every `unit` consecutive rows: `[n, c]` → `[n / unit, unit·c]`.
pub fn group_rows<B: Backend>(x: Tensor<B, 2>, unit: usize) -> Tensor<B, 2> {
    let [n, c] = x.dims();
    x.reshape([n / unit, unit * c])
}
