//! Dataset rows (JSONL, EasyR1, OmniMedVQA) and deterministic synthetic task generators.
//!
//! - [`Row`]: one training/eval example as a JSONL line (`id`, `source`,
//!   `messages` or `problem`, `images`, `video`, `answer`, `options`,
//!   `boxes`, `verifier`, free `meta`). EasyR1 rows (`problem`/`answer`/
//!   `images`) parse as they are.
//! - [`Dataset`]: a JSONL file plus its data root; every media path is checked
//!   to stay inside the root, malformed rows are an error naming file and line
//!   or a counted skip ([`SkipPolicy`]).
//! - [`omnimed`]: the OmniMedVQA layout Med-R1 trains on, and the Med-R1
//!   cross-modality / cross-task splits ([`split`]).
//! - [`synth`]: seeded generators (`med-synth`, `zoom-search`, `text-logic`,
//!   `visual-math`, and the `video-events` interface) behind [`TaskGenerator`].
//!
//! No tensor dependency: this crate only knows rows, paths and RGB images.

pub mod error;
pub mod jsonl;
pub mod medical;
pub mod omnimed;
pub mod paths;
pub mod row;
pub mod split;
pub mod synth;

pub use error::{DataError, Location, PathError, RowError};
pub use jsonl::{parse_row, Dataset, ImageCheck, LoadOptions, SkipPolicy, SkippedRow};
pub use medical::{Modality, QuestionType};
pub use paths::{check_relative, resolve_in_root};
pub use row::{BoxLabel, ContentPart, Message, MessageContent, Row};
pub use split::{split_by_group, GroupSplit, TrainTest};
pub use synth::{write_dataset_dir, Sample, TaskGenerator};
pub use synth::{
    MedSynth, MedSynthConfig, TextLogic, VisualMath, VisualMathConfig, ZoomSearch, ZoomSearchConfig,
};
