package authn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWebhookStoreDownIs503WithRetryAfter(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", time.Hour)
	h := NewWebhookHandler(f.freshVerifier(t), 0, nil, nil)
	f.store.Close()

	rec := httptest.NewRecorder()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok.Value + `"}}`
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(body)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	var st struct{ Kind, Status string }
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" || st.Status != "Failure" {
		t.Fatalf("body %q is not a failure Status", rec.Body.String())
	}
	if strings.Contains(rec.Body.String(), tok.Value) {
		t.Fatal("the answer echoes the token")
	}
}

// observed records what the handler reports, for metrics and audit.
type observed struct{ results []Result }

func (o *observed) ObserveReview(_ context.Context, res Result, _ error, _ time.Duration) {
	o.results = append(o.results, res)
}

func TestWebhookReportsReasons(t *testing.T) {
	f := newFixture(t)
	obs := &observed{}
	h := NewWebhookHandler(f.verifier, 0, obs, nil)
	for _, token := range []string{"", "a.b.c"} {
		body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}`
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if len(obs.results) != 2 || obs.results[0].Reason != ReasonEmpty || obs.results[1].Reason != ReasonMalformed {
		t.Fatalf("observed %+v, want reasons empty and malformed", obs.results)
	}
}

// TestWebhookDecodesFieldNamesCaseSensitively: kube-apiserver's codecs match
// JSON keys exactly, so must the webhook. encoding/json would let "TOKEN"
// (or "Token") stand in for "token", and the last one of them win.
func TestWebhookDecodesFieldNamesCaseSensitively(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", time.Hour)
	h := NewWebhookHandler(f.verifier, 0, nil, nil)
	review := func(spec string) (int, bool) {
		t.Helper()
		body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":` + spec + `}`
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(body)))
		var out struct{ Status struct{ Authenticated bool } }
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out.Status.Authenticated
	}
	for _, tc := range []struct {
		name, spec string
		want       bool
	}{
		{"token then a differently cased key", `{"token":"` + tok.Value + `","TOKEN":"junk"}`, true},
		{"only an upper-case key", `{"TOKEN":"` + tok.Value + `"}`, false},
		{"only a capitalised key", `{"Token":"` + tok.Value + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ok := review(tc.spec)
			if code != http.StatusOK || ok != tc.want {
				t.Fatalf("status %d authenticated %v, want 200 %v", code, ok, tc.want)
			}
		})
	}
}
