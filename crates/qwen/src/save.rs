//! Writing a (trained) Qwen2-VL back as a Hugging Face checkpoint directory
//! with the published tensor names, so transformers and
//! [`crate::Qwen2VL::from_dir`] read it again.
//!
//! Layout conversions undo what loading did: burn `Linear` weights are
//! `[in, out]` and go back to PyTorch's `[out, in]`; burn's RMSNorm `gamma`
//! is HF's `weight`; the vision patch embedding, kept as a `[3·T·P·P, D]`
//! matmul kernel, goes back to the Conv3d shape `[D, 3, T, P, P]`. Files are
//! written atomically (temp file in the same directory, fsync, rename), as
//! DESIGN.md asks of checkpoints.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use burn::module::Param;
use burn::nn::{Linear, RmsNorm};
use burn::tensor::{backend::Backend, Tensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::Value;

use crate::error::{io_err, QwenError, Result};
use crate::init::Qwen2VlSpec;
use crate::vlm::{Qwen2VL, VisionTower};

/// A named tensor ready to write: `(name, PyTorch shape, f32 values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn values<B: Backend, const D: usize>(t: Tensor<B, D>, name: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| QwenError::Input(format!("reading tensor {name}: {e:?}")))
}

/// Collects named tensors, converting burn layouts to PyTorch ones.
struct Collector {
    out: Vec<NamedTensor>,
}

impl Collector {
    fn plain<B: Backend, const D: usize>(&mut self, name: String, t: Tensor<B, D>) -> Result<()> {
        let shape = t.dims().to_vec();
        let v = values(t, &name)?;
        self.out.push((name, shape, v));
        Ok(())
    }

    /// `[in, out]` kernel → `[out, in]` weight (+ optional bias).
    fn linear_parts<B: Backend>(
        &mut self,
        prefix: &str,
        weight: &Param<Tensor<B, 2>>,
        bias: Option<&Param<Tensor<B, 1>>>,
    ) -> Result<()> {
        self.plain(format!("{prefix}.weight"), weight.val().transpose())?;
        if let Some(b) = bias {
            self.plain(format!("{prefix}.bias"), b.val())?;
        }
        Ok(())
    }

    fn linear<B: Backend>(&mut self, prefix: &str, l: &Linear<B>) -> Result<()> {
        self.linear_parts(prefix, &l.weight, l.bias.as_ref())
    }

    fn vision_linear<B: Backend>(
        &mut self,
        prefix: &str,
        l: &vlrl_vision::layers::Linear<B>,
    ) -> Result<()> {
        self.linear_parts(prefix, &l.weight, l.bias.as_ref())
    }

    fn rms_norm<B: Backend>(&mut self, prefix: &str, n: &RmsNorm<B>) -> Result<()> {
        self.plain(format!("{prefix}.weight"), n.gamma.val())
    }

    fn layer_norm<B: Backend>(
        &mut self,
        prefix: &str,
        n: &vlrl_vision::layers::LayerNorm<B>,
    ) -> Result<()> {
        self.plain(format!("{prefix}.weight"), n.weight.val())?;
        self.plain(format!("{prefix}.bias"), n.bias.val())
    }
}

/// Every tensor of a Qwen2-VL model under its published name (`model.*`,
/// `lm_head.weight` when untied, `visual.*`), in PyTorch layouts.
pub fn qwen2_vl_tensors<B: Backend>(model: &Qwen2VL<B>) -> Result<Vec<NamedTensor>> {
    let mut c = Collector { out: Vec::new() };
    let lm = &model.language_model;
    c.plain(
        "model.embed_tokens.weight".into(),
        lm.embed_tokens.weight.val(),
    )?;
    for (i, layer) in lm.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let a = &layer.self_attn;
        c.linear(&format!("{p}.self_attn.q_proj"), &a.q_proj)?;
        c.linear(&format!("{p}.self_attn.k_proj"), &a.k_proj)?;
        c.linear(&format!("{p}.self_attn.v_proj"), &a.v_proj)?;
        c.linear(&format!("{p}.self_attn.o_proj"), &a.o_proj)?;
        c.linear(&format!("{p}.mlp.gate_proj"), &layer.mlp.gate_proj)?;
        c.linear(&format!("{p}.mlp.up_proj"), &layer.mlp.up_proj)?;
        c.linear(&format!("{p}.mlp.down_proj"), &layer.mlp.down_proj)?;
        c.rms_norm(&format!("{p}.input_layernorm"), &layer.input_layernorm)?;
        c.rms_norm(
            &format!("{p}.post_attention_layernorm"),
            &layer.post_attention_layernorm,
        )?;
    }
    c.rms_norm("model.norm", &lm.norm)?;
    if let Some(head) = &lm.lm_head {
        c.linear("lm_head", head)?;
    }

    let VisionTower::Qwen2(tower) = &model.visual else {
        return Err(QwenError::Input(
            "saving a Qwen2.5-VL vision tower is not supported (only Qwen2-VL)".into(),
        ));
    };
    let v = &tower.config;
    let kernel = tower.patch_embed.val().transpose(); // [D, 3·T·P·P]
    let conv_shape = vec![
        v.embed_dim,
        v.in_channels,
        v.temporal_patch_size,
        v.patch_size,
        v.patch_size,
    ];
    let kernel_values = values(kernel, "visual.patch_embed.proj.weight")?;
    c.out.push((
        "visual.patch_embed.proj.weight".into(),
        conv_shape,
        kernel_values,
    ));
    for (i, block) in tower.blocks.iter().enumerate() {
        let p = format!("visual.blocks.{i}");
        c.layer_norm(&format!("{p}.norm1"), &block.norm1)?;
        c.layer_norm(&format!("{p}.norm2"), &block.norm2)?;
        c.vision_linear(&format!("{p}.attn.qkv"), &block.attn.qkv)?;
        c.vision_linear(&format!("{p}.attn.proj"), &block.attn.proj)?;
        c.vision_linear(&format!("{p}.mlp.fc1"), &block.fc1)?;
        c.vision_linear(&format!("{p}.mlp.fc2"), &block.fc2)?;
    }
    c.layer_norm("visual.merger.ln_q", &tower.merger.ln_q)?;
    c.vision_linear("visual.merger.mlp.0", &tower.merger.fc1)?;
    c.vision_linear("visual.merger.mlp.2", &tower.merger.fc2)?;
    Ok(c.out)
}

