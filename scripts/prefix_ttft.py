#!/usr/bin/env python3
"""Prefix-cache check against a running serve (--url): time to first token
of a request with a long system prompt, then of a second request sharing
it; then a conversation replayed turn by turn, reporting per turn the
prompt tokens and how many came from the cache (usage.prompt_tokens_details).
Standard library only. Prints one JSON line."""
import argparse, json, time, urllib.request

WORDS = "the a little cat dog sun tree house river boat ship sea wind rain happy sad big small red blue green old".split()


def stream(url, body):
    body = dict(body, stream=True, stream_options={"include_usage": True})
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    ttft, text, usage = None, "", None
    with urllib.request.urlopen(req, timeout=3600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev.get("choices", []):
                c = ch.get("delta", {}).get("content")
                if c:
                    if ttft is None:
                        ttft = time.time() - t0
                    text += c
    return ttft, text, usage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", required=True)
    ap.add_argument("--system-words", type=int, default=430)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--turn-words", type=int, default=60)
    a = ap.parse_args()
    system = "You are a storyteller. " + " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(a.system_words))
    base = {"model": a.model, "max_tokens": 8, "temperature": 0}
    t1, _, u1 = stream(a.url, dict(base, messages=[{"role": "system", "content": system}, {"role": "user", "content": "Tell me about a cat."}]))
    t2, _, u2 = stream(a.url, dict(base, messages=[{"role": "system", "content": system}, {"role": "user", "content": "Tell me about a dog."}]))
    msgs = [{"role": "system", "content": "You are a storyteller."}]
    turns = []
    for k in range(a.turns):
        msgs.append({"role": "user", "content": f"Turn {k}: " + " ".join(WORDS[(k + i) % len(WORDS)] for i in range(a.turn_words))})
        tt, text, u = stream(a.url, dict(base, messages=msgs, max_tokens=32))
        msgs.append({"role": "assistant", "content": text})
        turns.append({"prompt_tokens": u["prompt_tokens"], "cached_tokens": u.get("prompt_tokens_details", {}).get("cached_tokens"),
                      "ttft_ms": round(tt * 1000, 1)})
    print(json.dumps({
        "system_prompt_tokens": u1["prompt_tokens"],
        "first": {"ttft_ms": round(t1 * 1000, 1), "cached_tokens": u1.get("prompt_tokens_details", {}).get("cached_tokens")},
        "second": {"ttft_ms": round(t2 * 1000, 1), "cached_tokens": u2.get("prompt_tokens_details", {}).get("cached_tokens")},
        "ttft_ratio": round(t2 / t1, 3), "turns": turns}))


if __name__ == "__main__":
    main()
