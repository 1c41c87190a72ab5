//! A fresh Qwen2-VL checkpoint: the published tensor names and shapes for a
//! given text + vision configuration, a seeded random initialisation of them
//! (HF's `_init_weights` for Qwen2-VL: `normal(0, initializer_range)` for
//! linear and embedding weights, ones for norm scales, zeros for biases), and
//! the published flat `config.json`. [`write_random_init`] writes a directory
//! that [`crate::Qwen2VL::from_dir`] (and transformers) load.

use std::path::Path;

use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use vlrl_vision::Qwen2VisionConfig;

use crate::config::Qwen2Config;
use crate::error::{io_err, QwenError, Result};

/// Everything `config.json` of a Qwen2-VL checkpoint says.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlSpec {
    /// The language model (with `mrope_section`).
    pub text: Qwen2Config,
    /// The vision tower (`hidden_size` must equal `text.hidden_size`).
    pub vision: Qwen2VisionConfig,
    /// `<|image_pad|>`.
    pub image_token_id: u32,
    /// `<|video_pad|>`.
    pub video_token_id: u32,
    /// `<|vision_start|>`.
    pub vision_start_token_id: u32,
    /// `<|vision_end|>`.
    pub vision_end_token_id: u32,
    /// `<|vision_pad|>` (`vision_token_id` in published configs).
    pub vision_token_id: u32,
    /// Std of the normal initialisation (`initializer_range`, 0.02).
    pub initializer_range: f64,
}

/// How a tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// `normal(0, initializer_range)`: linear / embedding / conv weights.
    Normal,
    /// Ones: RMSNorm / LayerNorm scales.
    Ones,
    /// Zeros: biases.
    Zeros,
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Published name (`model.layers.0.self_attn.q_proj.weight`, `visual.blocks.0.attn.qkv.bias`).
    pub name: String,
    /// PyTorch shape (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    pub init: InitKind,
}

