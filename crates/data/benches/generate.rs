//! Generator and parser throughput. Run:
//! `cargo bench -p vlrl-data --bench generate`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use vlrl_data::{
    parse_row, MedSynth, MedSynthConfig, TaskGenerator, TextLogic, ZoomSearch, ZoomSearchConfig,
};

fn bench(c: &mut Criterion) {
    let med = MedSynth::new(MedSynthConfig::default()).unwrap();
    c.bench_function("med-synth 56px sample", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(med.sample(i, 0))
        })
    });
    let med224 = MedSynth::new(MedSynthConfig {
        image_size: 224,
        ..MedSynthConfig::default()
    })
    .unwrap();
    c.bench_function("med-synth 224px sample", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(med224.sample(i, 0))
        })
    });
    let zoom = ZoomSearch::new(ZoomSearchConfig::default()).unwrap();
    c.bench_function("zoom-search 448px sample", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(zoom.sample(i, 0))
        })
    });
    let lines: Vec<String> = med
        .generate(1000, 0)
        .into_iter()
        .chain(TextLogic.generate(1000, 0))
        .map(|s| serde_json::to_string(&s.row).unwrap())
        .collect();
    c.bench_function("parse_row x2000", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(parse_row(l).unwrap());
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
