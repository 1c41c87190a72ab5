//! The eight imaging modalities and five question types of Med-R1
//! (OmniMedVQA open-access subset), shared by the OmniMedVQA loader and the
//! `med-synth` generator so both produce the same `meta` labels.

use std::fmt;
use std::str::FromStr;

use crate::error::RowError;
use crate::row::Row;

/// Imaging modality, in the order of the Med-R1 paper's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Modality {
    Ct,
    Mri,
    XRay,
    Fundus,
    Dermoscopy,
    Microscopy,
    Oct,
    Ultrasound,
}

impl Modality {
    pub const ALL: [Modality; 8] = [
        Modality::Ct,
        Modality::Mri,
        Modality::XRay,
        Modality::Fundus,
        Modality::Dermoscopy,
        Modality::Microscopy,
        Modality::Oct,
        Modality::Ultrasound,
    ];

    /// Canonical label, used in `meta.modality` and in reports.
    pub fn label(self) -> &'static str {
        match self {
            Modality::Ct => "CT",
            Modality::Mri => "MRI",
            Modality::XRay => "X-Ray",
            Modality::Fundus => "Fundus Photography",
            Modality::Dermoscopy => "Dermoscopy",
            Modality::Microscopy => "Microscopy Images",
            Modality::Oct => "OCT",
            Modality::Ultrasound => "Ultrasound",
        }
    }

    /// Column header used by the Med-R1 paper's tables.
    pub fn abbrev(self) -> &'static str {
        match self {
            Modality::Ct => "CT",
            Modality::Mri => "MRI",
            Modality::XRay => "X-Ray",
            Modality::Fundus => "FP",
            Modality::Dermoscopy => "Der",
            Modality::Microscopy => "Micro",
            Modality::Oct => "OCT",
            Modality::Ultrasound => "US",
        }
    }

    /// `modality_type` exactly as OmniMedVQA spells it (also Med-R1's split
    /// file names, e.g. `Splits/modality/test/CT(Computed Tomography)_test.json`;
    /// the OCT string really lacks its closing parenthesis).
    pub fn omnimed_name(self) -> &'static str {
        match self {
            Modality::Ct => "CT(Computed Tomography)",
            Modality::Mri => "MR (Mag-netic Resonance Imaging)",
            Modality::XRay => "X-Ray",
            Modality::Fundus => "Fundus Photography",
            Modality::Dermoscopy => "Dermoscopy",
            Modality::Microscopy => "Microscopy Images",
            Modality::Oct => "OCT (Optical Coherence Tomography",
            Modality::Ultrasound => "ultrasound",
        }
    }

    /// Map any of the spellings seen in OmniMedVQA, Med-R1 and the paper
    /// (`CT(Computed Tomography)`, `MR (Mag-netic ...`, `ultrasound`, `US`,
    /// `FP`, `Der`, `Micro`, ...) to a modality. Letters only, case-folded.
    pub fn parse_loose(text: &str) -> Option<Modality> {
        let s: String = text
            .chars()
            .filter(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let is = |prefixes: &[&str]| prefixes.iter().any(|p| s == *p);
        // OCT before CT: both spellings contain "tomography".
        if s.contains("opticalcoherence") || s.starts_with("oct") {
            Some(Modality::Oct)
        } else if s.contains("computedtomography")
            || is(&["ct", "ctscan", "computedtomography"])
            || s.starts_with("ct")
        {
            Some(Modality::Ct)
        } else if s.contains("magnetic") || is(&["mr", "mri"]) || s.starts_with("mr") {
            Some(Modality::Mri)
        } else if s.contains("xray") {
            Some(Modality::XRay)
        } else if s.contains("fundus") || is(&["fp"]) {
            Some(Modality::Fundus)
        } else if s.contains("dermoscop") || s.contains("dermatoscop") || is(&["der"]) {
            Some(Modality::Dermoscopy)
        } else if s.contains("microscop") || is(&["micro"]) {
            Some(Modality::Microscopy)
        } else if s.contains("ultrasound") || s.contains("ultrasonograph") || is(&["us"]) {
            Some(Modality::Ultrasound)
        } else {
            None
        }
    }

    /// Modality named by `meta.modality` (or `meta.modality_type`) of a row.
    pub fn of_row(row: &Row) -> Option<Modality> {
        row.meta_str("modality")
            .or_else(|| row.meta_str("modality_type"))
            .and_then(Modality::parse_loose)
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Modality {
    type Err = RowError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Modality::parse_loose(s).ok_or_else(|| RowError::Field {
            field: "modality".into(),
            reason: format!("`{s}` is none of the eight Med-R1 modalities"),
        })
    }
}

/// Question type (OmniMedVQA `question_type`), in the paper's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuestionType {
    AnatomyIdentification,
    DiseaseDiagnosis,
    LesionGrading,
    ModalityRecognition,
    /// OmniMedVQA "Other Biological Attributes" (the paper: "Biological
    /// Attribute Analysis").
    BiologicalAttributes,
}

