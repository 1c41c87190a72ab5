//! What precision an f32 matmul has on the GPU backend, measured rather than
//! assumed: the parity tolerances on CUDA (`tests/support/backend.rs`) rest
//! on it. burn-cuda picks among plain-f32 and tensor-core matmul kernels; the
//! tensor-core ones read f32 inputs as TF32 (10-bit mantissa). This test
//! prints which input precision explains the result best and checks that the
//! error stays within what the parity tests allow on CUDA.
//! `cargo test -p vlrl --features cuda --test cuda_precision -- --nocapture`.
#![cfg(feature = "cuda")]

#[path = "support/backend.rs"]
mod backend;

use burn::tensor::{Tensor, TensorData};
use vlrl::backend::Cuda;

/// Deterministic values in [-1, 1) with all 23 mantissa bits in use.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `x` rounded to TF32 (10 mantissa bits): to nearest, or by dropping bits.
fn tf32(x: f32, nearest: bool) -> f32 {
    let bits = x.to_bits();
    let bits = if nearest { bits + 0x1000 } else { bits };
    f32::from_bits(bits & !0x1fff)
}

/// Row-major `a[m,k] · b[k,n]` in f64.
fn matmul_f64(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p] as f64;
            for j in 0..n {
                c[i * n + j] += x * b[p * n + j] as f64;
            }
        }
    }
    c
}

fn max_err(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn gpu_f32_matmul_is_f32_or_tf32() {
    // Large enough that the tensor-core kernels are in the running.
    let (m, k, n) = (512, 1024, 512);
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let device = Default::default();
    let ta = Tensor::<Cuda, 2>::from_data(TensorData::new(a.clone(), [m, k]), &device);
    let tb = Tensor::<Cuda, 2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
    // Twice: the first call also compiles the kernel.
    let _ = ta.clone().matmul(tb.clone()).into_data();
    let got: Vec<f32> = ta.matmul(tb).into_data().to_vec().unwrap();

    let exact = matmul_f64(&a, &b, m, k, n);
    let scale = exact.iter().fold(1.0f64, |s, v| s.max(v.abs()));
    let err_f32 = max_err(&got, &exact) / scale;
    let mut best = ("f32", err_f32);
    for (label, nearest) in [
        ("tf32 (round to nearest)", true),
        ("tf32 (truncated)", false),
    ] {
        let round = |v: &[f32]| v.iter().map(|&x| tf32(x, nearest)).collect::<Vec<_>>();
        let want = matmul_f64(&round(&a), &round(&b), m, k, n);
        let err = max_err(&got, &want) / scale;
        println!("error vs an f64 product of {label} inputs: {err:.2e} of max |C| = {scale:.1}");
        if err < best.1 {
            best = (label, err);
        }
    }
    println!("error vs the exact f64 product: {err_f32:.2e} of max |C|");
    println!("the GPU matmul computed in {}", best.0);
    // What the CUDA parity tolerance assumes: within TF32_RELATIVE of the
    // exact product. On an H200 the result was 2.8e-4 of max |C| from it and
    // 10x closer (2.7e-5) to the product of TF32-rounded inputs.
    assert!(
        err_f32 <= f64::from(backend::TF32_RELATIVE),
        "the GPU matmul is {err_f32:.2e} of max |C| from the exact product"
    );
}
