//! DAPO reward shaping and group filtering (Yu et al., "DAPO: An Open-Source
//! LLM Reinforcement Learning System at Scale", arXiv:2503.14476).

use crate::advantage::unbiased_std;
use crate::config::OverlongConfig;

/// Soft overlong punishment (DAPO eq. 13, verl `DAPORewardManager`):
/// with `L_max = max_new_tokens`, `L_cache = buffer` and
/// `exceed = len − (L_max − L_cache)`, the penalty is
/// `min(−exceed / L_cache · factor, 0)`: 0 up to `L_max − L_cache` tokens,
/// falling linearly to `−factor` at `L_max`.
pub fn overlong_penalty(len: usize, max_new_tokens: usize, cfg: &OverlongConfig) -> f64 {
    if !cfg.enabled || cfg.buffer == 0 {
        return 0.0;
    }
    let expected = max_new_tokens as f64 - cfg.buffer as f64;
    let exceed = len as f64 - expected;
    (-exceed / cfg.buffer as f64 * cfg.penalty_factor).min(0.0)
}

/// Whether a group carries a learning signal: DAPO's dynamic sampling keeps
/// groups whose rewards are not all equal (verl keeps `std > 0` or a group
/// of one).
pub fn group_has_signal(rewards: &[f64]) -> bool {
    rewards.len() == 1 || unbiased_std(rewards) > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_penalty_is_zero_then_linear() {
        let cfg = OverlongConfig {
            enabled: true,
            buffer: 4,
            penalty_factor: 1.0,
        };
        assert_eq!(overlong_penalty(6, 10, &cfg), 0.0);
        assert_eq!(overlong_penalty(8, 10, &cfg), -0.5);
        assert_eq!(overlong_penalty(10, 10, &cfg), -1.0);
        assert!(!group_has_signal(&[1.0, 1.0]));
        assert!(group_has_signal(&[1.0, 0.0]));
        assert!(group_has_signal(&[0.3]));
    }
}
