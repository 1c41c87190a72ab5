//! `med-synth`: Med-R1's task shape on procedurally drawn images.
//!
//! Eight "modalities", each with its own look (palette, texture, framing):
//!
//! | modality   | look |
//! |------------|------|
//! | CT         | black field, mid-grey body with a bright bone outline, darker core |
//! | MRI        | black field, grey tissue with wavy grey/white folds, dark rim |
//! | X-Ray      | grey field, soft body with bright horizontal ribs and a bright spine |
//! | Fundus     | black field, orange-red disc darkening outward, yellow optic disc, red vessels |
//! | Dermoscopy | black dermoscope field, skin tone with crease lines |
//! | Microscopy | pale pink slide, pink tissue with scattered purple nuclei |
//! | OCT        | black field, wavy horizontal grey bands (retinal layers), strong noise |
//! | Ultrasound | black field, fan (sector) from the top with speckle, brighter organ |
//!
//! Every image also has an *anatomy* (the outline of the imaged structure:
//! round, wide oval, tall oval or two lobes; named per modality), and usually a
//! *finding*: none, or a lesion of one of three kinds (solid blob, ring with a
//! dark centre, cluster of dots; named per modality), whose size gives its
//! *grade* (1-4) and whose quadrant is the *biological attribute* asked about.
//! The five Med-R1 question types ask for one of these latent facts, with four
//! shuffled options, so every answer follows from the pixels.

use image::RgbImage;
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use crate::error::DataError;
use crate::medical::{Modality, QuestionType};
use crate::omnimed::MULTIPLE_CHOICE_VERIFIER;
use crate::row::{format_multiple_choice, Row};
use crate::split::{split_by_group, GroupSplit};
use crate::synth::draw::{self, dsin, grey, mix, shade, Color};
use crate::synth::{
    check_image_size, image_paths, sample_id, sample_rng, shuffle_options, Sample, TaskGenerator,
};

/// Configuration of [`MedSynth`].
#[derive(Debug, Clone, PartialEq)]
pub struct MedSynthConfig {
    /// Square image side in pixels; a positive multiple of 28.
    pub image_size: u32,
    /// Modalities to draw (cycled in order, so any `n` that is a multiple of
    /// `modalities.len() * question_types.len()` is exactly balanced).
    pub modalities: Vec<Modality>,
    pub question_types: Vec<QuestionType>,
    /// Shuffle the four options (OmniMedVQA-like; the default). When off,
    /// options come in a fixed order (each question type's names in their
    /// listed order; modalities in [`Modality::ALL`] order), so the letter
    /// follows from the answer text alone. The bundled model uses fixed
    /// order: at ~1M parameters it learned to read the images but not to
    /// find a named option in a shuffled list (docs/bundled-model.md).
    pub shuffle_options: bool,
}

impl Default for MedSynthConfig {
    fn default() -> Self {
        Self {
            image_size: 56,
            modalities: Modality::ALL.to_vec(),
            question_types: QuestionType::ALL.to_vec(),
            shuffle_options: true,
        }
    }
}

/// Options in their fixed order (see [`MedSynthConfig::shuffle_options`]):
/// the listed order; for modality recognition the true modality takes slot
/// `index in Modality::ALL mod 4` and the three distractors fill the other
/// slots in [`Modality::ALL`] order, so the letter is a function of the
/// modality, as for the other question types.
fn fixed_order(q: QuestionType, options: Vec<String>, correct: usize) -> (Vec<String>, String) {
    let labels = Modality::ALL.map(Modality::label);
    let order = (q == QuestionType::ModalityRecognition).then_some(&labels[..]);
    super::fixed_options(options, correct, order)
}

/// The `med-synth` generator.
#[derive(Debug, Clone)]
pub struct MedSynth {
    config: MedSynthConfig,
}

/// Anatomy outline, in coordinates normalized to [-1, 1] across the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outline {
    Round,
    WideOval,
    TallOval,
    TwoLobes,
}

const OUTLINES: [Outline; 4] = [
    Outline::Round,
    Outline::WideOval,
    Outline::TallOval,
    Outline::TwoLobes,
];

