//! Shared helpers for the parity tests: fixture paths and reading reference
//! tensors written by `tools/make_fixtures.py`.
#![allow(dead_code)]

use std::path::PathBuf;

#[path = "../../../../tests/support/backend.rs"]
mod backend;
#[allow(unused_imports)]
pub use backend::tolerance;

pub type B = backend::TestBackend;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn cases(name: &str) -> serde_json::Value {
    let path = fixtures().join("reference").join(name).join("cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `(values, shape)` of one f32 reference tensor.
pub fn reference_tensor(model: &str, key: &str) -> (Vec<f32>, Vec<usize>) {
    let path = fixtures()
        .join("reference")
        .join(model)
        .join("tensors.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st
        .tensor(key)
        .unwrap_or_else(|_| panic!("{key} not in {path:?}"));
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, view.shape().to_vec())
}

pub fn ids(v: &serde_json::Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).unwrap()
}

pub fn mask(v: &serde_json::Value) -> Vec<Vec<u8>> {
    serde_json::from_value(v.clone()).unwrap()
}
