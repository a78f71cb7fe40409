// Package playground is the chat page served at / : static HTML, CSS and
// JavaScript embedded in the binary, with no build step and no third-party
// code. The page talks to the server's own OpenAI API (/v1/models,
// /v1/chat/completions, and the LoRA admin routes when they are enabled)
// like any other client, so it needs nothing from the server but these
// files; an API key, when the server wants one, is typed into the page.
package playground

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// Prefix is the path of the page's assets; the page itself is at /.
const Prefix = "/playground/"

// Handler serves the page at / and its assets under Prefix; any other path
// is 404. Mount it for GET (and HEAD) on "/" and Prefix+"*".
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil { // "static" is embedded above: cannot happen
		return http.NotFoundHandler()
	}
	index := http.FileServerFS(static)
	assets := http.StripPrefix(Prefix, index)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The page's only scripts and styles are its own files; model output
		// is escaped before it is rendered, and the policy is a second wall.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // a new binary's page is seen at once
		switch p := r.URL.Path; {
		case p == "/":
			index.ServeHTTP(w, r) // index.html
		case p == Prefix || p == Prefix+"index.html":
			http.Redirect(w, r, "/", http.StatusFound) // the page's paths are relative to /
		case strings.HasPrefix(p, Prefix):
			assets.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