/// Writes `model.safetensors` + `config.json` of `model` into `dir`
/// (created if needed), each file atomically. `spec` supplies the config
/// fields the model does not carry (vision marker token ids, init range); its
/// text and vision configs must be the model's own.
pub fn save_qwen2_vl<B: Backend>(
    model: &Qwen2VL<B>,
    spec: &Qwen2VlSpec,
    dir: impl AsRef<Path>,
) -> Result<()> {
    let dir = dir.as_ref();
    if &spec.text != model.language_model.config() {
        return Err(QwenError::Input(
            "save: the spec's text config differs from the model's".into(),
        ));
    }
    if let VisionTower::Qwen2(t) = &model.visual {
        if t.config != spec.vision {
            return Err(QwenError::Input(
                "save: the spec's vision config differs from the model's".into(),
            ));
        }
    }
    let tokens = model.tokens();
    if tokens.image_token_id != spec.image_token_id || tokens.video_token_id != spec.video_token_id
    {
        return Err(QwenError::Input(
            "save: the spec's image/video token ids differ from the model's".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tensors = qwen2_vl_tensors(model)?;
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    write_json(&dir.join("config.json"), &spec.config_json())
}

/// Serialises f32 tensors to a safetensors file (metadata `format: pt`, which
/// transformers requires), atomically.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let bad = |message: String| QwenError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, v)| {
            let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), shape.clone(), raw)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, raw) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), raw)
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let data = safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))?;
    write_atomic(path, &data)
}

