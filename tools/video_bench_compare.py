#!/usr/bin/env python3
"""Side-by-side timing of sampling 16 and 64 frames with decord and PyAV.

Same protocol as crates/video/benches/sampling.rs: open the file, take the
frames qwen-vl-utils' uniform rule picks (torch.linspace(0, n-1, k).round()),
return them as RGB arrays. Opening is included (decord builds its index then).

PyAV is timed two ways: decoding every frame and keeping the chosen ones (what
torchvision.io.read_video does for qwen-vl-utils' torchvision path), and
seeking to the key frame before each chosen frame.

Usage: /work/pyref/bin/python tools/video_bench_compare.py VIDEO.mp4 [--repeats 10]
Needs: pip install av decord torch
"""
import argparse
import statistics
import time

import torch


def indices_for(total, k):
    return torch.linspace(0, total - 1, k).round().long().tolist()


def decord_sample(path, idx):
    import decord

    vr = decord.VideoReader(path)
    return vr.get_batch(idx).asnumpy()


def pyav_sequential(path, idx, threads):
    import av

    wanted = set(idx)
    out = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    return [out[i] for i in idx]


def pyav_seek(path, idx, threads):
    import av

    out = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        rate = stream.average_rate
        tb = stream.time_base
        start = stream.start_time or 0
        for i in sorted(set(idx)):
            target = start + int(round(i / rate / tb))
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= target:
                    out[i] = frame.to_ndarray(format="rgb24")
                    break
    return [out[i] for i in idx]


def time_it(fn, repeats):
    fn()  # warm-up (page cache, library init)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), min(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import av

    with av.open(args.video) as c:
        s = c.streams.video[0]
        total = s.frames
        print(f"{args.video}: {total} frames, {s.average_rate} fps, {s.codec_context.width}x{s.codec_context.height}, {s.codec_context.name}")
    try:
        import decord

        decord_version = decord.__version__
    except ImportError:
        decord_version = None
    print(f"av {av.__version__}, decord {decord_version}, torch {torch.__version__}")
    for k in (16, 64):
        idx = indices_for(total, k)
        rows = []
        if decord_version:
            rows.append(("decord get_batch", lambda: decord_sample(args.video, idx)))
        rows.append(("pyav decode-all (1 thread)", lambda: pyav_sequential(args.video, idx, False)))
        rows.append(("pyav decode-all (AUTO threads)", lambda: pyav_sequential(args.video, idx, True)))
        rows.append(("pyav seek (AUTO threads)", lambda: pyav_seek(args.video, idx, True)))
        for name, fn in rows:
            median, best = time_it(fn, args.repeats)
            print(f"{k:>3} frames  {name:<32} median {median * 1000:8.1f} ms  min {best * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
