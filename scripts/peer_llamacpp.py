#!/usr/bin/env python3
"""parrot beside llama.cpp on the same random weights, in one run.

Generates the model once (cmd/genmodel: bnb NF4 for parrot, and a GGUF of
the same weights, Q4_0 by default, for llama.cpp), installs node-llama-cpp
(npm; its prebuilt llama.cpp CPU builds) into a cache outside the repository,
then with the same thread count times:
  - llama.cpp (scripts/peer_llamacpp.mjs): prompt processing of 128 and 512
    tokens in one batch, and 64 greedy decode steps after an 8-token prompt;
  - parrot (runtime/llama BenchmarkPeer): the same, with its lm_head as
    loaded (bf16) and as the 8-bit copy of serve --lm-head-8bit, and the
    streaming-read bandwidth probe (kernels/cpu MeasureBandwidth) of the same
    backend in the same process;
and prints a table of each figure, parrot/llama.cpp, and the decode rate in
bytes of weights per token over the probe's bandwidth. Every figure is the
best of --reps timed runs after a warm-up (the machine may be shared).

With --check (default), a tiny float model (untied, so the output is not
just the input token) is first converted to an F32 GGUF and both engines'
greedy continuations and first-token probabilities are compared: the
conversion (Q/K permutation, llama3 rope_freqs, tokenizer) is right when
they agree to float noise.

  scripts/peer_llamacpp.py --quick          # tiny model, about a minute
  scripts/peer_llamacpp.py                  # Llama-3.2-1B shape, 2 threads

Standard library only (plus go, node and npm on the PATH).
"""
import argparse, json, os, platform, re, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLC_VERSION = "3.21.1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, env=None, cwd=REPO, capture=True):
    log("+", " ".join(cmd))
    r = subprocess.run(cmd, cwd=cwd, env=env, text=True,
                       stdout=subprocess.PIPE if capture else None, stderr=None)
    if r.returncode != 0:
        sys.exit(f"peer: {cmd[0]} exited {r.returncode}")
    return r.stdout


def ensure_nlc(cache):
    """node-llama-cpp and its linux-x64 CPU binaries, without the GPU builds
    (optional dependencies) and without install scripts (which would try to
    download or build llama.cpp)."""
    pkg = os.path.join(cache, "node_modules", "node-llama-cpp", "package.json")
    try:
        if json.load(open(pkg))["version"] == NLC_VERSION:
            return
    except (OSError, ValueError, KeyError):
        pass
    os.makedirs(cache, exist_ok=True)
    if not os.path.exists(os.path.join(cache, "package.json")):
        json.dump({"name": "parrot-peer", "private": True}, open(os.path.join(cache, "package.json"), "w"))
    sh(["npm", "install", "--no-audit", "--no-fund", "--omit=optional", "--ignore-scripts",
        f"node-llama-cpp@{NLC_VERSION}", f"@node-llama-cpp/linux-x64@{NLC_VERSION}"], cwd=cache, capture=False)


def genmodel(binary, work, name, gen_args, gguf_args):
    """Generates a model directory and its GGUF once; a stamp with the
    arguments and genmodel's report lines marks a finished one."""
    d = os.path.join(work, name)
    stamp = d + ".stamp.json"
    key = {"gen": gen_args, "gguf": gguf_args}
    try:
        st = json.load(open(stamp))
        if st["key"] == key and os.path.exists(st["gguf"]):
            return d, st
    except (OSError, ValueError, KeyError):
        pass
    gguf = d + "-" + gguf_args[gguf_args.index("--gguf") + 1] + ".gguf"
    out = sh([binary, "--out", d, *gen_args, *gguf_args, "--gguf-out", gguf])
    log(out.strip())
    m = re.search(r"per_token_bytes (\d+)", out)
    st = {"key": key, "gguf": gguf, "per_token_bytes": int(m.group(1)), "report": out.strip().splitlines()}
    json.dump(st, open(stamp, "w"), indent=1)
    return d, st


