//! Helpers shared by the recipe integration tests.

use std::path::Path;

use recipes::base_model::BaseFlags;

/// The `*-base` flags of a 24-step run validated at steps 0, 12 and 24.
pub fn short_base_run(flags: &mut BaseFlags, eval_size: usize) {
    flags.steps = 24;
    flags.batch_size = 4;
    flags.eval_every = 12;
    flags.eval_size = eval_size;
}

/// Checks what every `*-base` command writes after [`short_base_run`]: its
/// report (validations before training, at step 12 and at the end; a loss
/// that falls) and a complete checkpoint that loads and keeps `start`'s
/// tokenizer, config and chat template byte for byte. Returns the report.
pub fn check_base_output(out: &Path, report_file: &str, start: &Path) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(report_file)).unwrap()).unwrap();
    assert_eq!(report["steps"], 24);
    let steps: Vec<u64> = report["evals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [0, 12, 24]);
    let losses: Vec<f64> = report["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[1].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 2);
    assert!(
        losses[1] < 0.8 * losses[0],
        "SFT lowers the loss: {losses:?}"
    );
    let ckpt = recipes::single_turn::Checkpoint::open(out).unwrap();
    ckpt.load().unwrap();
    for f in ["tokenizer.json", "config.json", "chat_template.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(start.join(f)).unwrap(),
            "{f}"
        );
    }
    report
}
