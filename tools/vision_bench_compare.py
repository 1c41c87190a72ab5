"""Python side of the vlrl-vision benchmarks: the Hugging Face image processors
and vision towers on the same inputs and configs as crates/vision/benches/vision.rs.

    /work/pyref/bin/python tools/vision_bench_compare.py [--threads N]

Prints one line per measurement (median of repeats, milliseconds). Numbers go
in docs/vision.md next to the criterion results.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from transformers import Qwen2VLImageProcessor, Qwen2VLImageProcessorPil
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel


def test_card(width: int, height: int, seed: int) -> Image.Image:
    """Same pixels as `test_card` in benches/vision.rs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.uint64)
    v = x * 7 + y * 13 + seed * 31
    r = v % 251
    g = (x ^ y) % 256
    b = (x * y + seed) % 253
    return Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8))


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    one = [test_card(1024, 768, 0)]
    eight = [test_card(1024, 768, i) for i in range(8)]
    for label, cls in (("pil", Qwen2VLImageProcessorPil), ("torchvision", Qwen2VLImageProcessor)):
        proc = cls()
        ms = timed(lambda: proc(images=one, return_tensors="pt"), args.repeats)
        print(f"preprocess 1024x768 {label}: {ms:.2f} ms")
        ms = timed(lambda: proc(images=eight, return_tensors="pt"), max(3, args.repeats // 3))
        print(f"preprocess 8x1024x768 {label}: {ms:.2f} ms")

    out = Qwen2VLImageProcessorPil()(images=[test_card(448, 448, 1)], return_tensors="pt")
    pixels, grid = out["pixel_values"], out["image_grid_thw"]
    towers = {
        "qwen2_vl": (
            Qwen2VLVisionConfig(depth=2, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4),
            Qwen2VisionTransformerPretrainedModel,
        ),
        "qwen2_5_vl": (
            Qwen2_5_VLVisionConfig(
                depth=2, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                window_size=112, fullatt_block_indexes=[1],
            ),
            Qwen2_5_VisionTransformerPretrainedModel,
        ),
    }
    for name, (cfg, cls) in towers.items():
        for attn in ("eager", "sdpa"):
            cfg._attn_implementation = attn
            model = cls(cfg).eval()
            with torch.no_grad():
                ms = timed(lambda: model(pixels, grid_thw=grid), max(3, args.repeats // 2))
            print(f"tower 448x448 depth2 {name} ({attn}, {args.threads} threads): {ms:.2f} ms")


if __name__ == "__main__":
    main()
