#!/usr/bin/env python3
"""Build the reference fixtures under tests/fixtures/ (tiny random-weight Qwen2 /
Qwen2-VL / Qwen2.5-VL checkpoints, a tiny Qwen-style tokenizer and the Hugging Face
reference outputs the Rust tests compare against).

Run from the repository root:

    /work/pyref/bin/python tools/make_fixtures.py            # everything
    /work/pyref/bin/python tools/make_fixtures.py --only lm  # tokenizer + Qwen2 LMs
    /work/pyref/bin/python tools/make_fixtures.py --only vlm # Qwen2-VL / Qwen2.5-VL

Everything is deterministic (fixed seeds, single-threaded torch, fixed corpus), so a
rerun with the pinned versions in tools/requirements.txt rewrites byte-identical
files (safetensors headers are sorted; JSON is dumped with sorted keys).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

import transformers
from transformers import (
    GenerationConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "models"
REFERENCE = FIXTURES / "reference"
IMAGES = REFERENCE / "images"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

# Qwen2's pre-tokenizer split pattern (transformers/models/qwen2/tokenization_qwen2.py).
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2 / Qwen2-VL special tokens, in the order (and so relative ids) of the published
# tokenizers (151643 + i there; BASE_VOCAB + i here).
SPECIAL_TOKENS = [
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
]
BASE_VOCAB = 500
TOKENIZER_SIZE = BASE_VOCAB + len(SPECIAL_TOKENS)
# Published checkpoints pad the embedding matrix beyond the tokenizer (151936 > 151657);
# the fixtures do the same so code never assumes vocab_size == tokenizer size.
MODEL_VOCAB = 528

ENDOFTEXT_ID = BASE_VOCAB + 0
IM_START_ID = BASE_VOCAB + 1
IM_END_ID = BASE_VOCAB + 2
VISION_START_ID = BASE_VOCAB + 9
VISION_END_ID = BASE_VOCAB + 10
VISION_PAD_ID = BASE_VOCAB + 11
IMAGE_PAD_ID = BASE_VOCAB + 12
VIDEO_PAD_ID = BASE_VOCAB + 13

# The chat template of Qwen/Qwen2-VL-2B-Instruct (tokenizer_config.json / chat_template.json
# as published; it is the same for Qwen2.5-VL-*-Instruct).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A vision-language model reads images and text together.",
    "You are a helpful assistant.",
    "Describe this image in one sentence.",
    "What is shown in the picture? Answer with a short phrase.",
    "The cat sat on the mat, and the dog sat on the log.",
    "Reinforcement learning with group relative policy optimization.",
    "Please think step by step, then put the final answer in a box.",
    "There are 3 apples, 12 oranges and 2024 grapes on the table.",
    "Count the objects: one, two, three, four, five, six, seven.",
    "Where is the red square? The red square is at the top left.",
    "Hello, world! How are you today? I'm fine, thanks.",
    "It's a sunny day; we'll go outside and they've already left.",
    "def main():\n    print('hello')\n    return 0\n",
    "for i in range(10):\n    total += i * 2\n",
    "Café, naïve, résumé, über, façade, jalapeño.",
    "日本語のテキストと中文文本也在这里。",
    "Emoji test: 🙂 🚀 ✨ and symbols © ® ™ ° ±.",
    "Multiple   spaces\tand\ttabs\n\nand blank lines\r\nhere.",
    "<think>The answer is four.</think><answer>4</answer>",
    "{\"bbox_2d\": [10, 20, 110, 220], \"label\": \"dog\"}",
    "The model outputs a bounding box for the object in the image.",
    "Video frames are sampled at two frames per second.",
]


def build_tokenizer() -> Tokenizer:
    """Byte-level BPE, Qwen2-style pipeline, trained offline on CORPUS."""
    tok = Tokenizer(
        models.BPE(
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BASE_VOCAB,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    assert tok.get_vocab_size() == BASE_VOCAB, tok.get_vocab_size()
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    assert tok.token_to_id("<|endoftext|>") == ENDOFTEXT_ID
    assert tok.token_to_id("<|video_pad|>") == VIDEO_PAD_ID
    return tok


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_tokenizer(directory: Path, tok: Tokenizer) -> Qwen2Tokenizer:
    """tokenizer.json + tokenizer_config.json (with the chat template inline, as the
    published Qwen2-VL-2B-Instruct has it)."""
    directory.mkdir(parents=True, exist_ok=True)
    hf_tok = Qwen2Tokenizer(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        errors="replace",
        split_special_tokens=False,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    hf_tok.save_pretrained(directory)
    # Keep one source of truth: the template lives in tokenizer_config.json, like the
    # published checkpoints (transformers 5 would otherwise write chat_template.jinja).
    jinja = directory / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()
    cfg_path = directory / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = QWEN2_VL_CHAT_TEMPLATE
    cfg["eos_token"] = "<|im_end|>"
    cfg["pad_token"] = "<|endoftext|>"
    cfg["bos_token"] = None
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg["added_tokens_decoder"] = {
        str(BASE_VOCAB + i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    write_json(cfg_path, cfg)
    # Re-save tokenizer.json through `tokenizers` so its layout is the library's own.
    tok.save(str(directory / "tokenizer.json"), pretty=True)
    reloaded = Qwen2Tokenizer.from_pretrained(directory)
    assert reloaded.chat_template == QWEN2_VL_CHAT_TEMPLATE
    return reloaded


def generation_config() -> GenerationConfig:
    # Mirrors Qwen2-VL-2B-Instruct's generation_config.json (eos list = im_end, endoftext).
    return GenerationConfig(
        bos_token_id=ENDOFTEXT_ID,
        pad_token_id=ENDOFTEXT_ID,
        eos_token_id=[IM_END_ID, ENDOFTEXT_ID],
        do_sample=True,
        temperature=0.01,
        top_p=0.001,
        top_k=1,
        repetition_penalty=1.0,
    )


TOKENIZER_CASES = [
    ("ascii", "Hello, world! How are you today?"),
    ("contractions", "It's what they've said: we'll see, I'm sure."),
    ("digits", "There are 12345 apples and 3.14 pies."),
    ("unicode", "Café naïve 日本語 中文 🙂🚀 ©±"),
    ("unicode_nfc", "Cafe\u0301 vs Caf\u00e9"),
    ("whitespace_runs", "a  b   c\t\td\n\n\ne \r\n  f    "),
    ("leading_spaces", "   indented line\n    more"),
    ("special_inline", "<|im_start|>user\nhi<|im_end|>\n<|vision_start|><|image_pad|><|vision_end|>text"),
    ("special_adjacent", "x<|endoftext|>y<|box_start|>(1,2),(3,4)<|box_end|>"),
    ("code", "def f(x):\n    return x ** 2  # square\n"),
    ("empty", ""),
]

# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def randomize_(model: torch.nn.Module, seed: int, std: float = 0.15) -> None:
    """Re-draw every parameter so logits have a wide spread (HF's default 0.02 init makes
    near-ties in argmax, which would make greedy-generation parity flaky)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim == 1 and ("norm" in name or "ln_" in name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[1] if p.ndim == 2 else int(np.prod(p.shape[1:]))
                scale = max(std, 1.0 / math.sqrt(fan_in))
                p.copy_(scale * torch.randn(p.shape, generator=gen))


def round_to_bf16_(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def write_safetensors_checkpoint(directory: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> None:
    """Write model.safetensors or model-0000i-of-0000n.safetensors + index, as HF does."""
    for old in directory.glob("model*.safetensors*"):
        old.unlink()
    tensors = {k: v.contiguous() for k, v in sorted(tensors.items())}
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(tensors)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    total = 0
    for i in range(shards):
        part = names[i * per : (i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k] for k in part}, str(directory / fname), metadata={"format": "pt"})
        for k in part:
            weight_map[k] = fname
            total += tensors[k].numel() * tensors[k].element_size()
    write_json(directory / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor | np.ndarray]) -> None:
    out = {}
    for k, v in sorted(tensors.items()):
        t = torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v
        if t.is_floating_point():
            t = t.to(torch.float32)
        out[k] = t.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata={"format": "pt"})


