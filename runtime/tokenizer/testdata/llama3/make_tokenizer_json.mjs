// Builds a Hugging Face tokenizer.json for Llama 3 from the vocabulary that the
// npm package llama3-tokenizer-js ships, plus reference cases encoded and
// decoded by that package. Output goes to ./gen (git-ignored): the vocabulary is
// never committed. .ci/run runs this script when ./gen is missing or stale;
// the Go tests fail until it has run.
//
//   node make_tokenizer_json.mjs [outdir]
//
// The tokenizer.json mirrors the layout of Meta's Llama 3.x tokenizer.json:
// BPE with ignore_merges, the Llama 3 split regex followed by ByteLevel,
// 256 special added tokens from id 128000, a BOS template, a ByteLevel decoder.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PKG = 'llama3-tokenizer-js';
const VERSION = '1.2.0'; // pinned: `npm view llama3-tokenizer-js versions`
const SEED = 20240418;
const N_RANDOM = 3000;
const N_DECODE = 600;

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, 'gen'));
fs.mkdirSync(out, { recursive: true });
fs.rmSync(path.join(out, 'stamp'), { force: true });

// 1. The package, installed into the output folder.
const pkgDir = path.join(out, 'node_modules', PKG);
const installed = fs.existsSync(path.join(pkgDir, 'package.json')) &&
  JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version === VERSION;
if (!installed) {
  fs.writeFileSync(path.join(out, 'package.json'), JSON.stringify({ private: true }) + '\n');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--prefix', out, `${PKG}@${VERSION}`],
    { stdio: ['ignore', 'inherit', 'inherit'] });
}
const mod = await import(pathToFileURL(path.join(pkgDir, 'bundle', 'llama3-tokenizer-with-baked-data.js')).href);
const tok = mod.default;

// 2. tokenizer.json. vocabById holds the 128000 BPE tokens then the 256 specials.
const N_BASE = 128000;
if (tok.vocabById.length !== N_BASE + 256) throw new Error(`unexpected vocabulary size ${tok.vocabById.length}`);
const vocab = {};
for (let id = 0; id < N_BASE; id++) vocab[tok.vocabById[id]] = id;
// tok.merges maps "a b" -> priority; its insertion order is the merge order.
const merges = [...tok.merges.entries()].sort((x, y) => x[1] - y[1]).map(([k]) => {
  const parts = k.split(' ');
  if (parts.length !== 2) throw new Error(`bad merge ${k}`);
  return parts;
});
const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const specials = tok.vocabById.slice(N_BASE);
const tokenizerJSON = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: specials.map((content, i) => ({
    id: N_BASE + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  })),
  normalizer: null,
  pre_tokenizer: {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  },
  post_processor: {
    type: 'Sequence',
    processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
        ],
        special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [N_BASE], tokens: ['<|begin_of_text|>'] } },
      },
    ],
  },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges,
  },
};

// 3. Reference cases.
const encodeCases = [];
const decodeCases = [];

// 3a. The package's own test suite, recorded through a proxy: every call it
// makes is forwarded to the real tokenizer and the suite asserts the results
// against its hard-coded expectations, so what we record is what it checked.
const proxy = {
  encode(text, options) {
    const ids = tok.encode(text, options);
    const o = options ?? { bos: true, eos: true };
    encodeCases.push({ source: 'package', text, ids, bos: !!o.bos, eos: !!o.eos });
    return ids;
  },
  decode(ids) {
    const text = tok.decode(ids);
    decodeCases.push({ source: 'package', ids: [...ids], text });
    return text;
  },
  optimisticCount: (s) => tok.optimisticCount(s),
};
const log = console.log;
console.log = () => {};
try { tok.defaultTests(proxy); } finally { console.log = log; }