impl Qwen2VlSpec {
    /// Checks the pieces fit together (head sizes, GQA, M-RoPE sections,
    /// merger width, token ids inside the vocabulary).
    pub fn validate(&self) -> Result<()> {
        let t = &self.text;
        let bad = |m: String| Err(QwenError::Input(format!("Qwen2-VL spec: {m}")));
        if t.num_attention_heads == 0
            || t.num_key_value_heads == 0
            || !t.hidden_size.is_multiple_of(t.num_attention_heads)
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            return bad(format!(
                "hidden_size {} / {} heads / {} kv heads do not divide",
                t.hidden_size, t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let half = t.head_dim() / 2;
        match &t.mrope_section {
            Some(s) if s.iter().sum::<usize>() == half => {}
            other => {
                return bad(format!(
                    "mrope_section {other:?} must sum to head_dim/2 = {half}"
                ))
            }
        }
        if self.vision.hidden_size != t.hidden_size {
            return bad(format!(
                "vision hidden_size {} != text hidden_size {}",
                self.vision.hidden_size, t.hidden_size
            ));
        }
        self.vision
            .validate()
            .map_err(|e| QwenError::Input(format!("Qwen2-VL spec: vision config: {e}")))?;
        for (what, id) in [
            ("image_token_id", self.image_token_id),
            ("video_token_id", self.video_token_id),
            ("vision_start_token_id", self.vision_start_token_id),
            ("vision_end_token_id", self.vision_end_token_id),
            ("vision_token_id", self.vision_token_id),
        ] {
            if id as usize >= t.vocab_size {
                return bad(format!("{what} {id} >= vocab_size {}", t.vocab_size));
            }
        }
        Ok(())
    }

    /// Every tensor of the checkpoint, in a fixed order: language model
    /// (`model.*`, then `lm_head.weight` when untied), then `visual.*`.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let t = &self.text;
        let (h, i, hd) = (t.hidden_size, t.intermediate_size, t.head_dim());
        let (q, kv) = (t.num_attention_heads * hd, t.num_key_value_heads * hd);
        let mut out = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, init: InitKind| {
            out.push(TensorSpec { name, shape, init });
        };
        push(
            "model.embed_tokens.weight".into(),
            vec![t.vocab_size, h],
            InitKind::Normal,
        );
        for l in 0..t.num_hidden_layers {
            let p = format!("model.layers.{l}");
            for (proj, rows, bias) in [
                ("q_proj", q, true),
                ("k_proj", kv, true),
                ("v_proj", kv, true),
            ] {
                push(
                    format!("{p}.self_attn.{proj}.weight"),
                    vec![rows, h],
                    InitKind::Normal,
                );
                if bias {
                    push(
                        format!("{p}.self_attn.{proj}.bias"),
                        vec![rows],
                        InitKind::Zeros,
                    );
                }
            }
            push(
                format!("{p}.self_attn.o_proj.weight"),
                vec![h, q],
                InitKind::Normal,
            );
            push(
                format!("{p}.mlp.gate_proj.weight"),
                vec![i, h],
                InitKind::Normal,
            );
            push(
                format!("{p}.mlp.up_proj.weight"),
                vec![i, h],
                InitKind::Normal,
            );
            push(
                format!("{p}.mlp.down_proj.weight"),
                vec![h, i],
                InitKind::Normal,
            );
            push(
                format!("{p}.input_layernorm.weight"),
                vec![h],
                InitKind::Ones,
            );
            push(
                format!("{p}.post_attention_layernorm.weight"),
                vec![h],
                InitKind::Ones,
            );
        }
        push("model.norm.weight".into(), vec![h], InitKind::Ones);
        if !t.tie_word_embeddings {
            push(
                "lm_head.weight".into(),
                vec![t.vocab_size, h],
                InitKind::Normal,
            );
        }

        let v = &self.vision;
        let (d, m) = (v.embed_dim, v.mlp_hidden());
        let unit = v.spatial_merge_size * v.spatial_merge_size;
        push(
            "visual.patch_embed.proj.weight".into(),
            vec![
                d,
                v.in_channels,
                v.temporal_patch_size,
                v.patch_size,
                v.patch_size,
            ],
            InitKind::Normal,
        );
        let mut linears: Vec<(String, usize, usize)> = Vec::new();
        let mut norms: Vec<String> = Vec::new();
        for b in 0..v.depth {
            let p = format!("visual.blocks.{b}");
            norms.push(format!("{p}.norm1"));
            norms.push(format!("{p}.norm2"));
            linears.push((format!("{p}.attn.qkv"), 3 * d, d));
            linears.push((format!("{p}.attn.proj"), d, d));
            linears.push((format!("{p}.mlp.fc1"), m, d));
            linears.push((format!("{p}.mlp.fc2"), d, m));
        }
        norms.push("visual.merger.ln_q".into());
        linears.push(("visual.merger.mlp.0".into(), d * unit, d * unit));
        linears.push(("visual.merger.mlp.2".into(), v.hidden_size, d * unit));
        for norm in norms {
            push(format!("{norm}.weight"), vec![d], InitKind::Ones);
            push(format!("{norm}.bias"), vec![d], InitKind::Zeros);
        }
        for (name, d_out, d_in) in linears {
            push(
                format!("{name}.weight"),
                vec![d_out, d_in],
                InitKind::Normal,
            );
            push(format!("{name}.bias"), vec![d_out], InitKind::Zeros);
        }
        out
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn num_parameters(&self) -> usize {
        self.tensors()
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// `config.json` in the published flat layout of Qwen2-VL-2B-Instruct
    /// (`rope_scaling: {type: mrope, mrope_section}`, `vision_config` with
    /// `in_chans` / `spatial_patch_size`), which both transformers and
    /// [`crate::Qwen2VL::from_dir`] read.
    pub fn config_json(&self) -> Value {
        let t = &self.text;
        let v = &self.vision;
        let mut root = Map::new();
        root.insert(
            "architectures".into(),
            json!(["Qwen2VLForConditionalGeneration"]),
        );
        root.insert("model_type".into(), json!("qwen2_vl"));
        root.insert("attention_dropout".into(), json!(0.0));
        if let Some(bos) = t.bos_token_id {
            root.insert("bos_token_id".into(), json!(bos));
        }
        if let Some(eos) = &t.eos_token_id {
            root.insert("eos_token_id".into(), eos.clone());
        }
        root.insert("hidden_act".into(), json!(t.hidden_act));
        root.insert("hidden_size".into(), json!(t.hidden_size));
        root.insert("image_token_id".into(), json!(self.image_token_id));
        root.insert("initializer_range".into(), json!(self.initializer_range));
        root.insert("intermediate_size".into(), json!(t.intermediate_size));
        root.insert(
            "max_position_embeddings".into(),
            json!(t.max_position_embeddings),
        );
        root.insert("max_window_layers".into(), json!(t.num_hidden_layers));
        root.insert("num_attention_heads".into(), json!(t.num_attention_heads));
        root.insert("num_hidden_layers".into(), json!(t.num_hidden_layers));
        root.insert("num_key_value_heads".into(), json!(t.num_key_value_heads));
        root.insert("rms_norm_eps".into(), json!(t.rms_norm_eps));
        root.insert(
            "rope_scaling".into(),
            json!({"type": "mrope", "mrope_section": t.mrope_section}),
        );
        root.insert("rope_theta".into(), json!(t.rope_theta));
        root.insert("sliding_window".into(), json!(t.max_position_embeddings));
        root.insert("tie_word_embeddings".into(), json!(t.tie_word_embeddings));
        root.insert("torch_dtype".into(), json!("float32"));
        root.insert("use_cache".into(), json!(true));
        root.insert("use_sliding_window".into(), json!(false));
        root.insert("video_token_id".into(), json!(self.video_token_id));
        root.insert(
            "vision_config".into(),
            json!({
                "depth": v.depth,
                "embed_dim": v.embed_dim,
                "hidden_act": v.hidden_act,
                "hidden_size": v.hidden_size,
                "in_chans": v.in_channels,
                // transformers types `mlp_ratio` as int and rejects `4.0`.
                "mlp_ratio": if v.mlp_ratio.fract() == 0.0 {
                    json!(v.mlp_ratio as u64)
                } else {
                    json!(v.mlp_ratio)
                },
                "num_heads": v.num_heads,
                "patch_size": v.patch_size,
                "spatial_merge_size": v.spatial_merge_size,
                "spatial_patch_size": v.patch_size,
                "temporal_patch_size": v.temporal_patch_size,
            }),
        );
        root.insert(
            "vision_end_token_id".into(),
            json!(self.vision_end_token_id),
        );
        root.insert(
            "vision_start_token_id".into(),
            json!(self.vision_start_token_id),
        );
        root.insert("vision_token_id".into(), json!(self.vision_token_id));
        root.insert("vocab_size".into(), json!(t.vocab_size));
        Value::Object(root)
    }
}

/// Seeded random values for every tensor of `spec` (`StdRng` from `seed`,
/// Box-Muller normals), in [`Qwen2VlSpec::tensors`] order.
pub fn random_init(spec: &Qwen2VlSpec, seed: u64) -> Vec<(TensorSpec, Vec<f32>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let std = spec.initializer_range as f32;
    spec.tensors()
        .into_iter()
        .map(|t| {
            let n: usize = t.shape.iter().product();
            let values = match t.init {
                InitKind::Ones => vec![1.0; n],
                InitKind::Zeros => vec![0.0; n],
                InitKind::Normal => (0..n).map(|_| std * standard_normal(&mut rng)).collect(),
            };
            (t, values)
        })
        .collect()
}

/// One standard normal draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Writes `config.json` and `model.safetensors` of a freshly initialised
/// Qwen2-VL into `dir` (created if needed). Tokenizer files are the caller's.
pub fn write_random_init(dir: impl AsRef<Path>, spec: &Qwen2VlSpec, seed: u64) -> Result<()> {
    spec.validate()?;
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = random_init(spec, seed)
        .into_iter()
        .map(|(t, v)| (t.name, t.shape, v))
        .collect();
    crate::save::write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    crate::save::write_json(&dir.join("config.json"), &spec.config_json())
}
