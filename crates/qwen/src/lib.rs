//! Qwen2 / Qwen2-VL / Qwen2.5-VL in burn: the decoder with (M-)RoPE and KV
//! cache, sampling with log-probs, and loading Hugging Face checkpoints
//! (safetensors, `tokenizer.json`, the checkpoint's own chat template).

pub mod config;
pub mod error;
pub mod generate;
pub mod init;
pub mod qwen2;
pub mod rope;
pub mod rope_index;
pub mod save;
pub mod tokenizer;
pub mod vlm;
pub mod weights;

pub use config::{GenerationConfig, Qwen2Config};
pub use error::{QwenError, Result};
pub use generate::{Generation, SamplingParams};
pub use qwen2::{AttentionMask, KvCache, Qwen2};
pub use tokenizer::QwenTokenizer;
pub use vlm::{expand_vision_placeholders, MultimodalBatch, Qwen2VL, VisionInput, VisionTower};
pub use weights::{TensorStore, WeightLoader};
