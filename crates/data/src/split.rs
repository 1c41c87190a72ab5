//! Deterministic grouped train/test splits (Med-R1's cross-modality and
//! cross-task protocol).
//!
//! Med-R1 (`scripts/data_process_split.py`, `split_data_by_group`) groups the
//! rows by modality (or question type), shuffles each group and keeps the
//! first `floor(len * 0.8)` for training, the rest for testing; a model is
//! trained on one group's train part and tested on every group's test part.
//! Here each group is shuffled by its own ChaCha8 stream seeded from the seed
//! and the group's name, so adding or removing one group never changes the
//! others, and the same seed gives the same split on every machine.

use std::collections::BTreeMap;
use std::fmt::Display;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::DataError;
use crate::medical::{Modality, QuestionType};
use crate::row::Row;

/// A train part and a test part.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTest<T> {
    pub train: Vec<T>,
    pub test: Vec<T>,
}

impl<T> Default for TrainTest<T> {
    fn default() -> Self {
        Self {
            train: Vec::new(),
            test: Vec::new(),
        }
    }
}

/// Items split per group, plus those that belong to no group (kept, not
/// dropped, so callers can report them).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSplit<K: Ord, T> {
    pub groups: BTreeMap<K, TrainTest<T>>,
    pub ungrouped: Vec<T>,
}

impl<K: Ord, T> GroupSplit<K, T> {
    /// The test parts of every group, concatenated in group order (the
    /// "test on all" side of the protocol).
    pub fn all_test(&self) -> Vec<&T> {
        self.groups.values().flat_map(|g| g.test.iter()).collect()
    }
}

/// 64-bit FNV-1a: a hash that is the same in every Rust version (std's
/// `DefaultHasher` is not guaranteed to be).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Group `items` by `key`, shuffle each group deterministically and cut it at
/// `floor(len * train_ratio)`. Items whose key is `None` go to `ungrouped`.
pub fn split_by_group<T, K, F>(
    items: impl IntoIterator<Item = T>,
    key: F,
    train_ratio: f64,
    seed: u64,
) -> Result<GroupSplit<K, T>, DataError>
where
    K: Ord + Display,
    F: Fn(&T) -> Option<K>,
{
    if !(0.0..=1.0).contains(&train_ratio) {
        return Err(DataError::Config(format!(
            "train_ratio must be in [0, 1], got {train_ratio}"
        )));
    }
    let mut grouped: BTreeMap<K, Vec<T>> = BTreeMap::new();
    let mut ungrouped = Vec::new();
    for item in items {
        match key(&item) {
            Some(k) => grouped.entry(k).or_default().push(item),
            None => ungrouped.push(item),
        }
    }
    let groups = grouped
        .into_iter()
        .map(|(k, mut items)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(k.to_string().as_bytes()));
            items.shuffle(&mut rng);
            // floor, as Med-R1's int(len * ratio); the float product of a
            // usize and a ratio in [0, 1] is within [0, len].
            let cut = ((items.len() as f64) * train_ratio).floor() as usize;
            let test = items.split_off(cut.min(items.len()));
            (k, TrainTest { train: items, test })
        })
        .collect();
    Ok(GroupSplit { groups, ungrouped })
}

/// Med-R1's cross-modality split of rows labelled with `meta.modality`.
pub fn split_rows_by_modality(
    rows: impl IntoIterator<Item = Row>,
    train_ratio: f64,
    seed: u64,
) -> Result<GroupSplit<Modality, Row>, DataError> {
    split_by_group(rows, Modality::of_row, train_ratio, seed)
}

/// Med-R1's cross-task split of rows labelled with `meta.question_type`.
pub fn split_rows_by_question_type(
    rows: impl IntoIterator<Item = Row>,
    train_ratio: f64,
    seed: u64,
) -> Result<GroupSplit<QuestionType, Row>, DataError> {
    split_by_group(rows, QuestionType::of_row, train_ratio, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_and_complete() {
        let items: Vec<u32> = (0..103).collect();
        let key = |x: &u32| (x % 10 != 9).then_some(x % 3);
        let a = split_by_group(items.clone(), key, 0.8, 7).unwrap();
        let b = split_by_group(items.clone(), key, 0.8, 7).unwrap();
        let c = split_by_group(items.clone(), key, 0.8, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut all: Vec<u32> = a.ungrouped.clone();
        for (k, g) in &a.groups {
            let n = g.train.len() + g.test.len();
            assert_eq!(g.train.len(), (n as f64 * 0.8).floor() as usize);
            assert!(g.train.iter().chain(&g.test).all(|x| x % 3 == *k));
            all.extend(g.train.iter().chain(&g.test));
        }
        all.sort();
        assert_eq!(all, items, "every item lands exactly once");
        assert_eq!(a.ungrouped.len(), 10);
    }

    #[test]
    fn groups_are_independent_of_each_other() {
        let with_two: Vec<(u8, u32)> = (0..50)
            .map(|i| (0, i))
            .chain((0..50).map(|i| (1, i)))
            .collect();
        let only_first: Vec<(u8, u32)> = (0..50).map(|i| (0, i)).collect();
        let a = split_by_group(with_two, |x| Some(x.0), 0.5, 1).unwrap();
        let b = split_by_group(only_first, |x| Some(x.0), 0.5, 1).unwrap();
        assert_eq!(a.groups[&0], b.groups[&0]);
    }

    #[test]
    fn bad_ratio_is_an_error() {
        assert!(split_by_group(vec![1u8], |_| Some(0u8), 1.5, 0).is_err());
    }
}
