//! Video frame decoding and the samplers of qwen-vl-utils and Video-RTS.
