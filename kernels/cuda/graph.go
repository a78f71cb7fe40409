//go:build cuda

package cuda

// CUDA graphs through a small cgo shim (gorgonia.org/cu v0.9.6 has graph
// building but no stream capture): the ops of a decode step, captured once
// and replayed, cost one launch instead of a few hundred (the launch gaps
// the decode target leaves no room for). See Capture.

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Graph is a captured, instantiated sequence of ops (a CUDA graph).
type Graph struct {
	b    *Backend
	g    C.CUgraph
	exec C.CUgraphExec
}

// cstream is the backend's stream as this package's C type (cu.Stream
// holds exactly one CUstream).
func (b *Backend) cstream() C.CUstream { return *(*C.CUstream)(unsafe.Pointer(&b.stream)) }

func cuErr(what string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	var name *C.char
	C.cuGetErrorName(r, &name)
	s := fmt.Sprintf("CUresult %d", int(r))
	if name != nil {
		s = C.GoString(name)
	}
	return fmt.Errorf("cuda: %s: %s", what, s)
}

// Capture records the ops fn queues, without running them, as a Graph
// that Launch replays with the same arguments: the same buffers (whose
// contents may change between replays: Write the step's inputs, Launch,
// Read), the same T and shapes. fn may call only ops: no Alloc, Free,
// Upload, Read or Write (they are not stream work a graph can hold, and
// Read's synchronisation is illegal while capturing), and no op that
// needs more scratch than an earlier call has grown (AttentionBackward,
// LoRABackward): run fn once eagerly first.
func (b *Backend) Capture(fn func()) (g *Graph, err error) {
	defer b.enter("Capture")()
	if err := cuErr("begin capture", C.cuStreamBeginCapture(b.cstream(), C.CU_STREAM_CAPTURE_MODE_RELAXED)); err != nil {
		return nil, err
	}
	var cg C.CUgraph
	func() {
		defer func() {
			if p := recover(); p != nil {
				C.cuStreamEndCapture(b.cstream(), &cg)
				if cg != nil {
					C.cuGraphDestroy(cg)
				}
				panic(p)
			}
		}()
		fn()
	}()
	if err := cuErr("end capture", C.cuStreamEndCapture(b.cstream(), &cg)); err != nil {
		return nil, err
	}
	if err := b.Err(); err != nil {
		C.cuGraphDestroy(cg)
		return nil, err
	}
	g = &Graph{b: b, g: cg}
	if err := cuErr("instantiate", C.cuGraphInstantiateWithFlags(&g.exec, cg, 0)); err != nil {
		C.cuGraphDestroy(cg)
		return nil, err
	}
	return g, nil
}

// Launch queues the graph's ops on the stream, after any work queued
// before it.
func (g *Graph) Launch() {
	b := g.b
	defer b.enter("Graph.Launch")()
	b.fail("Graph.Launch", cuErr("graph launch", C.cuGraphLaunch(g.exec, b.cstream())))
}

// Destroy releases the graph.
func (g *Graph) Destroy() {
	defer g.b.enter("Graph.Destroy")()
	g.b.fail("Graph.Destroy", g.b.stream.Synchronize())
	C.cuGraphExecDestroy(g.exec)
	C.cuGraphDestroy(g.g)
}
