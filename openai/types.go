package openai

import "encoding/json"

// Wire types: the JSON shapes of the OpenAI API (and vLLM's extras).
// Optional request fields are pointers so that "absent" and "null" differ
// from zero; polymorphic fields (stop, prompt, content) are raw JSON, parsed
// in decode.go with an error that names the field.

// samplingFields are the request fields shared by chat and completions.
type samplingFields struct {
	Model            string             `json:"model"`
	Stream           *bool              `json:"stream"`
	StreamOptions    *streamOptions     `json:"stream_options"`
	N                *int               `json:"n"`
	Seed             *int64             `json:"seed"`
	Stop             json.RawMessage    `json:"stop"`
	MaxTokens        *int               `json:"max_tokens"`
	Temperature      *float64           `json:"temperature"`
	TopP             *float64           `json:"top_p"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	User             string             `json:"user"`

	// vLLM extras.
	TopK              *int     `json:"top_k"`
	MinP              *float64 `json:"min_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	IgnoreEOS         *bool    `json:"ignore_eos"`

	structuredFields
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatCompletionRequest is the body of POST /v1/chat/completions.
type chatCompletionRequest struct {
	samplingFields
	Messages            []chatMessageIn `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Functions           json.RawMessage `json:"functions"`
}

type chatMessageIn struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	samplingFields
	Prompt   json.RawMessage `json:"prompt"`
	Logprobs *int            `json:"logprobs"` // number of alternatives, 0..20
	Echo     *bool           `json:"echo"`
	Suffix   *string         `json:"suffix"`
	BestOf   *int            `json:"best_of"`
}

// usage is the token accounting of a response.
type usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *promptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// promptTokensDetails says how many prompt tokens came from the prefix
// cache (their KV reused, not recomputed), as OpenAI reports it.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// promptCache collects the cached prompt tokens of a request's choices.
// Each prompt counts once, with the fewest cached tokens among its choices:
// its first choice computed the prompt, the others shared those blocks.
type promptCache struct {
	perPrompt map[int]int
}

// add records choice's cached tokens; choices of prompt p are p*n..p*n+n-1.
func (pc *promptCache) add(choice, n, cached int) {
	if pc.perPrompt == nil {
		pc.perPrompt = map[int]int{}
	}
	p := choice / max(1, n)
	if old, ok := pc.perPrompt[p]; !ok || cached < old {
		pc.perPrompt[p] = cached
	}
}

// details is the usage's prompt_tokens_details.
func (pc *promptCache) details() *promptTokensDetails {
	total := 0
	for _, c := range pc.perPrompt {
		total += c
	}
	return &promptTokensDetails{CachedTokens: total}
}

// chatCompletion is a non-streamed chat response (object "chat.completion").
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
	// SystemFingerprint names the adapter version that produced the
	// output (absent for the base model), so a client can tell which
	// version of a hot-swapped adapter served it.
	SystemFingerprint string `json:"system_fingerprint,omitempty"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      chatMessage   `json:"message"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

type chatMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"` // null when the reply is tool calls
	Refusal   *string    `json:"refusal"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
	Refusal *[]int         `json:"refusal"` // always null
}

type tokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float32      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []topLogprob `json:"top_logprobs"`
}

type topLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// chatCompletionChunk is one SSE event of a streamed chat response (object
// "chat.completion.chunk"). Usage is present (null until the last, usage-only
// chunk) when the request set stream_options.include_usage.
type chatCompletionChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	Usage   json.RawMessage   `json:"usage,omitempty"` // null or a usage object when asked for, else absent
	// SystemFingerprint names the adapter version that produced the
	// output (absent for the base model), so a client can tell which
	// version of a hot-swapped adapter served it.
	SystemFingerprint string `json:"system_fingerprint,omitempty"`
}

type chatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        chatDelta     `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
}

// toolCallDelta is a fragment of a streamed tool call: the first one of a
// call carries its id, type and name, later ones pieces of its arguments.
type toolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function toolFunctionDelta `json:"function"`
}

type toolFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// completion is a /v1/completions response (object "text_completion"),
// streamed or not: a streamed response is a series of these, with Usage as
// in chatCompletionChunk.
type completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   json.RawMessage    `json:"usage,omitempty"`
	// SystemFingerprint names the adapter version that produced the
	// output (absent for the base model), so a client can tell which
	// version of a hot-swapped adapter served it.
	SystemFingerprint string `json:"system_fingerprint,omitempty"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

// completionLogprobs is the legacy completions logprobs object.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float32            `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// modelList is the GET /v1/models response.
type modelList struct {
	Object string      `json:"object"`
	Data   []ModelCard `json:"data"`
}

// ModelCard describes one served model name.
type ModelCard struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	Root        string `json:"root,omitempty"`   // the base model (vLLM)
	Parent      string `json:"parent,omitempty"` // base of an adapter (vLLM)
	MaxModelLen int    `json:"max_model_len,omitempty"`
}

// tokenizeRequest is the body of POST /tokenize (vLLM): a prompt or messages.
type tokenizeRequest struct {
	Model               string          `json:"model"`
	Prompt              *string         `json:"prompt"`
	Messages            []chatMessageIn `json:"messages"`
	AddSpecialTokens    *bool           `json:"add_special_tokens"`
	AddGenerationPrompt *bool           `json:"add_generation_prompt"`
}

// tokenizeResponse is the /tokenize answer.
type tokenizeResponse struct {
	Count       int     `json:"count"`
	MaxModelLen int     `json:"max_model_len"`
	Tokens      []int32 `json:"tokens"`
}

// detokenizeRequest is the body of POST /detokenize.
type detokenizeRequest struct {
	Model  string   `json:"model"`
	Tokens []*int32 `json:"tokens"` // pointers, so that a null entry is refused rather than read as 0
}

// detokenizeResponse is the /detokenize answer.
type detokenizeResponse struct {
	Prompt string `json:"prompt"`
}
