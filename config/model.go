package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// ModelConfig is the part of the configuration both commands share: which
// model to load, from where, and how it computes. Serve and Finetune embed
// it; its flags are defined once, by commonFlags.
type ModelConfig struct {
	Model        string // local model directory or Hub id "org/name[@revision]"
	Revision     string // Hub revision (branch, tag or commit); "" = from Model or "main"
	DownloadDir  string // Hub cache directory; "" = HF_HUB_CACHE / HF_HOME rules
	ChatTemplate string // built-in name, Jinja file or Jinja source; "" = the checkpoint's
	Quantize     string // "nf4" or "none"
	Backend      string // "cpu" or "cuda"
	Threads      int    // CPU threads; 0 = all cores
}

// commonFlags defines the flags both commands take: --config, whose help
// shows example (a line of the YAML file), and the flags of ModelConfig.
// model and quantize are the command's help for --model and --quantize.
func commonFlags(fs *pflag.FlagSet, example, model, quantize string) {
	fs.String("config", "", "YAML file of settings, keys named as the flags (e.g. "+example+")")
	fs.String("model", "", model)
	fs.String("revision", "", "Hub revision (branch, tag or commit) of --model; default main")
	fs.String("download-dir", "", "Hub cache directory; default $HF_HUB_CACHE, else $HF_HOME/hub")
	fs.String("chat-template", "", "chat template: a built-in name (e.g. llama-3.1), a file of Jinja source, or Jinja source itself; default the model's own")
	fs.String("quantize", "nf4", quantize)
	fs.String("backend", "cpu", "compute backend: cpu or cuda (cuda needs a binary built with -tags cuda)")
	fs.Int("threads", 0, "CPU threads for the cpu backend; 0 = all cores")
}

// modelConfig reads the flags of ModelConfig.
func (g *getter) modelConfig() ModelConfig {
	return ModelConfig{
		Model:        g.str("model"),
		Revision:     g.str("revision"),
		DownloadDir:  g.str("download-dir"),
		ChatTemplate: g.str("chat-template"),
		Quantize:     strings.ToLower(g.str("quantize")),
		Backend:      strings.ToLower(g.str("backend")),
		Threads:      g.int("threads"),
	}
}

// validate reports each bad setting of m to bad.
func (m *ModelConfig) validate(bad func(format string, args ...any)) {
	if m.Model == "" {
		bad("--model is required: a local model directory or a Hub id such as org/name")
	}
	if strings.Contains(m.Model, "@") && m.Revision != "" {
		bad("--model %q already names a revision: drop --revision %q", m.Model, m.Revision)
	}
	if !slices.Contains([]string{"nf4", "none"}, m.Quantize) {
		bad("--quantize %q: must be nf4 or none", m.Quantize)
	}
	if !slices.Contains([]string{"cpu", "cuda"}, m.Backend) {
		bad("--backend %q: must be cpu or cuda", m.Backend)
	}
	if m.Threads < 0 {
		bad("--threads %d: must be 0 (all cores) or positive", m.Threads)
	}
}

// envFlags appends each flag's environment variable to its help.
func envFlags(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += fmt.Sprintf(" [$%s]", envName(f.Name))
	})
}
