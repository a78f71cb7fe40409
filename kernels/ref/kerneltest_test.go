package ref_test

import (
	"testing"

	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// The acceptance suite compares a backend with ref; on ref itself it checks
// the suite (and ref's Memory) end to end.
func TestAcceptance(t *testing.T) { kerneltest.Run(t, ref.New()) }
