//! Synthetic generators: determinism (same seed → identical bytes), row
//! validity, answers consistent with options, dataset folders that load back,
//! Med-R1 style splits, and a pixel-level check that med-synth answers are
//! learnable from the image.

use std::collections::{BTreeMap, BTreeSet};

use image::RgbImage;
use vlrl_data::synth::write_dataset_dir;
use vlrl_data::{
    Dataset, ImageCheck, LoadOptions, MedSynth, MedSynthConfig, Modality, QuestionType, Sample,
    TaskGenerator, TextLogic, VisualMath, VisualMathConfig, ZoomSearch, ZoomSearchConfig,
};

fn generators() -> Vec<Box<dyn TaskGenerator>> {
    vec![
        Box::new(MedSynth::new(MedSynthConfig::default()).unwrap()),
        Box::new(
            ZoomSearch::new(ZoomSearchConfig {
                image_size: 224,
                ..ZoomSearchConfig::default()
            })
            .unwrap(),
        ),
        Box::new(TextLogic),
        Box::new(VisualMath::new(VisualMathConfig::default()).unwrap()),
    ]
}

fn dir_bytes(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes() {
    for g in generators() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        write_dataset_dir(a.path(), "data.jsonl", &g.generate(24, 5)).unwrap();
        write_dataset_dir(b.path(), "data.jsonl", &g.generate(24, 5)).unwrap();
        write_dataset_dir(c.path(), "data.jsonl", &g.generate(24, 6)).unwrap();
        let (ba, bb, bc) = (
            dir_bytes(a.path()),
            dir_bytes(b.path()),
            dir_bytes(c.path()),
        );
        assert_eq!(ba, bb, "{}: same seed, different bytes", g.name());
        assert_ne!(
            ba["data.jsonl"],
            bc["data.jsonl"],
            "{}: seed ignored",
            g.name()
        );
    }
}

#[test]
fn samples_are_pure_functions_of_seed_and_index() {
    for g in generators() {
        let long = g.generate(12, 9);
        let short = g.generate(5, 9);
        assert_eq!(
            &long[..5],
            &short[..],
            "{}: generate(n) is a prefix of generate(n+k)",
            g.name()
        );
        assert_eq!(g.sample(7, 9), long[7], "{}", g.name());
        let ids: BTreeSet<&str> = long.iter().map(|s| s.row.id.as_str()).collect();
        assert_eq!(ids.len(), long.len(), "{}: ids unique", g.name());
    }
    // Different generators with the same seed draw different numbers.
    let med = MedSynth::new(MedSynthConfig::default())
        .unwrap()
        .sample(0, 1);
    let vm = VisualMath::new(VisualMathConfig {
        image_size: 56,
        ..Default::default()
    })
    .unwrap()
    .sample(0, 1);
    assert_ne!(med.images[0].as_raw(), vm.images[0].as_raw());
}

#[test]
fn rows_are_valid_and_answers_match_options() {
    for g in generators() {
        for s in g.generate(80, 11) {
            let row = &s.row;
            row.validate().unwrap_or_else(|e| panic!("{}: {e}", row.id));
            assert_eq!(row.source, g.name());
            assert_eq!(row.images.len(), s.images.len());
            assert!(
                row.meta_str("rationale").is_some_and(|r| !r.is_empty()),
                "{}: every row explains its answer",
                row.id
            );
            let answer = row.answer.as_deref().unwrap();
            match row.verifier.as_deref() {
                Some("multiple_choice") => {
                    let idx = row
                        .option_index(answer)
                        .unwrap_or_else(|| panic!("{}: {answer}", row.id));
                    let distinct: BTreeSet<&String> = row.options.iter().collect();
                    assert_eq!(
                        distinct.len(),
                        row.options.len(),
                        "{}: duplicate options",
                        row.id
                    );
                    if let Some(text) = row.meta_str("answer_text") {
                        assert_eq!(row.options[idx], text, "{}", row.id);
                    }
                    let problem = row.problem.as_deref().unwrap();
                    assert!(
                        problem.contains(&format!("\n{answer}: {}", row.options[idx])),
                        "{problem}"
                    );
                }
                Some("numeric") => {
                    answer
                        .parse::<i64>()
                        .unwrap_or_else(|_| panic!("{}: {answer}", row.id));
                }
                other => panic!("{}: unexpected verifier {other:?}", row.id),
            }
        }
    }
}

