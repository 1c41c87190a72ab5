//! Write a contact sheet of `med-synth` samples (rows = modalities, columns =
//! consecutive samples) plus one `zoom-search` and `visual-math` image, to
//! eyeball the generators:
//!
//! `cargo run -p vlrl-data --example contact_sheet -- /tmp/sheet`

use image::RgbImage;
use vlrl_data::{
    MedSynth, MedSynthConfig, TaskGenerator, VisualMath, VisualMathConfig, ZoomSearch,
    ZoomSearchConfig,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "contact_sheet".into());
    std::fs::create_dir_all(&out)?;
    let cols = 10u32;
    let size = 56u32;
    let gen = MedSynth::new(MedSynthConfig::default())?;
    // Sample i has modality i % 8, so sample r + 8c is row r, column c.
    let samples = gen.generate((8 * cols) as usize, 0);
    let mut sheet = RgbImage::new(cols * (size + 2), 8 * (size + 2));
    for (i, s) in samples.iter().enumerate() {
        let (r, c) = (i as u32 % 8, i as u32 / 8);
        image::imageops::replace(
            &mut sheet,
            &s.images[0],
            i64::from(c * (size + 2)),
            i64::from(r * (size + 2)),
        );
        println!(
            "r{r} c{c} {} | {} | {}",
            s.row.meta_str("anatomy").unwrap_or(""),
            s.row.meta_str("finding").unwrap_or(""),
            s.row
                .meta
                .get("grade")
                .map(|g| g.to_string())
                .unwrap_or_default()
        );
    }
    // One modality per extra sheet: disease-diagnosis samples, 10 per row.
    for m in vlrl_data::Modality::ALL {
        let g = MedSynth::new(MedSynthConfig {
            modalities: vec![m],
            question_types: vec![vlrl_data::QuestionType::DiseaseDiagnosis],
            ..MedSynthConfig::default()
        })?;
        let mut sheet = RgbImage::new(10 * (size + 2), 2 * (size + 2));
        for (i, s) in g.generate(20, 0).iter().enumerate() {
            let (r, c) = (i as u32 / 10, i as u32 % 10);
            image::imageops::replace(
                &mut sheet,
                &s.images[0],
                i64::from(c * (size + 2)),
                i64::from(r * (size + 2)),
            );
        }
        let big = image::imageops::resize(
            &sheet,
            sheet.width() * 3,
            sheet.height() * 3,
            image::imageops::FilterType::Nearest,
        );
        big.save(format!("{out}/dd_{}.png", m.abbrev()))?;
    }
    let big = image::imageops::resize(
        &sheet,
        sheet.width() * 3,
        sheet.height() * 3,
        image::imageops::FilterType::Nearest,
    );
    big.save(format!("{out}/med_synth.png"))?;
    let zoom = ZoomSearch::new(ZoomSearchConfig::default())?.sample(0, 0);
    zoom.images[0].save(format!("{out}/zoom_search.png"))?;
    println!("zoom: {}", zoom.row.problem.unwrap_or_default());
    for i in 0..3 {
        let vm = VisualMath::new(VisualMathConfig::default())?.sample(i, 0);
        vm.images[0].save(format!("{out}/visual_math_{i}.png"))?;
        println!(
            "visual-math {i}: {} -> {}",
            vm.row.problem.unwrap_or_default(),
            vm.row.answer.unwrap_or_default()
        );
    }
    Ok(())
}
