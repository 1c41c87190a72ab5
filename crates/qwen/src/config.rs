//! `config.json` of Qwen2 / Qwen2-VL / Qwen2.5-VL checkpoints.
//!
//! Published checkpoints are flat (`hidden_size` at the top level,
//! `rope_scaling: {type: mrope, mrope_section}`), while transformers 5 writes
//! VL configs nested (`text_config`, `rope_parameters`). Both read into the
//! same [`Qwen2Config`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{io_err, QwenError, Result};

/// The language model's hyper-parameters, named as in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// M-RoPE sections (temporal, height, width) in rotary frequency pairs;
    /// `None` for a text-only Qwen2 (plain 1D RoPE).
    #[serde(default)]
    pub mrope_section: Option<Vec<usize>>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
}

fn default_max_positions() -> usize {
    32768
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_act() -> String {
    "silu".to_string()
}

impl Qwen2Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Reads `config.json` (flat or nested), naming the file in every error.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json_str(&text).map_err(|message| QwenError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a config from JSON text; the error names the missing or bad field.
    pub fn from_json_str(text: &str) -> std::result::Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(root) = root else {
            return Err("config must be a JSON object".to_string());
        };
        let flat = flatten(&root);
        let config: Self =
            serde_json::from_value(Value::Object(flat)).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(format!("field `{field}` must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` {} is not divisible by `num_attention_heads` {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "`num_attention_heads` {} is not divisible by `num_key_value_heads` {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if let Some(sections) = &self.mrope_section {
            let sum: usize = sections.iter().sum();
            if sections.len() != 3 || sum != self.head_dim() / 2 {
                return Err(format!(
                    "`mrope_section` {sections:?} must have 3 entries summing to head_dim/2 = {}",
                    self.head_dim() / 2
                ));
            }
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "`hidden_act` {:?} is not supported (Qwen2 uses \"silu\")",
                self.hidden_act
            ));
        }
        Ok(())
    }
}

/// Merges the nested transformers-5 layout into the flat published one:
/// `text_config` fields win over top-level ones (the top level of a VL config
/// also holds vision and token-id fields), and `rope_parameters` /
/// `rope_scaling` contribute `rope_theta` and `mrope_section`.
fn flatten(root: &Map<String, Value>) -> Map<String, Value> {
    let mut flat = root.clone();
    if let Some(Value::Object(text)) = root.get("text_config") {
        for (k, v) in text {
            flat.insert(k.clone(), v.clone());
        }
    }
    for key in ["rope_scaling", "rope_parameters"] {
        if let Some(Value::Object(rope)) = flat.get(key).cloned() {
            if let Some(theta) = rope.get("rope_theta") {
                flat.entry("rope_theta").or_insert(theta.clone());
            }
            if let Some(section) = rope.get("mrope_section") {
                flat.insert("mrope_section".to_string(), section.clone());
            }
        }
    }
    flat
}

/// `generation_config.json`: the fields generation needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    #[serde(default)]
    pub do_sample: Option<bool>,
}

impl GenerationConfig {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        serde_json::from_str(&text).map_err(|e| QwenError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Stop token ids (`eos_token_id` may be a number or a list).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        token_ids(self.eos_token_id.as_ref())
    }
}

/// Reads a token id field that may be a number or a list of numbers.
pub fn token_ids(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n.as_u64().map(|v| v as u32).into_iter().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_u64().map(|v| v as u32))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: &str = r#"{"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": true, "unknown_field": 3}"#;

    #[test]
    fn reads_flat_published_layout() {
        let c = Qwen2Config::from_json_str(FLAT).unwrap();
        assert_eq!(c.head_dim(), 16);
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.mrope_section, Some(vec![2, 3, 3]));
        assert!(c.tie_word_embeddings);
    }

    #[test]
    fn reads_nested_layout() {
        let nested = r#"{"model_type": "qwen2_vl", "tie_word_embeddings": false,
          "text_config": {"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0, "mrope_section": [2, 3, 3]}}}"#;
        let c = Qwen2Config::from_json_str(nested).unwrap();
        assert_eq!(c.rope_theta, 5000.0);
        assert_eq!(c.mrope_section, Some(vec![2, 3, 3]));
        assert_eq!(c.num_key_value_heads, 2);
    }

    #[test]
    fn missing_field_is_named() {
        let err = Qwen2Config::from_json_str(r#"{"vocab_size": 10}"#).unwrap_err();
        assert!(err.contains("hidden_size"), "{err}");
    }

    #[test]
    fn bad_sections_rejected() {
        let bad = FLAT.replace("[2, 3, 3]", "[2, 3, 4]");
        let err = Qwen2Config::from_json_str(&bad).unwrap_err();
        assert!(err.contains("mrope_section"), "{err}");
    }
}
