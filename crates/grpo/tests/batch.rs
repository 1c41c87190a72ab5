//! `SequenceBatch::from_rows`: the one padded-batch builder behind rollout
//! mini-batches and SFT keeps TRL's layout on arbitrary rows.

mod common;

use burn::tensor::Tensor;
use common::B;
use proptest::prelude::*;
use vlrl_grpo::policy::SequenceBatch;

fn host<const D: usize, K>(t: Tensor<B, D, K>) -> Vec<f64>
where
    K: burn::tensor::TensorKind<B> + burn::tensor::BasicOps<B>,
{
    t.into_data().convert::<f64>().into_vec().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn prompts_are_left_padded_and_completions_right_padded(
        rows in prop::collection::vec(
            (prop::collection::vec(1u32..500, 0..7), prop::collection::vec(1u32..500, 0..7)),
            1..6,
        ),
    ) {
        let device = Default::default();
        let batch = SequenceBatch::<B, usize>::from_rows(
            rows.iter().enumerate().map(|(i, (p, c))| (p.as_slice(), c.as_slice(), i)),
            &device,
        );
        let width = |f: fn(&(Vec<u32>, Vec<u32>)) -> usize| rows.iter().map(f).max().unwrap().max(1);
        let (p, c) = (width(|r| r.0.len()), width(|r| r.1.len()));
        prop_assert_eq!(batch.prompt_ids.dims(), [rows.len(), p]);
        prop_assert_eq!(batch.completion_mask.dims(), [rows.len(), c]);
        prop_assert_eq!(&batch.extras, &(0..rows.len()).collect::<Vec<_>>());
        let (pids, pmask) = (host(batch.prompt_ids), host(batch.prompt_mask));
        let (cids, cmask) = (host(batch.completion_ids), host(batch.completion_mask));
        for (i, (prompt, completion)) in rows.iter().enumerate() {
            prop_assert_eq!(batch.prompt_lens[i], prompt.len());
            prop_assert_eq!(batch.completion_lens[i], completion.len());
            let pad = p - prompt.len();
            for j in 0..p {
                let want = if j < pad { 0.0 } else { f64::from(prompt[j - pad]) };
                prop_assert_eq!(pids[i * p + j], want);
                prop_assert_eq!(pmask[i * p + j], if j < pad { 0.0 } else { 1.0 });
            }
            for j in 0..c {
                let want = completion.get(j).map_or(0.0, |&t| f64::from(t));
                prop_assert_eq!(cids[i * c + j], want);
                prop_assert_eq!(cmask[i * c + j], if j < completion.len() { 1.0 } else { 0.0 });
            }
        }
    }
}
