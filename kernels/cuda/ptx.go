package cuda

import (
	"fmt"
	"strings"
)

// ptxSignatures lists the kernels of a PTX module with their parameter
// types, one byte each as arg.t: 'p' for .u64 (pointers), 'i' for
// .u32/.s32, 'f' for .f32. nvcc writes every entry as
//
//	.visible .entry name(
//		.param .u64 name_param_0,
//		.param .u32 name_param_1
//	)
func ptxSignatures(ptx string) (map[string]string, error) {
	sigs := map[string]string{}
	lines := strings.Split(ptx, "\n")
	for i := 0; i < len(lines); i++ {
		rest, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), ".visible .entry ")
		if !ok {
			continue
		}
		name, _, ok := strings.Cut(rest, "(")
		if !ok || name == "" {
			return nil, fmt.Errorf("ptx: malformed entry line %q", lines[i])
		}
		var sig []byte
		for i++; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			if l == ")" {
				break
			}
			if l == "" {
				continue
			}
			f := strings.Fields(strings.TrimSuffix(l, ","))
			if len(f) != 3 || f[0] != ".param" {
				return nil, fmt.Errorf("ptx: %s: unexpected parameter line %q", name, l)
			}
			switch f[1] {
			case ".u64":
				sig = append(sig, 'p')
			case ".u32", ".s32":
				sig = append(sig, 'i')
			case ".f32":
				sig = append(sig, 'f')
			default:
				return nil, fmt.Errorf("ptx: %s: parameter type %s", name, f[1])
			}
		}
		sigs[name] = string(sig)
	}
	return sigs, nil
}
