// Package deploy holds the Kubernetes manifests (base/, a kustomize base)
// and this test, which reads them into the Kubernetes API types and checks
// them against what the server really serves: its flags (parsed by
// config.ParseServe), its port, its probe routes and its metric names
// (scraped from a live openai.Server).
package deploy

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/parrot-llm/parrot/adapters"
	"github.com/parrot-llm/parrot/config"
	"github.com/parrot-llm/parrot/openai"
)

// The custom resources, as small local structs holding the fields these
// manifests use. They are read strictly, so a misspelled field fails.

// labelSelector is the matchLabels part of a metav1.LabelSelector.
type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

// poolRef is the extension's PoolObjectReference.
type poolRef struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Name  string `json:"name"`
}

// inferencePool is inference.networking.k8s.io/v1 InferencePool.
type inferencePool struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector    labelSelector `json:"selector"`
		TargetPorts []struct {
			Number int32 `json:"number"`
		} `json:"targetPorts"`
		EndpointPickerRef struct {
			Group string `json:"group,omitempty"`
			Kind  string `json:"kind,omitempty"`
			Name  string `json:"name"`
			Port  struct {
				Number int32 `json:"number"`
			} `json:"port"`
			FailureMode string `json:"failureMode,omitempty"`
		} `json:"endpointPickerRef"`
	} `json:"spec"`
}

// inferenceObjective is inference.networking.x-k8s.io/v1alpha2 InferenceObjective.
type inferenceObjective struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Priority *int    `json:"priority,omitempty"`
		PoolRef  poolRef `json:"poolRef"`
	} `json:"spec"`
}

// inferenceModelRewrite is inference.networking.x-k8s.io/v1alpha2 InferenceModelRewrite.
type inferenceModelRewrite struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		PoolRef poolRef `json:"poolRef"`
		Rules   []struct {
			Matches []struct {
				Model struct {
					Type  string `json:"type"`
					Value string `json:"value"`
				} `json:"model"`
			} `json:"matches"`
			Targets []struct {
				ModelRewrite string `json:"modelRewrite"`
				Weight       int    `json:"weight"`
			} `json:"targets"`
		} `json:"rules"`
	} `json:"spec"`
}

// podMonitor is monitoring.coreos.com/v1 PodMonitor.
type podMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector            labelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port              string `json:"port"`
			Path              string `json:"path"`
			Interval          string `json:"interval"`
			MetricRelabelings []struct {
				SourceLabels []string `json:"sourceLabels"`
				Regex        string   `json:"regex"`
				Action       string   `json:"action"`
			} `json:"metricRelabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// httpRoute is gateway.networking.k8s.io/v1 HTTPRoute.
type httpRoute struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ParentRefs []struct {
			Name string `json:"name"`
		} `json:"parentRefs"`
		Rules []struct {
			Matches []struct {
				Path struct {
					Type  string `json:"type"`
					Value string `json:"value"`
				} `json:"path"`
			} `json:"matches"`
			BackendRefs []struct {
				Group string `json:"group"`
				Kind  string `json:"kind"`
				Name  string `json:"name"`
				Port  int32  `json:"port"`
			} `json:"backendRefs"`
			Timeouts struct {
				Request string `json:"request"`
			} `json:"timeouts"`
		} `json:"rules"`
	} `json:"spec"`
}

// adapterRules is the prometheus-adapter chart's rules value.
type adapterRules struct {
	Rules struct {
		Custom []struct {
			SeriesQuery string `json:"seriesQuery"`
			Resources   struct {
				Overrides map[string]struct {
					Resource string `json:"resource"`
				} `json:"overrides"`
			} `json:"resources"`
			Name struct {
				Matches string `json:"matches"`
				As      string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"custom"`
	} `json:"rules"`
}

