# Reference JSON files for testmodel.Tiny() with Quantize, written the way
# transformers writes them: config.json and generation_config.json with
# json.dumps(d, indent=2, sort_keys=True) + "\n"; tokenizer_config.json and
# special_tokens_map.json with ensure_ascii=False as well. The dicts are built
# here from SPEC.md §1.8, §3.7, §4.1 and the Tiny parameters, independently of
# the Go code. The two large files are stored as SHA-256 digests.
# Run: python3 gen_tiny_configs.py
import hashlib, json, os

here = os.path.dirname(os.path.abspath(__file__))
vocab, bos = 1024, 1024 - 256
eos = [bos + 1, bos + 8, bos + 9]  # <|end_of_text|>, <|eom_id|>, <|eot_id|>
config = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": bos, "eos_token_id": eos, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 2048, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": vocab,
    "quantization_config": {"_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": "bfloat16",
                            "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4",
                            "bnb_4bit_use_double_quant": True, "llm_int8_enable_fp32_cpu_offload": False,
                            "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
                            "llm_int8_threshold": 6.0, "load_in_4bit": True, "load_in_8bit": False,
                            "quant_method": "bitsandbytes"},
}
gen = {"bos_token_id": bos, "do_sample": True, "eos_token_id": eos, "temperature": 0.6, "top_p": 0.9}
names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
         "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
         "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"] + ["<|reserved_special_token_%d|>" % i for i in range(3, 248)]
assert len(names) == 256
tok = lambda s: {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
tok_config = {
    "added_tokens_decoder": {str(bos + i): dict(tok(s), special=True) for i, s in enumerate(names)},
    "bos_token": "<|begin_of_text|>",
    "chat_template": open(os.path.join(here, "..", "llama31_official.jinja")).read(),
    "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>",
    "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 2048,
    "tokenizer_class": "PreTrainedTokenizerFast",
}
special_map = {"bos_token": tok("<|begin_of_text|>"), "eos_token": tok("<|eot_id|>")}

dump = lambda d, asc: json.dumps(d, indent=2, sort_keys=True, ensure_ascii=asc) + "\n"
open(os.path.join(here, "tiny_quantized_config.json"), "w").write(dump(config, True))
open(os.path.join(here, "tiny_generation_config.json"), "w").write(dump(gen, True))
digests = {f: hashlib.sha256(dump(d, False).encode()).hexdigest()
           for f, d in [("tokenizer_config.json", tok_config), ("special_tokens_map.json", special_map)]}
open(os.path.join(here, "tiny_digests.json"), "w").write(json.dumps(digests, indent=1) + "\n")
