//! The Qwen2 decoder (Qwen2 technical report; HF `modeling_qwen2.py`):
//! RMSNorm, grouped-query attention with biases on q/k/v, (M-)RoPE, SwiGLU,
//! tied or untied LM head. Weight names are the checkpoint's own
//! (`model.layers.0.self_attn.q_proj.weight`, ...).

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

use crate::config::Qwen2Config;
use crate::error::Result;
use crate::rope::{apply_rotary, RotaryEmbedding};
use crate::weights::{TensorStore, WeightLoader};

/// Tensors of a VL checkpoint that belong to the vision tower.
pub fn is_vision_tensor(name: &str) -> bool {
    name.starts_with("visual.") || name.starts_with("model.visual.")
}

/// Keys and values of one layer for the tokens seen so far.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// `[batch, kv_heads, seen, head_dim]`
    pub key: Tensor<B, 4>,
    pub value: Tensor<B, 4>,
}

/// The KV cache of a whole decoder, one entry per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Tokens already cached (0 for an empty cache).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.key.dims()[2])
    }

    /// Keeps only the batch rows in `rows` (used when finished sequences
    /// leave a batch).
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for layer in self.layers.iter_mut().flatten() {
            layer.key = layer.key.clone().select(0, rows.clone());
            layer.value = layer.value.clone().select(0, rows.clone());
        }
    }
}

/// Which key positions each query may see: `true` = masked. `None` means
/// plain causal attention over an unpadded batch without cache.
#[derive(Debug, Clone)]
pub struct AttentionMask<B: Backend> {
    /// `[batch, 1, q_len, k_len]`
    pub mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> AttentionMask<B> {
    /// Causal mask for `q_len` new tokens after `past` cached ones, with an
    /// optional per-row padding mask over all `past + q_len` positions
    /// (1 = real token). A padded query row still sees its own slot, so no
    /// softmax row is empty (HF does the same), keeping every value finite.
    pub fn causal(
        batch: usize,
        q_len: usize,
        past: usize,
        padding: Option<&[Vec<u8>]>,
        device: &B::Device,
    ) -> Self {
        if padding.is_none() && past == 0 {
            return Self { mask: None };
        }
        let k_len = past + q_len;
        let mut data = Vec::with_capacity(batch * q_len * k_len);
        for b in 0..batch {
            let row = padding.and_then(|p| p.get(b));
            for q in 0..q_len {
                let q_pos = past + q;
                for k in 0..k_len {
                    let future = k > q_pos;
                    let pad = row.is_some_and(|r| r.get(k).copied().unwrap_or(1) == 0);
                    data.push(future || (pad && k != q_pos));
                }
            }
        }
        Self {
            mask: Some(Tensor::from_data(
                TensorData::new(data, [batch, 1, q_len, k_len]),
                device,
            )),
        }
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    num_kv_heads: usize,
    #[module(skip)]
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    fn load(w: &WeightLoader<B>, prefix: &str, c: &Qwen2Config) -> Self {
        let hd = c.head_dim();
        let (h, nh, nkv) = (c.hidden_size, c.num_attention_heads, c.num_key_value_heads);
        Self {
            q_proj: w.linear(&format!("{prefix}.q_proj"), h, nh * hd, true),
            k_proj: w.linear(&format!("{prefix}.k_proj"), h, nkv * hd, true),
            v_proj: w.linear(&format!("{prefix}.v_proj"), h, nkv * hd, true),
            o_proj: w.linear(&format!("{prefix}.o_proj"), nh * hd, h, false),
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        }
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &AttentionMask<B>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);
        let q = apply_rotary(heads(self.q_proj.forward(x.clone()), nh), cos, sin);
        let mut k = apply_rotary(heads(self.k_proj.forward(x.clone()), nkv), cos, sin);
        let mut v = heads(self.v_proj.forward(x), nkv);
        if let Some(slot) = cache {
            if let Some(past) = slot.take() {
                k = Tensor::cat(vec![past.key, k], 2);
                v = Tensor::cat(vec![past.value, v], 2);
            }
            *slot = Some(LayerCache {
                key: k.clone(),
                value: v.clone(),
            });
        }
        let n_rep = nh / nkv;
        let k_len = k.dims()[2];
        let out = match &mask.mask {
            _ if n_rep > 1 => grouped_query_attention(q, k, v, mask.mask.as_ref(), n_rep),
            Some(m) => attention(
                q,
                k,
                v,
                Some(m.clone().expand([b, nh, s, k_len])),
                None,
                AttentionModuleOptions::default(),
            ),
            None if s == 1 => scaled_attention(q, k, v, None),
            None => attention(
                q,
                k,
                v,
                None,
                None,
                AttentionModuleOptions {
                    is_causal: true,
                    ..Default::default()
                },
            ),
        };
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, s, nh * hd]))
    }
}

