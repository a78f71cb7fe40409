package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// message is a chat message as the API takes it.
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// usage is the token accounting of the final chunk of a stream that asked
// for it with stream_options.include_usage.
type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// apiError is the OpenAI error body, {"error": {"message", ...}}, sent as a
// non-200 response or as an event of a stream that fails mid-way.
type apiError struct {
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

// chunk is the part of a streamed chunk the benchmark reads: a chat
// chunk's choices[].delta.content or a completion chunk's choices[].text,
// the usage, or an error.
type chunk struct {
	Choices []struct {
		Text  *string `json:"text"`
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
	apiError
}

// readEvents calls fn with the data of each server-sent event of r, as the
// SSE format defines it: "data:" lines (joined by "\n" when an event has
// several) up to a blank line; comments (":...") and other fields are
// skipped. It stops at the end of r, at an error of fn, or when fn returns
// errStop.
func readEvents(r io.Reader, fn func(data []byte) error) error {
	br := bufio.NewReader(r)
	var data []byte
	have := false
	dispatch := func() error {
		if !have {
			return nil
		}
		err := fn(data)
		data, have = data[:0], false
		return err
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 || err == nil {
			line = bytes.TrimRight(line, "\r\n")
			switch {
			case len(line) == 0:
				if ferr := dispatch(); ferr != nil {
					return ferr
				}
			case line[0] == ':': // comment (keep-alive ping)
			default:
				field, value, _ := bytes.Cut(line, []byte(":"))
				if string(field) == "data" {
					value = bytes.TrimPrefix(value, []byte(" "))
					if have {
						data = append(data, '\n')
					}
					data, have = append(data, value...), true
				}
			}
		}
		if err == io.EOF {
			return dispatch() // a last event without its blank line
		}
		if err != nil {
			return err
		}
	}
}

// errStop ends readEvents early without an error.
var errStop = errors.New("stop")

// stream is what one streamed response carried.
type stream struct {
	text     strings.Builder
	contents []time.Time // arrival of each chunk with non-empty content
	usage    *usage
	done     bool // the stream ended with [DONE]
}

// readStream reads an OpenAI stream of chunks from r, stamping each content
// chunk with clock() as it arrives. A chunk counts as content when its text
// is not empty, so the chat API's first chunk (the role, with content "")
// does not count as the first token; vLLM's backend_request_func.py counts
// any chunk with choices, this is stricter. An error event is returned as an
// error with its message.
func readStream(r io.Reader, clock func() time.Time) (*stream, error) {
	s := &stream{}
	err := readEvents(r, func(data []byte) error {
		now := clock()
		if string(data) == "[DONE]" {
			s.done = true
			return errStop
		}
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("bad chunk %.200q: %v", data, err)
		}
		if c.Error != nil {
			return fmt.Errorf("error event: %s", c.Error.Message)
		}
		for _, ch := range c.Choices {
			text := ch.Text
			if text == nil {
				text = ch.Delta.Content
			}
			if text != nil && *text != "" {
				s.text.WriteString(*text)
				s.contents = append(s.contents, now)
			}
		}
		if c.Usage != nil {
			s.usage = c.Usage
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return s, err
}

// result is the measurement of one request.
type result struct {
	err          string // "" when it succeeded
	ttft         time.Duration
	itl          []time.Duration
	e2e          time.Duration
	promptTokens int
	outputTokens int
	cachedTokens int
	usageSeen    bool
	reply        string
}

// client sends the benchmark's requests.
type client struct {
	http     *http.Client
	base     string // http://host:port
	endpoint string // /v1/chat/completions or /v1/completions
	apiKey   string
}

func (c *client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	return req, nil
}

// httpError describes a non-200 response: its status and, when the body
// is an OpenAI error, its message.
func httpError(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	if json.Unmarshal(body, &e) == nil && e.Error != nil {
		return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, e.Error.Message)
	}
	return fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// generate sends one streamed request and measures it: TTFT is the time to
// the first content chunk, the ITLs the gaps between content chunks, E2E
// the time to the end of the stream (as in vLLM's backend_request_func.py,
// except that vLLM stops the clock at the last chunk with choices).
func (c *client) generate(ctx context.Context, body map[string]any) result {
	req, err := c.newRequest(ctx, http.MethodPost, c.endpoint, body)
	if err != nil {
		return result{err: err.Error()}
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return result{err: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return result{err: httpError(resp)}
	}
	s, err := readStream(resp.Body, time.Now)
	end := time.Now()
	switch {
	case err != nil:
		return result{err: err.Error()}
	case !s.done:
		return result{err: "the stream ended without [DONE]"}
	case len(s.contents) == 0:
		return result{err: "the stream carried no content"}
	}
	r := result{ttft: s.contents[0].Sub(start), e2e: end.Sub(start), reply: s.text.String()}
	for i := 1; i < len(s.contents); i++ {
		r.itl = append(r.itl, s.contents[i].Sub(s.contents[i-1]))
	}
	r.outputTokens = len(s.contents) // without usage, one token per chunk
	if u := s.usage; u != nil {
		r.usageSeen = true
		r.promptTokens, r.outputTokens = u.PromptTokens, u.CompletionTokens
		if u.PromptTokensDetails != nil {
			r.cachedTokens = u.PromptTokensDetails.CachedTokens
		}
	}
	return r
}

// countTokens asks the server's POST /tokenize (vLLM's; see
// openai/tokenize.go) how many tokens text is, without special tokens.
// A server without the endpoint answers 404 (or 405): errNoTokenize.
func (c *client) countTokens(ctx context.Context, model, text string) (int, error) {
	req, err := c.newRequest(ctx, http.MethodPost, "/tokenize",
		map[string]any{"model": model, "prompt": text, "add_special_tokens": false})
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		return 0, errNoTokenize
	}
	if resp.StatusCode != http.StatusOK {
		return 0, errors.New("/tokenize: " + httpError(resp))
	}
	var out struct {
		Count *int `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Count == nil {
		return 0, fmt.Errorf("/tokenize: no count in the answer (%v)", err)
	}
	return *out.Count, nil
}

var errNoTokenize = errors.New("the server has no /tokenize")

// firstModel returns the first model GET /v1/models lists: the name to
// send when --model is not given (as vLLM's bench does).
func (c *client) firstModel(ctx context.Context) (string, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/models", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", errors.New("/v1/models: " + httpError(resp))
	}
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("/v1/models: %v", err)
	}
	if len(out.Data) == 0 {
		return "", errors.New("/v1/models lists no model")
	}
	return out.Data[0].ID, nil
}
