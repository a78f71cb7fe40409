package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

// Error types, as the OpenAI API names them in error.type: client errors
// (400, 401, 404, 413) are all invalid_request_error, told apart by status
// and code; a rate limit is "requests"; the server's own failures server_error.
const (
	typeInvalidRequest = "invalid_request_error"
	typeRateLimit      = "requests"
	typeServer         = "server_error"
)

// APIError is an error the client sees, in the OpenAI shape:
// {"error": {"message", "type", "param", "code"}} with the HTTP Status.
type APIError struct {
	Status     int
	Message    string
	Type       string
	Param      string // "" is sent as null
	Code       string // "" is sent as null
	RetryAfter int    // seconds; > 0 sets the Retry-After header
}

func (e *APIError) Error() string { return e.Message }

// errorBody is the JSON form of an APIError.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (e *APIError) body() errorBody {
	return errorBody{Error: errorDetail{Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code)}}
}

// badRequest is a 400 about one request field.
func badRequest(param, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

func modelNotFound(name string) *APIError {
	return &APIError{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model `%s` does not exist.", name)}
}

func unavailable(msg string) *APIError {
	return &APIError{Status: http.StatusServiceUnavailable, Type: typeServer, Message: msg, RetryAfter: 5}
}

// internalError hides err from the client (it is logged with the request id).
func internalError(reqID string) *APIError {
	return &APIError{Status: http.StatusInternalServerError, Type: typeServer,
		Message: "The server had an error while processing your request (request id " + reqID + ")."}
}

// writeError sends e as the response.
func writeError(c echo.Context, e *APIError) error {
	if e.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	return c.JSON(e.Status, e.body())
}

// decodeError maps an encoding/json error to a 400 naming the field.
func decodeError(err error) *APIError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var pe *paramError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &APIError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "request_too_large",
			Message: fmt.Sprintf("The request body is larger than the limit of %d bytes.", mbe.Limit)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &APIError{Status: http.StatusRequestTimeout, Type: typeInvalidRequest, Code: "request_timeout",
			Message: "The request body was not received in time."}
	case errors.As(err, &pe):
		return badRequest(pe.param, "%s", pe.msg)
	case errors.As(err, &te) && te.Field != "":
		// The path names embedded structs too ("samplingFields.temperature").
		field := strings.ReplaceAll(te.Field, "samplingFields.", "")
		return badRequest(field, "Invalid type for '%s': expected %s, got %s.", field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &te):
		return badRequest("", "The request body must be a JSON object, got %s.", te.Value)
	case errors.As(err, &se):
		return badRequest("", "We could not parse the JSON body of your request: %v (at byte %d).", se, se.Offset)
	default:
		return badRequest("", "We could not parse the JSON body of your request: %v.", err)
	}
}

// jsonKind names a Go kind as the JSON type a client should send.
func jsonKind(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return kind
}

// engineError maps an error of engine.Engine.Submit (or of
// sampler.Params.Validate) to what the client sees, and logs the errors the
// client is not shown. promptParam names the request field of the prompt.
func (s *Server) engineError(c echo.Context, err error, promptParam string) *APIError {
	e := mapEngineError(err, promptParam, requestID(c))
	if e.Status == http.StatusInternalServerError {
		s.logger(c).Error("engine error", "err", err)
	}
	return e
}

func mapEngineError(err error, promptParam, reqID string) *APIError {
	if e, ok := adapterError(err); ok {
		return e
	}
	var pe *sampler.ParamError
	switch {
	case errors.As(err, &pe):
		return badRequest(pe.Param, "%s", pe.Message)
	case errors.Is(err, engine.ErrPromptTooLong):
		e := badRequest(promptParam, "%v", err)
		e.Code = "context_length_exceeded"
		return e
	case errors.Is(err, engine.ErrEmptyPrompt):
		return badRequest(promptParam, "The prompt is empty.")
	case errors.Is(err, engine.ErrOverloaded):
		return &APIError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "rate_limit_exceeded",
			Message: "The server is busy: too many requests are waiting. Retry later.", RetryAfter: 1}
	case errors.Is(err, engine.ErrClosed):
		return unavailable("The server is shutting down.")
	}
	return internalError(reqID)
}