/// Plain softmax(QKᵀ/√d)V, used for single-token decode where no mask is needed.
fn scaled_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
) -> Tensor<B, 4> {
    let d = q.dims()[3] as f64;
    let scores = q.matmul(k.swap_dims(2, 3)) / d.sqrt();
    let scores = match mask {
        Some(m) => scores.mask_fill(m, f32::NEG_INFINITY),
        None => scores,
    };
    softmax(scores, 3).matmul(v)
}

/// Grouped-query attention without repeating K and V: the `n_rep` query
/// heads that share a kv head (heads `g·n_rep .. (g+1)·n_rep`, HF's
/// `repeat_kv` layout) are stacked along the query axis, so the scores are
/// `[b, kv_heads, n_rep·s, k_len]` against the cache as it is. Expanding K
/// and V instead copied the whole cache per layer per decode step through
/// burn-flex's strided path (about a fifth of a GRPO step, docs/benchmarks.md).
///
/// `q`: `[b, heads, s, hd]`; `k`, `v`: `[b, kv_heads, k_len, hd]`; `mask`:
/// `[b, 1, s, k_len]` (`true` = masked) or `None` for plain causal attention
/// without cache. Returns `[b, heads, s, hd]`.
fn grouped_query_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
    n_rep: usize,
) -> Tensor<B, 4> {
    let [b, nh, s, hd] = q.dims();
    let nkv = nh / n_rep;
    let k_len = k.dims()[2];
    let q = q.reshape([b, nkv, n_rep * s, hd]);
    let out = if s == 1 && mask.is_none() {
        scaled_attention(q, k, v, None)
    } else {
        // Query row `r·s + i` of a group is token `i` of its r-th head.
        let rows = match mask {
            Some(m) => Tensor::cat(vec![m.clone(); n_rep], 2),
            None => causal_rows::<B>(s, n_rep, &q.device()),
        };
        let mask = rows.expand([b, nkv, n_rep * s, k_len]);
        attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
    };
    out.reshape([b, nh, s, hd])
}

/// The causal mask of `s` tokens repeated for `n_rep` stacked heads:
/// `[1, 1, n_rep·s, s]`, `true` above the diagonal of each block.
fn causal_rows<B: Backend>(s: usize, n_rep: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let data: Vec<bool> = (0..n_rep * s)
        .flat_map(|row| (0..s).map(move |key| key > row % s))
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, n_rep * s, s]), device)
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn load(w: &WeightLoader<B>, prefix: &str, c: &Qwen2Config) -> Self {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Self {
            gate_proj: w.linear(&format!("{prefix}.gate_proj"), h, i, false),
            up_proj: w.linear(&format!("{prefix}.up_proj"), h, i, false),
            down_proj: w.linear(&format!("{prefix}.down_proj"), i, h, false),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn load(w: &WeightLoader<B>, prefix: &str, c: &Qwen2Config) -> Self {
        Self {
            self_attn: Attention::load(w, &format!("{prefix}.self_attn"), c),
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), c),
            input_layernorm: w.rms_norm(
                &format!("{prefix}.input_layernorm"),
                c.hidden_size,
                c.rms_norm_eps,
            ),
            post_attention_layernorm: w.rms_norm(
                &format!("{prefix}.post_attention_layernorm"),
                c.hidden_size,
                c.rms_norm_eps,
            ),
        }
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &AttentionMask<B>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), cos, sin, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// The Qwen2 language model with its LM head.
#[derive(Module, Debug)]
pub struct Qwen2<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear<B>>,
    #[module(skip)]
    config: Qwen2Config,
}

