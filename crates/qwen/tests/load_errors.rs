//! Bad checkpoints give clear, typed errors naming the file, field or tensor,
//! never a panic: missing / unexpected / mis-shaped tensors, corrupt and
//! truncated safetensors, bad config.json.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use vlrl_qwen::{Qwen2, QwenError};
use vlrl_vision::WeightError;

/// A copy of the `qwen2-tiny` checkpoint whose tensors went through `edit`.
fn edited_checkpoint(
    edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let src = model_dir("qwen2-tiny");
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: HashMap<String, TensorView> = tensors
        .iter()
        .map(|(n, (shape, data))| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(&views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load(dir: &Path) -> Result<Qwen2<B>, QwenError> {
    Qwen2::<B>::from_dir(dir, &Default::default())
}

#[test]
fn every_missing_and_misshaped_tensor_is_listed() {
    let dir = edited_checkpoint(|t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
        t.remove("model.norm.weight");
        t.insert(
            "model.layers.0.self_attn.q_proj.bias".into(),
            (vec![3], vec![0; 12]),
        );
        t.insert("model.extra.weight".into(), (vec![2], vec![0; 8]));
    });
    let err = load(dir.path()).unwrap_err();
    let QwenError::Weights { problems, .. } = &err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(
        problems.missing,
        vec!["model.layers.1.mlp.up_proj.weight", "model.norm.weight"]
    );
    assert_eq!(problems.mismatched.len(), 1);
    assert_eq!(
        problems.mismatched[0].name,
        "model.layers.0.self_attn.q_proj.bias"
    );
    assert_eq!(problems.mismatched[0].expected, vec![64]);
    assert_eq!(problems.mismatched[0].found, vec![3]);
    assert_eq!(problems.unexpected, vec!["model.extra.weight"]);
    let msg = err.to_string();
    assert!(msg.contains("expected [64], found [3]"), "{msg}");
}

#[test]
fn corrupt_header_names_the_file() {
    let dir = edited_checkpoint(|_| {});
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header").unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(err, QwenError::Checkpoint(WeightError::Safetensors { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn truncated_file_is_an_error() {
    let dir = edited_checkpoint(|_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(err, QwenError::Checkpoint(WeightError::Safetensors { .. })),
        "{err}"
    );
}

#[test]
fn missing_weights_file_is_an_error() {
    let dir = edited_checkpoint(|_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(err, QwenError::Checkpoint(WeightError::Io { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn bad_config_names_the_field_and_file() {
    let dir = edited_checkpoint(|_| {});
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"hidden_size\"", "\"hidden_sighs\"");
    std::fs::write(&cfg, text).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("hidden_size"),
        "{err}"
    );

    std::fs::write(&cfg, "{ not json").unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, QwenError::Config { .. }), "{err}");
}

#[test]
fn shard_index_pointing_outside_is_rejected() {
    let dir = edited_checkpoint(|_| {});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.norm.weight": "../../etc/passwd"}}"#,
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn out_of_vocabulary_prompt_is_an_error() {
    let model = load(&model_dir("qwen2-tiny")).unwrap();
    let err = model
        .generate(&[vec![1, 100_000]], 0, &Default::default(), true)
        .unwrap_err();
    assert!(matches!(err, QwenError::Input(_)), "{err}");
    let err = model
        .generate(&[vec![]], 0, &Default::default(), true)
        .unwrap_err();
    assert!(matches!(err, QwenError::Input(_)), "{err}");
}
