# json.dumps of assorted documents under the options pyjson.Marshal covers.
# Each case: the document (key order kept; a top-level float as float.hex()
# under "float" instead, so NaN and infinities fit in JSON), indent (null or
# n), ensure_ascii, sort_keys, and json.dumps' output. Run: python3 gen_dumps.py > dumps.json
import json

docs = [
    None, True, False, 0, -7, 2**63 - 1, -(2**63), 1.0, -0.0, 1e-05, 0.0569254569709301, 1e16, 1.5e16,
    123456789.125, float("nan"), float("inf"), float("-inf"),
    "", "plain", "quote \" backslash \\ slash /", "\n\r\t\b\f \x00\x01\x1f \x7f \x80",
    "é ü 日本 😀 \U0010ffff \ufeff", "<|begin_of_text|>",
    [], {}, [[]], [{}], {"a": {}}, {"a": []},
    [1, 2.5, "x", None, True, [3, [4, {}]]],
    {"z": 1, "a": 2, "m": {"y": [1, 2], "b": None}, "é": "ü", "😀": [], "A": 0.1},
    {"architectures": ["LlamaForCausalLM"], "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
     "rope_scaling": {"factor": 32.0, "rope_type": "llama3"}, "torch_dtype": "float32", "vocab_size": 512},
]

cases = []
for d in docs:
    for indent in (None, 2, 4):
        for ensure_ascii in (True, False):
            for sort_keys in (False, True):
                c = {"float": d.hex()} if isinstance(d, float) else {"doc": d}
                cases.append({**c, "indent": indent, "ensure_ascii": ensure_ascii, "sort_keys": sort_keys,
                              "out": json.dumps(d, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)})
print(json.dumps(cases, indent=1))
