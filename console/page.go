package console

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
)

// web holds the console page and its assets: the page's own script and
// style, and noVNC (vendored from Debian's novnc package by
// hack/vendor-novnc.sh, with its copyright and licence texts).
//
//go:embed web
var web embed.FS

var consolePage = template.Must(template.ParseFS(web, "web/page.html"))

// consolePageCSP lets the page load only its own scripts and styles and
// connect only back to this proxy; nothing may frame it.
const consolePageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleAssets serves web/assets under /assets/.
func consoleAssets() http.Handler {
	assets, err := fs.Sub(web, "web/assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/assets/", http.FileServerFS(assets))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// serveConsolePage serves the browser console for one VM. The page carries
// no token: the user passes one in the URL fragment, which browsers do not
// send, or pastes it.
func (p *Proxy) serveConsolePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", consolePageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	data := struct{ Namespace, VM string }{r.PathValue("namespace"), r.PathValue("vm")}
	if err := consolePage.Execute(w, data); err != nil {
		p.opts.Log.DebugContext(r.Context(), "console page not written", "err", err)
	}
}
