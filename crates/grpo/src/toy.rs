//! A tiny policy and task for tests, benchmarks and examples.
//!
//! The task: the prompt is one token `k < n_symbols`; the target completion is
//! `1 + k mod 3` symbols `(k + j) mod n_symbols`, then EOS. The reward is the
//! fraction of positions that match the target (divided by the longer of
//! the two lengths), so a uniformly random policy scores ≈ 0.1–0.2 and the
//! optimum is 1.
//!
//! The policy is a next-token MLP over (prompt token, position, previous
//! token) embeddings: small enough to train in seconds on a CPU, yet a real
//! burn module with batched teacher-forced log-probs, entropies and
//! host-side sampling.

use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Int, Tensor, TensorData};

use crate::config::SamplingConfig;
use crate::error::{GrpoError, Result};
use crate::policy::{
    logprobs_from_logits, Completion, Policy, Prompt, SequenceBatch, TokenLogProbs,
};
use crate::rng::TrainRng;
use crate::trainer::{RewardFn, RewardOutput};

/// Shape of the toy policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToyConfig {
    /// Symbols (EOS is the extra token `n_symbols`).
    pub n_symbols: usize,
    /// Longest completion (positions embedded).
    pub max_len: usize,
    /// Embedding width.
    pub d_model: usize,
    /// Hidden width.
    pub hidden: usize,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            n_symbols: 6,
            max_len: 6,
            d_model: 32,
            hidden: 64,
        }
    }
}

impl ToyConfig {
    /// Vocabulary size (symbols + EOS).
    pub fn vocab(&self) -> usize {
        self.n_symbols + 1
    }

    /// The EOS token id.
    pub fn eos(&self) -> u32 {
        self.n_symbols as u32
    }

    /// Builds the module on `device` with weights drawn from `seed` by the
    /// crate's own generator (not the backend's global RNG, which parallel
    /// tests would race on): uniform in ±√(3 / fan_in), i.e. unit variance
    /// for embeddings and LeCun-uniform for linear layers.
    pub fn init<B: Backend>(&self, device: &B::Device, seed: u64) -> ToyPolicy<B> {
        let model = ToyPolicy {
            prompt_emb: EmbeddingConfig::new(self.vocab(), self.d_model).init(device),
            pos_emb: EmbeddingConfig::new(self.max_len, self.d_model).init(device),
            // one extra id for the begin-of-completion marker
            tok_emb: EmbeddingConfig::new(self.vocab() + 1, self.d_model).init(device),
            hidden: LinearConfig::new(self.d_model, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, self.vocab()).init(device),
        };
        model.map(&mut SeededInit {
            rng: TrainRng::seed_from_u64(seed),
        })
    }
}

struct SeededInit {
    rng: TrainRng,
}

impl<B: Backend> ModuleMapper<B> for SeededInit {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let dims = tensor.dims();
        let fan_in = if D >= 2 { dims[0] } else { dims[0].max(1) * 16 };
        let bound = (3.0 / fan_in.max(1) as f64).sqrt();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| ((self.rng.next_f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let device = tensor.device();
        let require_grad = tensor.is_require_grad();
        let new = Tensor::<B, D>::from_data(TensorData::new(values, shape), &device)
            .set_require_grad(require_grad);
        Param::from_mapped_value(id, new, mapper)
    }
}

/// The toy next-token model.
#[derive(Module, Debug)]
pub struct ToyPolicy<B: Backend> {
    prompt_emb: Embedding<B>,
    pos_emb: Embedding<B>,
    tok_emb: Embedding<B>,
    hidden: Linear<B>,
    /// Output projection (public so tests can wrap it in LoRA).
    pub out: Linear<B>,
}

impl<B: Backend> ToyPolicy<B> {
    fn vocab(&self) -> usize {
        self.out.weight.dims()[1]
    }

    /// Next-token logits `[n, C, V]` for every completion position, given
    /// the last prompt token `[n, 1]` and the completion `[n, C]`.
    pub fn logits(
        &self,
        last_prompt: Tensor<B, 2, Int>,
        completion: Tensor<B, 2, Int>,
        temperature: f64,
    ) -> Result<Tensor<B, 3>> {
        let [n, c] = completion.dims();
        let max_len = self.pos_emb.weight.dims()[0];
        if c > max_len {
            return Err(GrpoError::Shape {
                context: "ToyPolicy::logits",
                reason: format!("completion width {c} > max_len {max_len}"),
            });
        }
        let device = completion.device();
        let bos = Tensor::<B, 2, Int>::full([n, 1], self.vocab() as i64, &device);
        let prev = if c > 1 {
            Tensor::cat(vec![bos, completion.slice([0..n, 0..c - 1])], 1)
        } else {
            bos
        };
        let pos = Tensor::<B, 1, Int>::arange(0..c as i64, &device).reshape([1, c]);
        let x = self.prompt_emb.forward(last_prompt)
            + self.pos_emb.forward(pos)
            + self.tok_emb.forward(prev);
        let h = relu(self.hidden.forward(x));
        Ok(self.out.forward(h).div_scalar(temperature))
    }
}

fn last_prompt_tokens<B: Backend>(prompt_ids: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    let [n, p] = prompt_ids.dims();
    prompt_ids.slice([0..n, p.saturating_sub(1)..p])
}

fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| GrpoError::Data(format!("{e:?}")))
}

impl<B: AutodiffBackend> Policy<B> for ToyPolicy<B> {
    type Extra = ();

