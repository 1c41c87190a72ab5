//! Generation speed (issue 3, "Benchmarks"): prefill and decode tokens/s of
//! `Qwen2::generate` (greedy, KV cache) on the `qwen2-tiny` fixture and on a
//! CPU-scale Qwen2 (hidden 512, 8 layers, vocab 32k) written at bench time.
//!
//! Each case runs twice: `prefill` = `max_new_tokens = 1` (the prompt forward
//! pass and one token choice) and `generate` = `max_new_tokens = N`; decode
//! tokens/s = batch·(N − 1) / (t_generate − t_prefill). The same split is
//! measured for Hugging Face by `benches/compare/hf_generate.py`, and
//! `benches/compare/run.sh` runs both and prints the ratios.
//!
//! `cargo bench -p vlrl --bench generate`; `VLRL_BENCH_BACKENDS=flex,ndarray`
//! picks backends (default `flex`, the code's `vlrl::backend::Cpu`; `cuda`
//! with `--features cuda`);
//! `flex-contig` is Flex with every `Linear` weight copied to a contiguous
//! `[in, out]` tensor after loading, which measures the fix proposed in
//! `docs/benchmarks.md` (the loader's transposed views are re-copied by
//! burn's `linear` on every call).

mod common;

use std::path::Path;
use std::time::Duration;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use vlrl::backend::{Cpu, NdArray};
use vlrl::qwen::{Qwen2, SamplingParams};

use common::{ensure_checkpoint, fixture_model, prompt, CPU512};

/// (batch, prompt length, new tokens); `benches/compare/hf_generate.py` uses
/// the same list.
const CASES: [(usize, usize, usize); 2] = [(1, 128, 32), (4, 128, 32)];

fn backends() -> Vec<String> {
    std::env::var("VLRL_BENCH_BACKENDS")
        .unwrap_or_else(|_| "flex".to_string())
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Re-creates a linear weight from its values, so the `[in, out]` tensor is
/// stored contiguously instead of as a transposed view of `[out, in]`.
fn make_contiguous<B: Backend>(linear: &mut Linear<B>) {
    let weight = linear.weight.val();
    let device = weight.device();
    linear.weight = Param::from_tensor(Tensor::from_data(weight.into_data(), &device));
}

fn contiguous_linears<B: Backend>(mut model: Qwen2<B>) -> Qwen2<B> {
    for layer in &mut model.layers {
        let (attn, mlp) = (&mut layer.self_attn, &mut layer.mlp);
        for linear in [
            &mut attn.q_proj,
            &mut attn.k_proj,
            &mut attn.v_proj,
            &mut attn.o_proj,
            &mut mlp.gate_proj,
            &mut mlp.up_proj,
            &mut mlp.down_proj,
        ] {
            make_contiguous(linear);
        }
    }
    if let Some(head) = model.lm_head.as_mut() {
        make_contiguous(head);
    }
    model
}

fn bench_model<B: Backend>(
    group: &mut BenchmarkGroup<WallTime>,
    backend: &str,
    dir: &Path,
    contiguous: bool,
) {
    let device = B::Device::default();
    let model = Qwen2::<B>::from_dir(dir, &device).expect("load the bench checkpoint");
    let model = if contiguous {
        contiguous_linears(model)
    } else {
        model
    };
    let vocab = model.config().vocab_size;
    for (batch, len, new) in CASES {
        let prompts: Vec<Vec<u32>> = (0..batch).map(|r| prompt(r, len, vocab)).collect();
        for (what, max_new) in [("prefill", 1), ("generate", new)] {
            let params = SamplingParams {
                max_new_tokens: max_new,
                ..Default::default()
            };
            let out = model
                .generate(&prompts, 0, &params, true)
                .expect("generate");
            assert!(out.tokens.iter().all(|t| t.len() == max_new));
            let tokens = if max_new == 1 {
                batch * len
            } else {
                batch * max_new
            };
            group.throughput(Throughput::Elements(tokens as u64));
            group.bench_function(
                BenchmarkId::new(
                    format!("{what}_{backend}"),
                    format!("b{batch}_p{len}_n{max_new}"),
                ),
                |bench| {
                    bench.iter(|| {
                        model
                            .generate(&prompts, 0, &params, true)
                            .expect("generate")
                    })
                },
            );
        }
    }
}

fn run(c: &mut Criterion, name: &str, dir: &Path) {
    let mut group = c.benchmark_group(format!("generate_{name}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for backend in backends() {
        match backend.as_str() {
            "flex" => bench_model::<Cpu>(&mut group, "flex", dir, false),
            "flex-contig" => bench_model::<Cpu>(&mut group, "flex-contig", dir, true),
            "ndarray" => bench_model::<NdArray>(&mut group, "ndarray", dir, false),
            "ndarray-contig" => bench_model::<NdArray>(&mut group, "ndarray-contig", dir, true),
            #[cfg(feature = "cuda")]
            "cuda" => bench_model::<vlrl::backend::Cuda>(&mut group, "cuda", dir, false),
            other => panic!("unknown backend `{other}` in VLRL_BENCH_BACKENDS (flex, flex-contig, ndarray, ndarray-contig; cuda with --features cuda)"),
        }
    }
    group.finish();
}

fn generate(c: &mut Criterion) {
    run(c, "qwen2-tiny", &fixture_model("qwen2-tiny"));
    let dir = ensure_checkpoint(&CPU512).expect("write the CPU-scale checkpoint");
    run(c, CPU512.name, &dir);
}

criterion_group!(benches, generate);
criterion_main!(benches);
