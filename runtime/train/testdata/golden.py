#!/usr/bin/env python3
"""Golden LoRA training run for runtime/train (Debian python3-torch 1.13, CPU).

Builds a tiny Llama (transformers' modeling_llama math, written out here:
RMSNorm, rotate-half RoPE, GQA eager attention with a causal mask, SwiGLU,
untied lm_head) with fixed float32 weights, puts PEFT-style LoRA
(y = W x + scaling * B(A x), A from kaiming_uniform_(a=sqrt(5)), B = 0) on
all seven projections, and trains it for 10 steps of 2 micro-batches x 2
right-padded examples:

  loss per micro-batch = sum of shifted-label cross-entropies / label tokens
  of the whole step (transformers' num_items_in_batch), backward per
  micro-batch, clip_grad_norm_(1.0), optimizer.step(), LambdaLR linear
  warmup/decay (get_linear_schedule_with_warmup) .step().

Twice: with torch.optim.AdamW, and with Adam8bit below, a re-implementation
in torch float32 ops of bitsandbytes' AdamW kernels (SPEC.md section 7.2:
kOptimizerStatic8bit2StateBlockwise with blocks of 256 for tensors of at
least min_8bit_size elements, kOptimizer32bit2State below), since
bitsandbytes itself needs CUDA. min_8bit_size is lowered to 100 so that the
tiny model has 32-bit, partial-block and full-block tensors.

It also runs Adam8bit alone on a 1000-element tensor (4 blocks, the last
partial, one block all-zero for the first steps) and records every state.

Writes (next to this script):
  golden_model.safetensors  base weights (HF names) + the LoRA A init (PEFT names)
  golden.json               config, data, per-optimizer losses, grad norms,
                            learning rates and final LoRA weights, and the
                            optimizer-only case.

Run: /usr/bin/python3 runtime/train/testdata/golden.py
"""
import json
import math
import os
import random
import struct

import numpy as np
import torch

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))

CFG = dict(hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8, intermediate=64,
           vocab=64, rope_theta=10000.0, eps=1e-5)
RANK, ALPHA = 4, 8.0
LR, WARMUP, STEPS, WD, CLIP = 1e-2, 2, 10, 0.01, 1.0
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
MIN_8BIT = 100
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
F32 = torch.float32


def f32(x):
    return torch.tensor(x, dtype=F32)


# ---------------------------------------------------------------- weights

