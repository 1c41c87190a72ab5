//! The bundled model's tokenizer: a byte-level BPE trained with the
//! `tokenizers` crate's own trainer on the synthetic tasks' text, laid out
//! like Qwen2's published `tokenizer.json` (NFC normalizer, Qwen2's split
//! regex then ByteLevel without its own regex, ByteLevel post-processor and
//! decoder) with Qwen2-VL's special tokens appended in their published
//! order, and the tokenizer / chat-template / generation files of a
//! Qwen2-VL checkpoint directory.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Map, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Qwen2's pre-tokenizer split pattern (from its `tokenizer.json`).
pub const QWEN2_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2-VL's special tokens in published order (ids 151643.. there, right
/// after the BPE vocabulary here).
pub const SPECIAL_TOKENS: [&str; 14] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
];

/// Qwen2-VL-Instruct's chat template, verbatim (copied from the
/// `tokenizer_config.json` of `tests/fixtures/models/qwen2-vl-tiny`).
pub const CHAT_TEMPLATE: &str = include_str!("chat_template.jinja");

/// Trains the BPE on `texts` (special tokens must not appear in them) with
/// at most `bpe_vocab` entries (256 byte symbols included), then appends the
/// special tokens.
pub fn train_tokenizer<I, S>(texts: I, bpe_vocab: usize) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let split = Split::new(
        SplitPattern::Regex(QWEN2_SPLIT_REGEX.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| anyhow!("Qwen2 split regex: {e}"))?;
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ]);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_normalizer(Some(NFC))
        .with_pre_tokenizer(Some(pre))
        .with_post_processor(Some(ByteLevel::new(false, false, false)))
        .with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(bpe_vocab)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(alphabet)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| anyhow!("training the BPE: {e}"))?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// Ids the model config needs.
#[derive(Debug, Clone, Copy)]
pub struct SpecialIds {
    pub endoftext: u32,
    pub im_end: u32,
    pub vision_start: u32,
    pub vision_end: u32,
    pub vision_pad: u32,
    pub image_pad: u32,
    pub video_pad: u32,
}

impl SpecialIds {
    pub fn of(tokenizer: &Tokenizer) -> Result<Self> {
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| anyhow!("tokenizer lacks the special token {t}"))
        };
        Ok(Self {
            endoftext: id("<|endoftext|>")?,
            im_end: id("<|im_end|>")?,
            vision_start: id("<|vision_start|>")?,
            vision_end: id("<|vision_end|>")?,
            vision_pad: id("<|vision_pad|>")?,
            image_pad: id("<|image_pad|>")?,
            video_pad: id("<|video_pad|>")?,
        })
    }
}

/// Writes `tokenizer.json`, `tokenizer_config.json` (Qwen2Tokenizer, the
/// real chat template), `chat_template.json`, `generation_config.json` and
/// `preprocessor_config.json` into a checkpoint directory.
pub fn write_tokenizer_files(
    dir: &Path,
    tokenizer: &Tokenizer,
    processor: &vlrl::vision::ProcessorConfig,
) -> Result<()> {
    let ids = SpecialIds::of(tokenizer)?;
    let tok_json = tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("serialising the tokenizer: {e}"))?;
    write(dir, "tokenizer.json", tok_json.into_bytes())?;

    let mut decoder = Map::new();
    for t in SPECIAL_TOKENS {
        let id = tokenizer
            .token_to_id(t)
            .ok_or_else(|| anyhow!("missing {t}"))?;
        decoder.insert(
            id.to_string(),
            json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": true}),
        );
    }
    let config = json!({
        "add_prefix_space": false,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
            "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
            "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
            "<|image_pad|>", "<|video_pad|>"],
        "bos_token": null,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null,
    });
    write_json(dir, "tokenizer_config.json", &config)?;
    write_json(
        dir,
        "chat_template.json",
        &json!({ "chat_template": CHAT_TEMPLATE }),
    )?;
    write_json(
        dir,
        "generation_config.json",
        &json!({
            "bos_token_id": ids.endoftext,
            "do_sample": false,
            "eos_token_id": [ids.im_end, ids.endoftext],
            "pad_token_id": ids.endoftext,
            "repetition_penalty": 1.0,
        }),
    )?;
    write_json(
        dir,
        "preprocessor_config.json",
        &json!({
            "image_mean": processor.image_mean,
            "image_processor_type": "Qwen2VLImageProcessor",
            "image_std": processor.image_std,
            "max_pixels": processor.max_pixels,
            "merge_size": processor.merge_size,
            "min_pixels": processor.min_pixels,
            "patch_size": processor.patch_size,
            "processor_class": "Qwen2VLProcessor",
            "temporal_patch_size": processor.temporal_patch_size,
        }),
    )?;
    Ok(())
}

fn write_json(dir: &Path, name: &str, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write(dir, name, text.into_bytes())
}

fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
    let path = dir.join(name);
    vlrl::qwen::save::write_atomic(&path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}
