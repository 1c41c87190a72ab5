#!/usr/bin/env python3
"""Reference fixtures for vlrl-rewards and vlrl-grounding.

Reimplements, from their published formulas, the rewards our Rust code must
match, and writes small JSON fixtures under tests/fixtures/rewards/:

- detection_parity.json: V-Triune's detection reward (Ma et al., 2025, "One RL
  to See Them All", MiniMax-AI/One-RL-to-See-Them-All
  reward_server/verify.py::DetectionVerifier and utils/det_helper.py):
  extract_bbox repairs and filtering, compute_iou, the two greedy matchings,
  calculate_iou_score (mean IoU, completeness), size penalty 0.6^|Δn|, the
  threshold modes (fixed / average / dynamic 0.85-0.95-0.99) and the weighted
  mix with COCO mAP / mAP50 / mAP75. mAP comes from the PyPI `pycocotools`
  COCOeval configured like the reference's vendored copy (area range `all`
  only, maxDets 100, all scores 1.0). The max-IoU-first matching is written
  the way the reference writes it, so that the reference's loop-variable slip
  (the recorded pair is the last free prediction/truth, not the arg-max) is
  reproduced ("quirks": true); a corrected version gives "quirks": false.
- text_parity.json: Levenshtein, normalized edit distance, ANLS (Biten et al.,
  ICCV 2019: 1 - NL if NL < 0.5 else 0, max over answers).
- iou_parity.json: IoU of random boxes (compute_iou).
- smart_resize.json: transformers' Qwen2-VL smart_resize on many sizes.

Run: /work/pyref/bin/python tools/rewards_fixtures.py
"""

import contextlib
import io
import json
import random
import re
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rewards"
THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]


# ----------------------------------------------------------------- parsing

def extract_answer_content(text):
    m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return m.group(1).strip() if m else ""


def extract_bbox(s):
    if not s or not s.strip():
        return None
    s = s.replace("[[", "[").replace("]]", "]")
    if not s.endswith("]"):
        s = s.rsplit("},", 1)[0] + "}]"
    s = s.replace("'", '"').replace("\\", "")
    try:
        items = json.loads(s)
    except Exception:
        return None
    if not isinstance(items, list):
        return None
    out, seen = [], set()
    for it in items:
        if not isinstance(it, dict) or "bbox_2d" not in it or "label" not in it:
            continue
        b = it["bbox_2d"]
        if not (isinstance(b, list) and len(b) == 4 and all(isinstance(c, (int, float)) for c in b)):
            continue
        if not (b[0] <= b[2] and b[1] <= b[3] and isinstance(it["label"], str)):
            continue
        key = tuple(b)
        if key in seen:
            continue
        seen.add(key)
        out.append(it)
    return out or None


# ----------------------------------------------------------------- matching

def compute_iou(a, b):
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    if ix2 <= ix1 or iy2 <= iy1:
        return 0.0
    inter = (ix2 - ix1) * (iy2 - iy1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter) / union


def match_max_iou_first(pred, gt, thr, quirks):
    m = [[compute_iou(p["bbox_2d"], g["bbox_2d"]) for g in gt] for p in pred]
    free_p, free_g = list(range(len(pred))), list(range(len(gt)))
    matches = []
    while free_p and free_g:
        if quirks:
            # Same loop shape as the reference: after the loops, pi/gi hold the
            # last iterated indices, whatever pair held the maximum.
            best, pi, gi = -1, -1, -1
            for pi in free_p:
                for gi in free_g:
                    if m[pi][gi] > best:
                        best, pi, gi = m[pi][gi], pi, gi
        else:
            best, pi, gi = -1, -1, -1
            for p in free_p:
                for g in free_g:
                    if m[p][g] > best:
                        best, pi, gi = m[p][g], p, g
        if best < thr:
            break
        same = pred[pi]["label"].lower() == gt[gi]["label"].lower()
        matches.append(best if same else 0.0)
        free_p.remove(pi)
        free_g.remove(gi)
    return matches


