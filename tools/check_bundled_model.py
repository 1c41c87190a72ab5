#!/usr/bin/env python3
"""Loads the bundled model (assets/med-tiny) with transformers and checks it
against vlrl.

1. `recipes pretrain --dump-logits FILE` (Rust) writes a fixed multimodal
   batch (token ids, attention mask, pixel patches, grid_thw) and the logits
   vlrl computes on it;
2. this script loads the same directory with
   `Qwen2VLForConditionalGeneration.from_pretrained` and `AutoTokenizer`,
   runs the same batch, and asserts max |Δlogit| <= 1e-4 on every real
   (non-padding) position; it also checks the HF tokenizer turns the chat
   template into the same ids as vlrl.

Usage (from the repository root):
    /work/pyref/bin/python tools/check_bundled_model.py [--model assets/med-tiny] [--logits FILE]
Without --logits it runs cargo to produce the file first.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="assets/med-tiny")
    ap.add_argument("--logits", default=None, help="JSON from `recipes pretrain --dump-logits`")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    model_dir = Path(args.model)
    if args.logits is None:
        tmp = Path(tempfile.mkdtemp()) / "med-tiny-logits.json"
        subprocess.run(
            ["cargo", "run", "--release", "-q", "-p", "recipes", "--", "pretrain",
             "--out", str(model_dir), "--dump-logits", str(tmp)],
            check=True,
        )
        ref_path = tmp
    else:
        ref_path = Path(args.logits)
    ref = json.loads(ref_path.read_text())

    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    input_ids = torch.tensor(ref["input_ids"], dtype=torch.long)
    attention_mask = torch.tensor(ref["attention_mask"], dtype=torch.long)
    pixel_values = torch.tensor(ref["pixel_values"], dtype=torch.float32).reshape(ref["pixel_shape"])
    grid = torch.tensor(ref["image_grid_thw"], dtype=torch.long)
    # 1 on image placeholders (what the processor returns beside input_ids).
    image_pad_id = model.config.image_token_id
    mm_token_type_ids = (input_ids == image_pad_id).long()
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            mm_token_type_ids=mm_token_type_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=grid,
        )
    hf = out.logits.float().numpy()
    ours = np.asarray(ref["logits"], dtype=np.float32).reshape(ref["logits_shape"])
    assert hf.shape == ours.shape, (hf.shape, ours.shape)
    real = np.asarray(ref["attention_mask"], dtype=bool)
    diff = np.abs(hf - ours)[real]
    max_diff = float(diff.max())
    print(f"logits {list(ours.shape)}: max |transformers - vlrl| over real positions = {max_diff:.3e}")

    # The tokenizer: HF's chat template + tokenizer vs the ids vlrl fed.
    tok = AutoTokenizer.from_pretrained(model_dir)
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    merged = int(grid[0].prod()) // 4
    tok_ok = True
    for row, mask, text in zip(ref["input_ids"], ref["attention_mask"], ref["prompt_texts"]):
        ids_rust = [t for t, m in zip(row, mask) if m]
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        expanded = []
        for t in ids:
            expanded.extend([t] * merged if t == image_pad else [t])
        same = ids_rust[: len(expanded)] == expanded
        tok_ok &= same
        print(f"prompt ids ({len(expanded)} tokens) identical to vlrl's: {same}")

    ok = max_diff <= args.tol and tok_ok
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