/// Writes pretty JSON (with a trailing newline) atomically.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| QwenError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Temp file next to `path`, write, fsync, rename over `path`, fsync the
/// directory: a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: some filesystems refuse to fsync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        QwenError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Qwen2Config;
    use crate::init::{write_random_init, InitKind};
    use crate::vlm::MultimodalBatch;
    use burn::tensor::TensorData;
    use vlrl_vision::Qwen2VisionConfig;

    type B = burn::backend::Flex;

    fn tiny_spec() -> Qwen2VlSpec {
        let text = Qwen2Config::from_json_str(
            r#"{"vocab_size": 96, "hidden_size": 32, "intermediate_size": 48,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rope_theta": 10000.0, "tie_word_embeddings": true,
                "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
                "bos_token_id": 80, "eos_token_id": 82}"#,
        )
        .unwrap();
        let vision = Qwen2VisionConfig::from_json_value(&serde_json::json!({
            "depth": 1, "embed_dim": 16, "hidden_size": 32, "hidden_act": "quick_gelu",
            "mlp_ratio": 2, "num_heads": 2, "in_chans": 3, "patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2
        }))
        .unwrap();
        Qwen2VlSpec {
            text,
            vision,
            image_token_id: 92,
            video_token_id: 93,
            vision_start_token_id: 89,
            vision_end_token_id: 90,
            vision_token_id: 91,
            initializer_range: 0.02,
        }
    }

    fn batch(device: &burn::tensor::Device<B>) -> MultimodalBatch<B> {
        // One 28x28 image: grid [1, 2, 2] → 4 patches → 1 merged token.
        let patch_dim = 3 * 2 * 14 * 14;
        let pixels: Vec<f32> = (0..4 * patch_dim)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        MultimodalBatch {
            input_ids: vec![
                vec![0, 5, 89, 92, 90, 7, 9, 11],
                vec![1, 2, 3, 4, 5, 6, 7, 8],
            ],
            attention_mask: vec![vec![0, 1, 1, 1, 1, 1, 1, 1], vec![1; 8]],
            images: Some(crate::vlm::VisionInput {
                pixel_values: Tensor::from_data(TensorData::new(pixels, [4, patch_dim]), device),
                grid_thw: vec![[1, 2, 2]],
            }),
            videos: None,
            second_per_grid_ts: None,
        }
    }

    #[test]
    fn random_init_loads_and_follows_the_init_rules() {
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny_spec();
        write_random_init(dir.path(), &spec, 7).unwrap();
        let model = Qwen2VL::<B>::from_dir(dir.path(), &Default::default()).unwrap();
        let tensors = qwen2_vl_tensors(&model).unwrap();
        let specs = spec.tensors();
        assert_eq!(tensors.len(), specs.len());
        let by_name: HashMap<_, _> = tensors.iter().map(|t| (t.0.clone(), t)).collect();
        for s in &specs {
            let (_, shape, v) = by_name[&s.name];
            assert_eq!(shape, &s.shape, "{}", s.name);
            match s.init {
                InitKind::Ones => assert!(v.iter().all(|&x| x == 1.0), "{}", s.name),
                InitKind::Zeros => assert!(v.iter().all(|&x| x == 0.0), "{}", s.name),
                InitKind::Normal => {
                    let n = v.len() as f64;
                    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
                    let var = v
                        .iter()
                        .map(|&x| (f64::from(x) - mean).powi(2))
                        .sum::<f64>()
                        / n;
                    if v.len() > 500 {
                        assert!(mean.abs() < 0.005, "{} mean {mean}", s.name);
                        assert!(
                            (var.sqrt() - 0.02).abs() < 0.004,
                            "{} std {}",
                            s.name,
                            var.sqrt()
                        );
                    }
                }
            }
        }
        // Same seed, same bytes; another seed, other bytes.
        let again = tempfile::tempdir().unwrap();
        write_random_init(again.path(), &spec, 7).unwrap();
        let other = tempfile::tempdir().unwrap();
        write_random_init(other.path(), &spec, 8).unwrap();
        let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert_eq!(read(dir.path()), read(again.path()));
        assert_ne!(read(dir.path()), read(other.path()));
    }

    #[test]
    fn save_then_load_gives_identical_logits() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny_spec();
        write_random_init(dir.path(), &spec, 3).unwrap();
        let model = Qwen2VL::<B>::from_dir(dir.path(), &device).unwrap();
        // Perturb every parameter so a transposition mistake would show up
        // (random init has symmetric ones/zeros that would hide it).
        let model = perturb(model);
        let before = model.forward(&batch(&device)).unwrap();

        let out = tempfile::tempdir().unwrap();
        save_qwen2_vl(&model, &spec, out.path()).unwrap();
        let loaded = Qwen2VL::<B>::from_dir(out.path(), &device).unwrap();
        let after = loaded.forward(&batch(&device)).unwrap();
        let (a, b) = (
            before.into_data().to_vec::<f32>().unwrap(),
            after.into_data().to_vec::<f32>().unwrap(),
        );
        // Bit-identical parameters; the logits may differ in the last ulp
        // only because a freshly loaded kernel is contiguous where the
        // perturbed one was a transposed view (another summation order).
        assert_eq!(a.len(), b.len());
        let max = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-5, "max |Δlogit| = {max}");
        let reread = qwen2_vl_tensors(&loaded).unwrap();
        assert_eq!(qwen2_vl_tensors(&model).unwrap(), reread);
        // No temp files left behind.
        let names: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["vision_config"]["in_chans"], 3);
        assert_eq!(config["rope_scaling"]["type"], "mrope");
    }

    #[test]
    fn save_rejects_a_spec_that_does_not_match() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny_spec();
        write_random_init(dir.path(), &spec, 3).unwrap();
        let model = Qwen2VL::<B>::from_dir(dir.path(), &device).unwrap();
        let mut wrong = spec.clone();
        wrong.text.hidden_size = 64;
        let out = tempfile::tempdir().unwrap();
        assert!(save_qwen2_vl(&model, &wrong, out.path()).is_err());
        let mut wrong_ids = spec;
        wrong_ids.image_token_id = 1;
        assert!(save_qwen2_vl(&model, &wrong_ids, out.path()).is_err());
    }

    /// Adds a deterministic, index-dependent offset to every float parameter.
    fn perturb(model: Qwen2VL<B>) -> Qwen2VL<B> {
        use burn::module::{Module, ModuleMapper};
        struct Mapper(usize);
        impl ModuleMapper<B> for Mapper {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<B, D>>,
            ) -> Param<Tensor<B, D>> {
                self.0 += 1;
                let k = self.0;
                let (id, t, mapper) = param.consume();
                let n: usize = t.dims().iter().product();
                let dims = t.dims();
                let noise: Vec<f32> = (0..n)
                    .map(|i| (((i * 7919 + k * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.1)
                    .collect();
                let noise = Tensor::<B, 1>::from_data(TensorData::new(noise, [n]), &t.device())
                    .reshape(dims);
                Param::from_mapped_value(id, t + noise, mapper)
            }
        }
        model.map(&mut Mapper(0))
    }
}
