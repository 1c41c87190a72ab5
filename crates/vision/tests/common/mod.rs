//! Shared helpers for the parity tests (fixtures from tools/make_vision_fixtures.py).
#![allow(dead_code)]

use std::path::PathBuf;

#[path = "../../../../tests/support/backend.rs"]
mod backend;
#[allow(unused_imports)]
pub use backend::tolerance;

use vlrl_vision::TensorStore;

pub type B = backend::TestBackend;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision")
}

pub fn store(name: &str) -> TensorStore {
    TensorStore::open(fixtures().join(name)).unwrap()
}

pub fn read(store: &TensorStore, name: &str) -> (Vec<f32>, Vec<usize>) {
    store
        .read_f32(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn grid(store: &TensorStore, name: &str) -> Vec<[usize; 3]> {
    let (v, _) = read(store, name);
    v.chunks_exact(3)
        .map(|c| [c[0] as usize, c[1] as usize, c[2] as usize])
        .collect()
}

/// (max abs error, fraction of values within 1e-5).
pub fn error_stats(ours: &[f32], reference: &[f32]) -> (f32, f64) {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let mut max = 0.0f32;
    let mut close = 0usize;
    for (a, b) in ours.iter().zip(reference) {
        let d = (a - b).abs();
        max = max.max(d);
        if d <= 1e-5 {
            close += 1;
        }
    }
    (max, close as f64 / reference.len().max(1) as f64)
}
