package openai

import (
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// Default connection timeouts (Options leaves them 0).
const (
	DefaultReadBodyTimeout = 30 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
)

// deadlines bounds how long a client may take to send its body and to
// accept each piece of the response. http.Server's own ReadTimeout and
// WriteTimeout cover a whole request, which would cut long healthy streams
// (and its background read cancels the request when a read deadline passes
// mid-handler), so the deadlines are set here: one for the body, lifted once
// it is read, and one renewed before every write, so a stalled reader of a
// stream is cut (and its sequences freed) without limiting a stream that
// keeps flowing.
func (s *Server) deadlines(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req, resp := c.Request(), c.Response()
		rc := http.NewResponseController(resp.Writer)
		if s.opts.WriteTimeout > 0 {
			w := &deadlineWriter{ResponseWriter: resp.Writer, rc: rc, timeout: s.opts.WriteTimeout}
			w.renew() // a keep-alive connection may carry an old deadline
			resp.Writer = w
		}
		if s.opts.ReadBodyTimeout > 0 && req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0 {
			if err := rc.SetReadDeadline(time.Now().Add(s.opts.ReadBodyTimeout)); err == nil {
				req.Body = &deadlineBody{ReadCloser: req.Body, rc: rc}
			}
		}
		return next(c)
	}
}

// deadlineBody lifts the read deadline once the body has been read to its
// end, before the handler starts its long work. After any other error the
// deadline stays, so that net/http's discarding of the unread rest after
// the response also gives up in time.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// deadlineWriter renews the write deadline before every write and flush.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) renew() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.renew()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.renew()
	return w.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController (and so echo) calls to flush.
func (w *deadlineWriter) FlushError() error {
	w.renew()
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
