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
// (or "Token") stand in for "token", and the last one of them win. A key
// given twice is ambiguous: a 400, not a guess at which one was meant.
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
		code       int
		want       bool
	}{
		{"token then a differently cased key", `{"token":"` + tok.Value + `","TOKEN":"junk"}`, http.StatusOK, true},
		{"only an upper-case key", `{"TOKEN":"` + tok.Value + `"}`, http.StatusOK, false},
		{"only a capitalised key", `{"Token":"` + tok.Value + `"}`, http.StatusOK, false},
		{"junk then the token under the same key", `{"token":"junk","token":"` + tok.Value + `"}`, http.StatusBadRequest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ok := review(tc.spec)
			if code != tc.code || ok != tc.want {
				t.Fatalf("status %d authenticated %v, want %d %v", code, ok, tc.code, tc.want)
			}
		})
	}
}

// TestWebhookAnswersTheReviewAsked: the requested audiences reach the
// verifier (a token of another audience is refused), the answer is in the
// request's version and names the audiences granted, and a version or kind
// the webhook does not speak is a 400.
func TestWebhookAnswersTheReviewAsked(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, subject, time.Hour, "https://vault.test")
	h := NewWebhookHandler(f.verifier, 0, nil, nil)
	review := func(version, kind string, auds []string) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"apiVersion": version, "kind": kind, "spec": map[string]any{"token": tok.Value, "audiences": auds}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(string(b))))
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	for _, version := range []string{TokenReviewV1, TokenReviewV1beta1} {
		code, out := review(version, "TokenReview", []string{"https://vault.test"})
		status, _ := out["status"].(map[string]any)
		if code != http.StatusOK || out["apiVersion"] != version || status["authenticated"] != true {
			t.Fatalf("%s, own audience: %d %v; want authenticated in %s", version, code, out, version)
		}
		if auds, _ := status["audiences"].([]any); len(auds) != 1 || auds[0] != "https://vault.test" {
			t.Fatalf("%s: audiences %v; want [https://vault.test]", version, status["audiences"])
		}
		code, out = review(version, "TokenReview", nil)
		status, _ = out["status"].(map[string]any)
		if code != http.StatusOK || out["apiVersion"] != version || status["authenticated"] == true {
			t.Fatalf("%s, API audiences: %d %v; want refused in %s", version, code, out, version)
		}
	}
	for _, bad := range []struct{ version, kind string }{
		{"authentication.k8s.io/v2", "TokenReview"}, {"", "TokenReview"}, {TokenReviewV1, "TokenRequest"}, {TokenReviewV1, ""},
	} {
		if code, out := review(bad.version, bad.kind, []string{"https://vault.test"}); code != http.StatusBadRequest || out["kind"] != "Status" {
			t.Fatalf("%q %q: %d %v; want a 400 Status", bad.version, bad.kind, code, out)
		}
	}
}

// TestWebhookBodyLimit: a body over the limit is a 413 Status, read no
// further than the limit.
func TestWebhookBodyLimit(t *testing.T) {
	f := newFixture(t)
	h := NewWebhookHandler(f.verifier, 1024, nil, nil)
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + strings.Repeat("x", 2048) + `"}}`
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(body)))
	var st struct{ Kind, Status string }
	if err := json.Unmarshal(rec.Body.Bytes(), &st); rec.Code != http.StatusRequestEntityTooLarge || err != nil || st.Kind != "Status" {
		t.Fatalf("status %d body %q; want a 413 Status", rec.Code, rec.Body.String())
	}
}