def greedy_margin(logits: torch.Tensor) -> float:
    """Smallest gap between the best and second-best logit over the given rows."""
    top2 = torch.topk(logits.reshape(-1, logits.shape[-1]).float(), 2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


# ---------------------------------------------------------------------------
# Qwen2 language models
# ---------------------------------------------------------------------------

LM_SPECS = {
    "qwen2-tiny": dict(
        config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=50000.0,
            tie_word_embeddings=True,
        ),
        seed=1234,
        dtype="float32",
        shards=1,
    ),
    "qwen2-sharded-bf16": dict(
        config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
        ),
        seed=4321,
        dtype="bfloat16",
        shards=2,
    ),
}

LM_PROMPTS = {
    "single": "The quick brown fox",
    "batch": ["Describe this image in one sentence.", "Hello"],
}

CHAT_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "How many apples are on the table?"},
    {"role": "assistant", "content": "There are 3 apples."},
    {"role": "user", "content": "And oranges?"},
]

MAX_NEW_TOKENS = 12


def qwen2_config(spec: dict) -> Qwen2Config:
    cfg = Qwen2Config(
        vocab_size=MODEL_VOCAB,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=3,
        attention_dropout=0.0,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID,
        **{k: v for k, v in spec.items() if k != "rope_theta"},
        rope_parameters={"rope_type": "default", "rope_theta": spec["rope_theta"]},
    )
    cfg.architectures = ["Qwen2ForCausalLM"]
    return cfg