impl Outline {
    fn contains(self, x: f32, y: f32) -> bool {
        let ellipse = |cx: f32, rx: f32, ry: f32| {
            let (dx, dy) = ((x - cx) / rx, y / ry);
            dx * dx + dy * dy <= 1.0
        };
        match self {
            Outline::Round => ellipse(0.0, 0.8, 0.8),
            Outline::WideOval => ellipse(0.0, 0.9, 0.58),
            Outline::TallOval => ellipse(0.0, 0.58, 0.9),
            Outline::TwoLobes => ellipse(-0.45, 0.38, 0.72) || ellipse(0.45, 0.38, 0.72),
        }
    }
}

/// Anatomy names per modality, indexed like [`OUTLINES`].
fn anatomy_names(m: Modality) -> [&'static str; 4] {
    match m {
        Modality::Ct => ["head", "abdomen", "spine", "chest"],
        Modality::Mri => ["brain", "pelvis", "knee", "kidneys"],
        Modality::XRay => ["skull", "pelvis", "femur", "chest"],
        Modality::Fundus => ["macula", "posterior pole", "optic nerve", "both eyes"],
        Modality::Dermoscopy => ["face", "back", "arm", "hands"],
        Modality::Microscopy => ["blood smear", "liver", "lymph node", "kidney"],
        Modality::Oct => ["fovea", "peripheral retina", "optic nerve head", "choroid"],
        Modality::Ultrasound => ["bladder", "liver", "thyroid", "kidneys"],
    }
}

/// Finding names per modality: index 0 is "no lesion", 1 solid, 2 ring, 3 dots.
fn finding_names(m: Modality) -> [&'static str; 4] {
    match m {
        Modality::Ct => ["normal", "tumor", "cyst", "metastases"],
        Modality::Mri => ["normal", "glioma", "cyst", "multiple sclerosis"],
        Modality::XRay => ["normal", "mass", "abscess", "nodules"],
        Modality::Fundus => ["normal", "exudate", "hemorrhage", "microaneurysms"],
        Modality::Dermoscopy => ["healthy skin", "melanoma", "vascular lesion", "keratosis"],
        Modality::Microscopy => ["normal tissue", "carcinoma", "necrosis", "inflammation"],
        Modality::Oct => ["normal", "drusen", "macular fluid", "hyperreflective foci"],
        Modality::Ultrasound => ["normal", "solid mass", "cyst", "calcifications"],
    }
}

/// What each modality looks like, for rationales (SFT traces).
fn look(m: Modality) -> &'static str {
    match m {
        Modality::Ct => "a grey body with a bright bone outline on black",
        Modality::Mri => "grey tissue with wavy bright and dark folds",
        Modality::XRay => "bright ribs and a bright spine over a grey body",
        Modality::Fundus => "an orange retina with a yellow optic disc and red vessels",
        Modality::Dermoscopy => "creased skin inside a dark round field",
        Modality::Microscopy => "pink tissue with purple nuclei on a pale slide",
        Modality::Oct => "stacked wavy grey bands",
        Modality::Ultrasound => "a speckled fan-shaped view",
    }
}

const OUTLINE_WORDS: [&str; 4] = ["round", "a wide oval", "a tall oval", "two-lobed"];
const LESION_WORDS: [&str; 4] = [
    "no lesion",
    "a solid blob",
    "a ring with a dark centre",
    "a cluster of small dots",
];
const SIZE_WORDS: [&str; 4] = ["very small", "small", "medium", "large"];

/// A one-sentence account of the visible evidence for the answer, for
/// supervised `<think>` traces.
fn rationale(lat: &Latent, q: QuestionType) -> String {
    let m = lat.modality;
    let a = lat.anatomy % 4;
    let f = lat.finding % 4;
    let g = lat.grade % 4;
    match q {
        QuestionType::ModalityRecognition => {
            format!("The image shows {}, so it is {}.", look(m), m.label())
        }
        QuestionType::AnatomyIdentification => format!(
            "The imaged structure is {}, which is the {}.",
            OUTLINE_WORDS[a],
            anatomy_names(m)[a]
        ),
        QuestionType::DiseaseDiagnosis => {
            if f == 0 {
                format!(
                    "There is no lesion, so the finding is {}.",
                    finding_names(m)[0]
                )
            } else {
                format!(
                    "There is {}, which indicates {}.",
                    LESION_WORDS[f],
                    finding_names(m)[f]
                )
            }
        }
        QuestionType::LesionGrading => {
            format!("The lesion is {}, so it is {}.", SIZE_WORDS[g], GRADES[g])
        }
        QuestionType::BiologicalAttributes => format!(
            "The lesion lies in the {} part of the image.",
            LOCATIONS[lat.quadrant % 4]
        ),
    }
}

