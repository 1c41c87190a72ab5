//! The backend the crates' tests run on, and how close their outputs must be
//! to the fp32 references on it. Shared by the test helpers with
//! `#[path = ".../tests/support/backend.rs"] mod backend;`.

/// The CPU backend, or the GPU with the crate's `cuda` feature
/// (`cargo test -p <crate> --features cuda`, docs/gpu.md).
#[cfg(not(feature = "cuda"))]
#[allow(dead_code)]
pub type TestBackend = burn::backend::Flex;
#[cfg(feature = "cuda")]
#[allow(dead_code)]
pub type TestBackend = burn::backend::Cuda;

/// Relative error allowed on the GPU backend. burn-cuda's tensor-core matmuls
/// run f32 inputs as TF32 (10-bit mantissa, unit roundoff
/// 4.9e-4), as PyTorch does with `allow_tf32`, so errors grow with the values
/// rather than staying near f32 rounding. `tests/cuda_precision.rs` shows the
/// rounding; docs/gpu.md has the errors seen on an H200 (≤ 2.5e-3 of the
/// largest reference value).
#[allow(dead_code)]
pub const TF32_RELATIVE: f32 = 5e-3;

/// The largest `|ours - reference|` accepted: `cpu` (absolute) on the CPU
/// backend, where only the order of f32 sums differs; on CUDA,
/// [`TF32_RELATIVE`] of the reference's largest magnitude (at least 1).
#[allow(dead_code)]
pub fn tolerance(cpu: f32, reference: &[f32]) -> f32 {
    if cfg!(feature = "cuda") {
        TF32_RELATIVE * reference.iter().fold(1.0f32, |m, v| m.max(v.abs()))
    } else {
        cpu
    }
}