impl QuestionType {
    pub const ALL: [QuestionType; 5] = [
        QuestionType::AnatomyIdentification,
        QuestionType::DiseaseDiagnosis,
        QuestionType::LesionGrading,
        QuestionType::ModalityRecognition,
        QuestionType::BiologicalAttributes,
    ];

    /// Label exactly as OmniMedVQA's `question_type` (and Med-R1's split file
    /// names) spell it; used in `meta.question_type`.
    pub fn label(self) -> &'static str {
        match self {
            QuestionType::AnatomyIdentification => "Anatomy Identification",
            QuestionType::DiseaseDiagnosis => "Disease Diagnosis",
            QuestionType::LesionGrading => "Lesion Grading",
            QuestionType::ModalityRecognition => "Modality Recognition",
            QuestionType::BiologicalAttributes => "Other Biological Attributes",
        }
    }

    /// Short column header for tables.
    pub fn abbrev(self) -> &'static str {
        match self {
            QuestionType::AnatomyIdentification => "AI",
            QuestionType::DiseaseDiagnosis => "DD",
            QuestionType::LesionGrading => "LG",
            QuestionType::ModalityRecognition => "MR",
            QuestionType::BiologicalAttributes => "OBA",
        }
    }

    /// Loose parse of the spellings seen in the wild.
    pub fn parse_loose(text: &str) -> Option<QuestionType> {
        let s: String = text
            .chars()
            .filter(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if s.contains("anatomy") || s == "ai" {
            Some(QuestionType::AnatomyIdentification)
        } else if s.contains("disease") || s.contains("diagnos") || s == "dd" {
            Some(QuestionType::DiseaseDiagnosis)
        } else if s.contains("lesion") || s.contains("grading") || s == "lg" {
            Some(QuestionType::LesionGrading)
        } else if s.contains("modality") || s == "mr" {
            Some(QuestionType::ModalityRecognition)
        } else if s.contains("biological") || s.contains("attribute") || s == "oba" {
            Some(QuestionType::BiologicalAttributes)
        } else {
            None
        }
    }

    /// Question type named by `meta.question_type` of a row.
    pub fn of_row(row: &Row) -> Option<QuestionType> {
        row.meta_str("question_type")
            .and_then(QuestionType::parse_loose)
    }
}

impl fmt::Display for QuestionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for QuestionType {
    type Err = RowError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QuestionType::parse_loose(s).ok_or_else(|| RowError::Field {
            field: "question_type".into(),
            reason: format!("`{s}` is none of the five Med-R1 question types"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omnimed_spellings_round_trip() {
        for m in Modality::ALL {
            assert_eq!(Modality::parse_loose(m.omnimed_name()), Some(m), "{m}");
            assert_eq!(Modality::parse_loose(m.label()), Some(m), "{m}");
            assert_eq!(Modality::parse_loose(m.abbrev()), Some(m), "{m}");
        }
        for q in QuestionType::ALL {
            assert_eq!(QuestionType::parse_loose(q.label()), Some(q));
            assert_eq!(QuestionType::parse_loose(q.abbrev()), Some(q));
        }
        assert_eq!(
            QuestionType::parse_loose("Biological Attribute Analysis"),
            Some(QuestionType::BiologicalAttributes)
        );
        assert_eq!(Modality::parse_loose("unknown"), None);
        assert_eq!(
            Modality::parse_loose("Microscopy"),
            Some(Modality::Microscopy)
        );
        assert_eq!(Modality::parse_loose("MR"), Some(Modality::Mri));
    }
}
