//! Learning-rate schedules with linear warmup, as in Hugging Face
//! `transformers.get_{constant,linear,cosine}_schedule_with_warmup` (which TRL
//! uses). The schedule is a pure function of the optimizer step, so resuming
//! only needs the step count.

use crate::config::{OptimConfig, ScheduleKind};

/// Learning rate at optimizer step `step` (0-based: the rate used by the
/// `step`-th update).
pub fn learning_rate(cfg: &OptimConfig, step: u64) -> f64 {
    let step = step as f64;
    let warmup = cfg.warmup_steps as f64;
    if step < warmup {
        return cfg.lr * step / warmup.max(1.0);
    }
    let total = cfg.total_steps as f64;
    let span = (total - warmup).max(1.0);
    let progress = ((step - warmup) / span).clamp(0.0, 1.0);
    match cfg.schedule {
        ScheduleKind::Constant => cfg.lr,
        ScheduleKind::Linear => cfg.lr * (1.0 - progress),
        ScheduleKind::Cosine => {
            let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let mut c = OptimConfig {
            lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            schedule: ScheduleKind::Linear,
            ..Default::default()
        };
        assert_eq!(learning_rate(&c, 0), 0.0);
        assert_eq!(learning_rate(&c, 5), 0.5);
        assert_eq!(learning_rate(&c, 10), 1.0);
        assert!((learning_rate(&c, 60) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(&c, 500), 0.0);
        c.schedule = ScheduleKind::Cosine;
        c.min_lr_ratio = 0.1;
        assert!((learning_rate(&c, 60) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&c, 110) - 0.1).abs() < 1e-12);
        c.schedule = ScheduleKind::Constant;
        assert_eq!(learning_rate(&c, 1000), 1.0);
    }
}
