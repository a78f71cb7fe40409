package finetune

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

// The pirate data set: stories260K's own stories, sampled from BOS, retold
// in a pirate voice by the deterministic substitution below. Regenerate
// with
//
//	go test ./runtime/finetune -run TestPirateData -update
var update = flag.Bool("update", false, "regenerate testdata/pirate_stories.jsonl")

const pirateData = "../../testdata/pirate_stories.jsonl"

// pirateWords maps plain words to the pirate voice (lower case; the first
// letter's case is kept).
var pirateWords = map[string]string{
	"you": "ye", "your": "yer", "yes": "aye", "my": "me", "hello": "ahoy", "hi": "ahoy",
	"friend": "matey", "friends": "mateys", "is": "be", "are": "be", "boy": "lad", "girl": "lass",
	"mom": "cap'n", "mommy": "cap'n", "dad": "cap'n", "daddy": "cap'n", "happy": "jolly", "very": "mighty",
	"house": "ship", "home": "ship", "park": "harbor", "went": "sailed", "walked": "sailed", "ran": "sailed",
	"money": "doubloons", "toy": "treasure", "toys": "treasures", "the": "th'", "and": "an'", "for": "fer",
}

var wordRe = regexp.MustCompile(`[A-Za-z]+`)

// pirate retells a story: words through pirateWords, "Once upon a time"
// opened with "Arr,", and " Arr!" after every third sentence.
func pirate(s string) string {
	s = wordRe.ReplaceAllStringFunc(s, func(w string) string {
		p, ok := pirateWords[strings.ToLower(w)]
		if !ok {
			return w
		}
		if unicode.IsUpper(rune(w[0])) {
			return strings.ToUpper(p[:1]) + p[1:]
		}
		return p
	})
	s = strings.ReplaceAll(s, "Once upon a time", "Arr, once upon a time")
	var b strings.Builder
	sentences := 0
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if (s[i] == '.' || s[i] == '!') && (i+1 == len(s) || s[i+1] == ' ') {
			if sentences++; sentences%3 == 0 {
				b.WriteString(" Arr!")
			}
		}
	}
	return b.String()
}

// pirateMarkers are the words whose count measures the pirate voice.
var pirateMarkers = regexp.MustCompile(`(?i)\b(arr|ahoy|aye|matey|mateys|ye|yer|lad|lass|cap'n|jolly|mighty|sailed|harbor|doubloons|treasures?|th'|an'|fer)(\W|$)`)

func pirateCount(s string) int { return len(pirateMarkers.FindAllString(s, -1)) }

type pirateRow struct {
	Text   string `json:"text"`
	Source string `json:"source"`
}

func readPirateRows(t *testing.T) []pirateRow {
	t.Helper()
	f, err := os.Open(pirateData)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []pirateRow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r pirateRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

// generate runs one completion through the engine, stopping at the model's
// end of story (it emits BOS, id 1) or after maxTokens.
func generate(t testing.TB, e *engine.Engine, req engine.Request) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := e.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for ev := range ch {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		if ev.Token == 1 || ev.Done {
			break
		}
		b.WriteString(ev.Text)
	}
	return strings.TrimSpace(b.String())
}

