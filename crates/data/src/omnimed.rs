//! OmniMedVQA, the dataset Med-R1 trains on, and Med-R1's split files.
//!
//! Layout on disk (OmniMedVQA release):
//!
//! ```text
//! OmniMedVQA/
//!   Images/<dataset>/...               image files
//!   QA_information/Open-access/*.json  one JSON array per source dataset
//!   QA_information/Restricted-access/*.json
//! ```
//!
//! Each QA entry (field names as released):
//!
//! ```json
//! {"dataset": "ACRIMA", "question_id": "ACRIMA_0000",
//!  "question_type": "Modality Recognition",
//!  "question": "What imaging technique was employed to obtain this picture?",
//!  "gt_answer": "Fundus imaging", "image_path": "Images/ACRIMA/Im553_g_ACRIMA.png",
//!  "option_A": "PET scan", "option_B": "CT scan", "option_C": "Blood test",
//!  "option_D": "Fundus imaging", "modality_type": "Fundus Photography"}
//! ```
//!
//! Some entries have only two options; one file (`Chest CT Scan.json`) spells
//! `modality` instead of `modality_type`; both are accepted. Rows are built the
//! way Med-R1 builds its training text (`scripts/data_process_split.py`):
//! question, then `A: option` lines, and the answer is the letter whose
//! option equals `gt_answer` (case-insensitive, trailing `.` ignored).
//!
//! Med-R1's released splits (`Splits/modality/{train,test}/<modality_type>_{train,test}.json`,
//! `Splits/question_type/...`) are JSON arrays of `{"image", "problem",
//! "solution": "<answer> X </answer>"}`; [`load_med_r1_split`] reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{DataError, Location, RowError};
use crate::jsonl::{Dataset, LoadOptions};
use crate::medical::{Modality, QuestionType};
use crate::row::{format_multiple_choice, option_letter, Row};

/// The verifier key OmniMedVQA / med-synth rows name (a multiple-choice letter).
pub const MULTIPLE_CHOICE_VERIFIER: &str = "multiple_choice";

/// One OmniMedVQA QA entry, as released.
#[derive(Debug, Clone, Deserialize)]
pub struct OmniMedEntry {
    #[serde(default)]
    pub dataset: String,
    #[serde(default, deserialize_with = "text")]
    pub question_id: String,
    pub question_type: String,
    #[serde(deserialize_with = "text")]
    pub question: String,
    #[serde(deserialize_with = "text")]
    pub gt_answer: String,
    pub image_path: String,
    #[serde(default, rename = "option_A", deserialize_with = "opt_text")]
    pub option_a: Option<String>,
    #[serde(default, rename = "option_B", deserialize_with = "opt_text")]
    pub option_b: Option<String>,
    #[serde(default, rename = "option_C", deserialize_with = "opt_text")]
    pub option_c: Option<String>,
    #[serde(default, rename = "option_D", deserialize_with = "opt_text")]
    pub option_d: Option<String>,
    #[serde(alias = "modality")]
    pub modality_type: String,
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_text(d)?.unwrap_or_default())
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected text, got {other}"
        ))),
    }
}

/// Med-R1's answer matching: case-insensitive, surrounding spaces and a
/// trailing `.` ignored.
fn same_answer(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('.').trim().to_lowercase();
    norm(a) == norm(b)
}

