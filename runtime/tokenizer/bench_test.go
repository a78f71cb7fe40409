package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Speed of the pure-Go tokenizer. Inputs: the long (2-6 KB) random strings of
// the Llama 3 reference (emoji, CJK, digits, whitespace runs) and ~4 KB of
// story text for stories260K.

func longLlama3Text(b *testing.B) string {
	_, cases := loadLlama3(b)
	for _, c := range cases.Encode {
		if c.Source == "random-long" {
			return c.Text
		}
	}
	b.Fatal("no long case")
	return ""
}

const storyText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " +
	"One day, she saw a big, red ball in the sky. It was the sun! She thought it was so pretty. "

func BenchmarkLlama3Encode(b *testing.B) {
	tk, _ := loadLlama3(b)
	text := longLlama3Text(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tk.Encode(text, true); err != nil {
			b.Fatal(err)
		}
	}
}

// Every call on new text: the word cache is emptied each time.
func BenchmarkLlama3EncodeColdCache(b *testing.B) {
	tk, _ := loadLlama3(b)
	text := longLlama3Text(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tk.model.cache.mu.Lock()
		clear(tk.model.cache.m)
		tk.model.cache.mu.Unlock()
		if _, err := tk.Encode(text, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLlama3Decode(b *testing.B) {
	tk, _ := loadLlama3(b)
	ids, _ := tk.Encode(longLlama3Text(b), false)
	b.ReportMetric(float64(len(ids)), "tokens")
	for b.Loop() {
		if _, err := tk.Decode(ids, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLlama3Stream(b *testing.B) {
	tk, _ := loadLlama3(b)
	ids, _ := tk.Encode(longLlama3Text(b), false)
	b.ReportMetric(float64(len(ids)), "tokens")
	for b.Loop() {
		d := NewStreamDecoder(tk, false)
		for _, id := range ids {
			if _, err := d.Add(id); err != nil {
				b.Fatal(err)
			}
		}
		d.Flush()
	}
}

func BenchmarkLlama3Load(b *testing.B) {
	loadLlama3(b) // fails if not generated
	raw, err := os.ReadFile(filepath.Join(llama3Gen, "tokenizer.json"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := FromJSON(raw, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoriesEncode(b *testing.B) {
	tk := loadStories(b)
	text := strings.Repeat(storyText, 20)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tk.Encode(text, true); err != nil {
			b.Fatal(err)
		}
	}
}