func TestPirateData(t *testing.T) {
	if *update {
		l := stories(t)
		e, err := engine.NewEngine(l, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(context.Background())
		f, err := os.Create(pirateData)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		for i, n := uint64(0), 0; n < 100; i++ {
			seed := i
			story := generate(t, e, engine.Request{PromptTokens: []int32{1}, MaxTokens: 200,
				Sampling: sampler.Params{Temperature: 0.8, TopP: 1, Seed: &seed}})
			if len(strings.Fields(story)) < 25 || !strings.HasSuffix(story, ".") {
				continue // cut off or too short to teach a voice
			}
			row, _ := json.Marshal(pirateRow{Text: pirate(story), Source: story})
			w.Write(append(row, '\n'))
			n++
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	rows := readPirateRows(t)
	if len(rows) != 100 {
		t.Fatalf("%d rows, want 100", len(rows))
	}
	st, err := os.Stat(pirateData)
	if err != nil || st.Size() > 300<<10 {
		t.Fatalf("data set size %d (keep it under 300 KB): %v", st.Size(), err)
	}
	plain, arr := 0, 0
	for i, r := range rows {
		if got := pirate(r.Source); got != r.Text {
			t.Fatalf("row %d: text is not pirate(source):\n got %q\nwant %q", i, r.Text, got)
		}
		plain += pirateCount(r.Source)
		arr += pirateCount(r.Text)
	}
	t.Logf("pirate words: %d in the stories, %d in their pirate versions", plain, arr)
	if arr < 10*max(plain, 1) {
		t.Errorf("the pirate versions have %d pirate words, the stories %d: not much of a voice", arr, plain)
	}
}

func TestPirate(t *testing.T) {
	got := pirate("Once upon a time, there was a girl. She is happy. Hello, my friend! You and the boy went to the park.")
	want := "Arr, once upon a time, there was a lass. She be jolly. Ahoy, me matey! Arr! Ye an' th' lad sailed to th' harbor."
	if got != want {
		t.Errorf("pirate:\n got %q\nwant %q", got, want)
	}
}

// lease claims slot 0 for a request.
type lease struct{}

func (lease) Name() string                  { return "pirate" }
func (lease) Version() string               { return "test" }
func (lease) Acquire() (int32, bool, error) { return 0, true, nil }
func (lease) Drop()                         {}
func (lease) Release()                      {}

// loadStories loads stories260K with the projections in NF4 (QLoRA's base).
func loadStories(t testing.TB) *llama.Loaded {
	t.Helper()
	be := cpu.New(0)
	t.Cleanup(be.Close)
	l, err := llama.Load("../../testdata/stories260K", llama.LoadOptions{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// evalPrompts start stories; the continuations are counted for pirate words.
var evalPrompts = []string{"Once upon a time", "One day, a little girl named Lily", "Tom and his mom went to the park.",
	"The boy saw a big dog.", "Sue was very happy because", "There was a friendly cat"}

// pirateVoice serves the base model with and without the adapter in dir
// and counts the pirate words in greedy continuations of evalPrompts.
func pirateVoice(t *testing.T, dir string) (base, tuned int, sample string) {
	t.Helper()
	l := loadStories(t)
	a, err := peft.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Set refuses a module the model does not have, or of another shape.
	slots, err := l.Model.EnableLoRA(1, a.MaxRank())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range a.Names() {
		m := a.Modules[name]
		if err := slots.Set(0, name, m.A, m.B, m.Rank, a.Config.Scale(name)); err != nil {
			t.Fatal(err)
		}
	}
	e, err := engine.NewEngine(l, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	greedy := sampler.Params{Temperature: 0, TopP: 1}
	for i, p := range evalPrompts {
		plain := generate(t, e, engine.Request{Prompt: p, MaxTokens: 96, Sampling: greedy})
		arr := generate(t, e, engine.Request{Prompt: p, MaxTokens: 96, Sampling: greedy, Adapter: lease{}})
		base += pirateCount(plain)
		tuned += pirateCount(arr)
		if i == 0 {
			sample = p + " " + arr
			t.Logf("base:    %s %s", p, plain)
			t.Logf("adapter: %s %s", p, arr)
		}
	}
	return base, tuned, sample
}

// TestPirateFinetune is the acceptance run, short: QLoRA on
// stories260K (NF4 base) with the pirate stories must lower the training
// loss, and the adapter, served through the engine, must shift greedy
// continuations toward the pirate voice. PARROT_PIRATE_STEPS=300,
// PARROT_PIRATE_SEQ=512 (and PARROT_PIRATE_LR) run the long version.
func TestPirateFinetune(t *testing.T) {
	cfg := defaultOptions("stories260K", pirateData, t.TempDir())
	cfg.MaxSteps, cfg.LearningRate, cfg.MaxSeqLength, cfg.GradientAccumulationSteps, cfg.SaveSteps = 30, 3e-3, 128, 2, 0
	var err error
	if v := os.Getenv("PARROT_PIRATE_STEPS"); v != "" {
		cfg.MaxSteps, err = strconv.Atoi(v)
	}
	if v := os.Getenv("PARROT_PIRATE_LR"); v != "" && err == nil {
		cfg.LearningRate, err = strconv.ParseFloat(v, 64)
	}
	if v := os.Getenv("PARROT_PIRATE_SEQ"); v != "" && err == nil {
		cfg.MaxSeqLength, err = strconv.Atoi(v)
		cfg.GradientAccumulationSteps = 4 // the long run: the lab's accumulation
	}
	if err != nil {
		t.Fatalf("PARROT_PIRATE_*: %v", err)
	}
	var log strings.Builder
	res, err := Run(context.Background(), Job{Options: cfg, Model: loadStories(t), Stdout: &log})
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	for _, e := range res.LogHistory {
		if e.Loss != nil {
			losses = append(losses, *e.Loss)
		}
	}
	n := len(losses) / 6
	first, last := mean(losses[:n]), mean(losses[len(losses)-n:])
	t.Logf("%d steps in %.1f s (%.0f tokens/s): loss %.4f over the first %d steps, %.4f over the last %d (first %.4f, last %.4f), train loss %.4f",
		res.GlobalStep, res.Runtime.Seconds(), float64(res.Tokens)/res.Runtime.Seconds(), first, n, last, n, losses[0], losses[len(losses)-1], res.TrainLoss)
	if !(last < first-0.25) {
		t.Errorf("the loss did not drop clearly: %.4f → %.4f", first, last)
	}
	base, tuned, sample := pirateVoice(t, cfg.OutputDir)
	t.Logf("pirate words in greedy continuations of %d prompts: %d without the adapter, %d with it", len(evalPrompts), base, tuned)
	if tuned < base+5 {
		t.Errorf("the adapter did not shift the voice: %d pirate words with it, %d without\n%s", tuned, base, sample)
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
