package adapters

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func infoSeries(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// With VLLMCompat, vllm:lora_requests_info twins parrot:lora_requests_info:
// one series with vLLM's labels (max_lora, running_lora_adapters and
// waiting_lora_adapters, the lists comma-separated), valued the Unix time of
// the update; each update replaces the series. Without it, only ours.
func TestLoRARequestsInfoTwins(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(MetricsOptions{VLLMCompat: true})
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	before := float64(time.Now().UnixNano()) / 1e9
	m.requestsInfo(4, []string{"a", "b"}, []string{"c"})
	m.requestsInfo(4, []string{"b"}, nil)
	after := float64(time.Now().UnixNano()) / 1e9
	ours, vllm := infoSeries(t, reg, MetricLoRARequestsInfo), infoSeries(t, reg, VLLMLoRARequestsInfo)
	if len(ours) != 1 || len(vllm) != 1 {
		t.Fatalf("%d and %d series, want one each: the latest state only", len(ours), len(vllm))
	}
	want := map[string]string{"max_lora": "4", "running_lora_adapters": "b", "waiting_lora_adapters": ""}
	for _, s := range []*dto.Metric{ours[0], vllm[0]} {
		got := map[string]string{}
		for _, l := range s.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) || got["max_lora"] != "4" || got["running_lora_adapters"] != "b" || got["waiting_lora_adapters"] != "" {
			t.Errorf("labels %v, want %v", got, want)
		}
		if v := s.GetGauge().GetValue(); v < before || v > after {
			t.Errorf("value %v, want the update's Unix time in [%v, %v]", v, before, after)
		}
	}
	m.requestsInfo(2, []string{"a", "b"}, []string{"c", "d"})
	for _, l := range infoSeries(t, reg, VLLMLoRARequestsInfo)[0].GetLabel() {
		if w := map[string]string{"max_lora": "2", "running_lora_adapters": "a,b", "waiting_lora_adapters": "c,d"}[l.GetName()]; l.GetValue() != w {
			t.Errorf("%s=%q, want %q", l.GetName(), l.GetValue(), w)
		}
	}

	plain := prometheus.NewRegistry()
	p := NewMetrics(MetricsOptions{})
	if err := p.Register(plain); err != nil {
		t.Fatal(err)
	}
	p.requestsInfo(1, nil, nil)
	if s := infoSeries(t, plain, VLLMLoRARequestsInfo); s != nil {
		t.Errorf("%s exported without VLLMCompat", VLLMLoRARequestsInfo)
	}
	if s := infoSeries(t, plain, MetricLoRARequestsInfo); len(s) != 1 {
		t.Errorf("%s: %d series", MetricLoRARequestsInfo, len(s))
	}
}
