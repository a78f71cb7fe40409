"""Reference outputs of Python's urllib.parse.quote and fnmatch.fnmatch, the
two functions huggingface_hub uses to build resolve URLs and to filter
snapshot files. Regenerate with: python3 pyref.py > pyref.json"""
import fnmatch
import json
from urllib.parse import quote

QUOTE = [
    ("main", ""), ("refs/pr/1", ""), ("v1.0+local", ""), ("a b@c:d", ""),
    ("config.json", "/"), ("sub dir/tokenizer.json", "/"), ("a+b=c&d?.bin", "/"),
    ("ünï/çødé.txt", "/"), ("~tilde_under-dash.x", "/"), ("100%.txt", "/"),
]
NAMES = [
    "config.json", "generation_config.json", "model.safetensors",
    "model-00001-of-00002.safetensors", "tokenizer.json", "tokenizer_config.json",
    "tokenizer.model", "README.md", "onnx/model.onnx", "sub/dir/config.json",
    ".gitattributes", "a.txt", "ab.txt", "[x].bin", "b.bin", "!.md",
]
PATTERNS = [
    "*.json", "*.safetensors", "tokenizer*", "onnx/*", "?.txt", "[a-c].bin",
    "[!a-c]*", "[x].bin", "[[]x].bin", "[", "*", "sub/*.json", "*/config.json",
    "[!]].md", "README.MD",
]
out = {
    "quote": [{"s": s, "safe": safe, "want": quote(s, safe=safe)} for s, safe in QUOTE],
    "fnmatch": [
        {"pattern": p, "name": n, "want": fnmatch.fnmatch(n, p)} for p in PATTERNS for n in NAMES
    ],
}
print(json.dumps(out, indent=1, ensure_ascii=False))
