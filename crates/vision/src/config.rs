//! Vision-tower configs mirroring the Hugging Face `vision_config` blocks.
//! Both the transformers-5 names and the names in published checkpoints are
//! accepted (`in_channels`/`in_chans`, `patch_size`/`spatial_patch_size`,
//! `rope_parameters.rope_theta`/`rope_theta`) by the `from_json_value` constructors.

use serde::{Deserialize, Serialize};

use crate::error::WeightError;

/// Default rotary base of the vision towers (transformers `default_theta`).
pub const DEFAULT_VISION_ROPE_THETA: f64 = 10_000.0;

/// `rope_parameters` of transformers 5 configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RopeParameters {
    /// Rotary base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// `"axial"` for the vision towers.
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// Activation functions named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x · σ(1.702 x)` (CLIP's QuickGELU; Qwen2-VL blocks).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// tanh-approximated GELU.
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new")]
    GeluTanh,
    /// SiLU / swish (Qwen2.5-VL blocks).
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

fn default_three() -> usize {
    3
}
fn default_patch() -> usize {
    14
}
fn default_two() -> usize {
    2
}
fn default_quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn default_silu() -> Activation {
    Activation::Silu
}
fn default_mlp_ratio() -> f64 {
    4.0
}

/// Qwen2-VL `vision_config` (`Qwen2VLVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2VisionConfig {
    /// Number of blocks.
    pub depth: usize,
    /// Width inside the tower.
    pub embed_dim: usize,
    /// Output width of the PatchMerger (the language model's hidden size).
    pub hidden_size: usize,
    /// MLP activation.
    #[serde(default = "default_quick_gelu")]
    pub hidden_act: Activation,
    /// MLP width = `embed_dim · mlp_ratio`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Attention heads.
    #[serde(alias = "num_attention_heads")]
    pub num_heads: usize,
    /// Input channels.
    #[serde(default = "default_three")]
    pub in_channels: usize,
    /// Spatial patch size.
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Merge window side of the PatchMerger.
    #[serde(default = "default_two")]
    pub spatial_merge_size: usize,
    /// Frames per temporal patch.
    #[serde(default = "default_two")]
    pub temporal_patch_size: usize,
    /// transformers-5 rotary parameters.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Flat rotary base (older configs).
    #[serde(default)]
    pub rope_theta: Option<f64>,
}

/// Qwen2.5-VL `vision_config` (`Qwen2_5_VLVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen25VisionConfig {
    /// Number of blocks.
    pub depth: usize,
    /// Width inside the tower.
    pub hidden_size: usize,
    /// MLP activation.
    #[serde(default = "default_silu")]
    pub hidden_act: Activation,
    /// SwiGLU width.
    pub intermediate_size: usize,
    /// Attention heads.
    #[serde(alias = "num_attention_heads")]
    pub num_heads: usize,
    /// Input channels.
    #[serde(default = "default_three")]
    pub in_channels: usize,
    /// Spatial patch size.
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Merge window side of the PatchMerger.
    #[serde(default = "default_two")]
    pub spatial_merge_size: usize,
    /// Frames per temporal patch.
    #[serde(default = "default_two")]
    pub temporal_patch_size: usize,
    /// Video tokens per second (used by the rope index, not the tower).
    #[serde(default)]
    pub tokens_per_second: Option<f64>,
    /// Attention window side in pixels (112 → 8x8 patches).
    pub window_size: usize,
    /// Output width of the merger.
    pub out_hidden_size: usize,
    /// Blocks with full (per-image) attention; the others use windows.
    #[serde(default)]
    pub fullatt_block_indexes: Vec<usize>,
    /// transformers-5 rotary parameters.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Flat rotary base (older configs).
    #[serde(default)]
    pub rope_theta: Option<f64>,
}

/// Maps published names onto the transformers-5 ones (`in_chans` →
/// `in_channels`, `spatial_patch_size` → `patch_size`) when the latter are
/// absent; published configs carry both `patch_size` and `spatial_patch_size`.
fn normalize_names(value: &serde_json::Value) -> serde_json::Value {
    let mut v = value.clone();
    if let Some(obj) = v.as_object_mut() {
        for (published, current) in [
            ("in_chans", "in_channels"),
            ("spatial_patch_size", "patch_size"),
        ] {
            if let Some(x) = obj.remove(published) {
                obj.entry(current).or_insert(x);
            }
        }
    }
    v
}

