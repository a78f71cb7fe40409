package train

import (
	"errors"
	"fmt"
	"math"
)

// Optimizer names (TRL/transformers `optim`).
const (
	AdamW8bit  = "adamw_8bit"  // bitsandbytes.optim.AdamW, 8-bit blockwise states
	AdamWTorch = "adamw_torch" // torch.optim.AdamW
)

// DefaultTargets are the seven Llama projections (Unsloth's default).
var DefaultTargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// Options configure a LoRA training run. Zero values of Beta1, Beta2, Eps
// and Min8bitSize mean the torch/bitsandbytes defaults.
type Options struct {
	Rank    int     // LoRA r
	Alpha   float64 // lora_alpha
	Dropout float64 // lora_dropout, on the LoRA input path only, in [0, 1)
	RSLoRA  bool    // scale alpha/√r instead of alpha/r
	// Targets are module-name suffixes ("q_proj" or "self_attn.q_proj");
	// empty means DefaultTargets. Each must match at least one projection.
	Targets []string

	LearningRate float64 // peak learning rate
	WarmupSteps  int     // linear warmup steps
	TotalSteps   int     // optimizer steps of the whole run (for the linear decay)
	WeightDecay  float64 // decoupled weight decay on every LoRA tensor
	Optim        string  // AdamW8bit or AdamWTorch
	Beta1, Beta2 float64 // default 0.9, 0.999
	Eps          float64 // default 1e-8
	MaxGradNorm  float64 // clip the global L2 norm to this; <= 0: no clipping
	// Min8bitSize is bitsandbytes' min_8bit_size: tensors with fewer
	// elements keep 32-bit optimizer states. Default 4096.
	Min8bitSize int

	Seed uint64 // LoRA init and dropout masks
	// GradientCheckpointing keeps only each layer's input during the
	// forward pass and recomputes the layer's activations in backward.
	GradientCheckpointing bool
}

// withDefaults fills the zero-means-default fields and validates.
func (o Options) withDefaults() (Options, error) {
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	if o.Min8bitSize == 0 {
		o.Min8bitSize = 4096
	}
	if len(o.Targets) == 0 {
		o.Targets = DefaultTargets
	}
	switch {
	case o.Rank <= 0:
		return o, fmt.Errorf("train: LoRA rank must be positive, got %d", o.Rank)
	case !(o.Alpha > 0) || math.IsInf(o.Alpha, 0):
		return o, fmt.Errorf("train: lora_alpha must be positive, got %v", o.Alpha)
	case !(o.Dropout >= 0 && o.Dropout < 1):
		return o, fmt.Errorf("train: lora_dropout must be in [0, 1), got %v", o.Dropout)
	case !(o.LearningRate >= 0) || math.IsInf(o.LearningRate, 0):
		return o, fmt.Errorf("train: learning rate must be a finite number >= 0, got %v", o.LearningRate)
	case o.WarmupSteps < 0:
		return o, fmt.Errorf("train: warmup steps must be >= 0, got %d", o.WarmupSteps)
	case o.TotalSteps <= 0:
		return o, fmt.Errorf("train: total steps must be positive, got %d", o.TotalSteps)
	case !(o.WeightDecay >= 0):
		return o, fmt.Errorf("train: weight decay must be >= 0, got %v", o.WeightDecay)
	case o.Optim != AdamW8bit && o.Optim != AdamWTorch:
		return o, fmt.Errorf("train: unknown optimizer %q (want %s or %s)", o.Optim, AdamW8bit, AdamWTorch)
	case !(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1):
		return o, fmt.Errorf("train: Adam betas must be in [0, 1), got %v, %v", o.Beta1, o.Beta2)
	case !(o.Eps > 0):
		return o, fmt.Errorf("train: Adam epsilon must be positive, got %v", o.Eps)
	case math.IsNaN(o.MaxGradNorm):
		return o, errors.New("train: max grad norm is NaN")
	case o.Min8bitSize < 0:
		return o, fmt.Errorf("train: min 8-bit size must be >= 0, got %d", o.Min8bitSize)
	}
	return o, nil
}

// Scale is the LoRA scaling: alpha/r, or alpha/√r with rsLoRA (PEFT
// tuners/lora/layer.py update_layer).
func (o Options) Scale() float32 {
	if o.RSLoRA {
		return float32(o.Alpha / math.Sqrt(float64(o.Rank)))
	}
	return float32(o.Alpha / float64(o.Rank))
}

// LearningRateAt is the linear schedule with warmup (transformers
// optimization.py get_linear_schedule_with_warmup): lr(s) =
// LearningRate·λ(s), where optimizer step k (1-based) uses s = k−1.
func (o Options) LearningRateAt(s int) float64 {
	W, T := o.WarmupSteps, o.TotalSteps
	var lambda float64
	if s < W {
		lambda = float64(s) / float64(max(1, W))
	} else {
		lambda = max(0, float64(T-s)/float64(max(1, T-W)))
	}
	return o.LearningRate * lambda
}