def model_vocab(d):
    """Ordinary token ids lie below <|begin_of_text|> (bos_token_id)."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    return cfg.get("bos_token_id") or cfg["vocab_size"]


def run_llamacpp(cache, gguf, vocab, a, extra=None):
    opts = {"lib": os.path.join(cache, "node_modules", "node-llama-cpp", "dist", "index.js"),
            "model": gguf, "threads": a.threads, "vocab": vocab, "reps": a.reps,
            "flashAttention": a.flash_attn, "log": os.path.join(a.work, "llama.log")}
    opts.update(extra or {})
    out = sh(["node", os.path.join(REPO, "scripts", "peer_llamacpp.mjs"), json.dumps(opts)])
    return json.loads(out.strip().splitlines()[-1])


BENCH_LINE = re.compile(r"^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$")


def run_parrot(test_bin, model, a, bench=True, greedy=None, quant=None):
    env = dict(os.environ, PARROT_BENCH_MODEL=model, PARROT_BENCH_THREADS=str(a.threads),
               PARROT_BENCH_PP=",".join(map(str, a.pp)), PARROT_BENCH_TG=str(a.tg),
               PARROT_BENCH_PROMPT=str(a.prompt), GOMAXPROCS=str(max(a.threads, 1)))
    if quant:
        env["PARROT_BENCH_QUANT"] = quant
    if greedy:
        env["PARROT_PEER_GREEDY"] = ",".join(map(str, greedy["ids"]))
        env["PARROT_PEER_GREEDY_N"] = str(greedy["n"])
        out = sh([test_bin, "-test.run", "^TestPeerGreedy$", "-test.v", "-test.count=1"], env=env)
        ids = re.search(r"^PEER_GREEDY (.*)$", out, re.M).group(1)
        top = re.search(r"^PEER_TOP (.*)$", out, re.M).group(1)
        return {"greedy": [int(x) for x in ids.split(",")],
                "top": [[int(p.split(":")[0]), float(p.split(":")[1])] for p in top.split(",")]}
    out = sh([test_bin, "-test.run", "^$", "-test.bench", "^BenchmarkPeer$",
              f"-test.benchtime={a.reps}x", "-test.v"], env=env)
    res = {}
    for line in out.splitlines():
        m = BENCH_LINE.match(line.strip())
        if not m:
            continue
        f = m.group(2).split()
        res[m.group(1)] = {f[i + 1]: float(f[i]) for i in range(0, len(f) - 1, 2)}
    return res


def check(binary, test_bin, cache, a):
    """Same model in both engines: a tiny untied bf16 model, parrot in float
    mode, llama.cpp on an F32 GGUF (bf16 widens exactly)."""
    d, st = genmodel(binary, a.work, "check-tiny-bf16", ["--preset", "tiny", "--layers", "3", "--tied=false"],
                     ["--gguf", "f32"])
    ids, n = [model_vocab(d), 100, 200, 300, 400, 500], 24
    ours = run_parrot(test_bin, d, a, greedy={"ids": ids, "n": n}, quant="none")
    theirs = run_llamacpp(cache, st["gguf"], model_vocab(d), a, {"greedy": ids, "greedyN": n, "reps": 1})
    po, pt = dict(ours["top"]), dict(theirs["top"])
    common = [t for t in po if t in pt]
    rel = max(abs(po[t] - pt[t]) / po[t] for t in common) if common else float("inf")
    ok = ours["greedy"] == theirs["greedy"] and len(common) == len(po) and rel < 5e-4
    return {"ok": ok, "greedy_parrot": ours["greedy"], "greedy_llamacpp": theirs["greedy"],
            "top10_same_ids": len(common) == len(po), "top10_max_rel_diff": rel}


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test on a small model: pp 16,64, tg 16, one rep")
    ap.add_argument("--preset", default="llama32-1b", help="genmodel preset (default llama32-1b; tiny with --quick)")
    ap.add_argument("--gen-args", default="", help="more genmodel flags, split at spaces (e.g. '--layers 4')")
    ap.add_argument("--gguf", default="q4_0", help="GGUF type of the projections (q4_0, q8_0, f16)")
    ap.add_argument("--gguf-embd", default="", help="GGUF type of token_embd, also the tied output matrix (default: --gguf)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pp", default="128,512", help="prompt lengths, comma-separated")
    ap.add_argument("--tg", type=int, default=64, help="decode steps")
    ap.add_argument("--prompt", type=int, default=8, help="prompt tokens before the decode steps")
    ap.add_argument("--reps", type=int, default=2, help="timed runs per figure after a warm-up (best kept)")
    ap.add_argument("--flash-attn", action="store_true", help="llama.cpp with flash attention (default off)")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the same-model check")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "parrot-peer"))
    ap.add_argument("--work", default="", help="where models go (default CACHE/work)")
    ap.add_argument("--json", default="", help="also write the results here")
    a = ap.parse_args()
    if a.quick:
        if a.preset == "llama32-1b":
            a.preset = "tiny"
        a.pp, a.tg, a.reps = "16,64", 16, 1
    a.pp = [int(x) for x in a.pp.split(",") if x]
    a.work = a.work or os.path.join(a.cache, "work")
    os.makedirs(a.work, exist_ok=True)
    bindir = os.path.join(a.cache, "bin")
    os.makedirs(bindir, exist_ok=True)

    ensure_nlc(a.cache)
    genbin, testbin = os.path.join(bindir, "genmodel"), os.path.join(bindir, "llama.test")
    sh(["go", "build", "-o", genbin, "./cmd/genmodel"], capture=False)
    sh(["go", "test", "-c", "-o", testbin, "./runtime/llama"], capture=False)

    res = {"cpu": cpu_model(), "threads": a.threads, "preset": a.preset, "gguf": a.gguf,
           "gguf_embd": a.gguf_embd or a.gguf, "node_llama_cpp": NLC_VERSION,
           "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if a.check:
        res["check"] = check(genbin, testbin, a.cache, a)
        log("check:", json.dumps(res["check"]))

    gen = ["--preset", a.preset, "--quantize", *a.gen_args.split()]
    gg = ["--gguf", a.gguf] + (["--gguf-embd", a.gguf_embd] if a.gguf_embd else [])
    name = f"{a.preset}-nf4" + ("-" + "_".join(x.strip("-") for x in a.gen_args.split()) if a.gen_args else "")
    d, st = genmodel(genbin, a.work, name, gen, gg)
    vocab = model_vocab(d)
    ll = run_llamacpp(a.cache, st["gguf"], vocab, a, {"pp": a.pp, "tg": a.tg, "prompt": a.prompt})
    pr = run_parrot(testbin, d, a)
    res.update({"model": d, "gguf_file": st["gguf"], "gguf_report": st["report"], "llamacpp": ll, "parrot": pr,
                "loadavg_end": os.getloadavg()})

    bw = pr.get("Peer/bandwidth", {}).get("memGB/s", 0)
    rows = []
    for n in a.pp:
        for mode in ("int8", "float32"):
            ours = pr.get(f"Peer/pp{n}/nf4={mode}", {}).get("best_tok/s")
            rows.append((f"pp{n} tok/s, parrot nf4={mode}", ours, ll["pp"].get(str(n)), "1.5x", None))
    tg_ll = ll.get("tg", {}).get("tps")
    ll_bytes = st["per_token_bytes"]
    for key, v in sorted(pr.items()):
        if not key.startswith(f"Peer/tg{a.tg}/"):
            continue
        ours = v.get("best_tok/s")
        frac = v.get("best_frac_of_bw")
        rows.append((f"tg{a.tg} tok/s, parrot {key[len(f'Peer/tg{a.tg}/'):]}", ours, tg_ll, "1.3x",
                     (v.get("weightB/tok"), frac)))
    res["table"] = rows

    print(f"\nCPU {res['cpu']}, {a.threads} threads, streaming read {bw:.1f} GB/s (parrot's probe, same run); "
          f"load average {res['loadavg_start'][0]:.2f} -> {res['loadavg_end'][0]:.2f}")
    print(f"llama.cpp: node-llama-cpp {NLC_VERSION}, " + "; ".join(ll.get("backendLines", [])))
    print(f"  {ll.get('systemInfo', '').strip()}")
    if any("repack" in l for l in ll.get("repackLines", [])):
        print("  weights repacked at load: " + next(l for l in ll["repackLines"] if "repack tensor" in l).split(" with ")[-1])
    print(f"model: {a.preset}, parrot NF4 ({d}); llama.cpp {os.path.basename(st['gguf'])} "
          f"(projections {a.gguf}, token_embd {a.gguf_embd or a.gguf}), flash attention {'on' if a.flash_attn else 'off'}")
    if "check" in res:
        c = res["check"]
        print(f"same-model check (tiny bf16 vs F32 GGUF): {'OK' if c['ok'] else 'MISMATCH'}, greedy "
              f"{'equal' if c['greedy_parrot'] == c['greedy_llamacpp'] else 'differs'}, top-10 max rel diff {c['top10_max_rel_diff']:.2e}")
    print()
    print(f"{'figure':48} {'parrot':>10} {'llama.cpp':>10} {'ratio':>7} {'target':>7}  {'parrot bytes/tok, of bw':>24}")
    fmt = lambda x: f"{x:10.2f}" if isinstance(x, (int, float)) else f"{'-':>10}"
    for label, ours, theirs, target, bwinfo in rows:
        ratio = f"{ours / theirs:7.2f}" if ours and theirs else f"{'-':>7}"
        extra = ""
        if bwinfo:
            extra = f"{bwinfo[0] / 1e6:8.1f} MB, {100 * bwinfo[1]:5.1f}%"
        print(f"{label:48} {fmt(ours)} {fmt(theirs)} {ratio} {target:>7}  {extra:>24}")
    if tg_ll and bw:
        print(f"{'llama.cpp tg bytes/tok, of bw':48} {'':>10} {'':>10} {'':>7} {'':>7}  "
              f"{ll_bytes / 1e6:8.1f} MB, {100 * ll_bytes * tg_ll / 1e9 / bw:5.1f}%")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    if "check" in res and not res["check"]["ok"]:
        sys.exit("peer: the two engines do not serve the same model (see check)")


if __name__ == "__main__":
    main()
