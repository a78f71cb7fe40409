package adapters

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// projectionShape returns [out, in] of a projection of the base model.
func projectionShape(c *llama.Config, proj string) (out, in int, ok bool) {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	switch proj {
	case "self_attn.q_proj":
		return q, c.Hidden, true
	case "self_attn.k_proj", "self_attn.v_proj":
		return kv, c.Hidden, true
	case "self_attn.o_proj":
		return c.Hidden, q, true
	case "mlp.gate_proj", "mlp.up_proj":
		return c.Intermediate, c.Hidden, true
	case "mlp.down_proj":
		return c.Hidden, c.Intermediate, true
	}
	return 0, 0, false
}

// splitModule parses "model.layers.<i>.<projection>".
func splitModule(name string) (layer int, proj string, ok bool) {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return 0, "", false
	}
	idx, proj, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, "", false
	}
	layer, err := strconv.Atoi(idx)
	if err != nil || layer < 0 || strconv.Itoa(layer) != idx || !slices.Contains(llama.ProjectionNames, proj) {
		return 0, "", false
	}
	return layer, proj, true
}

// Validate checks a against the base model: every module must be one of its
// projections (model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}),
// in a layer the base has, with the base's in/out features.
func Validate(a *peft.Adapter, base *llama.Config) error {
	if len(a.Modules) == 0 {
		return errors.New("adapter has no modules")
	}
	for _, name := range a.Names() {
		m := a.Modules[name]
		layer, proj, ok := splitModule(name)
		if !ok {
			return fmt.Errorf("module %s is not a projection of a Llama model (model.layers.N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj})", name)
		}
		if layer >= base.Layers {
			return fmt.Errorf("module %s is in layer %d, but the base model has %d layers: the adapter was trained for another model", name, layer, base.Layers)
		}
		out, in, _ := projectionShape(base, proj)
		if m.In != in || m.Out != out {
			return fmt.Errorf("module %s maps %d to %d features, but the base projection maps %d to %d: the adapter was trained for another model",
				name, m.In, m.Out, in, out)
		}
		if m.Rank <= 0 || len(m.A) != m.Rank*m.In || len(m.B) != m.Out*m.Rank {
			return fmt.Errorf("module %s: rank %d with %d A and %d B values", name, m.Rank, len(m.A), len(m.B))
		}
	}
	return nil
}

// checkRank refuses an adapter with a module of rank above maxRank (the
// slots' padded rank, --max-lora-rank).
func checkRank(a *peft.Adapter, maxRank int) error {
	for _, name := range a.Names() {
		if r := a.Modules[name].Rank; r > maxRank {
			return fmt.Errorf("module %s has rank %d, above the maximum LoRA rank %d (raise --max-lora-rank)", name, r, maxRank)
		}
	}
	return nil
}

// install writes a into slot of the model's LoRA slots, zeroing the
// projections a does not adapt. The slot must not be held by any sequence.
func install(ls *llama.LoRASlots, slot int, a *peft.Adapter) error {
	ls.Clear(slot)
	for _, name := range a.Names() {
		m := a.Modules[name]
		if err := ls.Set(slot, name, m.A, m.B, m.Rank, a.Config.Scale(name)); err != nil {
			ls.Clear(slot)
			return err
		}
	}
	return nil
}
