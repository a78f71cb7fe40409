package openai

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/adapters"
)

// The admin calls answer each kind of adapters.AdminError with the status
// and error type vLLM gives it.
func TestAdminReplyStatus(t *testing.T) {
	for _, tc := range []struct {
		kind   error
		status int
		typ    string
	}{
		{adapters.ErrInvalidInput, http.StatusBadRequest, "InvalidUserInput"},
		{adapters.ErrNotFound, http.StatusNotFound, "NotFoundError"},
		{adapters.ErrRefused, http.StatusBadRequest, "BadRequestError"},
	} {
		rec := httptest.NewRecorder()
		c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/v1/load_lora_adapter", nil), rec)
		if err := adminReply(c, "", &adapters.AdminError{Kind: tc.kind, Message: "why"}); err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.status || body["type"] != tc.typ || body["code"] != float64(tc.status) ||
			body["message"] != "why" || body["object"] != "error" {
			t.Errorf("%v: %d %v, want %d %s", tc.kind, rec.Code, body, tc.status, tc.typ)
		}
	}
	rec := httptest.NewRecorder()
	c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/v1/unload_lora_adapter", nil), rec)
	if err := adminReply(c, "Success", nil); err != nil || rec.Code != http.StatusOK || rec.Body.String() != "Success" {
		t.Errorf("success: %d %q %v", rec.Code, rec.Body, err)
	}
	other := errors.New("internal")
	if err := adminReply(c, "", other); err != other {
		t.Errorf("other errors go to the error handler, got %v", err)
	}
}