fn theta(p: &Option<RopeParameters>, flat: Option<f64>) -> f64 {
    p.as_ref()
        .and_then(|p| p.rope_theta)
        .or(flat)
        .unwrap_or(DEFAULT_VISION_ROPE_THETA)
}

fn check_common(
    width: usize,
    heads: usize,
    merge: usize,
    patch: usize,
    tp: usize,
) -> Result<(), WeightError> {
    if heads == 0 || width == 0 || !width.is_multiple_of(heads) {
        return Err(WeightError::Config(format!(
            "{heads} heads do not divide width {width}"
        )));
    }
    if !(width / heads).is_multiple_of(4) {
        return Err(WeightError::Config(format!(
            "head_dim {} must be a multiple of 4 for the 2-D rotary embedding",
            width / heads
        )));
    }
    if merge == 0 || patch == 0 || tp == 0 {
        return Err(WeightError::Config(
            "patch, merge and temporal sizes must be positive".into(),
        ));
    }
    Ok(())
}

impl Qwen2VisionConfig {
    /// Parses a `vision_config` object (or a whole model `config.json`, whose
    /// `vision_config` is then used).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, WeightError> {
        let v = value.get("vision_config").unwrap_or(value);
        let c: Self = serde_json::from_value(normalize_names(v))
            .map_err(|e| WeightError::Config(format!("Qwen2-VL vision_config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Consistency checks.
    pub fn validate(&self) -> Result<(), WeightError> {
        check_common(
            self.embed_dim,
            self.num_heads,
            self.spatial_merge_size,
            self.patch_size,
            self.temporal_patch_size,
        )
    }

    /// Rotary base.
    pub fn rope_theta(&self) -> f64 {
        theta(&self.rope_parameters, self.rope_theta)
    }

    /// MLP hidden width (`int(embed_dim * mlp_ratio)`).
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Flattened patch length.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

impl Qwen25VisionConfig {
    /// Parses a `vision_config` object (or a whole model `config.json`).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, WeightError> {
        let v = value.get("vision_config").unwrap_or(value);
        let c: Self = serde_json::from_value(normalize_names(v))
            .map_err(|e| WeightError::Config(format!("Qwen2.5-VL vision_config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Consistency checks.
    pub fn validate(&self) -> Result<(), WeightError> {
        check_common(
            self.hidden_size,
            self.num_heads,
            self.spatial_merge_size,
            self.patch_size,
            self.temporal_patch_size,
        )?;
        if let Some(&bad) = self
            .fullatt_block_indexes
            .iter()
            .find(|&&i| i >= self.depth)
        {
            return Err(WeightError::Config(format!(
                "fullatt_block_indexes entry {bad} is beyond depth {}",
                self.depth
            )));
        }
        let unit = self.spatial_merge_size * self.patch_size;
        if self.window_size < unit {
            return Err(WeightError::Config(format!(
                "window_size {} is smaller than one merged patch ({unit} px)",
                self.window_size
            )));
        }
        Ok(())
    }

    /// Rotary base.
    pub fn rope_theta(&self) -> f64 {
        theta(&self.rope_parameters, self.rope_theta)
    }

    /// Flattened patch length.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_qwen2_vl_names() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16,
            "in_chans": 3, "hidden_size": 1536, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "temporal_patch_size": 2}}"#,
        )
        .unwrap();
        let c = Qwen2VisionConfig::from_json_value(&v).unwrap();
        assert_eq!(
            (c.in_channels, c.mlp_hidden(), c.patch_dim()),
            (3, 5120, 1176)
        );
        assert_eq!(c.rope_theta(), 10_000.0);
    }

    #[test]
    fn published_qwen2_5_vl_names() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
            "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
            "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2}"#,
        )
        .unwrap();
        let c = Qwen25VisionConfig::from_json_value(&v).unwrap();
        assert_eq!(c.fullatt_block_indexes, vec![7, 15, 23, 31]);
        let mut bad = c.clone();
        bad.fullatt_block_indexes.push(40);
        assert!(bad.validate().is_err());
    }
}
