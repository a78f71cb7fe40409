//go:build cuda

package backends

import (
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cuda"
)

// cudaBackend starts the CUDA backend on the first GPU.
func cudaBackend() (kernels.Backend, func(), error) {
	b, err := cuda.New(0)
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}
