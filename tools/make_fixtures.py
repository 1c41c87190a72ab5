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
    # The Python `decoders.ByteLevel` binding ignores its flags; write the decoder and the
    # ByteLevel post-processor exactly as the published Qwen2 tokenizer.json has them.
    tj_path = directory / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tj["decoder"] = dict(byte_level)
    tj["post_processor"] = dict(byte_level)
    tj_path.write_text(json.dumps(tj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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


def published_lm_config(cfg: Qwen2Config, spec: dict) -> dict:
    """The same model in the layout published Qwen2 checkpoints use (e.g. Qwen2-0.5B-Instruct):
    top-level `rope_theta`, `torch_dtype`, no `rope_parameters` / `layer_types`."""
    c = spec["config"]
    return dict(
        architectures=["Qwen2ForCausalLM"],
        attention_dropout=0.0,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        hidden_act="silu",
        hidden_size=c["hidden_size"],
        initializer_range=0.02,
        intermediate_size=c["intermediate_size"],
        max_position_embeddings=cfg.max_position_embeddings,
        max_window_layers=cfg.max_window_layers,
        model_type="qwen2",
        num_attention_heads=c["num_attention_heads"],
        num_hidden_layers=c["num_hidden_layers"],
        num_key_value_heads=c["num_key_value_heads"],
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=c["rope_theta"],
        sliding_window=4096,
        tie_word_embeddings=c["tie_word_embeddings"],
        torch_dtype=spec["dtype"],
        transformers_version="4.40.1",
        use_cache=True,
        use_sliding_window=False,
        vocab_size=MODEL_VOCAB,
    )


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
    published = published_lm_config(cfg, spec)
    write_json(model_dir / "config.published.json", published)
    flat = Qwen2Config.from_dict(published)
    assert flat.rope_parameters["rope_theta"] == spec["config"]["rope_theta"]
    assert flat.num_key_value_heads == cfg.num_key_value_heads
    assert flat.tie_word_embeddings == cfg.tie_word_embeddings
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


# ---------------------------------------------------------------------------
# Vision-language models (Qwen2-VL, Qwen2.5-VL)
# ---------------------------------------------------------------------------

MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 16  # at most 16 merged tokens per image keeps fixtures small
VIDEO_FPS = 2.0  # metadata fps of the test video -> second_per_grid_ts = 2 / 2 = 1.0

TEXT_TINY = dict(
    vocab_size=MODEL_VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
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
)
# head_dim = 64 / 4 = 16 -> rotary half = 8 = 2 + 3 + 3 (published 16+24+24 = 128/2).
MROPE_SECTION = [2, 3, 3]

VLM_SPECS = {
    "qwen2-vl-tiny": dict(
        family="qwen2_vl",
        seed=777,
        rope_theta=50000.0,
        tie_word_embeddings=True,
        vision=dict(
            depth=2,
            embed_dim=32,
            num_heads=2,
            mlp_ratio=4,
            hidden_size=64,
            hidden_act="quick_gelu",
            in_channels=3,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
    ),
    "qwen2_5-vl-tiny": dict(
        family="qwen2_5_vl",
        seed=888,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        vision=dict(
            depth=4,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            hidden_act="silu",
            in_channels=3,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1, 3],
            tokens_per_second=2,
        ),
    ),
}


def vlm_classes(family: str):
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        return Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    return Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor


def vlm_config(spec: dict):
    config_cls, _, _ = vlm_classes(spec["family"])
    text = dict(TEXT_TINY)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": spec["rope_theta"], "mrope_section": MROPE_SECTION}
    cfg = config_cls(
        text_config=text,
        vision_config=dict(spec["vision"]),
        image_token_id=IMAGE_PAD_ID,
        video_token_id=VIDEO_PAD_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )
    cfg.architectures = [config_cls.__name__.replace("Config", "ForConditionalGeneration")]
    return cfg


def published_config(spec: dict, cfg) -> dict:
    """config.json as the published Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2.5-VL-3B-Instruct
    checkpoints have it: flat text fields, `rope_scaling: {type: mrope, mrope_section}`,
    `vision_config.in_chans`."""
    t = cfg.text_config
    out = dict(
        architectures=cfg.architectures,
        attention_dropout=0.0,
        bos_token_id=t.bos_token_id,
        eos_token_id=t.eos_token_id,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        vision_token_id=VISION_PAD_ID,
        image_token_id=IMAGE_PAD_ID,
        video_token_id=VIDEO_PAD_ID,
        hidden_act=t.hidden_act,
        hidden_size=t.hidden_size,
        initializer_range=0.02,
        intermediate_size=t.intermediate_size,
        max_position_embeddings=t.max_position_embeddings,
        max_window_layers=t.max_window_layers,
        model_type=spec["family"],
        num_attention_heads=t.num_attention_heads,
        num_hidden_layers=t.num_hidden_layers,
        num_key_value_heads=t.num_key_value_heads,
        rms_norm_eps=t.rms_norm_eps,
        rope_theta=spec["rope_theta"],
        sliding_window=4096,
        tie_word_embeddings=spec["tie_word_embeddings"],
        torch_dtype="float32",
        transformers_version="4.41.2",
        use_cache=True,
        use_sliding_window=False,
        rope_scaling={"type": "mrope", "mrope_section": MROPE_SECTION},
        vocab_size=t.vocab_size,
    )
    v = dict(spec["vision"])
    v["in_chans"] = v.pop("in_channels")
    v["spatial_patch_size"] = v["patch_size"]
    if spec["family"] == "qwen2_vl":
        v.pop("hidden_act")  # not in the published Qwen2-VL vision_config (quick_gelu is the default)
    out["vision_config"] = v
    return out


def published_name(name: str) -> str:
    """transformers 5 names -> the names in the published model.safetensors.index.json
    (`model.language_model.X` -> `model.X`, `model.visual.X` -> `visual.X`)."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model.") :]
    if name.startswith("model.visual."):
        return "visual." + name[len("model.visual.") :]
    return name


def synth_image(h: int, w: int, seed: int, noise: float = 6.0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), 128 + 100 * np.sin((x + 2 * y) / 6.0)], axis=-1
    )
    for _ in range(3):
        y0, x0 = rng.randint(0, h), rng.randint(0, w)
        y1, x1 = min(h, y0 + rng.randint(3, max(4, h // 2))), min(w, x0 + rng.randint(3, max(4, w // 2)))
        img[y0:y1, x0:x1] = rng.randint(0, 256, 3)
    if noise:
        img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# name -> (height, width, PIL mode, noise)
IMAGE_SPECS = {
    "square_56x56": (56, 56, "RGB", 6.0),
    "rect_84x112": (84, 112, "RGB", 6.0),
    "odd_33x57": (33, 57, "RGB", 6.0),
    # preprocessing-only images
    "large_480x640": (480, 640, "RGB", 0.0),
    "wide_28x700": (28, 700, "RGB", 0.0),
    "tall_300x20": (300, 20, "RGB", 6.0),
    "gray_40x60": (40, 60, "L", 6.0),
    "rgba_50x70": (50, 70, "RGBA", 6.0),
    "too_wide_10x2100": (10, 2100, "RGB", 0.0),
}
VIDEO_FRAMES = 4
VIDEO_HW = (56, 84)


def write_images() -> None:
    from PIL import Image

    IMAGES.mkdir(parents=True, exist_ok=True)
    for i, (name, (h, w, mode, noise)) in enumerate(sorted(IMAGE_SPECS.items())):
        arr = synth_image(h, w, 100 + i, noise)
        img = Image.fromarray(arr, "RGB")
        if mode == "L":
            img = img.convert("L")
        elif mode == "RGBA":
            alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
            img = img.convert("RGBA")
            img.putalpha(Image.fromarray(alpha, "L"))
        img.save(IMAGES / f"{name}.png", optimize=False, compress_level=9)
    base = synth_image(VIDEO_HW[0], VIDEO_HW[1], 999)
    for f in range(VIDEO_FRAMES):
        frame = np.roll(base, shift=7 * f, axis=1)  # the scene pans right
        Image.fromarray(frame, "RGB").save(IMAGES / f"video_frame{f}.png", compress_level=9)


def load_image(name: str):
    from PIL import Image

    return Image.open(IMAGES / f"{name}.png")


def load_video() -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(IMAGES / f"video_frame{f}.png").convert("RGB")) for f in range(VIDEO_FRAMES)])


def make_processor(family: str, hf_tok):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    _, _, processor_cls = vlm_classes(family)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, cap_pixels_per_frame=False)
    return processor_cls(
        image_processor=image_processor,
        tokenizer=hf_tok,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


PREPROCESSOR_CONFIG = dict(
    min_pixels=MIN_PIXELS,
    max_pixels=MAX_PIXELS,
    patch_size=14,
    temporal_patch_size=2,
    merge_size=2,
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
    image_processor_type="Qwen2VLImageProcessor",
)

IMG = lambda name: {"type": "image", "image": f"images/{name}.png"}  # noqa: E731
VID = {"type": "video", "video": [f"images/video_frame{f}.png" for f in range(VIDEO_FRAMES)], "fps": VIDEO_FPS}


def txt(t: str) -> dict:
    return {"type": "text", "text": t}


VLM_CASES = [
    ("one_image", [[{"role": "user", "content": [IMG("rect_84x112"), txt("Describe this image.")]}]]),
    (
        "two_images_multi_turn",
        [
            [
                {"role": "user", "content": [IMG("square_56x56"), txt("What is this?")]},
                {"role": "assistant", "content": "It is a red square."},
                {"role": "user", "content": [IMG("odd_33x57"), txt("Compare the two pictures.")]},
            ]
        ],
    ),
    ("video", [[{"role": "user", "content": [VID, txt("What happens in this video?")]}]]),
    (
        "image_and_video",
        [[{"role": "user", "content": [IMG("odd_33x57"), txt("Now the video:"), VID, txt("Same scene?")]}]],
    ),
    (
        "batch_images_left_padded",
        [
            [{"role": "user", "content": [IMG("odd_33x57"), txt("Count the objects.")]}],
            [
                {"role": "system", "content": "Answer with a short phrase."},
                {"role": "user", "content": [IMG("square_56x56"), txt("Where is the red square? Think step by step.")]},
            ],
        ],
    ),
]


FULL_LOGITS_CASES = {"one_image", "two_images_multi_turn", "video"}
VLM_INPUT_IMAGES = {"square_56x56", "rect_84x112", "odd_33x57"}


def run_processor(processor, family: str, conversations: list) -> tuple[dict, list[str], list[str], bool]:
    texts, images, image_names, has_video = [], [], [], False
    for conv in conversations:
        texts.append(processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True))
        for msg in conv:
            if isinstance(msg["content"], str):
                continue
            for part in msg["content"]:
                if part["type"] == "image":
                    name = Path(part["image"]).stem
                    image_names.append(name)
                    images.append(load_image(name))
                elif part["type"] == "video":
                    has_video = True
    kwargs = {}
    if images:
        kwargs["images"] = images
    if has_video:
        kwargs["videos"] = [load_video()]
        kwargs["video_metadata"] = [{"fps": VIDEO_FPS, "total_num_frames": VIDEO_FRAMES}]
    processor.tokenizer.padding_side = "left"
    enc = processor(text=texts, return_tensors="pt", padding=True, **kwargs)
    return enc, texts, image_names, has_video


def capture_generation_positions(model, inputs: dict) -> tuple[list, list]:
    """Position ids the language model receives during cached greedy generation.

    Returns the prefill's text positions `[batch][seq]` (cumsum(mask) - 1, the row
    transformers uses for the causal/padding mask) and, per decode step, the M-RoPE ids
    `[3][batch]` of the fed token (equal on the three axes: attended tokens before it +
    rope_delta)."""
    seen = []

    def hook(_module, _args, kwargs):
        seen.append(kwargs["position_ids"].clone())

    handle = model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, use_cache=True)
    finally:
        handle.remove()
    prefill = seen[0]
    assert prefill.shape[0] == 4, "transformers 5 passes [text; t; h; w] position rows"
    decode = [step[1:, :, 0].tolist() for step in seen[1:]]
    return prefill[0].tolist(), decode


def make_vlm(name: str, spec: dict, tok: Tokenizer) -> None:
    print(f"[vlm] {name}", flush=True)
    family = spec["family"]
    _, model_cls, processor_cls = vlm_classes(family)
    model_dir = MODELS / name
    ref_dir = REFERENCE / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    hf_tok = save_tokenizer(model_dir, tok)
    generation_config().save_pretrained(model_dir)
    processor = make_processor(family, hf_tok)

    cfg = vlm_config(spec)
    torch.manual_seed(spec["seed"])
    model = model_cls(cfg).eval()
    randomize_(model, spec["seed"])
    cfg.dtype = "float32"
    cfg.save_pretrained(model_dir)
    write_json(model_dir / "config.published.json", published_config(spec, cfg))
    write_json(model_dir / "preprocessor_config.json", dict(PREPROCESSOR_CONFIG, processor_class=processor_cls.__name__))
    write_json(model_dir / "chat_template.json", {"chat_template": QWEN2_VL_CHAT_TEMPLATE})
    state = model.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    write_safetensors_checkpoint(model_dir, {published_name(k): v for k, v in state.items()})

    # The published-name checkpoint must load in transformers (its conversion mapping) ...
    reloaded = model_cls.from_pretrained(model_dir, dtype=torch.float32).eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k
    # ... and the flat published-style config must describe the same model.
    config_cls, _, _ = vlm_classes(family)
    flat = config_cls.from_dict(json.loads((model_dir / "config.published.json").read_text()))
    assert flat.text_config.hidden_size == cfg.text_config.hidden_size
    assert flat.text_config.rope_parameters["mrope_section"] == MROPE_SECTION
    assert flat.text_config.rope_parameters["rope_theta"] == spec["rope_theta"]
    assert flat.vision_config.depth == cfg.vision_config.depth

    from safetensors.torch import load_file

    preprocessed = load_file(str(REFERENCE / "preprocess" / "tensors.safetensors"))
    cases, tensors = [], {}
    with torch.no_grad():
        for case_name, conversations in VLM_CASES:
            enc, texts, image_names, has_video = run_processor(processor, family, conversations)
            mm = enc["mm_token_type_ids"]
            expected_mm = (enc["input_ids"] == IMAGE_PAD_ID).long() + 2 * (enc["input_ids"] == VIDEO_PAD_ID).long()
            assert torch.equal(mm.long(), expected_mm), "mm_token_type_ids must follow the placeholder ids"
            rope_kwargs = dict(
                image_grid_thw=enc.get("image_grid_thw"),
                video_grid_thw=enc.get("video_grid_thw"),
                attention_mask=enc["attention_mask"],
                mm_token_type_ids=mm,
            )
            if family == "qwen2_5_vl":
                rope_kwargs["second_per_grid_ts"] = enc.get("second_per_grid_ts")
            position_ids, rope_deltas = model.model.get_rope_index(enc["input_ids"], **rope_kwargs)

            # Pixel inputs are stored once per file in reference/preprocess/tensors.safetensors;
            # a case's pixel_values are those of its images concatenated in order.
            if "pixel_values" in enc:
                shared = torch.cat([preprocessed[f"{n}.pixel_values"] for n in image_names])
                assert torch.equal(shared, enc["pixel_values"]), case_name
            if "pixel_values_videos" in enc:
                assert torch.equal(preprocessed["video.pixel_values_videos"], enc["pixel_values_videos"])
            if "pixel_values" in enc:
                vis = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
                tensors[f"{case_name}.image_embeds"] = vis.pooler_output
                if family == "qwen2_vl":
                    tensors[f"{case_name}.image_vision_hidden"] = vis.last_hidden_state
            if "pixel_values_videos" in enc:
                vis = model.model.visual(enc["pixel_values_videos"], grid_thw=enc["video_grid_thw"])
                tensors[f"{case_name}.video_embeds"] = vis.pooler_output
                if family == "qwen2_vl":
                    tensors[f"{case_name}.video_vision_hidden"] = vis.last_hidden_state

            out = model(**enc)
            assert torch.isfinite(out.logits).all()
            assert torch.allclose(out.logits, reloaded(**enc).logits, atol=1e-6)
            logits = out.logits if out.logits.shape[0] > 1 else out.logits[0]
            if case_name in FULL_LOGITS_CASES:
                tensors[f"{case_name}.logits"] = logits
                logits_key = "logits"
            else:
                # Size budget: extra cases keep only the last position of each row.
                logits = out.logits[:, -1, :] if out.logits.shape[0] > 1 else out.logits[0, -1:, :]
                tensors[f"{case_name}.last_logits"] = logits
                logits_key = "last_logits"
            gen_c, gen_nc, margin = generate_pair(model, dict(enc))
            text_positions, decode_positions = capture_generation_positions(model, dict(enc))

            case = dict(
                name=case_name,
                conversations=conversations,
                add_generation_prompt=True,
                rendered=texts,
                image_files=[f"images/{n}.png" for n in image_names],
                video_files=VID["video"] if has_video else [],
                video_fps=VIDEO_FPS if has_video else None,
                input_ids=enc["input_ids"].tolist(),
                attention_mask=enc["attention_mask"].tolist(),
                mm_token_type_ids=mm.tolist(),
                image_grid_thw=enc["image_grid_thw"].tolist() if "image_grid_thw" in enc else [],
                video_grid_thw=enc["video_grid_thw"].tolist() if "video_grid_thw" in enc else [],
                position_ids=position_ids.tolist(),
                rope_deltas=rope_deltas.reshape(-1).tolist(),
                generated_ids_cache=gen_c,
                generated_ids_no_cache=gen_nc,
                text_position_ids=text_positions,
                decode_position_ids=decode_positions,
                min_greedy_margin=margin,
                max_new_tokens=MAX_NEW_TOKENS,
                logits_key=logits_key,
                logits_shape=list(logits.shape),
            )
            if family == "qwen2_5_vl" and "second_per_grid_ts" in enc:
                case["second_per_grid_ts"] = [float(x) for x in enc["second_per_grid_ts"]]
            cases.append(case)

    vision = dict(spec["vision"])
    write_json(
        ref_dir / "cases.json",
        dict(
            model=name,
            family=family,
            model_dir=f"tests/fixtures/models/{name}",
            images_dir="tests/fixtures/reference/images",
            processor=dict(
                image_processor="Qwen2VLImageProcessorPil (PIL bicubic; torchvision not installed)",
                min_pixels=MIN_PIXELS,
                max_pixels=MAX_PIXELS,
                video_processor="Qwen2VLVideoProcessor(cap_pixels_per_frame=False)",
                padding_side="left",
            ),
            spatial_merge_size=vision["spatial_merge_size"],
            tokens_per_second=vision.get("tokens_per_second"),
            image_token_id=IMAGE_PAD_ID,
            video_token_id=VIDEO_PAD_ID,
            eos_token_id=[IM_END_ID, ENDOFTEXT_ID],
            pad_token_id=ENDOFTEXT_ID,
            tolerance_logits_abs=1e-4,
            cases=cases,
            versions=versions(),
        ),
    )
    save_tensors(ref_dir / "tensors.safetensors", tensors)


# ---------------------------------------------------------------------------
# get_rope_index: synthetic sequences, both families
# ---------------------------------------------------------------------------


def vision_block(kind: str, grid: list[int], merge: int = 2) -> list[int]:
    n = grid[0] * grid[1] * grid[2] // (merge * merge)
    pad = IMAGE_PAD_ID if kind == "image" else VIDEO_PAD_ID
    return [VISION_START_ID] + [pad] * n + [VISION_END_ID]


def make_rope_index_cases() -> None:
    print("[rope_index]", flush=True)
    rng = np.random.RandomState(5)

    def text(n: int) -> list[int]:
        return rng.randint(0, BASE_VOCAB, size=n).tolist()

    # Each case: rows (list of segments), grids consumed in row order.
    specs = []

    def add(name, rows, images=(), videos=(), seconds=None, pad_left=True):
        specs.append((name, rows, [list(g) for g in images], [list(g) for g in videos], seconds, pad_left))

    add("text_only", [text(7)])
    add("one_image", [text(5) + vision_block("image", [1, 4, 6]) + text(4)], images=[[1, 4, 6]])
    add("tall_image", [text(3) + vision_block("image", [1, 8, 4]) + text(2)], images=[[1, 8, 4]])
    add("image_at_start_and_end", [vision_block("image", [1, 2, 2])[1:-1] + text(3) + vision_block("image", [1, 4, 2])[1:-1]],
        images=[[1, 2, 2], [1, 4, 2]])
    add("video_t3", [text(4) + vision_block("video", [3, 4, 4]) + text(3)], videos=[[3, 4, 4]], seconds=[1.0])
    add("video_fractional_seconds",
        [text(2) + vision_block("video", [4, 2, 4]) + text(1) + vision_block("video", [5, 2, 2]) + text(2)
         + vision_block("video", [3, 4, 2]) + text(1)],
        videos=[[4, 2, 4], [5, 2, 2], [3, 4, 2]], seconds=[2.0 / 3.0, 2.5, 0.1])
    add("video_default_seconds", [text(3) + vision_block("video", [4, 2, 2]) + text(2)], videos=[[4, 2, 2]], seconds=None)
    add("mixed_images_and_video",
        [text(6) + vision_block("image", [1, 6, 8]) + text(3) + vision_block("video", [2, 4, 6]) + text(2)
         + vision_block("image", [1, 2, 4]) + text(5)],
        images=[[1, 6, 8], [1, 2, 4]], videos=[[2, 4, 6]], seconds=[0.5])
    add("large_grid", [text(2) + vision_block("image", [1, 20, 14]) + text(2)], images=[[1, 20, 14]])
    add("batch_left_padded",
        [text(3) + vision_block("image", [1, 4, 4]) + text(6),
         text(2),
         text(1) + vision_block("video", [2, 2, 4]) + text(1) + vision_block("image", [1, 2, 6]) + text(9)],
        images=[[1, 4, 4], [1, 2, 6]], videos=[[2, 2, 4]], seconds=[1.5])

    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    families = {}
    for fam, cls in (("qwen2_vl", Qwen2VLForConditionalGeneration), ("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration)):
        spec = VLM_SPECS["qwen2-vl-tiny" if fam == "qwen2_vl" else "qwen2_5-vl-tiny"]
        families[fam] = cls(vlm_config(spec)).eval()

    out_cases = []
    for name, rows, images, videos, seconds, pad_left in specs:
        width = max(len(r) for r in rows)
        input_ids = [[ENDOFTEXT_ID] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        ids_t = torch.tensor(input_ids, dtype=torch.long)
        mm = (ids_t == IMAGE_PAD_ID).long() + 2 * (ids_t == VIDEO_PAD_ID).long()
        case = dict(
            name=name,
            input_ids=input_ids,
            attention_mask=mask,
            image_grid_thw=images,
            video_grid_thw=videos,
            second_per_grid_ts=seconds,
        )
        for fam, model in families.items():
            kw = dict(
                mm_token_type_ids=mm,
                image_grid_thw=torch.tensor(images, dtype=torch.long) if images else None,
                video_grid_thw=torch.tensor(videos, dtype=torch.long) if videos else None,
                attention_mask=torch.tensor(mask, dtype=torch.long),
            )
            if fam == "qwen2_5_vl":
                kw["second_per_grid_ts"] = torch.tensor(seconds, dtype=torch.float32) if seconds is not None else None
            pos, deltas = model.model.get_rope_index(ids_t, **kw)
            case[fam] = dict(position_ids=pos.tolist(), rope_deltas=deltas.reshape(-1).tolist())
        out_cases.append(case)

    write_json(
        REFERENCE / "rope_index" / "cases.json",
        dict(
            about="transformers get_rope_index (Qwen2VLModel / Qwen2_5_VLModel) on synthetic sequences; "
            "position_ids are [3][batch][seq], masked (padding) positions are 0; rope_deltas per row. "
            "second_per_grid_ts are float32 in the reference (null = default 1 per video).",
            spatial_merge_size=2,
            tokens_per_second=VLM_SPECS["qwen2_5-vl-tiny"]["vision"]["tokens_per_second"],
            image_token_id=IMAGE_PAD_ID,
            video_token_id=VIDEO_PAD_ID,
            vision_start_token_id=VISION_START_ID,
            vision_end_token_id=VISION_END_ID,
            cases=out_cases,
            versions=versions(),
        ),
    )


# ---------------------------------------------------------------------------
# Image preprocessing (Qwen2VLImageProcessor, PIL backend)
# ---------------------------------------------------------------------------


def make_preprocess_cases() -> None:
    print("[preprocess]", flush=True)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    ip = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    vp = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, cap_pixels_per_frame=False)
    cases, tensors = [], {}
    for name in sorted(IMAGE_SPECS):
        img = load_image(name)
        case = dict(name=name, file=f"images/{name}.png", mode=img.mode, width=img.width, height=img.height)
        try:
            enc = ip(images=[img], return_tensors="pt")
        except ValueError as e:
            case["error"] = str(e)
            cases.append(case)
            continue
        grid = enc["image_grid_thw"][0].tolist()
        case["image_grid_thw"] = grid
        case["resized_height"] = grid[1] * 14
        case["resized_width"] = grid[2] * 14
        case["num_patches"] = int(enc["pixel_values"].shape[0])
        case["num_tokens"] = int(enc["pixel_values"].shape[0]) // 4
        if name in VLM_INPUT_IMAGES:
            tensors[f"{name}.pixel_values"] = enc["pixel_values"]
            case["pixel_values_key"] = f"{name}.pixel_values"
        cases.append(case)
    frames = load_video()
    venc = vp(videos=[frames], return_tensors="pt")
    tensors["video.pixel_values_videos"] = venc["pixel_values_videos"]
    cases.append(
        dict(
            name="video",
            files=VID["video"],
            frames=VIDEO_FRAMES,
            height=VIDEO_HW[0],
            width=VIDEO_HW[1],
            video_grid_thw=venc["video_grid_thw"][0].tolist(),
            pixel_values_key="video.pixel_values_videos",
        )
    )
    write_json(
        REFERENCE / "preprocess" / "cases.json",
        dict(
            about="Qwen2VLImageProcessorPil / Qwen2VLVideoProcessor outputs per file; pixel_values rows are "
            "patches of 3*2*14*14 values (channel, temporal, y, x), grouped by 2x2 merge windows",
            min_pixels=MIN_PIXELS,
            max_pixels=MAX_PIXELS,
            patch_size=14,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=PREPROCESSOR_CONFIG["image_mean"],
            image_std=PREPROCESSOR_CONFIG["image_std"],
            cases=cases,
            versions=versions(),
        ),
    )
    save_tensors(REFERENCE / "preprocess" / "tensors.safetensors", tensors)



def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["lm", "vlm"], default=None)
    args = ap.parse_args()
    tok = build_tokenizer()
    if args.only in (None, "lm"):
        for name, spec in LM_SPECS.items():
            make_lm(name, spec, tok)
    if args.only in (None, "vlm"):
        write_images()
        make_preprocess_cases()
        for name, spec in VLM_SPECS.items():
            make_vlm(name, spec, tok)
        make_rope_index_cases()
    return 0


if __name__ == "__main__":
    sys.exit(main())
