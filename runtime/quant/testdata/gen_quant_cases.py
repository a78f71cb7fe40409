# More golden cases for runtime/quant, computed with the functions of
# gen_nf4_golden.py (the re-implementation of bitsandbytes' default backend)
# and torch 1.13 (Debian python3-torch, CPU, one thread):
#   - torch.mean of float32 vectors of many lengths (nested_offset),
#   - NF4 + double quantization of shapes with a partial last block, an odd
#     element count, an all-zero block and several nested blocks,
#   - 8-bit blockwise quantization with the unsigned dynamic map.
# Inputs come from an integer hash (inputs() below, mirrored in the Go test) so
# that only outputs need storing. Run: python3 gen_quant_cases.py
import hashlib, json, os, struct
import numpy as np, torch

torch.set_num_threads(1)
here = os.path.dirname(os.path.abspath(__file__))
golden = os.path.join(here, 'gen_nf4_golden.py')
ns = {'__file__': golden}
exec(open(golden).read().split('torch.manual_seed(0)')[0], ns)

def unif(i, s):
    return ((i * 2654435761 + s * 97531 + 12345) % 4294967296) / 4294967296.0

def inputs(n, seed, scale):
    # float64 arithmetic, then rounded to float32: identical in Go.
    return torch.tensor(np.array([(unif(i, seed) + unif(i, seed + 1) + unif(i, seed + 2) - 1.5) * scale
                                  for i in range(n)], dtype=np.float32))

def hexf(t):
    return [struct.pack('<f', float(x)).hex() for x in t.reshape(-1)]

def sha(t):
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()

out = {'mean': [], 'nf4': [], 'blockwise': []}
for n in list(range(1, 41)) + [63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 1000, 1023, 1024, 4095, 4096,
                               4097, 16384, 65536, 65537, 262144]:
    x = inputs(n, 7, 0.1).abs()
    out['mean'].append({'n': n, 'mean': hexf(x.mean().reshape(1))[0]})

cases = [
    {'name': 'odd_tail', 'rows': 5, 'cols': 27, 'seed': 1, 'scale': 0.02, 'bf16': False, 'zero_row': -1},
    {'name': 'zero_block', 'rows': 4, 'cols': 64, 'seed': 2, 'scale': 0.02, 'bf16': False, 'zero_row': 1},
    {'name': 'nested_tail_bf16', 'rows': 300, 'cols': 64, 'seed': 3, 'scale': 0.05, 'bf16': True, 'zero_row': -1},
    {'name': 'nested_4_blocks', 'rows': 64, 'cols': 1024, 'seed': 4, 'scale': 0.02, 'bf16': False, 'zero_row': -1},
]
for c in cases:
    W = inputs(c['rows'] * c['cols'], c['seed'], c['scale']).reshape(c['rows'], c['cols'])
    if c['zero_row'] >= 0:
        W[c['zero_row']] = 0
    if c['bf16']:
        W = W.to(torch.bfloat16)
    packed, absmax = ns['quantize_4bit_nf4'](W.float(), 64)
    offset = absmax.mean()
    qabsmax, nested_absmax = ns['quantize_blockwise'](absmax - offset, ns['DYN'], 256)
    absmax_dq = ns['dequantize_blockwise'](qabsmax, nested_absmax, ns['DYN'], 256) + offset
    W_dq = ns['dequantize_4bit_nf4'](packed, absmax_dq.float(), (c['rows'], c['cols']), 64)
    out['nf4'].append(dict(c, packed_sha256=sha(packed), absmax=hexf(absmax), absmax_u8=[int(v) for v in qabsmax],
                           nested_absmax=hexf(nested_absmax), nested_offset=hexf(offset.reshape(1))[0],
                           dequant_absmax=hexf(absmax_dq), dequant_sha256=sha(W_dq.float())))

# Values whose code depends on how they are scaled: x * fl(1/a) (full blocks)
# and x / a (the partial last block) fall on opposite sides of an NF4 midpoint.
def rounding_sensitive(a, want):
    a = np.float32(a); r = np.float32(1) / a
    code = ns['NF4']; mids = ((code[:-1] + code[1:]) / 2).numpy()
    found = []
    for m in mids:
        x0 = np.float32(m) * a
        for d in range(-40, 41):
            x = np.nextafter(x0, np.float32(np.inf if d > 0 else -np.inf), dtype=np.float32)
            for _ in range(abs(d) - 1):
                x = np.nextafter(x, np.float32(np.inf if d > 0 else -np.inf), dtype=np.float32)
            if abs(x) > a: continue
            mul, div = np.float32(x * r), np.float32(x / a)
            if (mul <= m) != (div <= m):
                found.append(float(x)); break
        if len(found) == want: break
    return found
def best_scale(lo, want):
    # the first scale from lo upwards with the most sensitive values (up to want)
    best = []
    a = np.float32(lo)
    for _ in range(400):
        found = rounding_sensitive(a, want)
        if len(found) > len(best): best, best_a = found, a
        if len(best) == want: break
        a = np.nextafter(a, np.float32(1), dtype=np.float32)
    return [float(best_a)] + best
full = best_scale(0.0371, 15)
tail = best_scale(0.0583, 7)
assert len(full) >= 4 and len(tail) >= 4, (full, tail)
tail += [0.0] * (8 - len(tail))
W = torch.tensor(full + [0.0] * (64 - len(full)) + tail, dtype=torch.float32).reshape(1, 72)
packed, absmax = ns['quantize_4bit_nf4'](W, 64)
out['rounding'] = {'W': hexf(W), 'packed': [int(v) for v in packed.reshape(-1)], 'absmax': hexf(absmax)}

unsigned = torch.tensor(json.load(open(os.path.join(here, 'bnb_code_tables.json')))['dynamic_unsigned_f32'])
for n, bs in [(1000, 256), (512, 256), (70, 64)]:
    x = inputs(n, 9, 1e-3) ** 2  # non-negative, like Adam's second moment
    q, am = ns['quantize_blockwise'](x, unsigned, bs)
    dq = ns['dequantize_blockwise'](q, am, unsigned, bs)
    out['blockwise'].append({'n': n, 'blocksize': bs, 'codes': [int(v) for v in q], 'absmax': hexf(am),
                             'dequant_sha256': sha(dq.float())})

json.dump(out, open(os.path.join(here, 'quant_cases.json'), 'w'), separators=(',', ':'))
print('wrote quant_cases.json')
