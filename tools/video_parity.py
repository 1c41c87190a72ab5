#!/usr/bin/env python3
"""Parity fixture for vlrl-video's sampling rules, computed by qwen-vl-utils itself.

Runs qwen_vl_utils.vision_process.fetch_video (decord reader path) with the
decord module mocked: a fake VideoReader reports a frame count, fps and frame
size and returns black frames, so the indices, sample_fps and resized sizes
come from qwen-vl-utils' own code (smart_nframes, calculate_video_frame_range,
torch.linspace, smart_resize, torchvision resize). Also records smart_resize
directly and a torch.linspace(...).round() sweep (as FNV-1a hashes, to keep the
file small).

Usage: /work/pyref/bin/python tools/video_parity.py tests/fixtures/video/qwen_parity.json
Needs: pip install qwen-vl-utils (0.0.14 used), torch, torchvision.
"""
import json
import random
import struct
import sys
import types

import numpy as np
import torch

import qwen_vl_utils
from qwen_vl_utils import vision_process as vp

VIDEOS = {}


class FakeBatch:
    def __init__(self, array):
        self.array = array

    def asnumpy(self):
        return self.array


class FakeVideoReader:
    """Stands in for decord.VideoReader: metadata from VIDEOS, black frames."""

    def __init__(self, path, *args, **kwargs):
        self.total, self.fps, self.height, self.width = VIDEOS[path]

    def __len__(self):
        return self.total

    def get_avg_fps(self):
        return self.fps

    def get_batch(self, idx):
        for i in idx:
            assert 0 <= i < self.total, (i, self.total)
        return FakeBatch(np.zeros((len(idx), self.height, self.width, 3), dtype=np.uint8))


fake_decord = types.ModuleType("decord")
fake_decord.VideoReader = FakeVideoReader
sys.modules["decord"] = fake_decord
vp.get_video_reader_backend = lambda: "decord"


def fail_fallback(ele):
    raise RuntimeError("torchvision fallback disabled: the decord path raised")


vp.VIDEO_READER_BACKENDS["torchvision"] = fail_fallback
vp.logger.setLevel("ERROR")


def shape_only_resize(video, size, **kwargs):
    """torchvision's resize always returns exactly `size`; skip the pixel work."""
    return torch.zeros((video.shape[0], video.shape[1], size[0], size[1]), dtype=torch.uint8)


vp.transforms.functional.resize = shape_only_resize
# Frame bytes held at once by the fake reader (keeps memory and time small).
FRAME_BUDGET = 150_000_000


def fnv1a(indices):
    h = 0xCBF29CE484222325
    for i in indices:
        for b in struct.pack("<Q", int(i)):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fetch_case(name, total, fps, height, width, opts, patch_size=14):
    VIDEOS[name] = (total, fps, height, width)
    ele = {"type": "video", "video": name, **opts}
    case = {
        "total_frames": total,
        "fps": fps,
        "height": height,
        "width": width,
        "patch_size": patch_size,
        "options": opts,
    }
    try:
        (video, meta), sample_fps = vp.fetch_video(
            ele, image_patch_size=patch_size, return_video_sample_fps=True, return_video_metadata=True
        )
        case["indices"] = [int(i) for i in meta["frames_indices"]]
        case["sample_fps"] = float(sample_fps)
        case["resized_height"] = int(video.shape[2])
        case["resized_width"] = int(video.shape[3])
    except Exception as e:  # noqa: BLE001 - any error is the expected outcome
        case["error"] = type(e).__name__
    return case


