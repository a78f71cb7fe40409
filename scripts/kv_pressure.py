#!/usr/bin/env python3
"""KV-pressure check for serve: many concurrent chat requests against a KV
pool that cannot hold them all.

Starts serve (--serve BIN, extra arguments after --), sends --requests chat
requests at once (each a distinct prompt of about --prompt-words words,
max_tokens --output-tokens, temperature 0, ignore_eos), samples serve's
resident memory every 0.2 s, then replays --solo of the requests one at a
time on the idle server and checks each produces the same text it produced
under pressure (a preempted sequence must finish as it would alone). Prints
one JSON line: errors, peak RSS, the /metrics counters (preemptions, prefix
cache), timings, and the solo comparison.

Standard library only (Debian's python3).
"""
import argparse, json, os, random, signal, subprocess, sys, threading, time, urllib.request

WORDS = ("the a little cat dog sun tree house river boat ship sea wind rain happy sad big small red "
         "blue green old young king queen bird fish garden road hill star moon night day friend").split()


def post(url, body, timeout):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", required=True)
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=1100)
    ap.add_argument("--output-tokens", type=int, default=500)
    ap.add_argument("--solo", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("serve_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.serve_args if x != "--"]
    base = f"http://127.0.0.1:{a.port}"
    proc = subprocess.Popen([a.serve, "--port", str(a.port), "--host", "127.0.0.1"] + args, stderr=sys.stderr)
    try:
        for _ in range(1200):
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.5)
        ready_rss = rss_kib(proc.pid)
        rng = random.Random(1)
        prompts = [f"Story {i}: " + " ".join(rng.choice(WORDS) for _ in range(a.prompt_words)) for i in range(a.requests)]

        def body(p):
            return {"model": "m1b", "messages": [{"role": "user", "content": p}], "max_tokens": a.output_tokens,
                    "temperature": 0, "ignore_eos": True}

        results = [None] * a.requests
        peak = [ready_rss]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(proc.pid))
                time.sleep(0.2)

        def one(i):
            t0 = time.time()
            try:
                r = post(base + "/v1/chat/completions", body(prompts[i]), a.timeout)
                results[i] = {"text": r["choices"][0]["message"]["content"], "usage": r["usage"], "s": time.time() - t0}
            except Exception as e:
                detail = getattr(e, "read", lambda: b"")()
                results[i] = {"error": f"{e} {detail[:300]!r}", "s": time.time() - t0}

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.time()
        ts = [threading.Thread(target=one, args=(i,)) for i in range(a.requests)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.time() - t0
        done.set()
        with urllib.request.urlopen(base + "/metrics") as r:
            m = r.read().decode()
        errors = [r["error"] for r in results if "error" in r]
        ok = [r for r in results if "error" not in r]
        solo = []
        for i in range(min(a.solo, a.requests)):
            if "error" in results[i]:
                continue
            r = post(base + "/v1/chat/completions", body(prompts[i]), a.timeout)
            solo.append({"request": i, "same_text": r["choices"][0]["message"]["content"] == results[i]["text"],
                         "cached_tokens_alone": r["usage"].get("prompt_tokens_details", {}).get("cached_tokens")})
        out = {
            "requests": a.requests, "errors": len(errors), "first_errors": errors[:3], "wall_s": round(wall, 1),
            "mean_prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in ok) / max(1, len(ok)),
            "completion_tokens": sum(r["usage"]["completion_tokens"] for r in ok),
            "ready_rss_mib": round(ready_rss / 1024, 1), "peak_rss_mib": round(peak[0] / 1024, 1),
            "preemptions": metric(m, "parrot:num_preemptions_total"),
            "prefix_cache_queries": metric(m, "parrot:prefix_cache_queries_total"),
            "prefix_cache_hits": metric(m, "parrot:prefix_cache_hits_total"),
            "solo_checks": solo,
        }
        print(json.dumps(out))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