#[test]
fn written_dataset_loads_back_with_identical_pixels() {
    let gen = MedSynth::new(MedSynthConfig::default()).unwrap();
    let samples = gen.generate(16, 2);
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write_dataset_dir(dir.path(), "train.jsonl", &samples).unwrap();
    let opts = LoadOptions::default().with_image_check(ImageCheck::Decode);
    let ds = Dataset::load_jsonl(&jsonl, &opts).unwrap();
    assert_eq!(ds.len(), samples.len());
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(ds.rows[i], s.row);
        assert_eq!(ds.load_image(i, 0).unwrap(), s.images[0]);
    }
}

#[test]
fn med_synth_image_size_is_configurable_and_checked() {
    let gen = MedSynth::new(MedSynthConfig {
        image_size: 84,
        ..MedSynthConfig::default()
    })
    .unwrap();
    assert_eq!(gen.sample(0, 0).images[0].dimensions(), (84, 84));
    for bad in [0, 50, 57] {
        assert!(MedSynth::new(MedSynthConfig {
            image_size: bad,
            ..MedSynthConfig::default()
        })
        .is_err());
    }
    assert!(MedSynth::new(MedSynthConfig {
        modalities: vec![],
        ..MedSynthConfig::default()
    })
    .is_err());
    assert!(ZoomSearch::new(ZoomSearchConfig {
        image_size: 100,
        ..ZoomSearchConfig::default()
    })
    .is_err());
    assert!(VisualMath::new(VisualMathConfig {
        image_size: 30,
        ..Default::default()
    })
    .is_err());
}

#[test]
fn med_synth_covers_the_grid_and_letters_are_balanced() {
    let gen = MedSynth::new(MedSynthConfig::default()).unwrap();
    let samples = gen.generate(400, 3);
    let mut grid: BTreeMap<(Modality, QuestionType), usize> = BTreeMap::new();
    let mut letters: BTreeMap<String, usize> = BTreeMap::new();
    for s in &samples {
        let m = Modality::of_row(&s.row).unwrap();
        let q = QuestionType::of_row(&s.row).unwrap();
        *grid.entry((m, q)).or_default() += 1;
        *letters.entry(s.row.answer.clone().unwrap()).or_default() += 1;
        assert_eq!(s.row.options.len(), 4);
        if matches!(
            q,
            QuestionType::LesionGrading | QuestionType::BiologicalAttributes
        ) {
            assert!(
                s.row.meta["grade"].is_u64(),
                "lesion questions always have a lesion"
            );
        }
    }
    assert_eq!(grid.len(), 40);
    assert!(
        grid.values().all(|&n| n == 10),
        "400 samples = 10 per cell: {grid:?}"
    );
    for (l, n) in &letters {
        assert!((70..=130).contains(n), "letter {l} drawn {n}/400 times");
    }
}

