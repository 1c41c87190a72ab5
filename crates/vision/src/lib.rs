//! Qwen2-VL / Qwen2.5-VL image preprocessing and vision towers.
