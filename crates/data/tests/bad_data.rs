//! Bad data: missing image, corrupt image, malformed JSONL line, path escaping
//! the data root (`..`, absolute, symlink) → a clear error naming file and
//! line, or a counted skip, per `SkipPolicy`.

use std::path::PathBuf;

use vlrl_data::{DataError, Dataset, ImageCheck, LoadOptions, Location, PathError, RowError};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data")
        .join(rel)
}

/// Write `lines` as a JSONL file next to copies of the fixture images.
fn dataset_with(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    for name in ["ok.png", "corrupt.png"] {
        std::fs::copy(
            fixture("bad/images").join(name),
            dir.path().join("images").join(name),
        )
        .unwrap();
    }
    let path = dir.path().join("data.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    (dir, path)
}

fn load_err(lines: &[&str], check: ImageCheck) -> (DataError, String) {
    let (_dir, path) = dataset_with(lines);
    let err =
        Dataset::load_jsonl(&path, &LoadOptions::default().with_image_check(check)).unwrap_err();
    let msg = err.to_string();
    (err, msg)
}

const GOOD: &str = r#"{"id": "g", "problem": "q", "images": ["images/ok.png"]}"#;

#[test]
fn malformed_line_names_file_and_line() {
    let (err, msg) = load_err(
        &[GOOD, r#"{"id": "broken", "problem": "#],
        ImageCheck::Exists,
    );
    match &err {
        DataError::Row { at, kind, path } => {
            assert_eq!(*at, Location::Line(2));
            assert!(matches!(kind.as_ref(), RowError::Json(_)));
            assert!(path.ends_with("data.jsonl"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        msg.contains("data.jsonl") && msg.contains("line 2") && msg.contains("malformed JSON"),
        "{msg}"
    );
}

#[test]
fn missing_image_is_an_error_at_load() {
    let (err, msg) = load_err(
        &[GOOD, r#"{"problem": "q", "images": ["images/nope.png"]}"#],
        ImageCheck::Exists,
    );
    assert!(matches!(
        err.row_error(),
        Some(RowError::MediaPath {
            source: PathError::NotFound(_),
            ..
        })
    ));
    assert!(
        msg.contains("line 2") && msg.contains("images/nope.png") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn corrupt_image_is_an_error_when_decoding_at_load() {
    let bad = r#"{"problem": "q", "images": ["images/corrupt.png"]}"#;
    // Existence alone passes: the file is there.
    let (_d, path) = dataset_with(&[GOOD, bad]);
    assert!(Dataset::load_jsonl(&path, &LoadOptions::default()).is_ok());
    let (err, msg) = load_err(&[GOOD, bad], ImageCheck::Decode);
    assert!(matches!(
        err.row_error(),
        Some(RowError::CorruptImage { .. })
    ));
    assert!(
        msg.contains("line 2") && msg.contains("corrupt.png") && msg.contains("cannot be decoded"),
        "{msg}"
    );
}

#[test]
fn missing_and_corrupt_images_are_errors_on_access() {
    let (_d, path) = dataset_with(&[
        GOOD,
        r#"{"problem": "q", "images": ["images/nope.png"]}"#,
        r#"{"problem": "q", "images": ["images/corrupt.png"]}"#,
    ]);
    let ds = Dataset::load_jsonl(
        &path,
        &LoadOptions::default().with_image_check(ImageCheck::None),
    )
    .unwrap();
    assert_eq!(ds.len(), 3);
    let ok = ds.load_image(0, 0).unwrap();
    assert_eq!(ok.dimensions(), (8, 8));
    assert_eq!(ok.get_pixel(0, 0).0, [10, 200, 10]);
    let missing = ds.load_image(1, 0).unwrap_err().to_string();
    assert!(
        missing.contains("line 2") && missing.contains("not found"),
        "{missing}"
    );
    let corrupt = ds.load_image(2, 0).unwrap_err().to_string();
    assert!(
        corrupt.contains("line 3") && corrupt.contains("cannot be decoded"),
        "{corrupt}"
    );
    assert!(matches!(
        ds.load_image(0, 1),
        Err(DataError::ImageIndex { .. })
    ));
    assert!(matches!(
        ds.load_image(9, 0),
        Err(DataError::RowIndex { .. })
    ));
}

#[test]
fn escaping_paths_are_refused_even_without_image_checks() {
    for (row, expected) in [
        (
            r#"{"problem": "q", "images": ["../outside.png"]}"#,
            PathError::ParentDir,
        ),
        (
            r#"{"problem": "q", "images": ["images/../../outside.png"]}"#,
            PathError::ParentDir,
        ),
        (
            r#"{"problem": "q", "images": ["/etc/hostname"]}"#,
            PathError::Absolute,
        ),
        (
            r#"{"problem": "q", "video": "../clip.mp4"}"#,
            PathError::ParentDir,
        ),
        (
            r#"{"messages": [{"role": "user", "content": [{"type": "image", "image": "/abs.png"}]}]}"#,
            PathError::Absolute,
        ),
    ] {
        let (err, msg) = load_err(&[GOOD, row], ImageCheck::None);
        match err.row_error() {
            Some(RowError::MediaPath { source, .. }) => assert_eq!(*source, expected, "{row}"),
            other => panic!("{row}: unexpected {other:?}"),
        }
        assert!(msg.contains("line 2"), "{msg}");
    }
}

#[cfg(unix)]
#[test]
fn symlink_pointing_out_of_the_root_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("bad/images/ok.png"),
        outside.path().join("secret.png"),
    )
    .unwrap();
    let (dir, path) = dataset_with(&[GOOD, r#"{"problem": "q", "images": ["images/link.png"]}"#]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.png"),
        dir.path().join("images/link.png"),
    )
    .unwrap();
    // Checked at load...
    let err = Dataset::load_jsonl(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(
        err.row_error(),
        Some(RowError::MediaPath {
            source: PathError::OutsideRoot { .. },
            ..
        })
    ));
    assert!(err.to_string().contains("outside the data root"), "{err}");
    // ...and on access when load-time checks are off.
    let ds = Dataset::load_jsonl(
        &path,
        &LoadOptions::default().with_image_check(ImageCheck::None),
    )
    .unwrap();
    assert!(ds
        .load_image(1, 0)
        .unwrap_err()
        .to_string()
        .contains("outside the data root"));
    // A symlink that stays inside the root is fine.
    std::os::unix::fs::symlink(
        dir.path().join("images/ok.png"),
        dir.path().join("images/inside.png"),
    )
    .unwrap();
    std::fs::write(
        &path,
        format!(
            "{GOOD}\n{}",
            r#"{"problem": "q", "images": ["images/inside.png"]}"#
        ),
    )
    .unwrap();
    let ds = Dataset::load_jsonl(&path, &LoadOptions::default()).unwrap();
    assert_eq!(ds.load_image(1, 0).unwrap().dimensions(), (8, 8));
}

#[test]
fn skip_policy_counts_every_bad_row_of_the_fixture() {
    let path = fixture("bad/mixed.jsonl");
    // Default policy: the first bad line (2, malformed) stops the load.
    let err = Dataset::load_jsonl(&path, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("mixed.jsonl: line 2"), "{err}");

    let opts = LoadOptions::default()
        .skip_bad_rows()
        .with_image_check(ImageCheck::Decode);
    let ds = Dataset::load_jsonl(&path, &opts).unwrap();
    let ids: Vec<&str> = ds.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["good-1", "good-2"]);
    assert_eq!(ds.locations, [Location::Line(1), Location::Line(8)]);
    assert_eq!(ds.skipped_count(), 6);
    let reasons: Vec<(usize, &RowError)> = ds
        .skipped
        .iter()
        .map(|s| match s.at {
            Location::Line(n) => (n, &s.reason),
            Location::Entry(n) => panic!("jsonl gave entry {n}"),
        })
        .collect();
    assert!(matches!(reasons[0], (2, RowError::Json(_))));
    assert!(matches!(
        reasons[1],
        (
            3,
            RowError::MediaPath {
                source: PathError::NotFound(_),
                ..
            }
        )
    ));
    assert!(matches!(reasons[2], (4, RowError::CorruptImage { .. })));
    assert!(matches!(
        reasons[3],
        (
            5,
            RowError::MediaPath {
                source: PathError::ParentDir,
                ..
            }
        )
    ));
    assert!(matches!(
        reasons[4],
        (
            6,
            RowError::MediaPath {
                source: PathError::Absolute,
                ..
            }
        )
    ));
    assert!(matches!(reasons[5], (7, RowError::NoPrompt)));
}

#[test]
fn non_utf8_line_is_a_row_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    std::fs::write(&path, b"{\"problem\": \"ok\"}\n\xff\xfe{\n").unwrap();
    let err = Dataset::load_jsonl(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err.row_error(), Some(RowError::NotUtf8)));
    let ds = Dataset::load_jsonl(&path, &LoadOptions::default().skip_bad_rows()).unwrap();
    assert_eq!((ds.len(), ds.skipped_count()), (1, 1));
}

#[test]
fn explicit_root_overrides_the_file_directory() {
    let (dir, path) = dataset_with(&[r#"{"problem": "q", "images": ["ok.png"]}"#]);
    assert!(
        Dataset::load_jsonl(&path, &LoadOptions::default()).is_err(),
        "not in the file's dir"
    );
    let opts = LoadOptions::default().with_root(dir.path().join("images"));
    let ds = Dataset::load_jsonl(&path, &opts).unwrap();
    assert_eq!(ds.load_image(0, 0).unwrap().dimensions(), (8, 8));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Dataset::load_jsonl("/nonexistent/dir/x.jsonl", &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/dir/x.jsonl"));
}