#[test]
fn med_synth_restricted_config_and_splits() {
    let ct_only = MedSynth::new(MedSynthConfig {
        modalities: vec![Modality::Ct],
        question_types: vec![QuestionType::DiseaseDiagnosis],
        ..MedSynthConfig::default()
    })
    .unwrap();
    assert!(ct_only
        .generate(10, 0)
        .iter()
        .all(|s| s.row.meta_str("modality") == Some("CT")
            && s.row.meta_str("question_type") == Some("Disease Diagnosis")));

    let mri_only = MedSynth::new(MedSynthConfig {
        modalities: vec![Modality::Mri],
        question_types: vec![QuestionType::DiseaseDiagnosis],
        ..MedSynthConfig::default()
    })
    .unwrap();
    let answers = |g: &MedSynth| {
        g.generate(40, 0)
            .into_iter()
            .map(|s| s.row.answer.unwrap())
            .collect::<Vec<_>>()
    };
    assert_ne!(
        answers(&ct_only),
        answers(&mri_only),
        "single-modality sets must not share latents"
    );

    let gen = MedSynth::new(MedSynthConfig::default()).unwrap();
    let by_mod = gen.split_by_modality(160, 0.8, 4).unwrap();
    assert_eq!(by_mod.groups.len(), 8);
    assert!(by_mod.ungrouped.is_empty());
    for (m, g) in &by_mod.groups {
        assert_eq!((g.train.len(), g.test.len()), (16, 4));
        assert!(g
            .train
            .iter()
            .chain(&g.test)
            .all(|s| Modality::of_row(&s.row) == Some(*m)));
    }
    let by_task = gen.split_by_question_type(160, 0.8, 4).unwrap();
    assert_eq!(by_task.groups.len(), 5);
    for g in by_task.groups.values() {
        assert_eq!((g.train.len(), g.test.len()), (25, 7));
    }
    assert_eq!(by_task.all_test().len(), 35);
    // Train and test never share a sample.
    for g in by_task.groups.values() {
        let train: BTreeSet<&str> = g.train.iter().map(|s| s.row.id.as_str()).collect();
        assert!(g.test.iter().all(|s| !train.contains(s.row.id.as_str())));
    }
}

/// 8x8 mean-pooled RGB features.
fn features(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let (cw, ch) = (w / 8, h / 8);
    let mut f = vec![0f32; 8 * 8 * 3];
    for (x, y, p) in img.enumerate_pixels() {
        let cell = ((y / ch).min(7) * 8 + (x / cw).min(7)) as usize;
        for c in 0..3 {
            f[cell * 3 + c] += f32::from(p.0[c]) / (cw * ch) as f32;
        }
    }
    f
}

/// Nearest-centroid accuracy of `label` on held-out samples: a floor for
/// "a small model can learn the answer from pixels".
fn centroid_accuracy(train: &[Sample], test: &[Sample], label: impl Fn(&Sample) -> String) -> f64 {
    let mut sums: BTreeMap<String, (Vec<f32>, f32)> = BTreeMap::new();
    for s in train {
        let f = features(&s.images[0]);
        let e = sums
            .entry(label(s))
            .or_insert_with(|| (vec![0.0; f.len()], 0.0));
        e.0.iter_mut().zip(&f).for_each(|(a, b)| *a += b);
        e.1 += 1.0;
    }
    let centroids: Vec<(String, Vec<f32>)> = sums
        .into_iter()
        .map(|(k, (v, n))| (k, v.into_iter().map(|x| x / n).collect()))
        .collect();
    let correct = test
        .iter()
        .filter(|s| {
            let f = features(&s.images[0]);
            let best = centroids
                .iter()
                .min_by(|a, b| {
                    let d = |c: &Vec<f32>| {
                        c.iter()
                            .zip(&f)
                            .map(|(x, y)| (x - y) * (x - y))
                            .sum::<f32>()
                    };
                    d(&a.1).total_cmp(&d(&b.1))
                })
                .map(|c| c.0.clone());
            best == Some(label(s))
        })
        .count();
    correct as f64 / test.len() as f64
}

