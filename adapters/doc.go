// Package adapters serves PEFT LoRA adapters on top of a loaded base model.
// The on-disk format (reading and writing adapter directories) is package
// adapters/peft, which trainers use without the serving side.
//
//   - Validate checks an adapter against the base model: every module one
//     of its projections, with its shapes.
//   - Registry: the servable adapters by name: the sub-directories of an
//     adapters directory (kept in step by a Watcher: fsnotify plus polling,
//     with a debounce so half-copied directories are not taken, and a check
//     that the config and the weights belong together), explicit name=path
//     entries, and adapters loaded through the admin API. Each entry has a
//     version: a fingerprint of its files. The files of watched and
//     admin-loaded adapters are checked to lie inside the adapters
//     directory every time they are read.
//   - Errors that reach API clients name the adapter and a reason, never a
//     server path; the log has the paths.
//   - Pool: the model's resident LoRA slots. A request claims an adapter
//     version when it arrives (read once into host memory, shared); the
//     engine's scheduler acquires a slot for the claim when it admits the
//     request: the resident one, else a free slot or the least recently used
//     idle one, never one a running request holds. Queued and preempted
//     requests hold no slot. A changed adapter goes into another slot while
//     requests on the old version finish on it.
//   - Generator binds an adapter name to the base model's engine, so the
//     server treats it as one more model.
//
// Wiring, in a server:
//
//	reg, _ := adapters.NewRegistry(adaptersDir, servedNames...)
//	reg.Add(name, path)                                  // each --lora name=path
//	w := adapters.Watch(reg, adapters.WatchOptions{})    // defer w.Close()
//	m := adapters.NewMetrics(adapters.MetricsOptions{VLLMCompat: true}); m.Register(promRegistry)
//	pool, _ := adapters.NewPool(loaded.Model, maxLoras, maxLoRARank, budget, reg, adapters.PoolOptions{Metrics: m})
//	eng, _ := engine.NewEngine(loaded, opts)            // after NewPool: it enables LoRA on the model
//	gen := &adapters.Generator{Engine: eng, Pool: pool, Name: "pirate-lora"}
package adapters
