//! Qwen2 / Qwen2-VL / Qwen2.5-VL in burn: decoder, M-RoPE, KV cache, sampling, HF checkpoint loading.