// manifests are the objects of the base, by kind.
type manifests struct {
	deployment  *appsv1.Deployment
	service     *corev1.Service
	pvcs        []*corev1.PersistentVolumeClaim
	hpa         *autoscalingv2.HorizontalPodAutoscaler
	pool        *inferencePool
	objectives  []*inferenceObjective
	rewrites    []*inferenceModelRewrite
	podMonitor  *podMonitor
	route       *httpRoute
	resourceSet []string // the files kustomization.yaml lists
}

// apiVersions are the kinds the base may hold, with the one API version
// each is written for.
var apiVersions = map[string]string{
	"Deployment":              "apps/v1",
	"Service":                 "v1",
	"PersistentVolumeClaim":   "v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
	"InferencePool":           "inference.networking.k8s.io/v1",
	"InferenceObjective":      "inference.networking.x-k8s.io/v1alpha2",
	"InferenceModelRewrite":   "inference.networking.x-k8s.io/v1alpha2",
	"PodMonitor":              "monitoring.coreos.com/v1",
	"HTTPRoute":               "gateway.networking.k8s.io/v1",
}

// strict decodes one YAML document into v, refusing unknown fields.
func strict(t *testing.T, where string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

func loadBase(t *testing.T) *manifests {
	t.Helper()
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	b, err := os.ReadFile("base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict(t, "kustomization.yaml", b, &kust)
	if kust.Kind != "Kustomization" || kust.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Fatalf("kustomization.yaml is a %s %s", kust.APIVersion, kust.Kind)
	}
	// Every manifest is listed, and every listed file exists.
	files, err := filepath.Glob("base/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			onDisk = append(onDisk, base)
		}
	}
	listed := slices.Clone(kust.Resources)
	slices.Sort(listed)
	if !slices.Equal(listed, onDisk) {
		t.Fatalf("kustomization.yaml lists %v; base/ holds %v", listed, onDisk)
	}

	m := &manifests{resourceSet: kust.Resources}
	for _, name := range kust.Resources {
		b, err := os.ReadFile(filepath.Join("base", name))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			where := fmt.Sprintf("%s, document %d", name, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if want, ok := apiVersions[tm.Kind]; !ok || tm.APIVersion != want {
				t.Fatalf("%s: %s %s: want one of %v", where, tm.APIVersion, tm.Kind, apiVersions)
			}
			switch tm.Kind {
			case "Deployment":
				m.deployment = new(appsv1.Deployment)
				strict(t, where, doc, m.deployment)
			case "Service":
				m.service = new(corev1.Service)
				strict(t, where, doc, m.service)
			case "PersistentVolumeClaim":
				pvc := new(corev1.PersistentVolumeClaim)
				strict(t, where, doc, pvc)
				m.pvcs = append(m.pvcs, pvc)
			case "HorizontalPodAutoscaler":
				m.hpa = new(autoscalingv2.HorizontalPodAutoscaler)
				strict(t, where, doc, m.hpa)
			case "InferencePool":
				m.pool = new(inferencePool)
				strict(t, where, doc, m.pool)
			case "InferenceObjective":
				o := new(inferenceObjective)
				strict(t, where, doc, o)
				m.objectives = append(m.objectives, o)
			case "InferenceModelRewrite":
				r := new(inferenceModelRewrite)
				strict(t, where, doc, r)
				m.rewrites = append(m.rewrites, r)
			case "PodMonitor":
				m.podMonitor = new(podMonitor)
				strict(t, where, doc, m.podMonitor)
			case "HTTPRoute":
				m.route = new(httpRoute)
				strict(t, where, doc, m.route)
			}
		}
	}
	for what, missing := range map[string]bool{
		"Deployment": m.deployment == nil, "Service": m.service == nil, "HorizontalPodAutoscaler": m.hpa == nil,
		"InferencePool": m.pool == nil, "PodMonitor": m.podMonitor == nil, "HTTPRoute": m.route == nil,
		"InferenceObjective": len(m.objectives) == 0, "InferenceModelRewrite": len(m.rewrites) == 0,
		"PersistentVolumeClaim": len(m.pvcs) == 0,
	} {
		if missing {
			t.Errorf("the base has no %s", what)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// serveContainer returns the Deployment's serve container.
func (m *manifests) serveContainer(t *testing.T) *corev1.Container {
	t.Helper()
	cs := m.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "serve" {
		t.Fatalf("want one container named serve, got %d", len(cs))
	}
	return &cs[0]
}

// mountOf returns the mount path of the volume whose claim (or emptyDir)
// is named volume.
func mountOf(t *testing.T, c *corev1.Container, volume string) string {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.Name == volume {
			return vm.MountPath
		}
	}
	t.Fatalf("volume %s is not mounted", volume)
	return ""
}

// parseServeFlags parses the container's arguments and PARROT_* variables
// with the server's own parser, so a renamed, misspelled or invalid flag
// fails here as it would in the pod. --adapters-dir must exist for the
// parser: it is pointed at a temporary directory after checking that it
// names the adapters volume's mount.
func (m *manifests) parseServeFlags(t *testing.T) config.Serve {
	t.Helper()
	c := m.serveContainer(t)
	if !slices.Equal(c.Command, []string{"/serve"}) {
		t.Errorf("command %q, want [/serve] (the binary deploy/Dockerfile installs)", c.Command)
	}
	adaptersMount := mountOf(t, c, "adapters")
	args := slices.Clone(c.Args)
	replaced := false
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--adapters-dir="); ok {
			if v != adaptersMount {
				t.Errorf("--adapters-dir %s is not the adapters volume's mount %s", v, adaptersMount)
			}
			args[i] = "--adapters-dir=" + t.TempDir()
			replaced = true
		}
	}
	if !replaced {
		t.Errorf("no --adapters-dir=... argument")
	}
	var help bytes.Buffer
	config.ServeUsage(&help)
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, config.EnvPrefix+"_") {
			continue
		}
		if !strings.Contains(help.String(), "[$"+e.Name+"]") {
			t.Errorf("env %s names no serve flag", e.Name)
		}
		if e.ValueFrom == nil {
			t.Setenv(e.Name, e.Value)
		}
	}
	cfg, err := config.ParseServe(args, nil)
	if err != nil {
		t.Fatalf("the container's flags do not parse: %v", err)
	}
	return cfg
}