#[test]
fn med_synth_answers_are_visible_in_pixels() {
    let gen = MedSynth::new(MedSynthConfig::default()).unwrap();
    let train = gen.generate(640, 100);
    let test = gen.generate(320, 200);
    let modality = centroid_accuracy(&train, &test, |s| {
        s.row.meta_str("modality").unwrap().to_string()
    });
    eprintln!("nearest-centroid accuracy: modality {modality:.3}");
    assert!(
        modality > 0.85,
        "modality from pixels (chance 0.125): {modality}"
    );
    // Anatomy outline within one modality (chance 0.25).
    let ct = MedSynth::new(MedSynthConfig {
        modalities: vec![Modality::Ct],
        ..MedSynthConfig::default()
    })
    .unwrap();
    let (tr, te) = (ct.generate(400, 1), ct.generate(200, 2));
    let anatomy = centroid_accuracy(&tr, &te, |s| s.row.meta_str("anatomy").unwrap().to_string());
    eprintln!("nearest-centroid accuracy: CT anatomy {anatomy:.3}");
    assert!(anatomy > 0.9, "anatomy from pixels: {anatomy}");
    // Lesion quadrant on lesion questions (chance 0.25).
    let loc = MedSynth::new(MedSynthConfig {
        modalities: vec![Modality::Microscopy],
        question_types: vec![QuestionType::BiologicalAttributes],
        ..MedSynthConfig::default()
    })
    .unwrap();
    let (tr, te) = (loc.generate(400, 1), loc.generate(200, 2));
    let quadrant = centroid_accuracy(&tr, &te, |s| {
        s.row.meta_str("location").unwrap().to_string()
    });
    eprintln!("nearest-centroid accuracy: microscopy lesion quadrant {quadrant:.3}");
    assert!(quadrant > 0.8, "lesion quadrant from pixels: {quadrant}");
}

#[test]
fn zoom_search_box_contains_the_target_colour() {
    let gen = ZoomSearch::new(ZoomSearchConfig::default()).unwrap();
    for s in gen.generate(10, 0) {
        let b = s.row.boxes[0].bbox_2d;
        let (cx, cy) = (((b[0] + b[2]) / 2.0) as u32, ((b[1] + b[3]) / 2.0) as u32);
        let p = s.images[0].get_pixel(cx, cy).0;
        let spread = p.iter().max().unwrap() - p.iter().min().unwrap();
        assert!(spread > 60, "target centre should be coloured, got {p:?}");
        assert!(b[2] - b[0] < 448.0 / 20.0, "target is small");
    }
}

