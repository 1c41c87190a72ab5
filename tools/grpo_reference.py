"""Reference values for vlrl-grpo's advantages and losses.

Re-implements, in PyTorch, the formulas of TRL's GRPOTrainer
(trl/trainer/grpo_trainer.py: advantages with scale_rewards, per-token
clipped loss, k3 KL, loss_type grpo / bnpo / dr_grpo / dapo) and verl's
core_algos.py (compute_grpo_outcome_advantage, compute_rloo_outcome_advantage,
compute_policy_loss_vanilla with dual clip, agg_loss, kl_penalty k1/k2/k3,
compute_policy_loss_clip_cov, compute_policy_loss_kl_cov), on fixed random
tensors, and stores inputs, losses and d loss / d logp in
tests/fixtures/grpo/loss_reference.json.

Where TRL and verl disagree the Rust crate documents its choice; the script
follows the same choice:
  * seq-mean-token-sum-norm divides by (num_sequences * horizon) as TRL's
    dr_grpo does (verl omits the num_sequences factor);
  * Clip-Cov's random pick is made deterministic by choosing parameters for
    which every candidate is picked (the script asserts it).

Run: /work/pyref/bin/python tools/grpo_reference.py
"""

import json
import os

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

B, T = 6, 7
lens = torch.tensor([7, 3, 5, 1, 6, 4])
mask = (torch.arange(T)[None, :] < lens[:, None]).double()
logp = -torch.rand(B, T) * 2.0 - 0.05
old = logp + 0.3 * torch.randn(B, T)
ref = logp + 0.2 * torch.randn(B, T)
entropy = torch.rand(B, T) * 2.0
groups = [0, 0, 0, 1, 1, 1]
rewards = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.9, 0.9])
# values at padding are irrelevant; make them exactly 0 like the Rust host matrices,
# and round inputs to f32 so both sides start from identical numbers
logp, old, ref, entropy = (x.float().double() * mask for x in (logp, old, ref, entropy))
rewards = rewards.float().double()


# ---------------------------------------------------------------- advantages
def grpo_adv(r, idx, eps, norm_by_std):  # verl compute_grpo_outcome_advantage
    out = r.clone()
    for g in set(idx):
        sel = [i for i, x in enumerate(idx) if x == g]
        s = r[sel]
        if len(sel) == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = s.mean(), s.std()
        for i in sel:
            out[i] = (r[i] - mean) / (std + eps) if norm_by_std else r[i] - mean
    return out


def rloo_adv(r, idx):  # verl compute_rloo_outcome_advantage
    out = r.clone()
    for g in set(idx):
        sel = [i for i, x in enumerate(idx) if x == g]
        n = len(sel)
        mean = r[sel].mean()
        for i in sel:
            if n > 1:
                out[i] = r[i] * n / (n - 1) - mean * n / (n - 1)
    return out


def batch_scaled_adv(r, idx, eps):  # TRL scale_rewards="batch"
    centred = grpo_adv(r, idx, 0.0, False)
    return centred / (r.std() + eps)


advantages = {
    "grpo": grpo_adv(rewards, groups, 1e-6, True),
    "dr_grpo": grpo_adv(rewards, groups, 1e-6, False),
    "rloo": rloo_adv(rewards, groups),
    "batch": batch_scaled_adv(rewards, groups, 1e-6),
}
adv = advantages["grpo"][:, None].expand(B, T) * mask


# ---------------------------------------------------------------- losses
def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def agg_loss(loss_mat, m, mode, horizon):  # verl agg_loss (+ TRL dr_grpo norm)
    if mode == "token-mean":
        return masked_mean(loss_mat, m)
    if mode == "seq-mean-token-mean":
        return ((loss_mat * m).sum(-1) / m.sum(-1)).mean()
    if mode == "seq-mean-token-sum":
        return (loss_mat * m).sum(-1).mean()
    if mode == "seq-mean-token-sum-norm":
        return (loss_mat * m).sum() / (m.shape[0] * horizon)
    raise ValueError(mode)


def kl_penalty(lp, rl, est):  # verl kl_penalty_forward
    if est == "k1":
        return lp - rl
    if est == "k2":
        return 0.5 * (lp - rl).square()
    kl = torch.clamp(rl - lp, -20, 20)
    return torch.clamp(kl.exp() - kl - 1, -10, 10)


def vanilla(lp, A, m, c):  # verl compute_policy_loss_vanilla
    nkl = torch.clamp(lp - old, -20, 20)
    ratio = nkl.exp()
    l1 = -A * ratio
    l2 = -A * torch.clamp(ratio, 1 - c["clip_low"], 1 + c["clip_high"])
    clipped = torch.maximum(l1, l2)
    clip_frac = masked_mean(torch.gt(l2, l1).double(), m)
    if c["dual_clip"] is not None:
        l3 = -A * c["dual_clip"]
        dual = torch.minimum(l3, clipped)
        lower = masked_mean(torch.gt(clipped, l3).double() * (A < 0).double(), m)
        pg = torch.where(A < 0, dual, clipped)
    else:
        lower = torch.tensor(0.0)
        pg = clipped
    return pg, clip_frac, lower, torch.tensor(0.0)