// Every manifest decodes strictly into its API type, and the Deployment's
// flags are the server's: ParseServe accepts them, and they say what the
// rest of the base assumes.
func TestDeploymentFlagsParse(t *testing.T) {
	m := loadBase(t)
	cfg := m.parseServeFlags(t)
	c := m.serveContainer(t)
	if cfg.Host != "0.0.0.0" || cfg.Port != 8000 {
		t.Errorf("listens on %s, want 0.0.0.0:8000", cfg.Addr())
	}
	if !cfg.EnableLoRAAdmin || cfg.AdaptersDir == "" {
		t.Errorf("--enable-lora-admin %v, --adapters-dir %q: both wanted", cfg.EnableLoRAAdmin, cfg.AdaptersDir)
	}
	if cfg.MetricsCompat != "vllm" {
		t.Errorf("--metrics-compat %q: the endpoint picker needs vllm", cfg.MetricsCompat)
	}
	if len(cfg.ServedModelNames) == 0 || cfg.Model == "" {
		t.Errorf("model %q served as %q", cfg.Model, cfg.ServedModelNames)
	}
	// The Hub cache lies on the hf-cache volume.
	hfHome := ""
	for _, e := range c.Env {
		if e.Name == "HF_HOME" {
			hfHome = e.Value
		}
	}
	if mount := mountOf(t, c, "hf-cache"); hfHome == "" || !strings.HasPrefix(hfHome+"/", mount+"/") {
		t.Errorf("HF_HOME %q is not on the hf-cache volume (%s)", hfHome, mount)
	}
	// The grace period outlasts the drain and the engine's stop (10s).
	grace := time.Duration(*m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= cfg.ShutdownTimeout+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v does not cover --shutdown-timeout %v + 10s", grace, cfg.ShutdownTimeout)
	}
	// The adapters volume is the claim, shared by every replica.
	var claim string
	for _, v := range m.deployment.Spec.Template.Spec.Volumes {
		if v.Name == "adapters" && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	found := false
	for _, pvc := range m.pvcs {
		if pvc.Name == claim {
			found = true
			if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
				t.Errorf("claim %s is not ReadWriteMany: replicas could not share it", claim)
			}
		}
	}
	if !found {
		t.Errorf("the adapters volume's claim %q is not in the base", claim)
	}
	// Requests are sized; memory has a limit above its request.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("resources: requests %v, limits %v", req, lim)
	}
}