impl<B: Backend> Qwen2<B> {
    /// Builds the model from a checkpoint. `prefix` is where the decoder's
    /// tensors live: `model` for Qwen2 and published Qwen2-VL checkpoints
    /// (`model.layers.0...`), `model.language_model` for transformers-5 VL
    /// saves. The LM head is `lm_head.weight` unless tied.
    pub fn load(w: &WeightLoader<B>, prefix: &str, config: &Qwen2Config) -> Self {
        let c = config;
        let embed_tokens = w.embedding(
            &format!("{prefix}.embed_tokens.weight"),
            c.vocab_size,
            c.hidden_size,
        );
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(w, &format!("{prefix}.layers.{i}"), c))
            .collect();
        let norm = w.rms_norm(&format!("{prefix}.norm"), c.hidden_size, c.rms_norm_eps);
        // Some tied checkpoints still carry a copy of the head; use it if so.
        let lm_head = (!c.tie_word_embeddings || w.contains("lm_head.weight"))
            .then(|| w.linear("lm_head", c.hidden_size, c.vocab_size, false));
        Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: c.clone(),
        }
    }

    /// Loads the language model of a checkpoint directory (Qwen2, or the
    /// text half of a Qwen2-VL / Qwen2.5-VL checkpoint, whose vision tensors
    /// are left for the vision tower). Every missing, unexpected or
    /// mis-shaped tensor is reported in one error.
    pub fn from_dir(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = Qwen2Config::from_file(dir.join("config.json"))?;
        let checkpoint = TensorStore::open(dir)?;
        Self::from_checkpoint(&checkpoint, &config, device)
    }

    /// As [`Qwen2::from_dir`], from an opened checkpoint and a parsed config.
    pub fn from_checkpoint(
        checkpoint: &TensorStore,
        config: &Qwen2Config,
        device: &B::Device,
    ) -> Result<Self> {
        let prefix = if checkpoint
            .shape("model.language_model.embed_tokens.weight")
            .is_some()
        {
            "model.language_model"
        } else {
            "model"
        };
        let loader = WeightLoader::new(checkpoint, device);
        let model = Self::load(&loader, prefix, config);
        loader.finish(|name| !is_vision_tensor(name))?;
        Ok(model)
    }

    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    pub fn rotary(&self, device: &B::Device) -> RotaryEmbedding<B> {
        RotaryEmbedding::new(
            self.config.head_dim(),
            self.config.rope_theta,
            self.config.mrope_section.as_deref(),
            device,
        )
    }

    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.layers.len())
    }

    /// `[batch, seq]` token ids → `[batch, seq, hidden]` embeddings.
    pub fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.embed_tokens.forward(input_ids)
    }

    /// Runs the decoder on embeddings (text, or text with vision features
    /// scattered in) at M-RoPE positions `[3, batch, seq]`; returns the final
    /// normed hidden states `[batch, seq, hidden]`.
    pub fn forward_embeds(
        &self,
        embeds: Tensor<B, 3>,
        position_ids: Tensor<B, 3, Int>,
        mask: &AttentionMask<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let device = embeds.device();
        let (cos, sin) = self.rotary(&device).cos_sin(position_ids);
        let mut h = embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().and_then(|c| c.layers.get_mut(i));
            h = layer.forward(h, &cos, &sin, mask, slot);
        }
        self.norm.forward(h)
    }

    /// Hidden states `[batch, seq, hidden]` → logits `[batch, seq, vocab]`.
    pub fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, h] = hidden.dims();
                let w = self.embed_tokens.weight.val(); // [vocab, hidden]
                let v = w.dims()[0];
                hidden
                    .reshape([b * s, h])
                    .matmul(w.transpose())
                    .reshape([b, s, v])
            }
        }
    }

    /// Token ids → logits, the whole text-only forward pass.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        position_ids: Tensor<B, 3, Int>,
        mask: &AttentionMask<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let hidden = self.forward_embeds(self.embed(input_ids), position_ids, mask, cache);
        self.lm_logits(hidden)
    }
}
