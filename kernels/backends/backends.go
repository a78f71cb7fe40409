// Package backends starts a compute backend by name, for the commands'
// --backend flag. Only a build with the cuda tag links CUDA.
package backends

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
)

// New starts the backend called name ("cpu" or "cuda"); threads sizes the
// CPU worker pool (0 = all cores). The returned function releases it.
func New(name string, threads int) (kernels.Backend, func(), error) {
	switch name {
	case "cpu":
		b := cpu.New(threads)
		return b, b.Close, nil
	case "cuda":
		return cudaBackend()
	}
	return nil, nil, fmt.Errorf("unknown backend %q (want cpu or cuda)", name)
}