def main(out_path):
    rng = random.Random(0)
    cases = []
    sizes = [(480, 640), (720, 1280), (1080, 1920), (240, 320), (360, 640), (1920, 1080), (100, 3000), (28, 28), (50, 12000)]
    rates = [30.0, 29.97002997002997, 25.0, 24.0, 23.976023976023978, 60.0, 15.0, 1.5]
    totals = [2, 3, 4, 7, 16, 31, 32, 64, 100, 300, 301, 899, 1800, 5400, 20000]
    n = 0
    for total in totals:
        for fps in rng.sample(rates, 3):
            h, w = rng.choice(sizes[:6])
            while min(768, total) * h * w * 3 > FRAME_BUDGET:
                h, w = h // 2, w // 2
            variants = [
                {},
                {"nframes": rng.choice([2, 4, 5, 8, 16, 17, 32, 64])},
                {"fps": rng.choice([0.5, 1.0, 2.0, 4.0])},
                {"fps": 2.0, "min_frames": rng.choice([4, 5, 8]), "max_frames": rng.choice([16, 33, 64])},
                {"video_start": round(rng.uniform(0, total / fps), 3)},
                {"video_start": round(rng.uniform(0, total / fps / 2), 3), "video_end": round(rng.uniform(total / fps / 2, total / fps * 1.2), 3)},
                {"video_start": total / fps + 1.0},
                {"video_end": round(rng.uniform(0, total / fps), 3), "nframes": 4},
                {"max_pixels": rng.choice([50176, 100352, 200704, 401408])},
                {"min_pixels": rng.choice([3136, 12544, 200704]), "total_pixels": rng.choice([1003520, 20480 * 28 * 28])},
                {"total_pixels": rng.choice([24576 * 28 * 28, 3000000])},
                {"resized_height": rng.choice([100, 224, 280, 333]), "resized_width": rng.choice([150, 224, 448, 500])},
            ]
            for opts in variants:
                patch = 16 if n % 7 == 3 else 14
                cases.append(fetch_case(f"v{n}", total, fps, h, w, opts, patch))
                n += 1
    # extreme shapes through the size rule
    for (h, w) in sizes[6:]:
        cases.append(fetch_case(f"v{n}", 64, 30.0, h, w, {"nframes": 8}))
        n += 1

    resize = []
    for _ in range(300):
        h = rng.randint(1, 4000)
        w = rng.randint(1, 4000)
        factor = rng.choice([28, 32])
        min_p = rng.choice([3136, 56 * 56, 128 * 28 * 28, 4 * 32 * 32])
        max_p = rng.choice([12845056, 768 * 28 * 28, 100352, 50000.5, 128 * 28 * 28 * 1.05])
        entry = {"height": h, "width": w, "factor": factor, "min_pixels": min_p, "max_pixels": max_p}
        try:
            entry["out"] = list(vp.smart_resize(h, w, factor, min_pixels=min_p, max_pixels=max_p))
        except Exception as e:  # noqa: BLE001
            entry["error"] = type(e).__name__
        resize.append(entry)

    linspace = []
    for end in range(1, 700, 13):
        for start in (0, 1, 13):
            if start >= end:
                continue
            for steps in range(2, min(end - start + 1, 260) + 1, 2):
                idx = torch.linspace(start, end, steps).round().long().tolist()
                linspace.append([start, end, steps, fnv1a(idx)])
    for _ in range(300):
        start = rng.randint(0, 50000)
        end = start + rng.randint(1, 200000)
        steps = rng.choice([2, 4, 16, 32, 64, 128, 256, 768])
        idx = torch.linspace(start, end, steps).round().long().tolist()
        linspace.append([start, end, steps, fnv1a(idx)])

    out = {
        "generator": "tools/video_parity.py",
        "qwen_vl_utils_version": getattr(qwen_vl_utils, "__version__", "0.0.14"),
        "torch_version": torch.__version__,
        "fetch_video": cases,
        "smart_resize": resize,
        "linspace_round_fnv1a": linspace,
    }
    with open(out_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    ok = sum(1 for c in cases if "error" not in c)
    print(f"{len(cases)} fetch_video cases ({ok} ok, {len(cases) - ok} errors), {len(resize)} smart_resize, {len(linspace)} linspace")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/video/qwen_parity.json")
