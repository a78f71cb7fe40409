// Times llama.cpp (through node-llama-cpp's prebuilt binaries) on a GGUF:
// prompt processing of N random tokens in one batch, and decode of M tokens
// one at a time after a short prompt, each timed after a warm-up run; with
// "greedy", also the greedy continuation of given token ids, to check that
// it is the same model parrot serves. Run by scripts/peer_llamacpp.py:
//
//	node scripts/peer_llamacpp.mjs '{"lib": ".../node-llama-cpp/dist/index.js", "model": "m.gguf", "threads": 2, ...}'
//
// Prints one JSON object on stdout; llama.cpp's log lines go to a file.
import { appendFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const opts = JSON.parse(process.argv[2]);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(opts.lib).href);

const logs = [];
const llama = await getLlama({
  gpu: false,
  build: "never",
  maxThreads: opts.threads,
  logLevel: LlamaLogLevel.debug,
  logger: (level, message) => {
    logs.push(message);
    if (opts.log) appendFileSync(opts.log, `[${level}] ${message}\n`);
  },
});
const model = await llama.loadModel({ modelPath: opts.model, gpuLayers: 0 });
const vocab = opts.vocab; // ids below this are ordinary tokens
const maxPP = Math.max(0, ...(opts.pp ?? []));
const ctxSize = Math.max(maxPP, (opts.prompt ?? 8) + (opts.tg ?? 0) + 1, 64);
const context = await model.createContext({
  contextSize: ctxSize,
  batchSize: Math.max(maxPP, 64),
  threads: { ideal: opts.threads, min: opts.threads },
  flashAttention: opts.flashAttention ?? false,
  sequences: 1,
});
const seq = context.getSequence();

// A xorshift stream of token ids, so each run reads the same prompt.
let state = 0x9e3779b9 >>> 0;
function randomTokens(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    out.push(state % vocab);
  }
  return out;
}

async function timePP(n) {
  const tokens = randomTokens(n);
  await seq.clearHistory();
  await seq.evaluateWithoutGeneratingNewTokens(tokens); // warm-up
  let best = Infinity;
  for (let r = 0; r < (opts.reps ?? 1); r++) {
    await seq.clearHistory();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(tokens);
    best = Math.min(best, performance.now() - t0);
  }
  return (n / best) * 1000;
}

// Decode: a short prompt, then tg tokens generated one by one (greedy, so
// each step computes the logits of its token and samples from them). The
// clock runs from the first generated token to the last: tg decode steps.
async function timeTG(prompt, tg) {
  const run = async () => {
    await seq.clearHistory();
    let t0 = 0, n = -1;
    for await (const _ of seq.evaluate(randomTokens(prompt), { temperature: 0, yieldEogToken: true })) {
      if (n < 0) t0 = performance.now();
      if (++n === tg) break;
    }
    return { ms: performance.now() - t0, n };
  };
  await run(); // warm-up
  let best = Infinity, steps = 0;
  for (let r = 0; r < (opts.reps ?? 1); r++) {
    const { ms, n } = await run();
    if (ms < best) { best = ms; steps = n; }
  }
  return { tps: (steps / best) * 1000, steps };
}

// The 10 likeliest next tokens after `tokens`, with their probabilities
// under llama.cpp's full softmax (temperature 1, no truncation).
async function top(tokens) {
  await seq.clearHistory();
  for await (const out of seq.evaluateWithMetadata(tokens, { probabilities: true },
    { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 })) {
    return [...out.probabilities.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10);
  }
}

async function greedy(tokens, n) {
  await seq.clearHistory();
  const out = [];
  for await (const t of seq.evaluate(tokens, { temperature: 0, yieldEogToken: true })) {
    out.push(t);
    if (out.length === n) break;
  }
  return out;
}

const result = {
  systemInfo: llama.systemInfo,
  cpuMathCores: llama.cpuMathCores,
  backendLines: logs.filter((l) => /load_backend|ggml_backend|CPU backend|cpu-/i.test(l)).map((l) => l.trim()),
  contextSize: context.contextSize,
  batchSize: context.batchSize,
  flashAttention: opts.flashAttention ?? false,
  pp: {},
};
for (const n of opts.pp ?? []) result.pp[n] = await timePP(n);
if (opts.tg) result.tg = await timeTG(opts.prompt ?? 8, opts.tg);
if (opts.greedy) {
  result.greedy = await greedy(opts.greedy, opts.greedyN ?? 16);
  result.top = await top(opts.greedy);
}
// Lines logged after model load (e.g. repacking of Q4_0 weights for AVX2).
result.repackLines = logs.filter((l) => /repack|extra buffer|CPU_REPACK|AMX/i.test(l)).map((l) => l.trim()).slice(0, 8);
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(result) + "\n");
