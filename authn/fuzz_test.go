package authn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzWebhookDecode feeds arbitrary bodies to the webhook handler: it must
// never panic, answer only 200 (not authenticated), 400 or 413, and never
// authenticate a body that does not carry a minted token.
func FuzzWebhookDecode(f *testing.F) {
	fx := newFixture(f)
	good := fx.mint(f, "system:serviceaccount:ns:sa", time.Hour).Value
	h := NewWebhookHandler(fx.verifier, 4096, nil, nil)
	for _, seed := range []string{
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + good + `"}}`,
		`{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"a.b.c","audiences":["x"]}}`,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}`,
		`{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview"}`,
		`{"kind":"TokenReview","spec":{"token":null}}`,
		`[]`, `{`, ``, `null`, `{"spec":{"token":1}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(string(body))))
		switch rec.Code {
		case http.StatusOK:
			if strings.Contains(rec.Body.String(), `"authenticated":true`) && !strings.Contains(string(body), good) {
				t.Fatalf("authenticated a body without the minted token: %q", body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

// FuzzVerify feeds arbitrary tokens to the verifier: it must never panic or
// fail to decide, and only the minted token may authenticate.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	good := fx.mint(f, "system:serviceaccount:ns:sa", time.Hour).Value
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		good,
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		"eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ." + parts[1] + "." + parts[2],
		"a.b.c", "...", "", "e30.e30.e30",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		res, err := fx.verifier.Review(context.Background(), token, nil)
		if err != nil {
			t.Fatalf("undecided for %q: %v", token, err)
		}
		if res.Authenticated() != (token == good) {
			t.Fatalf("authenticated = %v for %q", res.Authenticated(), token)
		}
		if !res.Authenticated() && res.Reason == "" {
			t.Fatalf("refused %q without a reason", token)
		}
	})
}
