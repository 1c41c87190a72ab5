//! Per-data-source reward metrics.

use crate::types::Reward;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    n: u64,
    reward: f64,
    acc_n: u64,
    acc: f64,
    fmt_n: u64,
    fmt_ok: u64,
}

/// Summary of one source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SourceSummary {
    pub count: u64,
    pub mean_reward: f64,
    /// Mean of the `accuracy` part, when rewards carry one.
    pub accuracy: Option<f64>,
    /// Fraction of rewards whose `format` part is 1, when they carry one.
    pub format_rate: Option<f64>,
}

/// Accumulates rewards per data source (V-Triune logs metrics per
/// `data_source`). Reads the `accuracy` and `format` parts that the
/// verifiers and named combination terms produce.
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    by_source: BTreeMap<String, Acc>,
}

impl SourceMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, source: &str, reward: &Reward) {
        let a = self.by_source.entry(source.to_string()).or_default();
        a.n += 1;
        a.reward += f64::from(reward.value);
        if let Some(v) = reward.part("accuracy") {
            a.acc_n += 1;
            a.acc += f64::from(v);
        }
        if let Some(v) = reward.part("format") {
            a.fmt_n += 1;
            a.fmt_ok += u64::from(v >= 1.0);
        }
    }

    pub fn summary(&self) -> BTreeMap<String, SourceSummary> {
        self.by_source
            .iter()
            .map(|(k, a)| {
                let ratio = |num: f64, den: u64| (den > 0).then(|| num / den as f64);
                let s = SourceSummary {
                    count: a.n,
                    mean_reward: ratio(a.reward, a.n).unwrap_or(0.0),
                    accuracy: ratio(a.acc, a.acc_n),
                    format_rate: ratio(a.fmt_ok as f64, a.fmt_n),
                };
                (k.clone(), s)
            })
            .collect()
    }

    /// Flat `source/metric → value` map for metrics logs.
    pub fn flat(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, s) in self.summary() {
            out.insert(format!("{k}/count"), s.count as f64);
            out.insert(format!("{k}/mean_reward"), s.mean_reward);
            if let Some(a) = s.accuracy {
                out.insert(format!("{k}/accuracy"), a);
            }
            if let Some(f) = s.format_rate {
                out.insert(format!("{k}/format_rate"), f);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source() {
        let mut m = SourceMetrics::new();
        let r = |v: f64, fmt: f64, acc: f64| {
            Reward::new(v)
                .with_part("format", fmt)
                .with_part("accuracy", acc)
        };
        m.record("ct", &r(1.0, 1.0, 1.0));
        m.record("ct", &r(0.5, 1.0, 0.0));
        m.record("mri", &Reward::new(0.25));
        let s = m.summary();
        assert_eq!(
            s["ct"],
            SourceSummary {
                count: 2,
                mean_reward: 0.75,
                accuracy: Some(0.5),
                format_rate: Some(1.0)
            }
        );
        assert_eq!(
            s["mri"],
            SourceSummary {
                count: 1,
                mean_reward: 0.25,
                accuracy: None,
                format_rate: None
            }
        );
        assert_eq!(m.flat()["ct/accuracy"], 0.5);
    }
}