const GRADES: [&str; 4] = ["grade 1", "grade 2", "grade 3", "grade 4"];
/// Lesion radius per grade, as a fraction of half the image side. Adjacent
/// grades stay apart under the +-8% size jitter.
const GRADE_RADIUS: [f32; 4] = [0.08, 0.14, 0.20, 0.27];
const LOCATIONS: [&str; 4] = ["upper left", "upper right", "lower left", "lower right"];

fn question_templates(q: QuestionType) -> [&'static str; 3] {
    match q {
        QuestionType::ModalityRecognition => [
            "What imaging modality is shown?",
            "Which modality was used to acquire this image?",
            "What kind of scan is this?",
        ],
        QuestionType::AnatomyIdentification => [
            "Which anatomical structure is shown?",
            "What part of the body does this image show?",
            "Which organ is imaged here?",
        ],
        QuestionType::DiseaseDiagnosis => [
            "What is the most likely diagnosis?",
            "Which finding is present in this image?",
            "What abnormality, if any, is visible?",
        ],
        QuestionType::LesionGrading => [
            "What is the grade of the lesion?",
            "How severe is the lesion?",
            "Which grade fits the lesion size?",
        ],
        QuestionType::BiologicalAttributes => [
            "Where is the lesion located?",
            "In which part of the image is the lesion?",
            "Which quadrant contains the lesion?",
        ],
    }
}

/// The latent facts of one image.
#[derive(Debug, Clone, Copy)]
struct Latent {
    modality: Modality,
    anatomy: usize,
    /// 0 = no lesion, 1 solid, 2 ring, 3 dots.
    finding: usize,
    grade: usize,
    quadrant: usize,
}

/// Lesion colours of a modality: (solid, ring rim, ring centre, dots).
fn lesion_colors(m: Modality) -> (Color, Color, Color, Color) {
    match m {
        Modality::Ct | Modality::Mri => (grey(240.0), grey(235.0), grey(12.0), grey(20.0)),
        // Nodules, hyperreflective foci and calcifications are bright in
        // these modalities, so their dots are too.
        Modality::XRay | Modality::Oct | Modality::Ultrasound => {
            (grey(240.0), grey(235.0), grey(12.0), grey(252.0))
        }
        Modality::Fundus => ([250, 245, 160], [200, 40, 20], [90, 10, 5], [120, 0, 0]),
        Modality::Dermoscopy => ([80, 45, 25], [150, 40, 60], [235, 120, 140], [60, 70, 120]),
        Modality::Microscopy => ([55, 15, 85], [55, 15, 85], [252, 250, 252], [20, 20, 110]),
    }
}

