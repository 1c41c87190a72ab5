//! `recipes generate`: chat with a checkpoint directory from the terminal.
//! With `--prompt` it answers once and exits; without, it reads user turns
//! from stdin and keeps the conversation in the chat template.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use vlrl::backend::Cpu;
use vlrl::qwen::config::token_ids;
use vlrl::qwen::{GenerationConfig, Qwen2, QwenTokenizer, SamplingParams};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// One user message; omit for an interactive chat on stdin.
    #[arg(long)]
    pub prompt: Option<String>,
    /// System prompt (the template's default when omitted).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let device = Default::default();
    let started = Instant::now();
    let model = Qwen2::<Cpu>::from_dir(&args.model, &device)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let tokenizer = QwenTokenizer::from_dir(&args.model)?;
    let gen_path = args.model.join("generation_config.json");
    let gen_cfg = if gen_path.exists() {
        GenerationConfig::from_file(&gen_path)?
    } else {
        GenerationConfig::default()
    };
    let mut stop = gen_cfg.eos_token_ids();
    stop.extend(token_ids(model.config().eos_token_id.as_ref()));
    stop.extend(tokenizer.token_id("<|im_end|>"));
    stop.sort_unstable();
    stop.dedup();
    let pad = gen_cfg
        .pad_token_id
        .or_else(|| tokenizer.token_id("<|endoftext|>"))
        .unwrap_or(0);
    tracing::info!(
        "loaded {} ({} layers) in {:.2?}",
        args.model.display(),
        model.config().num_hidden_layers,
        started.elapsed()
    );

    let mut params = SamplingParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        stop_tokens: stop.clone(),
        suppress_tokens: Vec::new(),
        seed: args.seed,
    };
    let mut messages: Vec<Value> = Vec::new();
    if let Some(system) = &args.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    let reply =
        |messages: &mut Vec<Value>, user: String, params: &SamplingParams| -> Result<String> {
            messages.push(json!({"role": "user", "content": user}));
            let text = tokenizer.apply_chat_template(&Value::Array(messages.clone()), true)?;
            let ids = tokenizer.encode(&text)?;
            let t0 = Instant::now();
            let out = model.generate(&[ids], pad, params, true)?;
            let mut tokens = out.tokens.into_iter().next().unwrap_or_default();
            let n = tokens.len();
            if tokens.last().is_some_and(|t| stop.contains(t)) {
                tokens.pop();
            }
            let answer = tokenizer.decode(&tokens, true)?;
            tracing::info!(
                "{n} tokens in {:.2?} ({:.1} tokens/s)",
                t0.elapsed(),
                n as f64 / t0.elapsed().as_secs_f64()
            );
            messages.push(json!({"role": "assistant", "content": answer}));
            Ok(answer)
        };
    if let Some(prompt) = args.prompt {
        println!("{}", reply(&mut messages, prompt, &params)?);
        return Ok(());
    }
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        println!("{}", reply(&mut messages, line, &params)?);
        params.seed = params.seed.wrapping_add(1);
    }
    Ok(())
}
