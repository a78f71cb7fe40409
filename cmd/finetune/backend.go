package main

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
)

// newBackend starts the compute backend named by --backend; the returned
// function releases it.
func newBackend(name string, threads int) (kernels.Backend, func(), error) {
	switch name {
	case "cpu":
		b := cpu.New(threads)
		return b, b.Close, nil
	case "cuda":
		return cudaBackend()
	}
	return nil, nil, fmt.Errorf("unknown backend %q", name)
}
