"""Writes PEFT LoRA adapters for the tiny test model (runtime/testmodel Tiny:
hidden 64, 4 query and 2 key/value heads of 16, SwiGLU 128, 2 layers) in
exactly the layout PEFT 0.15.2 saves, without PEFT itself:

- adapter_config.json: PeftConfigMixin.save_pretrained, i.e.
  json.dumps(config, indent=2, sort_keys=True), no trailing newline, the
  v0.15.2 LoraConfig field set, inference_mode true;
- adapter_model.safetensors: the state dict of get_peft_model_state_dict
  (keys base_model.model.<module>.lora_{A,B}.weight, A [r, in], B [out, r]),
  serialized as safetensors.torch.save_file(..., metadata={"format": "pt"})
  does (header: __metadata__ first, tensors by decreasing dtype alignment
  then name, compact JSON padded with spaces to 8 bytes);
- expected.json: what the loader must find, computed here with torch:
  per module its rank, shape, PEFT scaling (lora_alpha/r or lora_alpha/sqrt(r)
  with use_rslora, after rank_pattern/alpha_pattern), the first values of
  A and B, and the LoRA output delta = scaling * B @ (A @ x) for a fixed x.

A is initialised as PEFT does (kaiming_uniform_ with a=sqrt(5)); B, zero at
PEFT's init, is drawn at random as if trained.

Run with Debian's python3-torch: /usr/bin/python3 gen_peft_fixtures.py
"""
import json
import math
import os
import re
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
HIDDEN, Q_OUT, KV_OUT, INTER, LAYERS = 64, 64, 32, 128, 2
SHAPES = {  # module suffix -> (out, in)
    "self_attn.q_proj": (Q_OUT, HIDDEN), "self_attn.k_proj": (KV_OUT, HIDDEN),
    "self_attn.v_proj": (KV_OUT, HIDDEN), "self_attn.o_proj": (HIDDEN, Q_OUT),
    "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN), "mlp.down_proj": (HIDDEN, INTER),
}


def peft_config(**overrides):
    cfg = {
        "task_type": "CAUSAL_LM", "peft_type": "LORA", "auto_mapping": None,
        "base_model_name_or_path": "parrot/tiny-llama", "revision": None, "inference_mode": True,
        "r": 8, "target_modules": None, "exclude_modules": None, "lora_alpha": 8, "lora_dropout": 0.0,
        "fan_in_fan_out": False, "bias": "none", "use_rslora": False, "modules_to_save": None,
        "init_lora_weights": True, "layers_to_transform": None, "layers_pattern": None,
        "rank_pattern": {}, "alpha_pattern": {}, "megatron_config": None, "megatron_core": "megatron.core",
        "trainable_token_indices": None, "loftq_config": {}, "eva_config": None, "corda_config": None,
        "use_dora": False, "layer_replication": None, "lora_bias": False,
    }
    cfg.update(overrides)
    return cfg


def targeted(cfg, key):  # peft.tuners.tuners_utils.check_target_module_exists
    t = cfg["target_modules"]
    if isinstance(t, str):
        return re.fullmatch(t, key) is not None
    return key in t or any(key.endswith("." + k) for k in t)


def pattern_key(keys, key):  # peft.utils.other.get_pattern_key
    for k in keys:
        if re.match(rf"(.*\.)?({k})$", key):
            return k
    return key


def save_safetensors(path, tensors, metadata):
    dtname = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
    rank = {torch.float64: 10, torch.float32: 9, torch.bfloat16: 7, torch.float16: 6}  # Rust Dtype enum order
    names = sorted(tensors, key=lambda n: (-rank[tensors[n].dtype], n))
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for n in names:
        t = tensors[n].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[n] = {"dtype": dtname[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def make(name, cfg, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    out_dir = os.path.join(HERE, name)
    os.makedirs(out_dir, exist_ok=True)
    tensors, expected = {}, {"modules": {}}
    x_full = {n: torch.sin(torch.arange(1, n + 1, dtype=torch.float64)) for n in (HIDDEN, INTER)}
    for layer in range(LAYERS):
        for suffix, (out_f, in_f) in SHAPES.items():
            key = f"model.layers.{layer}.{suffix}"
            if not targeted(cfg, key):
                continue
            r = cfg["rank_pattern"].get(pattern_key(cfg["rank_pattern"].keys(), key), cfg["r"])
            alpha = cfg["alpha_pattern"].get(pattern_key(cfg["alpha_pattern"].keys(), key), cfg["lora_alpha"])
            scaling = alpha / math.sqrt(r) if cfg["use_rslora"] else alpha / r
            lora_A = torch.nn.Linear(in_f, r, bias=False)
            torch.nn.init.kaiming_uniform_(lora_A.weight, a=math.sqrt(5))
            B = torch.randn(out_f, r, generator=g) * 0.1
            A = lora_A.weight.detach().to(dtype)
            B = B.to(dtype)
            tensors[f"base_model.model.{key}.lora_A.weight"] = A
            tensors[f"base_model.model.{key}.lora_B.weight"] = B
            A64, B64 = A.to(torch.float64), B.to(torch.float64)
            delta = scaling * (B64 @ (A64 @ x_full[in_f]))
            expected["modules"][key] = {
                "rank": r, "in": in_f, "out": out_f, "scale": scaling,
                "a_head": A64.flatten()[:4].tolist(), "b_head": B64.flatten()[:4].tolist(),
                "delta": delta.tolist(),
            }
    save_safetensors(os.path.join(out_dir, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


# An Unsloth-style QLoRA adapter on three projections, with per-module rank
# and alpha overrides, float32 as PEFT/Unsloth store them.
make("peft_list", peft_config(
    r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["q_proj", "v_proj", "down_proj"],
    rank_pattern={"model.layers.1.self_attn.v_proj": 2}, alpha_pattern={"down_proj": 4},
    auto_mapping={"base_model_class": "LlamaForCausalLM", "parent_library": "transformers.models.llama.modeling_llama"},
), torch.float32, 1)

# A regex target_modules with rsLoRA scaling, stored in bfloat16.
make("peft_regex_rslora", peft_config(
    r=8, lora_alpha=16, use_rslora=True, target_modules=r".*\.(o_proj|up_proj)", task_type=None,
), torch.bfloat16, 2)
