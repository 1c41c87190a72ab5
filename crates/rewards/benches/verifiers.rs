//! Verifier throughput on realistic completions.
//!
//! `cargo bench -p vlrl-rewards --bench verifiers`; results are recorded in
//! docs/rewards.md. Targets (issue 4): ≥ 1M format/accuracy rewards per
//! second per core; detection with 50 boxes ≥ 10k per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vlrl_grounding::{BBox, ImageFrame, LabeledBox};
use vlrl_rewards::*;

const REASONING: &str = "<think>\nThe image shows an axial CT slice of the abdomen. The liver has a hypodense \
lesion in segment VII with rim enhancement, which suggests an abscess rather than a cyst. The options list \
CT, MRI, X-Ray and Ultrasound; the question asks for the modality, and the Hounsfield-like grey levels and \
the circular field of view point to CT.\n</think>\n";

fn completion(answer: &str) -> String {
    format!("{REASONING}<answer>\n{answer}\n</answer>")
}

fn det_boxes(n: usize, jitter: f32) -> Vec<LabeledBox> {
    (0..n)
        .map(|i| {
            let x = (i % 10) as f32 * 95.0 + jitter;
            let y = (i / 10) as f32 * 95.0 + jitter;
            LabeledBox::new(
                BBox::new(x, y, x + 80.0, y + 80.0),
                ["car", "person", "dog"][i % 3],
            )
        })
        .collect()
}

fn det_completion(boxes: &[LabeledBox]) -> String {
    let items: Vec<String> = boxes
        .iter()
        .map(|b| {
            format!(
                "{{\"bbox_2d\": [{}, {}, {}, {}], \"label\": \"{}\"}}",
                b.bbox.x1,
                b.bbox.y1,
                b.bbox.x2,
                b.bbox.y2,
                b.label.as_deref().unwrap_or("")
            )
        })
        .collect();
    completion(&format!("[{}]", items.join(", ")))
}

fn bench(c: &mut Criterion) {
    let ctx = RewardContext::at(30, 100)
        .with_frame(ImageFrame::new(1000, 1000, 1008, 1008).unwrap_or_else(|e| panic!("{e}")));
    let registry = Registry::with_defaults();
    let mc = completion("B");
    let choice = GroundTruth::Choice {
        answer: "B".into(),
        options: vec![
            "CT".into(),
            "MRI".into(),
            "X-Ray".into(),
            "Ultrasound".into(),
        ],
    };
    let num = completion("1,250.50");
    let ocr = completion("Sale ends Friday, 50% off");
    let boxc = completion("[102, 98, 311, 305]");
    let cases: Vec<(&str, String, GroundTruth)> = vec![
        ("format", mc.clone(), choice.clone()),
        ("format_tag_count", mc.clone(), choice.clone()),
        ("multiple_choice", mc.clone(), choice.clone()),
        (
            "normalized",
            completion("The Eiffel Tower"),
            GroundTruth::Text("eiffel tower".into()),
        ),
        ("numeric", num, GroundTruth::Number(1250.5)),
        (
            "math",
            completion("\\frac{3}{4}"),
            GroundTruth::Text("0.75".into()),
        ),
        (
            "counting",
            completion("There are 7 birds."),
            GroundTruth::Count(7),
        ),
        (
            "anls",
            ocr,
            GroundTruth::Text("SALE ENDS FRIDAY 50% OFF".into()),
        ),
        (
            "dynamic_iou",
            boxc,
            GroundTruth::Box(BBox::new(100.0, 100.0, 310.0, 300.0)),
        ),
    ];
    let mut g = c.benchmark_group("verifier");
    g.throughput(Throughput::Elements(1));
    for (key, text, truth) in &cases {
        let v = registry.get(key).unwrap_or_else(|e| panic!("{e}"));
        g.bench_with_input(
            BenchmarkId::from_parameter(key),
            &(text, truth),
            |b, (t, gt)| b.iter(|| black_box(v.verify(black_box(t), gt, &ctx))),
        );
    }
    g.finish();

    let mut d = c.benchmark_group("detection_50_boxes");
    d.throughput(Throughput::Elements(1));
    let truth = GroundTruth::Boxes(det_boxes(50, 0.0));
    let pred = det_completion(&det_boxes(50, 3.0));
    for (name, weights) in [
        ("iou_only", DetWeights::default()),
        (
            "iou_and_map",
            DetWeights {
                iou_max_iou_first: 1.0,
                iou_max_label_first: 1.0,
                map: 1.0,
                map50: 1.0,
                ..DetWeights::default()
            },
        ),
    ] {
        let v = DetectionVerifier::new(DetectionConfig {
            weights,
            ..DetectionConfig::default()
        });
        d.bench_function(name, |b| {
            b.iter(|| black_box(v.verify(black_box(&pred), &truth, &ctx)))
        });
    }
    let f1 = DetectionF1Verifier::default();
    d.bench_function("hungarian_f1", |b| {
        b.iter(|| black_box(f1.verify(black_box(&pred), &truth, &ctx)))
    });
    d.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
