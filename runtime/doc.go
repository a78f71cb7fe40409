// Package runtime is the inference and training runtime, in sub-packages
// whose dependencies point one way (engine → llama → kernels, engine and
// llama → kvpool → kernels):
//
//   - llama: a Llama checkpoint loaded on a backend (config, weights, the
//     tokenizer and chat template) and its forward pass.
//   - kvpool: the paged KV cache (blocks under a byte budget, block tables,
//     prefix caching), built from shapes, not from a model.
//   - engine: the scheduler (continuous batching, admission under the KV
//     budget, preemption, prefix-cache reuse), sequences and their events.
//   - sampler, grammar, chat, tokenizer: sampling, output constraints, chat
//     templates and tokenization.
//   - train, finetune: QLoRA training and the finetune job; quant, safetensors,
//     hub, dataset, testmodel: formats, downloads and test models.
package runtime
