//! Tokenizer (`tokenizer.json`, via the `tokenizers` crate) and the
//! checkpoint's own Jinja chat template (rendered with `minijinja` the way HF
//! renders it: trim_blocks + lstrip_blocks, Python string methods), so any
//! Qwen checkpoint's template works, not a hard-coded string.

use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{io_err, QwenError, Result};

pub struct QwenTokenizer {
    tokenizer: Tokenizer,
    chat_template: Option<String>,
    /// Special-token strings the template may use (`bos_token`, `eos_token`, ...).
    special: serde_json::Map<String, Value>,
    path: PathBuf,
}

impl QwenTokenizer {
    /// Loads `tokenizer.json` and the chat template from a checkpoint
    /// directory: `chat_template.jinja` (transformers 5), `chat_template.json`
    /// (processors), or `tokenizer_config.json`'s `chat_template`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| QwenError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Map<String, Value> = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
            serde_json::from_str(&text).map_err(|e| QwenError::Config {
                path: config_path.clone(),
                message: e.to_string(),
            })?
        } else {
            Default::default()
        };
        let chat_template = read_chat_template(dir, &config)?;
        let special = config
            .iter()
            .filter(|(k, _)| k.ends_with("_token"))
            .map(|(k, v)| (k.clone(), special_token_text(v)))
            .collect();
        Ok(Self {
            tokenizer,
            chat_template,
            special,
            path,
        })
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Ids of `text` without adding special tokens (Qwen adds none anyway);
    /// special tokens written inline (`<|im_start|>`) map to their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.err(e))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.err(e))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Renders `messages` (HF chat format: `[{"role": .., "content": str |
    /// [{"type": "text"|"image"|"video", ..}]}]`) with the checkpoint's template.
    pub fn apply_chat_template(
        &self,
        messages: &Value,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            QwenError::Template(format!(
                "{}: the checkpoint has no chat template",
                self.path.display()
            ))
        })?;
        render_chat_template(template, messages, add_generation_prompt, &self.special)
    }

    fn err(&self, e: impl std::fmt::Display) -> QwenError {
        QwenError::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

/// `"eos_token": "<|im_end|>"` or `{"content": "<|im_end|>", ...}` → the text.
fn special_token_text(v: &Value) -> Value {
    match v {
        Value::Object(o) => o.get("content").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

fn read_chat_template(
    dir: &Path,
    config: &serde_json::Map<String, Value>,
) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(io_err(&jinja));
    }
    let json = dir.join("chat_template.json");
    if json.exists() {
        let text = std::fs::read_to_string(&json).map_err(io_err(&json))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| QwenError::Config {
            path: json.clone(),
            message: e.to_string(),
        })?;
        if let Some(t) = v.get("chat_template").and_then(Value::as_str) {
            return Ok(Some(t.to_string()));
        }
    }
    Ok(match config.get("chat_template") {
        Some(Value::String(t)) => Some(t.clone()),
        // A list of named templates: take "default".
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    })
}

/// Renders a HF chat template. Mirrors transformers' environment:
/// `trim_blocks`, `lstrip_blocks`, `raise_exception`, Python string methods.
pub fn render_chat_template(
    template: &str,
    messages: &Value,
    add_generation_prompt: bool,
    extra: &serde_json::Map<String, Value>,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| QwenError::Template(e.to_string()))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| QwenError::Template(e.to_string()))?;
    let mut ctx = extra.clone();
    ctx.insert("messages".to_string(), messages.clone());
    ctx.insert(
        "add_generation_prompt".to_string(),
        Value::Bool(add_generation_prompt),
    );
    tmpl.render(minijinja::Value::from_serialize(&ctx))
        .map_err(|e| QwenError::Template(e.to_string()))
}