impl MedSynth {
    pub fn new(config: MedSynthConfig) -> Result<Self, DataError> {
        check_image_size("med-synth", config.image_size, config.image_size)?;
        if config.modalities.is_empty() || config.question_types.is_empty() {
            return Err(DataError::Config(
                "med-synth: need at least one modality and one question type".into(),
            ));
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &MedSynthConfig {
        &self.config
    }

    /// The question type of sample `index` (of any seed): the generator
    /// cycles through modalities first, then question types.
    pub fn question_type(&self, index: u64) -> QuestionType {
        let cfg = &self.config;
        let nm = cfg.modalities.len() as u64;
        let nq = cfg.question_types.len() as u64;
        cfg.question_types[((index / nm) % nq) as usize]
    }

    /// Med-R1 cross-modality split: `n` samples grouped by modality, each
    /// group cut at `train_ratio` after a seeded shuffle.
    pub fn split_by_modality(
        &self,
        n: usize,
        train_ratio: f64,
        seed: u64,
    ) -> Result<GroupSplit<Modality, Sample>, DataError> {
        split_by_group(
            self.generate(n, seed),
            |s: &Sample| Modality::of_row(&s.row),
            train_ratio,
            seed,
        )
    }

    /// Med-R1 cross-task split: `n` samples grouped by question type.
    pub fn split_by_question_type(
        &self,
        n: usize,
        train_ratio: f64,
        seed: u64,
    ) -> Result<GroupSplit<QuestionType, Sample>, DataError> {
        split_by_group(
            self.generate(n, seed),
            |s: &Sample| QuestionType::of_row(&s.row),
            train_ratio,
            seed,
        )
    }

    fn render(&self, lat: &Latent, rng: &mut ChaCha8Rng) -> RgbImage {
        let size = self.config.image_size;
        let half = size as f32 / 2.0;
        let mut img = RgbImage::new(size, size);
        let outline = OUTLINES[lat.anatomy % 4];
        let (ox, oy) = (
            rng.random_range(-0.04f32..0.04),
            rng.random_range(-0.04f32..0.04),
        );
        let scale = rng.random_range(0.93f32..1.05);
        let b = rng.random_range(-12.0f32..12.0);
        // Structure coordinates of a pixel centre.
        let to_s = |x: f32, y: f32| {
            (
                ((x - half) / half - ox) / scale,
                ((y - half) / half - oy) / scale,
            )
        };
        let inside = |x: f32, y: f32| {
            let (sx, sy) = to_s(x, y);
            outline.contains(sx, sy)
        };
        // The outer ~9% band of the structure (bone outline, rims).
        let edge = |x: f32, y: f32| {
            let (sx, sy) = to_s(x, y);
            outline.contains(sx, sy) && !outline.contains(sx * 1.1, sy * 1.1)
        };
        let m = lat.modality;
        match m {
            Modality::Ct => {
                draw::fill(&mut img, grey(8.0));
                draw::paint(&mut img, inside, |x, y| {
                    let (sx, sy) = to_s(x, y);
                    if edge(x, y) {
                        grey(225.0 + b)
                    } else if sx * sx + sy * sy < 0.12 {
                        grey(80.0 + b)
                    } else {
                        grey(105.0 + b)
                    }
                });
            }
            Modality::Mri => {
                draw::fill(&mut img, grey(0.0));
                draw::paint(&mut img, inside, |x, y| {
                    let (sx, sy) = to_s(x, y);
                    if edge(x, y) {
                        grey(60.0 + b)
                    } else {
                        let r = (sx * sx + sy * sy).sqrt();
                        grey(125.0 + b + 45.0 * dsin(14.0 * r) * dsin(9.0 * sx + 3.0 * sy))
                    }
                });
            }
            Modality::XRay => {
                draw::fill(&mut img, grey(35.0 + b));
                draw::paint(&mut img, inside, |x, y| {
                    let (sx, sy) = to_s(x, y);
                    if edge(x, y) {
                        grey(130.0 + b)
                    } else if sx.abs() < 0.07 {
                        grey(205.0 + b)
                    } else if dsin(22.0 * sy) > 0.55 {
                        grey(180.0 + b)
                    } else {
                        grey(90.0 + b)
                    }
                });
            }
            Modality::Fundus => {
                draw::fill(&mut img, [5, 3, 2]);
                draw::paint(&mut img, inside, |x, y| {
                    let (sx, sy) = to_s(x, y);
                    if edge(x, y) {
                        [110, 40, 15]
                    } else {
                        shade(
                            mix([230, 115, 45], [150, 50, 20], sx * sx + sy * sy),
                            b as i32,
                        )
                    }
                });
                // Optic disc right of centre, vessels fanning out of it.
                let (dx, dy) = (half + (0.5 * scale + ox) * half, half + (oy - 0.05) * half);
                let vessels: Vec<((f32, f32), (f32, f32))> = (0..4)
                    .map(|k| {
                        let tx = half + rng.random_range(-0.7f32..0.2) * half;
                        let ty = half
                            + (if k % 2 == 0 { -1.0 } else { 1.0 })
                                * rng.random_range(0.3f32..0.75)
                                * half;
                        ((dx, dy), (tx, ty))
                    })
                    .collect();
                let width = (size as f32 * 0.035).max(1.0);
                for (a, c) in vessels {
                    let mut layer = img.clone();
                    draw::line(&mut layer, a, c, width, [140, 30, 20]);
                    draw::paint(&mut img, inside, |x, y| {
                        layer.get_pixel(x as u32, y as u32).0
                    });
                }
                draw::circle(&mut img, dx, dy, 0.13 * half, [250, 220, 130]);
            }
            Modality::Dermoscopy => {
                draw::fill(&mut img, [15, 10, 10]);
                let skin = shade([218, 170, 140], b as i32);
                draw::paint(&mut img, inside, |x, y| {
                    let (sx, sy) = to_s(x, y);
                    if edge(x, y) {
                        shade(skin, -35)
                    } else if dsin(30.0 * (sx + 0.5 * sy)) > 0.93 {
                        shade(skin, -25)
                    } else {
                        skin
                    }
                });
            }
            Modality::Microscopy => {
                draw::fill(&mut img, [240, 215, 230]);
                draw::paint(&mut img, inside, |x, y| {
                    if edge(x, y) {
                        [200, 130, 180]
                    } else {
                        shade([225, 160, 200], b as i32)
                    }
                });
                let r = (0.045 * half).max(1.0);
                for _ in 0..18 {
                    let (x, y) = (
                        rng.random_range(0.0..size as f32),
                        rng.random_range(0.0..size as f32),
                    );
                    if inside(x, y) {
                        draw::circle(&mut img, x, y, r, [110, 60, 160]);
                    }
                }
            }
            Modality::Oct => {
                draw::fill(&mut img, grey(0.0));
                draw::paint(&mut img, inside, |x, y| {
                    let (sx, sy) = to_s(x, y);
                    let t = sy + 0.08 * dsin(3.0 * sx);
                    if edge(x, y) {
                        grey(40.0)
                    } else if t < -0.55 {
                        grey(205.0 + b)
                    } else {
                        grey(90.0 + b + 70.0 * dsin(16.0 * t))
                    }
                });
            }
            Modality::Ultrasound => {
                draw::fill(&mut img, grey(0.0));
                // Sector from an apex just above the top edge, ~37 degrees each side.
                let in_fan = |x: f32, y: f32| {
                    let (nx, ny) = ((x - half) / half, (y - half) / half + 1.05);
                    ny > 0.12 && ny < 2.0 && nx.abs() <= 0.75 * ny
                };
                let (w, h) = img.dimensions();
                for py in 0..h {
                    for px in 0..w {
                        let (x, y) = (px as f32 + 0.5, py as f32 + 0.5);
                        if !in_fan(x, y) {
                            continue;
                        }
                        let base = if edge(x, y) {
                            150.0
                        } else if inside(x, y) {
                            75.0
                        } else {
                            35.0
                        };
                        let v = base + b + rng.random_range(-35.0f32..35.0);
                        img.put_pixel(px, py, image::Rgb(grey(v)));
                    }
                }
            }
        }
        if lat.finding > 0 {
            self.draw_lesion(&mut img, lat, rng);
        }
        let amp = match m {
            Modality::Oct => 14,
            Modality::XRay | Modality::Ct => 6,
            Modality::Ultrasound => 8,
            Modality::Mri => 5,
            Modality::Fundus | Modality::Dermoscopy | Modality::Microscopy => 4,
        };
        draw::noise(&mut img, rng, amp);
        img
    }

    fn draw_lesion(&self, img: &mut RgbImage, lat: &Latent, rng: &mut ChaCha8Rng) {
        let half = self.config.image_size as f32 / 2.0;
        let qx = if lat.quadrant.is_multiple_of(2) {
            -0.4
        } else {
            0.4
        };
        let qy = if lat.quadrant < 2 { -0.4 } else { 0.4 };
        let cx = half + (qx + rng.random_range(-0.05f32..0.05)) * half;
        let cy = half + (qy + rng.random_range(-0.05f32..0.05)) * half;
        let r = GRADE_RADIUS[lat.grade % 4] * rng.random_range(0.92f32..1.08) * half;
        let (solid, rim, centre, dots) = lesion_colors(lat.modality);
        match lat.finding {
            1 => draw::circle(img, cx, cy, r, solid),
            2 => {
                draw::circle(img, cx, cy, r, rim);
                draw::circle(img, cx, cy, r * 0.65, centre);
            }
            _ => {
                let dot = (0.05 * half).max(1.0);
                for _ in 0..7 {
                    // Uniform in the disc of radius r (sqrt for area uniformity).
                    let rho = r * rng.random_range(0.0f32..1.0).sqrt();
                    let (dx, dy) = loop {
                        let (ux, uy) = (
                            rng.random_range(-1.0f32..1.0),
                            rng.random_range(-1.0f32..1.0),
                        );
                        let n2 = ux * ux + uy * uy;
                        if n2 > 1e-4 && n2 <= 1.0 {
                            let n = n2.sqrt();
                            break (ux / n, uy / n);
                        }
                    };
                    draw::circle(img, cx + rho * dx, cy + rho * dy, dot, dots);
                }
            }
        }
    }
}

impl TaskGenerator for MedSynth {
    fn name(&self) -> &'static str {
        "med-synth"
    }

    fn sample(&self, index: u64, seed: u64) -> Sample {
        let cfg = &self.config;
        // Balanced cycling over the configured modality x question type grid.
        let modality = cfg.modalities[(index % cfg.modalities.len() as u64) as usize];
        let qtype = self.question_type(index);
        // The stream is keyed by the cell too, so a CT-only set and an
        // MRI-only set made with the same seed do not share their latents.
        let key = format!("{}/{}/{}", self.name(), modality.label(), qtype.label());
        let mut rng = sample_rng(&key, seed, index);
        let needs_lesion = matches!(
            qtype,
            QuestionType::LesionGrading | QuestionType::BiologicalAttributes
        );
        let lat = Latent {
            modality,
            anatomy: rng.random_range(0..4),
            finding: if needs_lesion {
                rng.random_range(1..4)
            } else {
                rng.random_range(0..4)
            },
            grade: rng.random_range(0..4),
            quadrant: rng.random_range(0..4),
        };
        let image = self.render(&lat, &mut rng);

        let (all_options, correct): (Vec<String>, usize) = match qtype {
            QuestionType::ModalityRecognition => {
                let others: Vec<Modality> = Modality::ALL
                    .into_iter()
                    .filter(|&m| m != modality)
                    .collect();
                let mut opts = vec![modality.label().to_string()];
                opts.extend(
                    others
                        .choose_multiple(&mut rng, 3)
                        .map(|m| m.label().to_string()),
                );
                (opts, 0)
            }
            QuestionType::AnatomyIdentification => (
                anatomy_names(modality).map(String::from).to_vec(),
                lat.anatomy,
            ),
            QuestionType::DiseaseDiagnosis => (
                finding_names(modality).map(String::from).to_vec(),
                lat.finding,
            ),
            QuestionType::LesionGrading => (GRADES.map(String::from).to_vec(), lat.grade),
            QuestionType::BiologicalAttributes => {
                (LOCATIONS.map(String::from).to_vec(), lat.quadrant)
            }
        };
        let answer_text = all_options.get(correct).cloned().unwrap_or_default();
        let (options, letter) = if cfg.shuffle_options {
            shuffle_options(&mut rng, all_options, correct)
        } else {
            fixed_order(qtype, all_options, correct)
        };
        let templates = question_templates(qtype);
        let question = templates.choose(&mut rng).copied().unwrap_or(templates[0]);

        let id = sample_id(self.name(), seed, index);
        let mut meta = Map::new();
        meta.insert("modality".into(), modality.label().into());
        meta.insert("question_type".into(), qtype.label().into());
        meta.insert(
            "anatomy".into(),
            anatomy_names(modality)[lat.anatomy].into(),
        );
        meta.insert(
            "finding".into(),
            finding_names(modality)[lat.finding].into(),
        );
        let has_lesion = lat.finding > 0;
        meta.insert(
            "grade".into(),
            if has_lesion {
                json!(lat.grade + 1)
            } else {
                Value::Null
            },
        );
        meta.insert(
            "location".into(),
            if has_lesion {
                json!(LOCATIONS[lat.quadrant])
            } else {
                Value::Null
            },
        );
        meta.insert("answer_text".into(), answer_text.into());
        meta.insert("rationale".into(), rationale(&lat, qtype).into());
        let row = Row {
            id: id.clone(),
            source: self.name().into(),
            problem: Some(format_multiple_choice(question, &options)),
            images: image_paths(&id, 1),
            answer: Some(letter),
            options,
            verifier: Some(MULTIPLE_CHOICE_VERIFIER.into()),
            meta,
            ..Row::default()
        };
        Sample {
            row,
            images: vec![image],
        }
    }
}