def generate_pair(model, inputs: dict, **kw) -> tuple[list[list[int]], list[list[int]], float]:
    """Greedy generation with and without KV cache; returns new tokens only + min margin."""
    prompt_len = inputs["input_ids"].shape[1]
    outs = []
    margin = float("inf")
    for use_cache in (True, False):
        res = model.generate(
            **inputs,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            use_cache=use_cache,
            output_scores=True,
            return_dict_in_generate=True,
            **kw,
        )
        outs.append(res.sequences[:, prompt_len:].tolist())
        margin = min(margin, min(greedy_margin(s) for s in res.scores))
    return outs[0], outs[1], margin


def make_lm(name: str, spec: dict, tok: Tokenizer) -> None:
    print(f"[lm] {name}", flush=True)
    model_dir = MODELS / name
    ref_dir = REFERENCE / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    hf_tok = save_tokenizer(model_dir, tok)
    generation_config().save_pretrained(model_dir)

    cfg = qwen2_config(spec["config"])
    torch.manual_seed(spec["seed"])
    model = Qwen2ForCausalLM(cfg).eval()
    randomize_(model, spec["seed"])
    if spec["dtype"] == "bfloat16":
        round_to_bf16_(model)  # the reference runs f32 on exactly the bf16 values on disk
    cfg.dtype = spec["dtype"]
    cfg.save_pretrained(model_dir)
    state = model.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    store_dtype = torch.bfloat16 if spec["dtype"] == "bfloat16" else torch.float32
    write_safetensors_checkpoint(model_dir, {k: v.to(store_dtype) for k, v in state.items()}, spec["shards"])

    # Round trip: the directory we wrote must load in transformers and give the same logits.
    reloaded = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    cases = []
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        # 1. single prompt
        enc = hf_tok([LM_PROMPTS["single"]], return_tensors="pt")
        logits = model(**enc).logits
        assert torch.allclose(logits, reloaded(**enc).logits, atol=1e-6)
        gen_c, gen_nc, margin = generate_pair(model, enc)
        tensors["single.logits"] = logits[0]
        cases.append(
            dict(
                name="single",
                kind="prompt",
                text=LM_PROMPTS["single"],
                input_ids=enc["input_ids"].tolist(),
                attention_mask=enc["attention_mask"].tolist(),
                generated_ids_cache=gen_c,
                generated_ids_no_cache=gen_nc,
                min_greedy_margin=margin,
                max_new_tokens=MAX_NEW_TOKENS,
                logits_shape=list(logits[0].shape),
            )
        )

        # 2. batch of two prompts, left padding
        hf_tok.padding_side = "left"
        enc = hf_tok(LM_PROMPTS["batch"], return_tensors="pt", padding=True)
        assert (enc["attention_mask"] == 0).any(), "batch case must contain padding"
        # Positions as `generate` builds them for left padding: cumsum(mask) - 1, pads -> 1.
        position_ids = enc["attention_mask"].long().cumsum(-1) - 1
        position_ids = position_ids.masked_fill(enc["attention_mask"] == 0, 1)
        logits = model(**enc, position_ids=position_ids).logits
        assert torch.allclose(logits, reloaded(**enc, position_ids=position_ids).logits, atol=1e-6)
        assert torch.isfinite(logits).all()
        gen_c, gen_nc, margin = generate_pair(model, enc)
        tensors["batch_left_padded.logits"] = logits
        # Each row alone (no padding) must agree with the padded batch on real tokens.
        for row, text in enumerate(LM_PROMPTS["batch"]):
            solo = hf_tok([text], return_tensors="pt")
            solo_logits = model(**solo).logits[0]
            n = solo_logits.shape[0]
            assert torch.allclose(solo_logits, logits[row, -n:], atol=1e-4)
        cases.append(
            dict(
                name="batch_left_padded",
                kind="batch",
                texts=LM_PROMPTS["batch"],
                padding_side="left",
                input_ids=enc["input_ids"].tolist(),
                attention_mask=enc["attention_mask"].tolist(),
                position_ids=position_ids.tolist(),
                generated_ids_cache=gen_c,
                generated_ids_no_cache=gen_nc,
                min_greedy_margin=margin,
                max_new_tokens=MAX_NEW_TOKENS,
                logits_shape=list(logits.shape),
                note="logits at padded positions are included as HF computes them; compare where attention_mask == 1",
            )
        )

        # 3. chat template: system + user + assistant + user, add_generation_prompt
        rendered = hf_tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
        rendered_no_gen = hf_tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=False)
        user_only = [{"role": "user", "content": "Hi there"}]
        rendered_default_system = hf_tok.apply_chat_template(user_only, tokenize=False, add_generation_prompt=True)
        enc = hf_tok([rendered], return_tensors="pt")
        logits = model(**enc).logits
        gen_c, gen_nc, margin = generate_pair(model, enc)
        tensors["chat.logits"] = logits[0]
        cases.append(
            dict(
                name="chat",
                kind="chat",
                messages=CHAT_MESSAGES,
                add_generation_prompt=True,
                rendered=rendered,
                rendered_without_generation_prompt=rendered_no_gen,
                input_ids=enc["input_ids"].tolist(),
                attention_mask=enc["attention_mask"].tolist(),
                generated_ids_cache=gen_c,
                generated_ids_no_cache=gen_nc,
                min_greedy_margin=margin,
                max_new_tokens=MAX_NEW_TOKENS,
                logits_shape=list(logits[0].shape),
            )
        )
        cases.append(
            dict(
                name="chat_default_system",
                kind="chat_render_only",
                messages=user_only,
                add_generation_prompt=True,
                rendered=rendered_default_system,
                input_ids=hf_tok([rendered_default_system])["input_ids"],
            )
        )

    tok_cases = []
    for case_name, text in TOKENIZER_CASES:
        ids = hf_tok(text, add_special_tokens=True)["input_ids"]
        assert ids == tok.encode(text).ids
        tok_cases.append(
            dict(
                name=case_name,
                text=text,
                ids=ids,
                tokens=[hf_tok.convert_ids_to_tokens(i) for i in ids],
                decoded=hf_tok.decode(ids, skip_special_tokens=False),
                decoded_skip_special=hf_tok.decode(ids, skip_special_tokens=True),
            )
        )

    write_json(
        ref_dir / "cases.json",
        dict(
            model=name,
            model_dir=f"tests/fixtures/models/{name}",
            dtype_on_disk=spec["dtype"],
            eos_token_id=[IM_END_ID, ENDOFTEXT_ID],
            pad_token_id=ENDOFTEXT_ID,
            generation="greedy (do_sample=False), stops at eos_token_id, max_new_tokens=12; "
            "generated ids exclude the prompt; rows that stopped early are padded with pad_token_id",
            tolerance_logits_abs=1e-4,
            cases=cases,
            tokenizer_cases=tok_cases,
            versions=versions(),
        ),
    )
    save_tensors(ref_dir / "tensors.safetensors", tensors)


def versions() -> dict:
    import PIL
    import safetensors
    import tokenizers

    return dict(
        torch=torch.__version__,
        transformers=transformers.__version__,
        tokenizers=tokenizers.__version__,
        safetensors=safetensors.__version__,
        numpy=np.__version__,
        pillow=PIL.__version__,
    )


# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["lm", "vlm"], default=None)
    args = ap.parse_args()
    tok = build_tokenizer()
    if args.only in (None, "lm"):
        for name, spec in LM_SPECS.items():
            make_lm(name, spec, tok)
    if args.only in (None, "vlm"):
        import make_fixtures_vlm  # noqa: F401  (added below)
    return 0


if __name__ == "__main__":
    sys.exit(main())