    fn sample(
        &self,
        prompts: &[Prompt<()>],
        group_size: usize,
        sampling: &SamplingConfig,
        rng: &mut TrainRng,
    ) -> Result<Vec<Vec<Completion>>> {
        let model = self.valid();
        let device = model.out.weight.device();
        let eos = (model.vocab() - 1) as u32;
        let n = prompts.len() * group_size;
        let max_new = sampling.max_new_tokens.min(model.pos_emb.weight.dims()[0]);
        let last: Vec<i64> = prompts
            .iter()
            .flat_map(|p| {
                let t = p.ids.last().copied().unwrap_or(0) as i64;
                std::iter::repeat_n(t, group_size)
            })
            .collect();
        let last =
            Tensor::<B::InnerBackend, 2, Int>::from_data(TensorData::new(last, [n, 1]), &device);
        let mut seqs: Vec<Completion> = (0..n)
            .map(|_| Completion {
                ids: Vec::new(),
                logprobs: Vec::new(),
                truncated: false,
            })
            .collect();
        let mut done = vec![false; n];
        let vocab = model.vocab();
        for t in 0..max_new {
            if done.iter().all(|d| *d) {
                break;
            }
            // Teacher-forced pass over the prefix plus one placeholder slot.
            let mut ids = vec![0i64; n * (t + 1)];
            for (i, s) in seqs.iter().enumerate() {
                for (j, &tok) in s.ids.iter().enumerate() {
                    ids[i * (t + 1) + j] = tok as i64;
                }
            }
            let comp = Tensor::<B::InnerBackend, 2, Int>::from_data(
                TensorData::new(ids, [n, t + 1]),
                &device,
            );
            let logits = model.logits(last.clone(), comp, sampling.temperature)?;
            let step = logits.slice([0..n, t..t + 1, 0..vocab]).reshape([n, vocab]);
            let logp = host_f32(log_softmax(step, 1))?;
            for i in 0..n {
                if done[i] {
                    continue;
                }
                let row = &logp[i * vocab..(i + 1) * vocab];
                let weights = nucleus_weights(row, sampling.top_p);
                let tok = rng.categorical(&weights);
                let s = &mut seqs[i];
                s.ids.push(tok as u32);
                s.logprobs
                    .push(row.get(tok).copied().unwrap_or(f32::NEG_INFINITY));
                if tok as u32 == eos {
                    done[i] = true;
                }
            }
        }
        for (s, d) in seqs.iter_mut().zip(&done) {
            s.truncated = !d;
        }
        let mut out = Vec::with_capacity(prompts.len());
        let mut it = seqs.into_iter();
        for _ in prompts {
            out.push(it.by_ref().take(group_size).collect());
        }
        Ok(out)
    }

    fn token_logprobs(
        &self,
        batch: &SequenceBatch<B, ()>,
        sampling: &SamplingConfig,
        with_entropy: bool,
    ) -> Result<TokenLogProbs<B>> {
        let logits = self.logits(
            last_prompt_tokens(batch.prompt_ids.clone()),
            batch.completion_ids.clone(),
            sampling.temperature,
        )?;
        let (logp, entropy) =
            logprobs_from_logits(logits, batch.completion_ids.clone(), with_entropy);
        Ok(TokenLogProbs { logp, entropy })
    }

    fn token_logprobs_no_grad(
        &self,
        batch: &SequenceBatch<B, ()>,
        sampling: &SamplingConfig,
    ) -> Result<Tensor<B, 2>> {
        let model = self.valid();
        let ids = batch.completion_ids.clone().inner();
        let logits = model.logits(
            last_prompt_tokens(batch.prompt_ids.clone().inner()),
            ids.clone(),
            sampling.temperature,
        )?;
        Ok(Tensor::from_inner(
            logprobs_from_logits(logits, ids, false).0,
        ))
    }
}

/// Sampling weights from log-probs with nucleus (top-p) truncation
/// (Holtzman et al., arXiv:1904.09751).
pub fn nucleus_weights(logp: &[f32], top_p: f64) -> Vec<f64> {
    let probs: Vec<f64> = logp.iter().map(|&l| (l as f64).exp()).collect();
    if top_p >= 1.0 {
        return probs;
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut keep = vec![0.0; probs.len()];
    let mut mass = 0.0;
    for i in order {
        keep[i] = probs[i];
        mass += probs[i];
        if mass >= top_p {
            break;
        }
    }
    keep
}

/// The toy task: prompts and the target of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternTask {
    /// Symbols (as in [`ToyConfig::n_symbols`]).
    pub n_symbols: usize,
}

impl PatternTask {
    /// Target completion (symbols then EOS) for prompt token `k`.
    pub fn target(&self, k: u32) -> Vec<u32> {
        let n = self.n_symbols.max(1) as u32;
        let len = 1 + k % 3;
        let mut t: Vec<u32> = (0..len).map(|j| (k + j) % n).collect();
        t.push(n);
        t
    }

    /// One prompt per symbol, tagged with two data sources (even / odd).
    pub fn prompts(&self) -> Vec<Prompt<()>> {
        (0..self.n_symbols as u32)
            .map(|k| Prompt {
                ids: vec![k],
                extra: (),
                source: if k % 2 == 0 { "even" } else { "odd" }.to_string(),
                target: String::new(),
            })
            .collect()
    }

    /// Reward: matching positions over the longer length.
    pub fn reward(&self, prompt: &[u32], completion: &[u32]) -> RewardOutput {
        let target = self.target(prompt.last().copied().unwrap_or(0));
        let matches = target
            .iter()
            .zip(completion)
            .filter(|(a, b)| a == b)
            .count();
        let denom = target.len().max(completion.len()).max(1);
        RewardOutput {
            reward: matches as f64 / denom as f64,
            accuracy: Some(if target == completion { 1.0 } else { 0.0 }),
        }
    }
}

impl RewardFn<()> for PatternTask {
    fn score(&mut self, prompt: &Prompt<()>, completion: &Completion) -> Result<RewardOutput> {
        Ok(self.reward(&prompt.ids, &completion.ids))
    }
}