/// Rows and pixel hashes of the first med-synth samples are pinned in a
/// fixture, so a change of output (another platform, a dependency bump, an
/// edit of the drawing code) is caught. Regenerate on purpose with
/// `VLRL_BLESS=1 cargo test -p vlrl-data --test synth pinned`.
#[test]
fn pinned_med_synth_output() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data/med_synth_seed0.jsonl");
    let gen = MedSynth::new(MedSynthConfig::default()).unwrap();
    let fnv = |bytes: &[u8]| {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let lines: Vec<String> = gen
        .generate(16, 0)
        .iter()
        .map(|s| {
            serde_json::json!({"row": s.row, "pixels_fnv1a": format!("{:016x}", fnv(s.images[0].as_raw()))}).to_string()
        })
        .collect();
    let text = lines.join("\n") + "\n";
    if std::env::var_os("VLRL_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let pinned = std::fs::read_to_string(&path).unwrap();
    // Compared as JSON values, so key order (serde_json's `preserve_order`
    // feature, if some other crate turns it on) does not matter.
    for (i, (got, want)) in text.lines().zip(pinned.lines()).enumerate() {
        let got: serde_json::Value = serde_json::from_str(got).unwrap();
        let want: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(got, want, "med-synth sample {i} changed");
    }
    assert_eq!(text.lines().count(), pinned.lines().count());
}

#[test]
fn med_synth_fixed_option_order_keeps_letters_consistent() {
    let fixed = MedSynth::new(MedSynthConfig {
        shuffle_options: false,
        ..MedSynthConfig::default()
    })
    .unwrap();
    let shuffled = MedSynth::new(MedSynthConfig::default()).unwrap();
    let mut letters_per_text: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut moved = 0;
    for i in 0..400 {
        let s = fixed.sample(i, 5);
        let answer = s.row.answer.clone().unwrap();
        let text = s.row.meta_str("answer_text").unwrap().to_string();
        let pos = s.row.options.iter().position(|o| *o == text).unwrap();
        assert_eq!(answer, ["A", "B", "C", "D"][pos], "{:?}", s.row);
        let qtype = s.row.meta_str("question_type").unwrap().to_string();
        if qtype == "Modality Recognition" {
            let rank = |o: &String| Modality::ALL.iter().position(|m| m.label() == o);
            let mut others: Vec<_> = s
                .row
                .options
                .iter()
                .filter(|o| **o != text)
                .map(rank)
                .collect();
            assert!(
                others.windows(2).all(|w| w[0] < w[1]),
                "{:?}",
                s.row.options
            );
            others.dedup();
            assert_eq!(others.len(), 3, "{:?}", s.row.options);
        }
        // The letter is a function of the question type and the answer.
        letters_per_text
            .entry((qtype, text))
            .or_default()
            .insert(answer);
        let t = shuffled.sample(i, 5);
        moved += usize::from(t.row.options != s.row.options);
    }
    // Outside modality recognition the letter is a function of the answer.
    assert!(letters_per_text.values().all(|l| l.len() == 1));
    // The default still shuffles.
    assert!(moved > 200, "{moved}");
}

/// With `shuffle_options: false` the letter is a function of what the target
/// looks like (its colour for colour questions, its shape for shape
/// questions), and the option at that letter is the answer text.
#[test]
fn zoom_search_fixed_option_order_maps_looks_to_letters() {
    let gen = ZoomSearch::new(ZoomSearchConfig {
        image_size: 112,
        shuffle_options: false,
        ..ZoomSearchConfig::default()
    })
    .unwrap();
    let mut letters: BTreeMap<(bool, String), String> = BTreeMap::new();
    for s in gen.generate(80, 5) {
        let row = &s.row;
        let colour_q = row.problem.as_deref().unwrap().starts_with("What colour");
        let key = if colour_q {
            "target_color"
        } else {
            "target_shape"
        };
        let look = row.meta_str(key).unwrap().to_string();
        let letter = row.answer.clone().unwrap();
        let idx = (letter.as_bytes()[0] - b'A') as usize;
        assert_eq!(
            Some(row.options[idx].as_str()),
            row.meta_str("answer_text"),
            "{}",
            row.id
        );
        let seen = letters
            .entry((colour_q, look))
            .or_insert_with(|| letter.clone());
        assert_eq!(*seen, letter, "{}: one look, two letters", row.id);
    }
    assert!(letters.len() >= 8, "{letters:?}");
}

#[test]
fn fixed_order_bar_options_list_the_bars_left_to_right() {
    let vm = VisualMath::new(VisualMathConfig {
        image_size: 56,
        shuffle_options: false,
    })
    .unwrap();
    let mut letters = BTreeSet::new();
    let mut checked = 0;
    for s in vm.generate(200, 4) {
        let row = &s.row;
        if row.options.is_empty() {
            continue;
        }
        let bars = row.meta["bars"].as_array().unwrap();
        let colours: Vec<&str> = bars.iter().map(|b| b["color"].as_str().unwrap()).collect();
        assert_eq!(row.options, colours, "{}", row.id);
        let heights: Vec<i64> = bars.iter().map(|b| b["height"].as_i64().unwrap()).collect();
        let tallest = row.problem.as_deref().unwrap().contains("tallest");
        let want = if tallest {
            heights.iter().max()
        } else {
            heights.iter().min()
        };
        let pos = heights.iter().position(|h| Some(h) == want).unwrap();
        let answer = row.answer.as_deref().unwrap();
        assert_eq!(row.option_index(answer), Some(pos), "{}", row.id);
        letters.insert(answer.to_string());
        checked += 1;
    }
    assert!(checked > 20, "{checked}");
    assert_eq!(letters.len(), 4, "every bar position answers some question");
}