// A misspelled or renamed flag in the Deployment must fail the test: the
// parser is the server's, not a copy of its flag names.
func TestMisspelledFlagFails(t *testing.T) {
	m := loadBase(t)
	c := m.serveContainer(t)
	for i, a := range c.Args {
		if strings.HasPrefix(a, "--served-model-name=") {
			c.Args[i] = strings.Replace(a, "--served-model-name=", "--served-model=", 1)
		}
	}
	for i, a := range c.Args {
		if strings.HasPrefix(a, "--adapters-dir=") {
			c.Args[i] = "--adapters-dir=" + t.TempDir()
		}
	}
	if _, err := config.ParseServe(c.Args, nil); err == nil || !strings.Contains(err.Error(), "served-model") {
		t.Fatalf("a misspelled flag parsed: %v", err)
	}
}

// The port, the probes, the Service, the pool and the route all point at
// what the server listens on and serves: the container port is --port and
// named http, the probes hit the server's readiness and liveness routes,
// the Service and the InferencePool select the pods and reach that port.
func TestPortsProbesAndSelectors(t *testing.T) {
	m := loadBase(t)
	cfg := m.parseServeFlags(t)
	c := m.serveContainer(t)
	podLabels := m.deployment.Spec.Template.Labels
	selects := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s selects everything", what)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods lack (%v)", what, k, v, podLabels)
			}
		}
	}
	selects("the Deployment", m.deployment.Spec.Selector.MatchLabels)
	selects("the Service", m.service.Spec.Selector)
	selects("the InferencePool", m.pool.Spec.Selector.MatchLabels)
	selects("the PodMonitor", m.podMonitor.Spec.Selector.MatchLabels)

	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || int(c.Ports[0].ContainerPort) != cfg.Port {
		t.Fatalf("container ports %+v, want one named http on --port %d", c.Ports, cfg.Port)
	}
	for _, p := range m.service.Spec.Ports {
		if p.TargetPort.String() != "http" {
			t.Errorf("Service port %s targets %s, want the container's http", p.Name, p.TargetPort.String())
		}
	}
	if tp := m.pool.Spec.TargetPorts; len(tp) != 1 || int(tp[0].Number) != cfg.Port {
		t.Errorf("InferencePool targetPorts %+v, want [%d]", tp, cfg.Port)
	}
	if ref := m.pool.Spec.EndpointPickerRef; ref.Name == "" || ref.Port.Number == 0 ||
		(ref.FailureMode != "" && ref.FailureMode != "FailOpen" && ref.FailureMode != "FailClose") {
		t.Errorf("InferencePool endpointPickerRef %+v", ref)
	}
	// The route's backend is the pool, on the pool's port.
	backends := 0
	for _, r := range m.route.Spec.Rules {
		for _, b := range r.BackendRefs {
			backends++
			if b.Group != "inference.networking.k8s.io" || b.Kind != "InferencePool" || b.Name != m.pool.Metadata.Name || int(b.Port) != cfg.Port {
				t.Errorf("HTTPRoute backend %+v is not the InferencePool %s on %d", b, m.pool.Metadata.Name, cfg.Port)
			}
		}
	}
	if backends == 0 {
		t.Errorf("the HTTPRoute has no backend")
	}
	// Objectives and rewrites belong to the pool; a rewrite's target is a
	// served name of the base or an adapter name (the pool cannot know the
	// adapter directory's contents: a wrong one is a 404 at run time).
	for _, o := range m.objectives {
		if o.Spec.PoolRef.Name != m.pool.Metadata.Name {
			t.Errorf("InferenceObjective %s belongs to pool %q", o.Metadata.Name, o.Spec.PoolRef.Name)
		}
	}
	for _, r := range m.rewrites {
		if r.Spec.PoolRef.Name != m.pool.Metadata.Name {
			t.Errorf("InferenceModelRewrite %s belongs to pool %q", r.Metadata.Name, r.Spec.PoolRef.Name)
		}
		for _, rule := range r.Spec.Rules {
			sum := 0
			for _, tg := range rule.Targets {
				if tg.ModelRewrite == "" || tg.Weight < 0 {
					t.Errorf("InferenceModelRewrite %s: target %+v", r.Metadata.Name, tg)
				}
				sum += tg.Weight
			}
			if len(rule.Targets) == 0 || sum == 0 {
				t.Errorf("InferenceModelRewrite %s: a rule sends traffic nowhere", r.Metadata.Name)
			}
			for _, mt := range rule.Matches {
				if mt.Model.Type != "Exact" || mt.Model.Value == "" {
					t.Errorf("InferenceModelRewrite %s: match %+v", r.Metadata.Name, mt)
				}
			}
		}
	}

	// The probes hit the routes a live server answers: readiness 503 and
	// liveness 200 while the model loads.
	ready, live := c.ReadinessProbe, c.LivenessProbe
	if ready == nil || ready.HTTPGet == nil || live == nil || live.HTTPGet == nil {
		t.Fatal("readiness and liveness probes must be httpGet")
	}
	if ready.HTTPGet.Path != openai.HealthPath || live.HTTPGet.Path != openai.LivenessPath {
		t.Errorf("probes %s and %s, want %s (readiness) and %s (liveness)", ready.HTTPGet.Path, live.HTTPGet.Path,
			openai.HealthPath, openai.LivenessPath)
	}
	for _, p := range []*corev1.Probe{ready, live} {
		if p.HTTPGet.Port.String() != "http" {
			t.Errorf("probe on %s: port %s, want http", p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	srv := openai.New(openai.Options{Logger: slog.New(slog.DiscardHandler)}) // loading: no models yet
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for path, want := range map[string]int{ready.HTTPGet.Path: 503, live.HTTPGet.Path: 200} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on a loading server: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// prometheusRegex anchors a relabelling regex as Prometheus does.
func prometheusRegex(t *testing.T, re string) *regexp.Regexp {
	t.Helper()
	r, err := regexp.Compile("^(?:" + re + ")$")
	if err != nil {
		t.Fatalf("regex %q: %v", re, err)
	}
	return r
}

// The metric names the PodMonitor keeps, the prometheus-adapter rule reads
// and the HPA scales on are series a live server exports, under the flags
// the Deployment gives it: scraped from an openai.Server with the metrics
// cmd/serve registers.
func TestMetricNamesAreServed(t *testing.T) {
	m := loadBase(t)
	cfg := m.parseServeFlags(t)

	// Scrape a server wired as cmd/serve wires it.
	reg := prometheus.NewRegistry()
	compat := cfg.MetricsCompat == "vllm"
	om, err := openai.NewMetrics(reg, openai.MetricsOptions{VLLMCompat: compat})
	if err != nil {
		t.Fatal(err)
	}
	om.Observer(cfg.ServedModelNames[0]).Queue(0, 0, 0)
	if err := adapters.NewMetrics(adapters.MetricsOptions{VLLMCompat: compat}).Register(reg); err != nil {
		t.Fatal(err)
	}
	srv := openai.New(openai.Options{Gatherer: reg, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	// The PodMonitor scrapes /metrics on the http port and keeps the
	// series the autoscaler and the endpoint picker read.
	eps := m.podMonitor.Spec.PodMetricsEndpoints
	if len(eps) != 1 || eps[0].Port != "http" || eps[0].Path != "/metrics" {
		t.Fatalf("PodMonitor endpoints %+v, want http /metrics", eps)
	}
	var keep []*regexp.Regexp
	for _, rl := range eps[0].MetricRelabelings {
		if rl.Action == "keep" && slices.Equal(rl.SourceLabels, []string{"__name__"}) {
			keep = append(keep, prometheusRegex(t, rl.Regex))
		}
	}
	kept := func(name string) bool {
		for _, r := range keep {
			if !r.MatchString(name) {
				return false
			}
		}
		return true
	}
	for _, name := range []string{openai.MetricRequestsWaiting, openai.MetricRequestsRunning,
		openai.VLLMRequestsWaiting, openai.VLLMRequestsRunning, openai.MetricKVCacheUsage, openai.VLLMKVCacheUsage} {
		if families[name] == nil {
			t.Errorf("%s is not served with --metrics-compat %s", name, cfg.MetricsCompat)
		}
		if !kept(name) {
			t.Errorf("the PodMonitor drops %s", name)
		}
	}
	// vllm:lora_requests_info appears once an adapter pool publishes (see
	// openai's TestVLLMLoRAInfoOnScrape); here its name must be kept.
	if !kept(adapters.VLLMLoRARequestsInfo) {
		t.Errorf("the PodMonitor drops %s", adapters.VLLMLoRARequestsInfo)
	}

	// prometheus-adapter turns the served series into the HPA's pods metric.
	b, err := os.ReadFile("prometheus-adapter/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules adapterRules
	strict(t, "prometheus-adapter/rules.yaml", b, &rules)
	exposed := map[string]string{} // custom metric -> series
	for _, r := range rules.Rules.Custom {
		series, _, _ := strings.Cut(r.SeriesQuery, "{")
		if families[series] == nil {
			t.Errorf("prometheus-adapter reads %s, which the server does not export", series)
		}
		if !kept(series) {
			t.Errorf("prometheus-adapter reads %s, which the PodMonitor drops", series)
		}
		if !prometheusRegex(t, r.Name.Matches).MatchString(series) {
			t.Errorf("rule name.matches %q does not match its series %s", r.Name.Matches, series)
		}
		for label, o := range r.Resources.Overrides {
			if label != o.Resource || (label != "namespace" && label != "pod") {
				t.Errorf("rule maps label %s to %s: want the PodMonitor's namespace and pod target labels", label, o.Resource)
			}
		}
		exposed[r.Name.As] = series
	}
	if m.hpa.Spec.ScaleTargetRef.Kind != "Deployment" || m.hpa.Spec.ScaleTargetRef.Name != m.deployment.Name {
		t.Errorf("the HPA scales %+v", m.hpa.Spec.ScaleTargetRef)
	}
	if len(m.hpa.Spec.Metrics) == 0 {
		t.Fatal("the HPA has no metric")
	}
	for _, ms := range m.hpa.Spec.Metrics {
		if ms.Type != autoscalingv2.PodsMetricSourceType || ms.Pods == nil {
			t.Errorf("HPA metric %+v: want a pods metric", ms)
			continue
		}
		series, ok := exposed[ms.Pods.Metric.Name]
		if !ok {
			t.Errorf("the HPA's pods metric %s is not exposed by prometheus-adapter/rules.yaml", ms.Pods.Metric.Name)
		}
		if series != openai.MetricRequestsWaiting {
			t.Errorf("the HPA scales on %s (from %s), want the waiting requests %s", ms.Pods.Metric.Name, series, openai.MetricRequestsWaiting)
		}
		if ms.Pods.Target.Type != autoscalingv2.AverageValueMetricType || ms.Pods.Target.AverageValue == nil || ms.Pods.Target.AverageValue.Sign() <= 0 {
			t.Errorf("HPA target %+v: want a positive average value per pod", ms.Pods.Target)
		}
	}
}
