//! `recipes pretrain` at toy size: tokenizer training, random init through
//! the loader, a few SFT steps (loss must fall), save, and the saved
//! directory must reload (model, tokenizer with the real chat template) and
//! reproduce the trained model's held-out evaluation.

use recipes::pretrain::{pretrain, PretrainConfig};
use vlrl::backend::Cpu;
use vlrl::qwen::{Qwen2VL, QwenTokenizer};

fn tiny_config() -> PretrainConfig {
    PretrainConfig {
        seed: 5,
        bpe_vocab: 400,
        tokenizer_corpus: 200,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        mrope_section: vec![2, 3, 3],
        vision_depth: 1,
        vision_embed_dim: 16,
        vision_heads: 2,
        batch_size: 4,
        lr: 3e-3,
        warmup_steps: 2,
        max_steps: 30,
        max_minutes: 0.0,
        eval_every: 1_000,
        eval_samples: 4,
        final_eval_samples: 8,
        max_new_tokens: 8,
        log_every: 5,
        save_every: 20,
        ..PretrainConfig::default()
    }
}

#[test]
fn a_few_sft_steps_lower_the_loss_and_the_checkpoint_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config();
    let report = pretrain(&cfg, dir.path()).unwrap();

    assert_eq!(report.steps, cfg.max_steps);
    let first = report.losses.first().unwrap().1;
    let last = report.losses.last().unwrap().1;
    assert!(
        last < 0.8 * first,
        "loss did not fall enough: {first} → {last} ({:?})",
        report.losses
    );
    assert_eq!(report.vocab_size % 64, 0);
    assert!(report.vocab_size >= report.tokenizer_size);

    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.json",
        "generation_config.json",
        "preprocessor_config.json",
        "pretrain_report.json",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let model = Qwen2VL::<Cpu>::from_dir(dir.path(), &Default::default()).unwrap();
    assert_eq!(model.language_model.config().vocab_size, report.vocab_size);
    // `save_every: 20` left a complete checkpoint of step 20 (not of 30).
    let snapshot = dir.path().join("step-20");
    let early = Qwen2VL::<Cpu>::from_dir(&snapshot, &Default::default()).unwrap();
    assert!(QwenTokenizer::from_dir(&snapshot).is_ok());
    assert!(!dir.path().join("step-30").exists());
    let weights = |m: &Qwen2VL<Cpu>| m.language_model.embed_tokens.weight.val().into_data();
    assert!(
        weights(&early) != weights(&model),
        "the snapshot is the final model"
    );
    let tok = QwenTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.vocab_size(), report.tokenizer_size);
    // Special tokens sit right after the BPE vocabulary, in Qwen2-VL order.
    let eot = tok.token_id("<|endoftext|>").unwrap();
    assert_eq!(tok.token_id("<|im_start|>"), Some(eot + 1));
    assert_eq!(tok.token_id("<|image_pad|>"), Some(eot + 12));
    let rendered = tok
        .apply_chat_template(
            &serde_json::json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]),
            true,
        )
        .unwrap();
    assert!(
        rendered.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"),
        "{rendered}"
    );
    assert!(rendered.contains(
        "<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    ));
    // Byte-level BPE round-trips text it never saw.
    let text = "Zebra 123 ünïcode <think>x</think>";
    let ids = tok.encode(text).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
}

#[test]
fn an_unknown_sft_question_type_is_named() {
    let cfg = PretrainConfig {
        sft_question_types: vec!["DD".into(), "colour".into()],
        ..tiny_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", pretrain(&cfg, dir.path()).unwrap_err());
    assert!(
        err.contains("sft_question_types") && err.contains("colour"),
        "{err}"
    );
}

#[test]
fn the_same_seed_gives_the_same_checkpoint() {
    let cfg = PretrainConfig {
        max_steps: 3,
        final_eval_samples: 2,
        ..tiny_config()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    pretrain(&cfg, a.path()).unwrap();
    pretrain(&cfg, b.path()).unwrap();
    for file in ["model.safetensors", "tokenizer.json", "config.json"] {
        let read = |d: &std::path::Path| std::fs::read(d.join(file)).unwrap();
        assert!(read(a.path()) == read(b.path()), "{file} differs");
    }
}
