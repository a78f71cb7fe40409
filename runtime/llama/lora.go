package llama

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// LoRASlots are the model's resident-adapter slots: for every projection a
// stack of Slots adapters of rank up to MaxRank. The adapters package decides
// what lives in which slot; tokens pick a slot per batch (Batch.Slots).
type LoRASlots struct {
	Slots, MaxRank int
	mem            kernels.Memory
	modules        map[string]*kernels.LoRAStack // by module name, e.g. "model.layers.0.self_attn.q_proj"
}

// EnableLoRA allocates slots adapter slots of rank up to maxRank on every
// projection. Call it once, before serving.
func (m *Model) EnableLoRA(slots, maxRank int) (*LoRASlots, error) {
	if _, ok := m.Backend.(kernels.LoRABackend); !ok {
		return nil, fmt.Errorf("backend %s does not support LoRA adapters", m.Backend.Name())
	}
	if slots <= 0 || maxRank <= 0 {
		return nil, fmt.Errorf("LoRA slots (%d) and max rank (%d) must be positive", slots, maxRank)
	}
	if m.lora != nil {
		return nil, fmt.Errorf("LoRA slots are already enabled")
	}
	ls := &LoRASlots{Slots: slots, MaxRank: maxRank, mem: m.Backend, modules: map[string]*kernels.LoRAStack{}}
	for i := range m.Weights.Layers {
		for _, l := range m.Weights.Layers[i].Projections() {
			stack, err := kernels.NewLoRAStack(m.Backend, slots, maxRank, l.In, l.Out)
			if err != nil {
				return nil, fmt.Errorf("LoRA slots for %s: %w", l.Name, err)
			}
			l.LoRA = stack
			ls.modules[l.Name] = stack
		}
	}
	m.lora = ls
	return ls, nil
}

// Module returns the stack of one projection (for its In/Out sizes).
func (ls *LoRASlots) Module(name string) (*kernels.LoRAStack, bool) {
	s, ok := ls.modules[name]
	return s, ok
}

// Set writes one projection of an adapter into slot: a [rank, In] and
// b [Out, rank] in PEFT layout; scale (alpha/r or alpha/√r) is folded into B.
// The slot must not be in use by a running sequence.
func (ls *LoRASlots) Set(slot int, module string, a, b []float32, rank int, scale float32) error {
	s, ok := ls.modules[module]
	if !ok {
		return fmt.Errorf("no projection named %s", module)
	}
	if slot < 0 || slot >= ls.Slots {
		return fmt.Errorf("slot %d out of range [0,%d)", slot, ls.Slots)
	}
	if rank <= 0 || rank > ls.MaxRank {
		return fmt.Errorf("%s: rank %d exceeds the maximum LoRA rank %d", module, rank, ls.MaxRank)
	}
	if len(a) != rank*s.In || len(b) != s.Out*rank {
		return fmt.Errorf("%s: lora_A has %d values and lora_B %d, want %d ([%d,%d]) and %d ([%d,%d])",
			module, len(a), len(b), rank*s.In, rank, s.In, s.Out*rank, s.Out, rank)
	}
	// Staged on the host, padded to MaxRank with zeros, and written through
	// the stack (one copy per matrix, or a rounding to its bfloat16).
	sa := make([]float32, s.MaxRank*s.In)
	sb := make([]float32, s.Out*s.MaxRank)
	copy(sa, a) // rows beyond rank stay zero
	for o := range s.Out {
		for r := range rank {
			sb[o*s.MaxRank+r] = scale * b[o*rank+r]
		}
	}
	s.WriteSlot(ls.mem, slot, sa, sb)
	return nil
}

// Clear zeroes a slot in every projection (an adapter that targets only some
// modules must leave the others at zero).
func (ls *LoRASlots) Clear(slot int) {
	for _, s := range ls.modules {
		s.WriteSlot(ls.mem, slot, make([]float32, s.MaxRank*s.In), make([]float32, s.Out*s.MaxRank))
	}
}