impl OmniMedEntry {
    /// Non-empty options in letter order.
    pub fn options(&self) -> Vec<String> {
        [
            &self.option_a,
            &self.option_b,
            &self.option_c,
            &self.option_d,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// Build a row: Med-R1 problem text, letter answer, `images` =
    /// `[image_path]` (relative to the OmniMedVQA root), and `meta` with the
    /// canonical modality / question type labels (absent when the entry's
    /// strings are none of Med-R1's eight / five; `modality_type` keeps the
    /// raw text).
    pub fn to_row(&self) -> Result<Row, RowError> {
        let options = self.options();
        if options.len() < 2 {
            return Err(RowError::Field {
                field: "option_A..option_D".into(),
                reason: format!("{} non-empty options, need at least 2", options.len()),
            });
        }
        let index = options
            .iter()
            .position(|o| same_answer(o, &self.gt_answer))
            .ok_or_else(|| RowError::Field {
                field: "gt_answer".into(),
                reason: format!(
                    "`{}` matches none of the options {options:?}",
                    self.gt_answer
                ),
            })?;
        let letter = option_letter(index).map(String::from).unwrap_or_default();
        let mut meta = serde_json::Map::new();
        if let Some(m) = Modality::parse_loose(&self.modality_type) {
            meta.insert("modality".into(), m.label().into());
        }
        meta.insert("modality_type".into(), self.modality_type.clone().into());
        if let Some(q) = QuestionType::parse_loose(&self.question_type) {
            meta.insert("question_type".into(), q.label().into());
        } else {
            meta.insert(
                "question_type_raw".into(),
                self.question_type.clone().into(),
            );
        }
        meta.insert("dataset".into(), self.dataset.clone().into());
        meta.insert("gt_answer".into(), self.gt_answer.clone().into());
        let row = Row {
            id: self.question_id.clone(),
            source: if self.dataset.is_empty() {
                "omnimedvqa".into()
            } else {
                format!("omnimedvqa/{}", self.dataset)
            },
            problem: Some(format_multiple_choice(&self.question, &options)),
            images: vec![self.image_path.clone()],
            answer: Some(letter),
            options,
            verifier: Some(MULTIPLE_CHOICE_VERIFIER.into()),
            meta,
            ..Row::default()
        };
        row.validate()?;
        Ok(row)
    }
}

/// The rows of all QA files of an OmniMedVQA directory.
#[derive(Debug)]
pub struct OmniMedSet {
    /// The OmniMedVQA root (holds `Images/` and `QA_information/`).
    pub root: PathBuf,
    /// One dataset per QA file, in file-name order.
    pub files: Vec<Dataset>,
}

impl OmniMedSet {
    /// All rows, file by file.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.files.iter().flat_map(|d| d.rows.iter())
    }

    pub fn into_rows(self) -> Vec<Row> {
        self.files.into_iter().flat_map(|d| d.rows).collect()
    }

    /// Rows skipped under [`crate::SkipPolicy::Skip`], over all files.
    pub fn skipped_count(&self) -> usize {
        self.files.iter().map(Dataset::skipped_count).sum()
    }
}

fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            collect_json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_json_array(path: &Path) -> Result<Vec<Value>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Read one OmniMedVQA QA file (a JSON array) with media paths relative to
/// `root`. Bad entries are an error naming file and entry index, or counted
/// skips, per `opts.skip`.
pub fn load_omnimed_file(
    path: &Path,
    root: &Path,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let entries = read_json_array(path)?;
    let mut ds = Dataset::from_rows(root, Vec::new());
    ds.path = path.to_path_buf();
    ds.locations.clear();
    for (i, value) in entries.into_iter().enumerate() {
        let result = serde_json::from_value::<OmniMedEntry>(value)
            .map_err(RowError::from)
            .and_then(|entry| entry.to_row())
            .and_then(|row| {
                ds.check_media(&row, opts.image_check)?;
                Ok(Some(row))
            });
        ds.accept(result, Location::Entry(i), opts.skip)?;
    }
    Ok(ds)
}

/// Read every `*.json` under `<root>/QA_information` (sorted by path, so the
/// row order is the same on every machine). `root` is the OmniMedVQA folder
/// that holds `Images/` and `QA_information/`.
pub fn load_omnimed_dir(
    root: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<OmniMedSet, DataError> {
    let root = root.as_ref();
    let qa_dir = root.join("QA_information");
    let mut files = Vec::new();
    collect_json_files(&qa_dir, &mut files)?;
    files.sort();
    let data_root = opts.root.clone().unwrap_or_else(|| root.to_path_buf());
    let datasets = files
        .iter()
        .map(|f| load_omnimed_file(f, &data_root, opts))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OmniMedSet {
        root: data_root,
        files: datasets,
    })
}

/// One entry of a Med-R1 split file.
#[derive(Debug, Clone, Deserialize)]
struct MedR1SplitEntry {
    image: String,
    problem: String,
    solution: String,
}

/// The letter inside `<answer> X </answer>`.
fn answer_from_solution(solution: &str) -> Option<String> {
    let start = solution.find("<answer>")? + "<answer>".len();
    let end = start + solution.get(start..)?.find("</answer>")?;
    let inner = solution.get(start..end)?.trim();
    (!inner.is_empty()).then(|| inner.to_string())
}

/// Options parsed back from `X: option` lines of a Med-R1 problem text.
fn options_from_problem(problem: &str) -> Vec<String> {
    let mut options = Vec::new();
    for line in problem.lines() {
        let expected = option_letter(options.len());
        let mut chars = line.chars();
        match (chars.next(), chars.next(), expected) {
            (Some(c), Some(':'), Some(e)) if c == e => {
                options.push(chars.as_str().trim().to_string());
            }
            _ => {
                if !options.is_empty() {
                    // Option block ended; later lines are not options.
                    break;
                }
            }
        }
    }
    options
}

/// Read a Med-R1 split file (`Splits/<axis>/<train|test>/<group>_<split>.json`).
/// `image_root` is the folder the `image` paths are relative to. The group
/// named by the file name (a modality or question type) goes into `meta`.
pub fn load_med_r1_split(
    path: impl AsRef<Path>,
    image_root: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let entries = read_json_array(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let group = stem
        .rsplit_once('_')
        .map(|(g, _)| g.to_string())
        .unwrap_or(stem.clone());
    let axis_dir = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut group_meta = serde_json::Map::new();
    if axis_dir == "question_type"
        || (axis_dir != "modality" && QuestionType::parse_loose(&group).is_some())
    {
        if let Some(q) = QuestionType::parse_loose(&group) {
            group_meta.insert("question_type".into(), q.label().into());
        }
    } else if let Some(m) = Modality::parse_loose(&group) {
        group_meta.insert("modality".into(), m.label().into());
        group_meta.insert("modality_type".into(), group.clone().into());
    }
    let mut ds = Dataset::from_rows(image_root.as_ref(), Vec::new());
    ds.path = path.to_path_buf();
    ds.locations.clear();
    for (i, value) in entries.into_iter().enumerate() {
        let result = serde_json::from_value::<MedR1SplitEntry>(value)
            .map_err(RowError::from)
            .and_then(|e| {
                let answer = answer_from_solution(&e.solution).ok_or_else(|| RowError::Field {
                    field: "solution".into(),
                    reason: format!("no <answer>...</answer> in `{}`", e.solution),
                })?;
                let row = Row {
                    id: format!("{stem}:{i}"),
                    source: format!("med-r1/{group}"),
                    options: options_from_problem(&e.problem),
                    problem: Some(e.problem),
                    images: vec![e.image],
                    answer: Some(answer),
                    verifier: Some(MULTIPLE_CHOICE_VERIFIER.into()),
                    meta: group_meta.clone(),
                    ..Row::default()
                };
                row.validate()?;
                ds.check_media(&row, opts.image_check)?;
                Ok(Some(row))
            });
        ds.accept(result, Location::Entry(i), opts.skip)?;
    }
    Ok(ds)
}

/// Count rows per (modality, question type), the shape of OmniMedVQA's
/// statistics tables. Rows outside the eight / five are counted under `None`.
pub fn count_by_group<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> BTreeMap<(Option<Modality>, Option<QuestionType>), usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts
            .entry((Modality::of_row(row), QuestionType::of_row(row)))
            .or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_to_row_matches_med_r1() {
        let entry: OmniMedEntry = serde_json::from_str(
            r#"{"dataset": "ACRIMA", "question_id": "ACRIMA_0000", "question_type": "Modality Recognition",
                "question": "What imaging technique was employed to obtain this picture?",
                "gt_answer": "Fundus imaging.", "image_path": "Images/ACRIMA/Im553_g_ACRIMA.png",
                "option_A": "PET scan", "option_B": "CT scan", "option_C": "Blood test",
                "option_D": "Fundus imaging", "modality_type": "Fundus Photography"}"#,
        )
        .unwrap();
        let row = entry.to_row().unwrap();
        assert_eq!(row.answer.as_deref(), Some("D"));
        assert_eq!(
            row.problem.as_deref(),
            Some("What imaging technique was employed to obtain this picture?\nA: PET scan\nB: CT scan\nC: Blood test\nD: Fundus imaging")
        );
        assert_eq!(row.meta_str("modality"), Some("Fundus Photography"));
        assert_eq!(row.meta_str("question_type"), Some("Modality Recognition"));
        assert_eq!(row.source, "omnimedvqa/ACRIMA");
    }

