package openai

import (
	"context"
	"strings"
	"testing"

	oai "github.com/openai/openai-go/v3"
)

// A repeated long system prompt is served from the prefix cache the second
// time, and usage.prompt_tokens_details.cached_tokens says how much, as
// OpenAI reports it, streamed or not.
func TestCachedPromptTokensAreReported(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	system := strings.Repeat("You tell short stories about a cat named Tom and a dog named Rex. ", 6)
	params := func(user string) oai.ChatCompletionNewParams {
		return oai.ChatCompletionNewParams{
			Model:       "stories",
			Messages:    []oai.ChatCompletionMessageParamUnion{oai.SystemMessage(system), oai.UserMessage(user)},
			MaxTokens:   oai.Int(8),
			Temperature: oai.Float(0),
		}
	}
	first, err := s.client().Chat.Completions.New(context.Background(), params("Tell me a story."))
	if err != nil {
		t.Fatal(err)
	}
	if c := first.Usage.PromptTokensDetails.CachedTokens; c != 0 {
		t.Fatalf("first request: %d cached tokens", c)
	}
	n := first.Usage.PromptTokens
	if n < 40 {
		t.Fatalf("prompt of %d tokens: too short to fill blocks", n)
	}
	second, err := s.client().Chat.Completions.New(context.Background(), params("Tell me a story."))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := second.Usage.PromptTokensDetails.CachedTokens, (n-1)/16*16; got != want {
		t.Errorf("second request: %d cached tokens, want %d (whole 16-token blocks, the last token recomputed)", got, want)
	}
	if second.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Errorf("cached reply %q, first %q", second.Choices[0].Message.Content, first.Choices[0].Message.Content)
	}

	// Another user turn after the same system prompt: the shared blocks.
	p := params("Tell me about Rex.")
	p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	stream := s.client().Chat.Completions.NewStreaming(context.Background(), p)
	var acc oai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if c := acc.Usage.PromptTokensDetails.CachedTokens; c <= 0 || c >= acc.Usage.PromptTokens {
		t.Errorf("streamed request sharing the system prompt: %d of %d prompt tokens cached", c, acc.Usage.PromptTokens)
	}
}
