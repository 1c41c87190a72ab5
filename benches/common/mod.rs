//! Shared by the criterion benches: random-weight Qwen2 checkpoints written
//! at bench time (nothing large is committed) and deterministic prompts that
//! `benches/compare/hf_generate.py` rebuilds with the same formula.

#![allow(dead_code)] // each bench uses a different part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// The hyper-parameters of a bench checkpoint (a Qwen2 `config.json`).
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub tie_embeddings: bool,
}

/// The "CPU-scale" Qwen2 of issue 3: hidden 512, 8 layers, 8 heads, 2 kv
/// heads, vocab 32k (≈ 39 M parameters, tied head like Qwen2-0.5B).
pub const CPU512: ModelSpec = ModelSpec {
    name: "qwen2-cpu512",
    hidden: 512,
    layers: 8,
    heads: 8,
    kv_heads: 2,
    intermediate: 1408,
    vocab: 32000,
    tie_embeddings: true,
};

impl ModelSpec {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "hidden_act": "silu",
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "max_position_embeddings": 4096,
            "max_window_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "num_key_value_heads": self.kv_heads,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
            "sliding_window": null,
            "use_sliding_window": false,
            "tie_word_embeddings": self.tie_embeddings,
            "dtype": "float32",
            "use_cache": true,
            "vocab_size": self.vocab,
        })
    }

    /// `(name, shape, init)` of every tensor, by the checkpoint's own names.
    fn tensors(&self) -> Vec<(String, Vec<usize>, Init)> {
        let (h, i, hd) = (self.hidden, self.intermediate, self.head_dim());
        let (q, kv) = (self.heads * hd, self.kv_heads * hd);
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab, h],
            Init::Normal,
        )];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            let mut push = |n: &str, shape: Vec<usize>, init| {
                out.push((format!("{p}.{n}"), shape, init));
            };
            push("self_attn.q_proj.weight", vec![q, h], Init::Normal);
            push("self_attn.q_proj.bias", vec![q], Init::Normal);
            push("self_attn.k_proj.weight", vec![kv, h], Init::Normal);
            push("self_attn.k_proj.bias", vec![kv], Init::Normal);
            push("self_attn.v_proj.weight", vec![kv, h], Init::Normal);
            push("self_attn.v_proj.bias", vec![kv], Init::Normal);
            push("self_attn.o_proj.weight", vec![h, q], Init::Normal);
            push("mlp.gate_proj.weight", vec![i, h], Init::Normal);
            push("mlp.up_proj.weight", vec![i, h], Init::Normal);
            push("mlp.down_proj.weight", vec![h, i], Init::Normal);
            push("input_layernorm.weight", vec![h], Init::One);
            push("post_attention_layernorm.weight", vec![h], Init::One);
        }
        out.push(("model.norm.weight".to_string(), vec![h], Init::One));
        if !self.tie_embeddings {
            out.push((
                "lm_head.weight".to_string(),
                vec![self.vocab, h],
                Init::Normal,
            ));
        }
        out
    }

    /// Writes `config.json` + `model.safetensors` (f32, seeded random
    /// weights, std ≈ 0.02 as HF's `initializer_range`) into `dir`.
    pub fn write_checkpoint(&self, dir: &Path, seed: u64) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut rng = XorShift::new(seed);
        let specs = self.tensors();
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = specs
            .into_iter()
            .map(|(name, shape, init)| {
                let n: usize = shape.iter().product();
                let bytes = (0..n)
                    .flat_map(|_| {
                        match init {
                            Init::One => 1.0f32,
                            // Uniform on ±0.02·√3 has std 0.02.
                            Init::Normal => (rng.next_f32() * 2.0 - 1.0) * 0.034_641,
                        }
                        .to_le_bytes()
                    })
                    .collect();
                (name, shape, bytes)
            })
            .collect();
        let views = data
            .iter()
            .map(|(name, shape, bytes)| {
                Ok((
                    name.as_str(),
                    TensorView::new(Dtype::F32, shape.clone(), bytes)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        // Write the weights first: config.json marks a complete checkpoint.
        safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors"))?;
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&self.config_json())?,
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Init {
    Normal,
    One,
}

/// Small deterministic generator (xorshift64*), so checkpoints need no `rand`.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn vec_f32(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next_f32() * 2.0 - 1.0) * scale)
            .collect()
    }
}

/// Where generated bench checkpoints live: `$VLRL_BENCH_MODELS`, else
/// `<target dir>/bench-models` (git-ignored, reused across runs).
pub fn bench_models_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("VLRL_BENCH_MODELS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-models")
}

/// The checkpoint directory for `spec`, written on first use (or when its
/// `config.json` no longer matches the spec).
pub fn ensure_checkpoint(spec: &ModelSpec) -> anyhow::Result<PathBuf> {
    let dir = bench_models_dir().join(spec.name);
    let current = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if current.as_ref() != Some(&spec.config_json()) {
        spec.write_checkpoint(&dir, 0x5EED)?;
    }
    Ok(dir)
}

/// A fixture checkpoint under `tests/fixtures/models/`.
pub fn fixture_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// Prompt `row` of length `len`: ids `(i·7919 + row·104729) mod (vocab − 16) + 8`,
/// the same formula as `benches/compare/hf_generate.py`, avoiding the low
/// ids where special tokens usually sit.
pub fn prompt(row: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 7919 + row * 104_729) % (vocab - 16) + 8) as u32)
        .collect()
}