    #[test]
    fn two_options_and_modality_alias() {
        let entry: OmniMedEntry = serde_json::from_str(
            r#"{"question_id": 7, "question_type": "Disease Diagnosis", "question": "Normal?",
                "gt_answer": "No", "image_path": "Images/x.png", "option_A": "Yes", "option_B": "No",
                "modality": "CT(Computed Tomography)"}"#,
        )
        .unwrap();
        let row = entry.to_row().unwrap();
        assert_eq!(row.id, "7");
        assert_eq!(row.options.len(), 2);
        assert_eq!(row.answer.as_deref(), Some("B"));
        assert_eq!(row.meta_str("modality"), Some("CT"));
    }

    #[test]
    fn unmatched_answer_is_an_error() {
        let entry: OmniMedEntry = serde_json::from_str(
            r#"{"question_type": "Disease Diagnosis", "question": "q", "gt_answer": "Maybe",
                "image_path": "Images/x.png", "option_A": "Yes", "option_B": "No", "modality_type": "X-Ray"}"#,
        )
        .unwrap();
        assert!(matches!(entry.to_row(), Err(RowError::Field { .. })));
    }

    #[test]
    fn solution_and_options_parse() {
        assert_eq!(
            answer_from_solution("<answer> C </answer>").as_deref(),
            Some("C")
        );
        assert_eq!(answer_from_solution("<answer></answer>"), None);
        assert_eq!(answer_from_solution("C"), None);
        assert_eq!(
            options_from_problem("Q?\nA: x\nB: y y\nC: z\nnot an option"),
            vec!["x", "y y", "z"]
        );
    }
}