def match_max_label_first(pred, gt, thr):
    matches, used = [], set()
    for g in gt:
        cand, ious = [], []
        for i, p in enumerate(pred):
            if i in used or p["label"].lower() != g["label"].lower():
                continue
            cand.append(i)
            ious.append(compute_iou(p["bbox_2d"], g["bbox_2d"]))
        if not cand:
            continue
        j = int(np.argmax(ious))
        if ious[j] >= thr:
            matches.append(ious[j])
            used.add(cand[j])
    return matches


def iou_score(matches, n_pred, n_gt, wc):
    mean_iou = sum(matches) / n_gt if matches else 0.0
    miss = (n_gt - len(matches)) / n_gt
    fa = 0.0 if n_pred == 0 else (n_pred - len(matches)) / n_pred
    comp = 1.0 - (miss + fa) / 2.0
    return mean_iou * (1.0 - wc) + comp * wc


# ----------------------------------------------------------------- mAP

def coco_map(pred, gt):
    cats = {}
    gt_json = {"images": [{"id": 0}], "categories": [], "annotations": []}
    for i, g in enumerate(gt):
        if g["label"] not in cats:
            cats[g["label"]] = len(cats)
            gt_json["categories"].append({"id": cats[g["label"]], "name": g["label"]})
        x1, y1, x2, y2 = g["bbox_2d"]
        gt_json["annotations"].append({"id": i + 1, "image_id": 0, "category_id": cats[g["label"]],
                                       "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                       "iscrowd": 0})
    dts = []
    for p in pred:
        if p["label"] not in cats:
            continue
        x1, y1, x2, y2 = p["bbox_2d"]
        dts.append({"image_id": 0, "category_id": cats[p["label"]], "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 1.0, "area": (x2 - x1) * (y2 - y1)})
    if not dts:
        return 0.0, 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt_json
        cg.createIndex()
        cd = cg.loadRes(dts)
        ev = COCOeval(cg, cd, "bbox")
        ev.params.areaRng = [[0, 1e5 ** 2]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # [T, R, K, A, M]; M index 2 is maxDets 100

    def summarize(t=None):
        s = prec[:, :, :, 0, 2] if t is None else prec[np.where(ev.params.iouThrs == t)[0], :, :, 0, 2]
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    return summarize(), summarize(0.5), summarize(0.75)


# ----------------------------------------------------------------- reward

def detection_reward(pred_str, sol_str, step, total, weights, mode, quirks, norm_wh):
    zero = {"final_score": 0.0}
    pred = extract_bbox(extract_answer_content(pred_str.strip()).lower())
    gt = extract_bbox(extract_answer_content(sol_str.strip()).lower())
    if gt is None or pred is None:
        return zero
    if norm_wh is not None:
        w, h = norm_wh
        for p in pred:
            x1, y1, x2, y2 = p["bbox_2d"]
            p["bbox_2d"] = [int(x1 / w * 1000.0), int(y1 / h * 1000.0), int(x2 / w * 1000.0), int(y2 / h * 1000.0)]
    penalty = 0.6 ** abs(len(pred) - len(gt))
    wc = weights["iou_completeness"]

    def at(t):
        a = iou_score(match_max_iou_first(pred, gt, t, quirks), len(pred), len(gt), wc)
        b = iou_score(match_max_label_first(pred, gt, t), len(pred), len(gt), wc)
        return a, b

    if mode == "average":
        pairs = [at(t) for t in THRESHOLDS]
        s_iou = sum(p[0] for p in pairs) / len(THRESHOLDS)
        s_label = sum(p[1] for p in pairs) / len(THRESHOLDS)
    else:
        if mode == "dynamic":
            r = step / total
            t = 0.85 if r <= 0.1 else 0.95 if r <= 0.25 else 0.99
        else:
            t = float(mode)
        s_iou, s_label = at(t)
    m, m50, m75 = coco_map(pred, gt)
    norm = sum(weights[k] for k in ["iou_max_iou_first", "iou_max_label_first", "map", "map50", "map75"])
    final = 0.0
    if norm > 0:
        final = penalty * (s_iou * weights["iou_max_iou_first"] + s_label * weights["iou_max_label_first"]
                           + m * weights["map"] + m50 * weights["map50"] + m75 * weights["map75"]) / norm
    return {"final_score": final, "size_penalty": penalty, "iou_max_iou_first": s_iou,
            "iou_max_label_first": s_label, "map": m, "map50": m50, "map75": m75}


LABELS = ["dog", "cat", "car", "person"]


def rand_box(rng, lo=0, hi=1000):
    x1, y1 = rng.randint(lo, hi - 20), rng.randint(lo, hi - 20)
    return [x1, y1, rng.randint(x1 + 5, min(hi, x1 + 400)), rng.randint(y1 + 5, min(hi, y1 + 400))]


def jitter(rng, b, amount, floats):
    out = [c + rng.randint(-amount, amount) for c in b]
    out = [min(out[0], out[2]), min(out[1], out[3]), max(out[0], out[2]), max(out[1], out[3])]
    if floats:
        out = [round(c + rng.random(), 2) for c in out]
    return out


def render(items, rng):
    style = rng.choice(["single", "double", "confidence", "truncated", "fenced_text", "nested"])
    if style == "double":
        body = json.dumps(items)
    elif style == "confidence":
        body = str([dict(it, confidence=round(rng.random(), 2)) for it in items])
    elif style == "truncated" and len(items) > 1:
        full = str(items)
        body = full[: full.rfind("{") + rng.randint(2, 12)]
    elif style == "fenced_text":
        body = "The boxes are " + json.dumps(items)  # not pure JSON → no boxes
    elif style == "nested":
        body = "[" + str(items) + "]"
    else:
        body = str(items)
    think = "<think>\nLooking at the image, I see the objects.\n</think>\n"
    return think + "<answer>\n" + body + "\n</answer>", style


def detection_cases(rng, n):
    cases = []
    for i in range(n):
        gt = [{"bbox_2d": rand_box(rng), "label": rng.choice(LABELS)} for _ in range(rng.randint(1, 6))]
        pred = []
        for g in gt:
            r = rng.random()
            if r < 0.15:
                continue  # miss
            lab = g["label"] if rng.random() > 0.15 else rng.choice(LABELS)
            if rng.random() < 0.2:
                lab = lab.upper()
            amount = rng.choice([0, 1, 3, 8, 25, 80])
            pred.append({"bbox_2d": jitter(rng, g["bbox_2d"], amount, rng.random() < 0.2), "label": lab})
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            pred.append({"bbox_2d": rand_box(rng), "label": rng.choice(LABELS)})
        if pred and rng.random() < 0.1:
            pred.append(dict(pred[0]))  # duplicate, removed by extract_bbox
        if rng.random() < 0.05:
            pred.append({"bbox_2d": [500, 500, 100, 100], "label": "dog"})  # inverted, dropped
        rng.shuffle(pred)
        norm_wh = None
        if rng.random() < 0.2:
            w, h = rng.choice([(644, 476), (1008, 756), (420, 616)])
            for p in pred:
                p["bbox_2d"] = [round(c * (w if k % 2 == 0 else h) / 1000) for k, c in enumerate(p["bbox_2d"])]
                p["bbox_2d"] = [min(p["bbox_2d"][0], p["bbox_2d"][2]), min(p["bbox_2d"][1], p["bbox_2d"][3]),
                                max(p["bbox_2d"][0], p["bbox_2d"][2]), max(p["bbox_2d"][1], p["bbox_2d"][3])]
            norm_wh = [w, h]
        completion, style = render(pred, rng) if pred else ("<answer>\n[]\n</answer>", "empty")
        solution = "<answer> " + str(gt) + " </answer>"
        total = 100
        step = rng.choice([0, 5, 10, 11, 20, 25, 26, 60, 100])
        mode = rng.choice(["dynamic", "dynamic", "average", "0.5", "0.75", "0.95"])
        weights = {"iou_max_iou_first": 1.0, "iou_max_label_first": 0.0, "iou_completeness": 0.0,
                   "map": 0.0, "map50": 0.0, "map75": 0.0}
        if rng.random() < 0.6:
            weights = {k: rng.choice([0.0, 0.25, 0.5, 1.0]) for k in weights}
        for quirks in (True, False):
            exp = detection_reward(completion, solution, step, total, weights, mode, quirks, norm_wh)
            cases.append({"id": f"{i}-{'q' if quirks else 'f'}", "style": style, "completion": completion,
                          "solution": solution, "step": step, "total_steps": total, "mode": mode,
                          "weights": weights, "quirks": quirks, "normalize_wh": norm_wh, "expected": exp})
    return cases


# ----------------------------------------------------------------- text / iou

def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def nl(a, b):
    n = max(len(a), len(b))
    return 0.0 if n == 0 else levenshtein(a, b) / n


def anls(pred, answers, tau=0.5):
    best = 0.0
    for a in answers:
        d = nl(pred, a)
        best = max(best, 1.0 - d if d < tau else 0.0)
    return best


def text_cases(rng, n):
    words = ["stop", "sign", "exit", "café", "route 66", "OPEN", "24h", "naïve", "ß", "日本"]
    out = []
    for _ in range(n):
        truth = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
        base = rng.choice(truth)
        chars = list(base)
        for _ in range(rng.randint(0, 4)):
            op = rng.random()
            pos = rng.randint(0, len(chars))
            if op < 0.33 and chars:
                chars.pop(min(pos, len(chars) - 1))
            elif op < 0.66:
                chars.insert(pos, rng.choice("abcxyz "))
            elif chars:
                chars[min(pos, len(chars) - 1)] = rng.choice("qwe")
        pred = "".join(chars)
        out.append({"pred": pred, "truths": truth, "levenshtein": levenshtein(pred, truth[0]),
                    "nl": nl(pred, truth[0]), "anls": anls(pred, truth)})
    return out


def iou_cases(rng, n):
    out = []
    for _ in range(n):
        a = [rng.uniform(-50, 500) for _ in range(2)]
        a += [a[0] + rng.uniform(0, 300), a[1] + rng.uniform(0, 300)]
        b = [c + rng.uniform(-60, 60) for c in a]
        b = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
        a, b = [float(np.float32(c)) for c in a], [float(np.float32(c)) for c in b]
        out.append({"a": a, "b": b, "iou": compute_iou(a, b)})
    return out


def smart_resize_cases(rng, n):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    sizes = [(480, 640), (1080, 1920), (10, 10), (42, 42), (14, 70), (3000, 4000), (100, 20000), (28, 28),
             (56, 56), (1, 200), (4032, 3024), (720, 1280), (14, 14), (70, 14)]
    sizes += [(rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(n)]
    out = []
    for h, w in sizes:
        try:
            rh, rw = smart_resize(h, w)
            out.append({"h": h, "w": w, "resized": [rh, rw]})
        except ValueError:
            out.append({"h": h, "w": w, "resized": None})
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20250526)
    files = {
        "detection_parity.json": detection_cases(rng, 300),
        "text_parity.json": text_cases(rng, 300),
        "iou_parity.json": iou_cases(rng, 300),
        "smart_resize.json": smart_resize_cases(rng, 300),
    }
    for name, data in files.items():
        (OUT / name).write_text(json.dumps(data, indent=None, ensure_ascii=False) + "\n")
        print(name, len(data))
    dets = files["detection_parity.json"]
    differ = sum(1 for a, b in zip(dets[::2], dets[1::2]) if a["expected"]["final_score"] != b["expected"]["final_score"])
    print("cases where the reference's matching slip changes the reward:", differ, "of", len(dets) // 2)


if __name__ == "__main__":
    main()
