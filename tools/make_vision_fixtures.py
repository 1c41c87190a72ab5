"""Reference fixtures for vlrl-vision (preprocessing and vision towers).

Runs Hugging Face transformers' Qwen2-VL image/video processors and the
Qwen2-VL / Qwen2.5-VL vision towers on deterministic inputs and stores the
results under tests/fixtures/vision/ so the Rust tests never need Python.

    /work/pyref/bin/python tools/make_vision_fixtures.py

Preprocessing: both image-processor backends of transformers 5 are run:
`Qwen2VLImageProcessorPil` (PIL bicubic resize, what you get without
torchvision) and `Qwen2VLImageProcessor` (torchvision, the default whenever
torchvision is installed). Videos only have a torchvision processor.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import save_file

import transformers
from transformers import Qwen2VLImageProcessor, Qwen2VLImageProcessorPil
from transformers.image_utils import load_image
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "vision"
IMG = OUT / "images"


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16(arr: np.ndarray, path: Path) -> None:
    """Writes a 16-bit PNG (grey, grey+alpha, RGB or RGBA) by hand: PIL cannot save 16-bit colour."""
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = arr.reshape(h, -1).astype(">u2")
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    )


def smooth_rgb(rng: np.random.Generator, h: int, w: int, noise: float = 12.0) -> np.ndarray:
    """A photo-like test card: gradients, a few hard edges and some noise, so
    bicubic over/undershoot and clipping are exercised."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / max(w, 1) * 6.1 + y / max(h, 1) * 1.3)
    g = 255 * (y / max(h - 1, 1))
    b = np.where(((x // 5) + (y // 7)) % 2 == 0, 250, 10).astype(np.float64)
    img = np.stack([r, g, b], -1) + rng.normal(0, noise, (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_images(rng: np.random.Generator) -> dict[str, dict]:
    """Writes the input PNGs; returns name -> processor kwargs."""
    IMG.mkdir(parents=True, exist_ok=True)
    cases: dict[str, dict] = {}

    Image.fromarray(smooth_rgb(rng, 7, 10)).save(IMG / "tiny.png")
    cases["tiny"] = {}
    Image.fromarray(smooth_rgb(rng, 77, 123)).save(IMG / "odd.png")
    cases["odd"] = {}
    Image.fromarray(smooth_rgb(rng, 700, 1000, noise=0.0)).save(IMG / "huge.png")
    cases["huge"] = {"max_pixels": 28 * 28 * 16}
    Image.fromarray(smooth_rgb(rng, 2, 250)).save(IMG / "wide.png")
    cases["wide"] = {"min_pixels": 28 * 28}
    Image.fromarray(smooth_rgb(rng, 250, 2)).save(IMG / "tall.png")
    cases["tall"] = {"min_pixels": 28 * 28}

    rgba = np.concatenate([smooth_rgb(rng, 60, 45), rng.integers(0, 256, (60, 45, 1), dtype=np.uint8)], -1)
    rgba[:10, :, 3] = 0
    rgba[10:20, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(IMG / "rgba.png")
    cases["rgba"] = {}

    grey = smooth_rgb(rng, 41, 38)[..., 1]
    Image.fromarray(grey, "L").save(IMG / "grey.png")
    cases["grey"] = {}

    la = np.stack([smooth_rgb(rng, 36, 40)[..., 0], rng.integers(0, 256, (36, 40), dtype=np.uint8)], -1)
    Image.fromarray(la, "LA").save(IMG / "grey_alpha.png")
    cases["grey_alpha"] = {}

    g16 = (rng.integers(0, 1024, (40, 44))).astype(np.uint16)  # PIL clips I;16 to 255 on convert("RGB")
    write_png16(g16, IMG / "grey16.png")
    cases["grey16"] = {}

    rgb16 = rng.integers(0, 65536, (42, 40, 3)).astype(np.uint16)
    write_png16(rgb16, IMG / "rgb16.png")
    cases["rgb16"] = {}

    rgba16 = rng.integers(0, 65536, (38, 45, 4)).astype(np.uint16)
    write_png16(rgba16, IMG / "rgba16.png")
    cases["rgba16"] = {}

    pal = Image.fromarray(smooth_rgb(rng, 40, 30)).quantize(colors=16)
    pal.info["transparency"] = 3
    pal.save(IMG / "palette.png", transparency=3)
    cases["palette"] = {}

    # EXIF orientation 6 (rotate 90 CW to display) stored in a PNG eXIf chunk.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(smooth_rgb(rng, 24, 40)).save(IMG / "exif_rot6.png", exif=exif.tobytes())
    cases["exif_rot6"] = {}

    # Aspect ratio over 200: smart_resize raises.
    Image.fromarray(smooth_rgb(rng, 2, 500)).save(IMG / "too_wide.png")
    return cases


def open_like_reference(path: Path) -> Image.Image:
    """transformers.image_utils.load_image without its final convert("RGB"):
    exif_transpose, then the processor's own convert_to_rgb composites alpha on white."""
    return ImageOps.exif_transpose(Image.open(path))


TV_CASES = ("tiny", "odd", "rgba")


def first_temporal_slot(pixel_values: torch.Tensor) -> torch.Tensor:
    """The processor repeats an image temporal_patch_size (2) times inside each
    patch vector (layout channel, temporal, row, col). Keep slot 0 only, after
    checking the copy is exact, to halve the fixture size."""
    p = pixel_values.float().reshape(pixel_values.shape[0], 3, 2, 14, 14)
    assert torch.equal(p[:, :, 0], p[:, :, 1])
    return p[:, :, 0].reshape(pixel_values.shape[0], -1).contiguous()


def preprocessing_fixtures(cases: dict[str, dict]) -> dict:
    tensors: dict[str, torch.Tensor] = {}
    meta = {}
    for name, kwargs in cases.items():
        path = IMG / f"{name}.png"
        for backend, cls in (("pil", Qwen2VLImageProcessorPil), ("tv", Qwen2VLImageProcessor)):
            if backend == "tv" and name not in TV_CASES:
                continue
            proc = cls(**kwargs)
            out = proc(images=[open_like_reference(path)], return_tensors="pt")
            tensors[f"{name}.{backend}.pixel_values"] = first_temporal_slot(out["pixel_values"])
            tensors[f"{name}.{backend}.grid_thw"] = out["image_grid_thw"].long().contiguous()
        # transformers.load_image drops alpha (convert("RGB")) instead of compositing.
        if name in ("rgba", "exif_rot6"):
            out = Qwen2VLImageProcessorPil(**kwargs)(images=[load_image(str(path))], return_tensors="pt")
            tensors[f"{name}.load_image.pil.pixel_values"] = first_temporal_slot(out["pixel_values"])
            tensors[f"{name}.load_image.pil.grid_thw"] = out["image_grid_thw"].long().contiguous()
        meta[name] = kwargs

    # A batch of two differently sized images: concatenation order.
    out = Qwen2VLImageProcessorPil()(images=[open_like_reference(IMG / "odd.png"), open_like_reference(IMG / "tiny.png")], return_tensors="pt")
    # Batch = concatenation of the single-image results (checked here, not stored).
    assert torch.equal(
        first_temporal_slot(out["pixel_values"]),
        torch.cat([tensors["odd.pil.pixel_values"], tensors["tiny.pil.pixel_values"]]),
    )
    tensors["batch.pil.grid_thw"] = out["image_grid_thw"].long().contiguous()

    # Video: 5 frames (odd, so the last frame is repeated), torchvision only.
    rng = np.random.default_rng(7)
    frames = np.stack([smooth_rgb(rng, 40, 60) for _ in range(5)])
    for i, f in enumerate(frames):
        Image.fromarray(f).save(IMG / f"video_frame{i}.png")
    vproc = Qwen2VLVideoProcessor(size={"shortest_edge": 28 * 28 * 2, "longest_edge": 28 * 28 * 16})
    vout = vproc(videos=[frames], return_tensors="pt", do_sample_frames=False, cap_pixels_per_frame=False)
    tensors["video.tv.pixel_values"] = vout["pixel_values_videos"].float().contiguous()
    tensors["video.tv.grid_thw"] = vout["video_grid_thw"].long().contiguous()
    meta["video"] = {"min_pixels": 28 * 28 * 2, "max_pixels": 28 * 28 * 16, "frames": 5}
    save_file(tensors, str(OUT / "preprocess.safetensors"))
    return meta


def tower_fixtures() -> dict:
    torch.manual_seed(0)
    grid = torch.tensor([[1, 4, 6], [2, 4, 4], [1, 2, 2]])  # two images and a 2-step video
    n = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    patch_dim = 3 * 2 * 14 * 14
    pixels = torch.randn(n, patch_dim)
    meta = {}
    io = {"pixel_values": pixels.contiguous(), "grid_thw": grid.long()}

    def randomize(model: torch.nn.Module) -> None:
        # Non-trivial norms and biases, so a wrong mapping of any weight shows.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("weight") and p.ndim == 1:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                elif name.endswith("bias"):
                    p.copy_(0.05 * torch.randn_like(p))
                else:
                    p.copy_(torch.randn_like(p) * (1.0 / p.shape[-1] ** 0.5 if p.ndim == 2 else 0.02))

    configs = {
        "qwen2_vl": (
            Qwen2VLVisionConfig(depth=2, embed_dim=32, hidden_size=48, num_heads=4, mlp_ratio=2),
            Qwen2VisionTransformerPretrainedModel,
        ),
        "qwen2_5_vl": (
            Qwen2_5_VLVisionConfig(
                depth=3, hidden_size=32, intermediate_size=40, num_heads=4, out_hidden_size=48,
                window_size=56, fullatt_block_indexes=[1],
            ),
            Qwen2_5_VisionTransformerPretrainedModel,
        ),
    }
    for name, (cfg, cls) in configs.items():
        cfg._attn_implementation = "eager"
        model = cls(cfg).eval()
        randomize(model)
        with torch.no_grad():
            out = model(pixels, grid_thw=grid)
        state = {f"visual.{k}": v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(OUT / f"{name}_tower.safetensors"))
        io[f"{name}.last_hidden_state"] = out.last_hidden_state.contiguous()
        io[f"{name}.pooler_output"] = out.pooler_output.contiguous()
        d = cfg.to_dict()
        (OUT / f"{name}_vision_config.json").write_text(json.dumps(d, indent=1, sort_keys=True, default=str))
        meta[name] = {"params": sum(p.numel() for p in model.parameters())}
    save_file(io, str(OUT / "tower_io.safetensors"))
    return meta


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def test_card(width: int, height: int, seed: int) -> Image.Image:
    """Same pixels as `test_card` in crates/vision/benches/vision.rs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.uint64)
    v = x * 7 + y * 13 + seed * 31
    return Image.fromarray(np.stack([v % 251, (x ^ y) % 256, (x * y + seed) % 253], -1).astype(np.uint8))


def large_image_hashes() -> dict:
    """Full-size images are too big to store: keep an FNV-1a-64 hash of the
    reference pixel_values bytes (f32 little endian) instead."""
    out = {}
    for w, h in ((1024, 768), (1000, 1333)):
        img = test_card(w, h, 0)
        for backend, cls in (("pil", Qwen2VLImageProcessorPil), ("tv", Qwen2VLImageProcessor)):
            res = cls()(images=[img], return_tensors="pt")
            pv = res["pixel_values"].float().contiguous().numpy().astype("<f4")
            out[f"{w}x{h}.{backend}"] = {
                "grid_thw": res["image_grid_thw"].tolist()[0],
                "fnv1a64": fnv1a64(pv.tobytes()),
                "len": int(pv.size),
            }
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    cases = make_images(rng)
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "pillow": Image.__version__,
        "preprocess": preprocessing_fixtures(cases),
        "towers": tower_fixtures(),
        "large_images": large_image_hashes(),
    }
    try:
        import torchvision

        meta["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
