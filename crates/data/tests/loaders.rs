//! EasyR1 rows, the OmniMedVQA layout and Med-R1 split files, read from the
//! committed fixtures (field names and spellings as released).

use std::path::PathBuf;

use vlrl_data::omnimed::{count_by_group, load_med_r1_split, load_omnimed_dir};
use vlrl_data::split::{split_rows_by_modality, split_rows_by_question_type};
use vlrl_data::{Dataset, ImageCheck, LoadOptions, Location, Modality, QuestionType, RowError};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data")
        .join(rel)
}

#[test]
fn easyr1_rows_read_as_is() {
    let opts = LoadOptions::default().with_image_check(ImageCheck::Decode);
    let ds = Dataset::load_jsonl(fixture("easyr1/train.jsonl"), &opts).unwrap();
    assert_eq!(ds.len(), 3, "blank line ignored, not counted as a row");
    assert_eq!(ds.skipped_count(), 0);
    let first = &ds.rows[0];
    assert_eq!(first.id, "train.jsonl:1", "rows without id get file:line");
    assert_eq!(first.answer.as_deref(), Some("9"));
    assert_eq!(
        ds.load_image(0, 0).unwrap().get_pixel(3, 3).0,
        [255, 255, 255]
    );
    assert_eq!(
        ds.rows[1].answer.as_deref(),
        Some("5"),
        "numeric answers read as text"
    );
    assert_eq!(ds.locations[2], Location::Line(4));
    let chat = &ds.rows[2];
    assert_eq!(chat.id, "chat-1");
    assert_eq!(chat.verifier.as_deref(), Some("numeric"));
    assert_eq!(chat.prompt_text().as_deref(), Some("Count the dots."));
    assert_eq!(
        chat.extra.get("difficulty"),
        Some(&serde_json::json!(3)),
        "unknown fields kept"
    );
    // Writing the row back keeps every field.
    let back: serde_json::Value = serde_json::to_value(chat).unwrap();
    assert_eq!(back["difficulty"], 3);
    assert_eq!(back["meta"]["split"], "train");
}

#[test]
fn omnimedvqa_directory_loads_with_med_r1_labels() {
    let opts = LoadOptions::default().with_image_check(ImageCheck::Decode);
    let set = load_omnimed_dir(fixture("omnimedvqa"), &opts).unwrap();
    assert_eq!(set.files.len(), 3);
    let rows: Vec<_> = set.rows().collect();
    assert_eq!(rows.len(), 5);
    // Files sorted by name: ACRIMA, BTMRI, Chest CT Scan.
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ACRIMA_0000",
            "ACRIMA_0001",
            "BTMRI_0000",
            "BTMRI_0001",
            "Chest CT Scan_0000"
        ]
    );
    let acrima = rows[0];
    assert_eq!(acrima.answer.as_deref(), Some("D"));
    assert_eq!(Modality::of_row(acrima), Some(Modality::Fundus));
    assert_eq!(
        QuestionType::of_row(acrima),
        Some(QuestionType::ModalityRecognition)
    );
    assert_eq!(rows[1].options, ["Yes", "No"]);
    assert_eq!(rows[1].answer.as_deref(), Some("B"));
    assert_eq!(Modality::of_row(rows[2]), Some(Modality::Mri));
    assert_eq!(
        QuestionType::of_row(rows[2]),
        Some(QuestionType::BiologicalAttributes)
    );
    let ct = rows[4];
    assert_eq!(
        Modality::of_row(ct),
        Some(Modality::Ct),
        "`modality` spelling accepted"
    );
    assert_eq!(
        ct.answer.as_deref(),
        Some("B"),
        "`Lung.` matches option `Lung`"
    );
    let counts = count_by_group(set.rows());
    assert_eq!(
        counts[&(Some(Modality::Mri), Some(QuestionType::LesionGrading))],
        1
    );
    // Images resolve inside the OmniMedVQA root, spaces and parentheses included.
    let ct_file = &set.files[2];
    assert_eq!(
        ct_file.load_image(0, 0).unwrap().get_pixel(0, 0).0,
        [90, 90, 90]
    );
}

#[test]
fn omnimed_bad_entry_names_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let qa = dir.path().join("QA_information/Open-access");
    std::fs::create_dir_all(&qa).unwrap();
    std::fs::write(
        qa.join("X.json"),
        r#"[{"question_type": "Disease Diagnosis", "question": "q", "gt_answer": "Yes",
             "image_path": "Images/none.png", "option_A": "Yes", "option_B": "No", "modality_type": "X-Ray"},
            {"question": "no type"}]"#,
    )
    .unwrap();
    let lexical = LoadOptions::default().with_image_check(ImageCheck::None);
    let err = load_omnimed_dir(dir.path(), &lexical)
        .unwrap_err()
        .to_string();
    assert!(err.contains("X.json") && err.contains("entry 1"), "{err}");
    let skipping = lexical.clone().skip_bad_rows();
    let set = load_omnimed_dir(dir.path(), &skipping).unwrap();
    assert_eq!((set.rows().count(), set.skipped_count()), (1, 1));
    // With the default image check, the missing image is reported for entry 0.
    let err = load_omnimed_dir(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("entry 0") && err.contains("Images/none.png"),
        "{err}"
    );
}

#[test]
fn med_r1_split_files_load() {
    let root = fixture("omnimedvqa");
    let opts = LoadOptions::default().with_image_check(ImageCheck::Decode);
    let ct = load_med_r1_split(
        fixture("med_r1_splits/modality/test/CT(Computed Tomography)_test.json"),
        &root,
        &opts,
    )
    .unwrap();
    assert_eq!(ct.len(), 1);
    let row = &ct.rows[0];
    assert_eq!(row.answer.as_deref(), Some("B"));
    assert_eq!(row.options, ["Liver", "Lung", "Brain", "Heart"]);
    assert_eq!(Modality::of_row(row), Some(Modality::Ct));
    assert_eq!(ct.load_image(0, 0).unwrap().dimensions(), (8, 8));

    let lg_path = fixture("med_r1_splits/question_type/train/Lesion Grading_train.json");
    let err = load_med_r1_split(&lg_path, &root, &opts).unwrap_err();
    assert!(matches!(err.row_error(), Some(RowError::Field { .. })));
    assert!(err.to_string().contains("entry 1"), "{err}");
    let lg = load_med_r1_split(&lg_path, &root, &opts.clone().skip_bad_rows()).unwrap();
    assert_eq!((lg.len(), lg.skipped_count()), (1, 1));
    assert_eq!(
        QuestionType::of_row(&lg.rows[0]),
        Some(QuestionType::LesionGrading)
    );
}

#[test]
fn med_r1_splits_over_omnimed_rows() {
    let set = load_omnimed_dir(fixture("omnimedvqa"), &LoadOptions::default()).unwrap();
    let rows = set.into_rows();
    let by_mod = split_rows_by_modality(rows.clone(), 0.5, 42).unwrap();
    let keys: Vec<Modality> = by_mod.groups.keys().copied().collect();
    assert_eq!(keys, [Modality::Ct, Modality::Mri, Modality::Fundus]);
    for g in by_mod.groups.values() {
        assert_eq!(g.train.len(), (g.train.len() + g.test.len()) / 2);
    }
    assert_eq!(
        by_mod,
        split_rows_by_modality(rows.clone(), 0.5, 42).unwrap()
    );
    let by_task = split_rows_by_question_type(rows, 0.8, 42).unwrap();
    assert_eq!(by_task.groups.len(), 5);
    assert!(by_task.ungrouped.is_empty());
}
