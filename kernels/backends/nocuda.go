//go:build !cuda

package backends

import (
	"errors"

	"github.com/parrot-llm/parrot/kernels"
)

// cudaBackend is unavailable in a build without the cuda tag.
func cudaBackend() (kernels.Backend, func(), error) {
	return nil, nil, errors.New("--backend cuda: this binary was built without CUDA support (build with -tags cuda)")
}