def clip_cov(lp, A, m, c):  # verl compute_policy_loss_clip_cov
    cov_cfg = c["cov"]
    ratio = (lp - old).exp()
    l1 = -A * ratio
    l2 = -A * torch.clamp(ratio, 1 - c["clip_low"], 1 + c["clip_high"])
    clip_by_origin = (l2 > l1) & (m > 0)
    cov_all = (A - masked_mean(A, m)) * (lp - masked_mean(lp.detach(), m))
    cov_all[m == 0] = -torch.inf
    cov_all[clip_by_origin] = -torch.inf
    clip_num = max(int(cov_cfg["ratio"] * m.sum().item()), 1)
    cand = torch.nonzero((cov_all < cov_cfg["upper"]) & (cov_all > cov_cfg["lower"]) & (m > 0))
    assert 0 < len(cand) <= clip_num, (len(cand), clip_num)
    corr = torch.ones_like(A)
    corr[cand[:, 0], cand[:, 1]] = 0
    frac = masked_mean((corr == 0).double(), m)
    clip_frac = masked_mean(torch.gt(l2, l1).double(), m)
    return torch.maximum(l1, l2) * corr, clip_frac, torch.tensor(0.0), frac


def kl_cov(lp, A, m, c):  # verl compute_policy_loss_kl_cov
    cov_cfg = c["cov"]
    nkl = lp - old
    ratio = nkl.exp()
    l1 = -A * ratio
    lkl = -A * ratio + cov_cfg["coef"] * nkl.abs()
    pg = l1.clone()
    valid = m > 0
    vidx = torch.nonzero(valid.reshape(-1), as_tuple=True)[0]
    va, vl = A[valid].detach().reshape(-1), lp[valid].detach().reshape(-1)
    cov = (va - va.mean()) * (vl - vl.mean())
    k = max(1, int(len(cov) * cov_cfg["ratio"]))
    top = vidx[torch.topk(cov, k, largest=True).indices]
    pg[top // T, top % T] = lkl[top // T, top % T]
    frac = torch.tensor(k / m.sum().item())
    l2 = -A * torch.clamp(ratio, 1 - c["clip_low"], 1 + c["clip_high"])
    clip_frac = masked_mean(torch.gt(l2, l1).double(), m)
    return pg, clip_frac, torch.tensor(0.0), frac


def total_loss(c):
    lp = logp.clone().requires_grad_(True)
    kind = c["cov"]["kind"]
    fn = {"none": vanilla, "clip-cov": clip_cov, "kl-cov": kl_cov}[kind]
    pg, clip_frac, lower, cov_frac = fn(lp, adv, mask, c)
    horizon = c["norm_horizon"]
    loss = agg_loss(pg, mask, c["aggregation"], horizon)
    pg_loss = loss.item()
    kl_val = 0.0
    if c["kl"]["placement"] == "loss":
        kld = agg_loss(kl_penalty(lp, ref, c["kl"]["estimator"]), mask, c["aggregation"], horizon)
        loss = loss + c["kl"]["beta"] * kld
        kl_val = kld.item()
    ent = agg_loss(entropy, mask, c["aggregation"], horizon)
    loss = loss - c["entropy_coef"] * ent
    loss.backward()
    return {
        "loss": loss.item(),
        "pg_loss": pg_loss,
        "kl": kl_val,
        "entropy": ent.item(),
        "clip_frac": clip_frac.item(),
        "clip_frac_lower": lower.item(),
        "cov_frac": float(cov_frac),
        "grad_logp": lp.grad.reshape(-1).tolist(),
    }


def cfg(agg="seq-mean-token-mean", low=0.2, high=0.2, dual=None, est="k3", placement="off",
        beta=0.04, ent=0.0, cov=None):
    return {
        "clip_low": low,
        "clip_high": high,
        "dual_clip": dual,
        "aggregation": agg,
        "norm_horizon": T,
        "entropy_coef": ent,
        "cov": cov or {"kind": "none"},
        "kl": {"placement": placement, "estimator": est, "beta": beta},
    }


cases = {}
for agg in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]:
    cases[f"plain/{agg}"] = cfg(agg)
    for est in ["k1", "k2", "k3"]:
        cases[f"kl-{est}/{agg}"] = cfg(agg, est=est, placement="loss")
cases["clip-higher/token-mean"] = cfg("token-mean", 0.2, 0.28)
cases["dual-clip/seq-mean-token-mean"] = cfg(dual=3.0, low=0.1, high=0.1)
cases["dual-clip-tight/token-mean"] = cfg("token-mean", dual=1.05, low=0.1, high=0.1)
cases["entropy-bonus/token-mean"] = cfg("token-mean", ent=0.01)
cases["clip-cov/token-mean"] = cfg(
    "token-mean", cov={"kind": "clip-cov", "ratio": 0.5, "lower": 0.05, "upper": 5.0})
cases["kl-cov/token-mean"] = cfg("token-mean", cov={"kind": "kl-cov", "ratio": 0.2, "coef": 1.0})
cases["kl-cov/seq-mean-token-mean"] = cfg(
    "seq-mean-token-mean", cov={"kind": "kl-cov", "ratio": 0.2, "coef": 1.0})

out = {
    "shape": [B, T],
    "lens": lens.tolist(),
    "groups": groups,
    "rewards": rewards.tolist(),
    "logp": logp.reshape(-1).tolist(),
    "old_logp": old.reshape(-1).tolist(),
    "ref_logp": ref.reshape(-1).tolist(),
    "entropy": entropy.reshape(-1).tolist(),
    "advantages": {k: v.tolist() for k, v in advantages.items()},
    "cases": [{"name": k, "config": c, **total_loss(c)} for k, c in cases.items()],
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "grpo", "loss_reference.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {len(out['cases'])} cases to {os.path.normpath(path)}")
