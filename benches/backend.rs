//! CPU backend choice (issue 3, "Workspace and CI"): f32 matmul GFLOP/s and a
//! Qwen2 decoder block forward / forward+backward, on burn's `Flex` and
//! `NdArray`. Results and the decision are in `docs/benchmarks.md`.
//!
//! `cargo bench -p vlrl --bench backend` (add `--features cuda` for the GPU
//! rows, `docs/gpu.md`). Throughput is reported as "elem/s": FLOP/s for
//! matmul, tokens/s for the decoder block.

mod common;

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use vlrl::backend::{Cpu, NdArray};
use vlrl::qwen::rope::text_position_ids;
use vlrl::qwen::{AttentionMask, Qwen2};

use common::{ensure_checkpoint, ModelSpec, XorShift};

type FlexTrain = burn::backend::Autodiff<Cpu>;
type NdArrayTrain = burn::backend::Autodiff<NdArray>;

/// One decoder layer at the CPU-scale model's width (hidden 512, 8 heads,
/// 2 kv heads, SwiGLU 1408) with a small vocabulary so the block dominates.
const BLOCK: ModelSpec = ModelSpec {
    name: "qwen2-block512",
    hidden: 512,
    layers: 1,
    heads: 8,
    kv_heads: 2,
    intermediate: 1408,
    vocab: 1024,
    tie_embeddings: true,
};
const BLOCK_BATCH: usize = 4;
const BLOCK_SEQ: usize = 128;

fn random<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let n = shape.iter().product();
    Tensor::from_data(
        TensorData::new(XorShift::new(seed).vec_f32(n, 1.0), shape),
        device,
    )
}

fn configure(group: &mut BenchmarkGroup<WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn matmul_case<B: Backend>(group: &mut BenchmarkGroup<WallTime>, backend: &str, shape: [usize; 4]) {
    let [batch, m, k, n] = shape;
    let device = B::Device::default();
    let a = random::<B, 3>([batch, m, k], 1, &device);
    let b = random::<B, 3>([batch, k, n], 2, &device);
    let label = if batch == 1 {
        format!("{m}x{k}x{n}")
    } else {
        format!("b{batch}_{m}x{k}x{n}")
    };
    group.throughput(Throughput::Elements((2 * batch * m * k * n) as u64));
    group.bench_function(BenchmarkId::new(backend, label), |bench| {
        bench.iter(|| {
            let c = black_box(a.clone().matmul(b.clone()));
            B::sync(&device).expect("sync");
            c
        })
    });
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_f32");
    configure(&mut group);
    for shape in [[1, 512, 512, 512], [1, 1024, 1024, 1024], [8, 128, 64, 128]] {
        matmul_case::<Cpu>(&mut group, "flex", shape);
        matmul_case::<NdArray>(&mut group, "ndarray", shape);
        #[cfg(feature = "cuda")]
        matmul_case::<vlrl::backend::Cuda>(&mut group, "cuda", shape);
    }
    // Sizes only the GPU finishes in a benchmark's time.
    #[cfg(feature = "cuda")]
    for shape in [[1, 4096, 4096, 4096], [32, 512, 128, 512]] {
        matmul_case::<vlrl::backend::Cuda>(&mut group, "cuda", shape);
    }
    group.finish();
}

struct BlockInput<B: Backend> {
    model: Qwen2<B>,
    embeds: Tensor<B, 3>,
    positions: Tensor<B, 3, burn::tensor::Int>,
    mask: AttentionMask<B>,
}

fn block_input<B: Backend>() -> BlockInput<B> {
    let device = B::Device::default();
    let dir = ensure_checkpoint(&BLOCK).expect("write the bench checkpoint");
    let model = Qwen2::<B>::from_dir(&dir, &device).expect("load the bench checkpoint");
    let embeds = random::<B, 3>([BLOCK_BATCH, BLOCK_SEQ, BLOCK.hidden], 3, &device);
    let positions = text_position_ids::<B>(BLOCK_BATCH, BLOCK_SEQ, 0, None, &device);
    BlockInput {
        model,
        embeds,
        positions,
        mask: AttentionMask { mask: None },
    }
}

fn block_forward<B: Backend>(group: &mut BenchmarkGroup<WallTime>, backend: &str) {
    let x = block_input::<B>();
    group.bench_function(BenchmarkId::new("forward", backend), |bench| {
        bench.iter(|| {
            x.model
                .forward_embeds(x.embeds.clone(), x.positions.clone(), &x.mask, None)
                .into_data()
        })
    });
}

fn block_backward<B: AutodiffBackend>(group: &mut BenchmarkGroup<WallTime>, backend: &str) {
    let x = block_input::<B>();
    let device = B::Device::default();
    let step = || {
        let out = x.model.forward_embeds(
            x.embeds.clone().require_grad(),
            x.positions.clone(),
            &x.mask,
            None,
        );
        let grads = out.powf_scalar(2.0).mean().backward();
        // A GPU backend returns before its kernels finish.
        B::sync(&device).expect("sync");
        grads
    };
    // The gradient really reaches the weights (so the timing is a full backward).
    let grads = step();
    let gate = &x.model.layers[0].mlp.gate_proj.weight;
    assert!(gate.grad(&grads).is_some(), "no gradient for gate_proj");
    group.bench_function(BenchmarkId::new("forward_backward", backend), |bench| {
        bench.iter(step)
    });
}

fn decoder_block(c: &mut Criterion) {
    let mut group = c.benchmark_group("qwen2_block_h512_b4_s128");
    configure(&mut group);
    group.throughput(Throughput::Elements((BLOCK_BATCH * BLOCK_SEQ) as u64));
    block_forward::<Cpu>(&mut group, "flex");
    block_forward::<NdArray>(&mut group, "ndarray");
    block_backward::<FlexTrain>(&mut group, "flex");
    block_backward::<NdArrayTrain>(&mut group, "ndarray");
    #[cfg(feature = "cuda")]
    {
        block_forward::<vlrl::backend::Cuda>(&mut group, "cuda");
        block_backward::<vlrl::backend::CudaTrain>(&mut group, "cuda");
    }
    group.finish();
}

criterion_group!(benches, matmul, decoder_block);
criterion_main!(benches);