def make_weights():
    g = torch.Generator().manual_seed(1234)
    H, I, V = CFG["hidden"], CFG["intermediate"], CFG["vocab"]
    Q = CFG["heads"] * CFG["head_dim"]
    K = CFG["kv_heads"] * CFG["head_dim"]
    shapes = {"self_attn.q_proj": (Q, H), "self_attn.k_proj": (K, H), "self_attn.v_proj": (K, H),
              "self_attn.o_proj": (H, Q), "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H),
              "mlp.down_proj": (H, I)}
    w = {"model.embed_tokens.weight": torch.randn(V, H, generator=g)}
    for l in range(CFG["layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(H, generator=g)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(H, generator=g)
        for name in PROJ:
            out, inp = shapes[name]
            w[p + name + ".weight"] = torch.randn(out, inp, generator=g) / math.sqrt(inp)
    w["model.norm.weight"] = 1 + 0.1 * torch.randn(H, generator=g)
    w["lm_head.weight"] = torch.randn(V, H, generator=g) / math.sqrt(H)
    lora = {}
    for l in range(CFG["layers"]):
        for name in PROJ:
            out, inp = shapes[name]
            # kaiming_uniform_(a=sqrt(5)) on [r, in] is U(-1/sqrt(in), 1/sqrt(in)) (SPEC 2.4);
            # torch 1.13's init functions take no generator, so draw it directly.
            a = (torch.rand(RANK, inp, generator=g) * 2 - 1) / math.sqrt(inp)
            lora[f"model.layers.{l}.{name}"] = (a.to(F32), torch.zeros(out, RANK))
    return {k: v.to(F32).contiguous() for k, v in w.items()}, lora


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].to(F32).contiguous()
        data = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- data

def make_data():
    rnd = random.Random(7)
    steps = []
    for _ in range(STEPS):
        micro = []
        for _ in range(2):
            exs = []
            for _ in range(2):
                n = rnd.randint(5, 12)
                ids = [rnd.randrange(CFG["vocab"])]
                while len(ids) < n:  # a learnable rule: next = 3*prev + 1 (mod vocab)
                    ids.append((3 * ids[-1] + 1) % CFG["vocab"])
                prompt = rnd.randint(1, n - 2)  # at least two label tokens, first label masked
                labels = [-100] * prompt + ids[prompt:]
                exs.append({"input": ids, "labels": labels})
            micro.append(exs)
        steps.append(micro)
    return steps


def pad(exs):
    T = max(len(e["input"]) for e in exs)
    ids = torch.tensor([e["input"] + [0] * (T - len(e["input"])) for e in exs])
    labels = torch.tensor([e["labels"] + [-100] * (T - len(e["labels"])) for e in exs])
    return ids, labels


# ---------------------------------------------------------------- model

def rope_cos_sin(T):
    d = CFG["head_dim"]
    inv = 1.0 / (CFG["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    freqs = torch.outer(torch.arange(T).float(), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rms(x, w):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + CFG["eps"]))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(w, lora, ids):
    B, T = ids.shape
    nh, nkv, d = CFG["heads"], CFG["kv_heads"], CFG["head_dim"]
    scaling = ALPHA / RANK
    cos, sin = rope_cos_sin(T)
    mask = torch.full((T, T), float("-inf")).triu(1)

    def lin(name, x):
        a, b = lora[name]
        return x @ w[name + ".weight"].T + (x @ a.T @ b.T) * scaling

    x = w["model.embed_tokens.weight"][ids]
    for l in range(CFG["layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = lin(p + "self_attn.q_proj", h).view(B, T, nh, d).transpose(1, 2)
        k = lin(p + "self_attn.k_proj", h).view(B, T, nkv, d).transpose(1, 2)
        v = lin(p + "self_attn.v_proj", h).view(B, T, nkv, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = q @ k.transpose(2, 3) / math.sqrt(d) + mask
        att = torch.softmax(s, dim=-1, dtype=F32) @ v
        att = att.transpose(1, 2).reshape(B, T, nh * d)
        x = x + lin(p + "self_attn.o_proj", att)
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = lin(p + "mlp.gate_proj", h)
        u = lin(p + "mlp.up_proj", h)
        x = x + lin(p + "mlp.down_proj", torch.nn.functional.silu(g) * u)
    x = rms(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def shifted(labels):
    return torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]


# ---------------------------------------------------------------- 8-bit AdamW

def load_codes():
    path = os.path.join(HERE, "..", "..", "quant", "testdata", "bnb_code_tables.json")
    with open(path) as f:
        t = json.load(f)
    dec = lambda hexes: torch.tensor([struct.unpack("<f", bytes.fromhex(h))[0] for h in hexes], dtype=F32)
    return dec(t["dynamic_signed_hex_le"]), dec(t["dynamic_unsigned_hex_le"])


QS, QU = load_codes()


def quantize_2d(code, signed, x):
    """bitsandbytes quantize_2D, vectorized: binary search, then nearest of pivot and neighbour."""
    n = x.numel()
    pivot = torch.full((n,), 127, dtype=torch.long)
    upper_p = torch.full((n,), 255, dtype=torch.long)
    lower_p = torch.zeros(n, dtype=torch.long)
    lower = torch.full((n,), -1.0 if signed else 0.0, dtype=F32)
    upper = torch.ones(n, dtype=F32)
    val = code[pivot]
    for i in (64, 32, 16, 8, 4, 2, 1):
        gt = x > val
        lower_p = torch.where(gt, pivot, lower_p)
        lower = torch.where(gt, val, lower)
        upper_p = torch.where(gt, upper_p, pivot)
        upper = torch.where(gt, upper, val)
        pivot = torch.where(gt, pivot + i, pivot - i)
        val = code[pivot]
    gt = x > val
    up = torch.where(x > (upper + val) * f32(0.5), upper_p, pivot)
    down = torch.where(x < (lower + val) * f32(0.5), lower_p, pivot)
    return torch.where(gt, up, down)


class Adam8bit:
    """bitsandbytes AdamW (optim_bits=8) in float32 torch ops, kernel order."""

    def __init__(self, params, lr, betas, eps, weight_decay, min_8bit_size):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.state = {}
        for p in self.params:
            n = p.numel()
            if n >= min_8bit_size:
                nb = (n + 255) // 256
                self.state[p] = dict(step=0, eight=True, c1=torch.zeros(n, dtype=torch.long),
                                     c2=torch.zeros(n, dtype=torch.long),
                                     a1=torch.zeros(nb, dtype=F32), a2=torch.zeros(nb, dtype=F32))
            else:
                self.state[p] = dict(step=0, eight=False, m=torch.zeros(n, dtype=F32), v=torch.zeros(n, dtype=F32))

    def hyper(self, step):
        c1 = f32(1 - self.b1 ** step)
        c2 = f32(math.sqrt(1 - self.b2 ** step))
        lr = f32(self.lr)
        return dict(c2=c2, step_size=(-lr * c2) / c1, b1=f32(self.b1), b2=f32(self.b2),
                    a1=f32(1 - self.b1), a2=f32(1 - self.b2), eps_c2=f32(self.eps) * c2,
                    decay=f32(1) - lr * f32(self.wd))

    @torch.no_grad()
    def step(self):
        for p in self.params:
            st = self.state[p]
            st["step"] += 1
            flat = p.data.view(-1)
            g = p.grad.view(-1)
            if st["eight"]:
                step8(flat, g, st, self.hyper(st["step"]), self.wd)
            else:
                step32(flat, g, st, self.hyper(st["step"]), self.wd)


def step32(p, g, st, h, wd):
    m = st["m"] * h["b1"] + h["a1"] * g
    v = st["v"] * h["b2"] + h["a2"] * (g * g)
    p2 = p + h["step_size"] * (m / (torch.sqrt(v) + h["eps_c2"]))
    if wd > 0:
        p2 = p2 * h["decay"]
    p.copy_(p2)
    st["m"], st["v"] = m, v


def step8(p, g, st, h, wd):
    n = p.numel()
    for blk in range((n + 255) // 256):
        sl = slice(blk * 256, min(n, (blk + 1) * 256))
        gj = g[sl]
        fin = torch.isfinite(gj)
        v = (QU[st["c2"][sl]] * st["a2"][blk]) * h["b2"] + (h["a2"] * gj) * gj
        m = (QS[st["c1"][sl]] * st["a1"][blk]) * h["b1"] + h["a1"] * gj
        v = torch.where(fin, v, torch.zeros_like(v))
        m = torch.where(fin, m, torch.zeros_like(m))
        max1, max2 = m.abs().max(), v.abs().max()
        if gj.numel() < 256:  # missing lanes: g = 0, m code 128, v code 0
            max1 = torch.maximum(max1, ((QS[128] * st["a1"][blk]) * h["b1"]).abs())
        st["a1"][blk], st["a2"][blk] = max1, max2
        upd = p[sl] + h["step_size"] * (m / (torch.sqrt(v) + h["eps_c2"]))
        if wd > 0:
            upd = upd * h["decay"]
        p[sl] = torch.where(fin, upd, p[sl])
        c = quantize_2d(QS, True, m / max1)
        flip = torch.signbit(QS[c]) != torch.signbit(m)
        c = torch.where(flip, torch.where(m > 0, c + 1, c - 1), c) % 256
        st["c1"][sl] = c
        st["c2"][sl] = quantize_2d(QU, False, v / max2)


# ---------------------------------------------------------------- runs

def lr_lambda(s):
    if s < WARMUP:
        return s / max(1, WARMUP)
    return max(0.0, (STEPS - s) / max(1, STEPS - WARMUP))


def train(w, lora0, data, optim):
    lora = {k: (a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for k, (a, b) in lora0.items()}
    params = [t for k in sorted(lora) for t in lora[k]]
    if optim == "adamw_torch":
        opt = torch.optim.AdamW(params, lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, weight_decay=WD)
    else:
        opt = Adam8bit(params, lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, weight_decay=WD, min_8bit_size=MIN_8BIT)
        opt.param_groups = [{"lr": LR}]
    losses, norms, lrs = [], [], []
    for k, micro in enumerate(data):
        lr = LR * lr_lambda(k)  # LambdaLR: optimizer step k+1 uses lambda(k)
        for group in opt.param_groups:
            group["lr"] = lr
        if optim != "adamw_torch":
            opt.lr = lr
        for p in params:
            p.grad = None
        batches = [pad(exs) for exs in micro]
        num_items = sum(int((shifted(lab) != -100).sum()) for _, lab in batches)
        total = 0.0
        for ids, lab in batches:
            logits = forward(w, lora, ids).float()
            loss = torch.nn.functional.cross_entropy(logits.view(-1, CFG["vocab"]), shifted(lab).reshape(-1),
                                                     ignore_index=-100, reduction="sum") / num_items
            loss.backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        losses.append(total)
        norms.append(float(norm))
        lrs.append(lr)
    final = {k: {"A": f32list(a.detach()), "B": f32list(b.detach())} for k, (a, b) in lora.items()}
    return dict(losses=losses, grad_norms=norms, learning_rates=lrs, lora=final)


def optimizer_case():
    """Adam8bit alone on 600 elements: blocks 0-1 full, block 2 partial; block 1 has zero grads at steps 1-2."""
    g = torch.Generator().manual_seed(99)
    n, steps = 600, 5
    p = torch.nn.Parameter(torch.randn(n, generator=g))
    p0 = p.detach().clone()
    grads = []
    opt = Adam8bit([p], lr=1e-2, betas=(BETA1, BETA2), eps=ADAM_EPS, weight_decay=WD, min_8bit_size=MIN_8BIT)
    for step in range(steps):
        gr = torch.randn(n, generator=g) * (0.1 if step % 2 else 1e-3)
        if step < 2:
            gr[256:512] = 0
        grads.append(f32list(gr))
        p.grad = gr.clone()
        opt.lr = 1e-2 * (step + 1) / steps
        opt.step()
    st = opt.state[p]
    return dict(p0=f32list(p0), grads=grads, lrs=[1e-2 * (s + 1) / steps for s in range(steps)], p=f32list(p.detach()),
                c1=st["c1"].tolist(), c2=st["c2"].tolist(), absmax1=f32list(st["a1"]), absmax2=f32list(st["a2"]))


def f32list(t):
    """The float32 values of t, each as the shortest decimal that rounds back to it."""
    return [float(repr(np.float32(v))) for v in t.flatten().tolist()]


def main():
    w, lora = make_weights()
    data = make_data()
    tensors = dict(w)
    for name, (a, _) in lora.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
    write_safetensors(os.path.join(HERE, "golden_model.safetensors"), tensors)
    out = dict(config=CFG, rank=RANK, alpha=ALPHA, lr=LR, warmup=WARMUP, steps=STEPS, weight_decay=WD,
               max_grad_norm=CLIP, betas=[BETA1, BETA2], eps=ADAM_EPS, min_8bit_size=MIN_8BIT,
               torch_version=torch.__version__, data=data)
    for optim in ("adamw_torch", "adamw_8bit"):
        out[optim] = train(w, lora, data, optim)
        print(optim, "losses", ["%.5f" % l for l in out[optim]["losses"]])
    out["optimizer_8bit"] = optimizer_case()
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