// 3b. Random strings. A seeded PRNG keeps the file reproducible.
let state = SEED >>> 0;
function rand() { // mulberry32
  state = (state + 0x6D2B79F5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ri = (n) => Math.floor(rand() * n);
const pick = (a) => a[ri(a.length)];
const cp = (lo, hi) => String.fromCodePoint(lo + ri(hi - lo + 1));
// Left out on purpose, where the package's JavaScript regex and Hugging Face's
// Oniguruma regex disagree: U+FEFF and U+0085 (JS \s counts FEFF, not 0085;
// Unicode White_Space the reverse) and U+017F (Oniguruma's (?i) folds it to 's').
const excluded = new Set([0xFEFF, 0x85, 0x17F]);
function bmp() {
  for (;;) {
    const c = ri(0xFFFE);
    if ((c >= 0xD800 && c <= 0xDFFF) || excluded.has(c)) continue;
    return String.fromCodePoint(c);
  }
}
const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const words = ['the', 'The', 'hello', 'world', 'llama', 'grabbed', 'tokenizer', 'Hello', 'I', 'a', 'don', 'can', 'we',
  'they', 'you', 'naïve', 'café', 'über', 'straße', 'Москва', 'привет', 'Ελλάδα', 'مرحبا', 'שלום', 'नमस्ते', 'สวัสดี'];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", '’s', "'x", "''"];
const spaces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\r', ' \n', '\n ', '\t\t', '\u00A0', '\u3000', '\u2009', '\u2028', '\v', '\f', '    \n  '];
const punct = '.,!?;:"\'()[]{}<>|/\\-_=+*&^%$#@~`';
const emoji = () => pick([
  () => cp(0x1F300, 0x1F5FF), () => cp(0x1F600, 0x1F64F), () => cp(0x1F680, 0x1F6FF), () => cp(0x1F900, 0x1F9FF),
  () => cp(0x1F600, 0x1F64F) + '\uFE0F', () => '👍' + cp(0x1F3FB, 0x1F3FF),
  () => '👨\u200D👩\u200D👧', () => cp(0x1F1E6, 0x1F1FF) + cp(0x1F1E6, 0x1F1FF), () => '🦙', () => '❤️',
])();
const cjk = () => pick([() => cp(0x4E00, 0x9FFF), () => cp(0x3040, 0x309F), () => cp(0x30A0, 0x30FF), () => cp(0xAC00, 0xD7A3), () => '镇']);
const generators = [
  () => pick(words),
  () => Array.from({ length: 1 + ri(8) }, () => pick(letters)).join(''),
  () => pick(words) + pick(contractions),
  () => pick(contractions),
  () => String(ri(10 ** (1 + ri(9)))),
  () => Array.from({ length: 1 + ri(14) }, () => String(ri(10))).join(''),
  () => pick(spaces),
  () => pick(spaces).repeat(1 + ri(6)),
  () => Array.from({ length: 1 + ri(4) }, () => pick(punct)).join(''),
  () => emoji(),
  () => Array.from({ length: 1 + ri(6) }, cjk).join(''),
  () => cp(0x00C0, 0x024F).replace('ſ', 'e') + cp(0x0300, 0x036F),
  () => cp(0x0400, 0x04FF) + cp(0x0370, 0x03FF) + cp(0x0600, 0x06FF) + cp(0x0900, 0x097F) + cp(0x0E00, 0x0E7F),
  () => bmp(),
  () => pick(specials),
  () => pick(['<|eot_id|', '<|reserved_special_token_300|>', '<|reserved_special_token_08|>', '<|unknown|>', '<|', '|>', '<||>', '<|begin_of_text']),
  () => cp(0, 0x1F),
];
function randomString() {
  const n = 1 + ri(rand() < 0.1 ? 12 : 40);
  let s = '';
  for (let i = 0; i < n; i++) {
    s += pick(generators)();
    if (rand() < 0.5) s += ' ';
  }
  return s;
}
for (let i = 0; i < N_RANDOM; i++) {
  const text = randomString();
  encodeCases.push({ source: 'random', text, ids: tok.encode(text, { bos: false, eos: false }), bos: false, eos: false });
}
// A few long inputs (several KB) made of the same pieces.
for (let i = 0; i < 10; i++) {
  let text = '';
  while (text.length < 2000 + ri(4000)) text += randomString();
  encodeCases.push({ source: 'random-long', text, ids: tok.encode(text, { bos: false, eos: false }), bos: false, eos: false });
}

// 3c. Random id sequences, rich in single-byte tokens so that the decoder sees
// split and ill-formed UTF-8.
const byteIDs = [];
{
  const bs = [...Array(94).keys()].map((i) => i + 33).concat([...Array(12).keys()].map((i) => i + 161), [...Array(82).keys()].map((i) => i + 174));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const c = bs.includes(b) ? b : 256 + n++;
    byteIDs.push(tok.vocabByString.get(String.fromCharCode(c)));
  }
}
for (let i = 0; i < N_DECODE; i++) {
  const ids = Array.from({ length: 1 + ri(30) }, () => {
    const r = rand();
    if (r < 0.45) return pick(byteIDs);
    if (r < 0.9) return ri(N_BASE);
    return N_BASE + ri(256);
  });
  decodeCases.push({ source: 'random', ids, text: tok.decode(ids) });
}

fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tokenizerJSON));
fs.writeFileSync(path.join(out, 'cases.json'), JSON.stringify({ package: `${PKG}@${VERSION}`, encode: encodeCases, decode: decodeCases }));
// Written last, so that an interrupted run leaves no valid stamp: the output
// is stale (for .ci/run and the Go tests) when the stamp is not the SHA-256 of
// this script.
const self = fs.readFileSync(fileURLToPath(import.meta.url));
fs.writeFileSync(path.join(out, 'stamp'), createHash('sha256').update(self).digest('hex') + '\n');
console.log(`wrote ${out}/tokenizer.json and cases.json: ${encodeCases.length} encode cases, ${decodeCases.length} decode cases`);
