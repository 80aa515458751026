package authn

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"portcullis.dev/portcullis/authn/authntest"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
	tokenfmt "portcullis.dev/portcullis/token"
)

// fuzzSubject is the one identity minted for the fuzz targets.
const fuzzSubject = "system:serviceaccount:ns:sa"

// fuzzTokens are the real tokens the fuzz targets start from: a good one,
// a revoked one, and one of another issuer signed by a key of another
// issuer's ring.
type fuzzTokens struct {
	fx                     *fixture
	good, revoked, foreign string
	goodJTI                string
}

func newFuzzTokens(f *testing.F) *fuzzTokens {
	fx := newFixture(f)
	good := fx.mint(f, fuzzSubject, time.Hour)
	revoked := fx.mint(f, fuzzSubject, time.Hour)
	if err := fx.state.Revoke(context.Background(), &store.Revocation{Name: "r", Scope: store.ScopeJTI, Target: revoked.Record.JTI, Created: fx.clock.Now()}); err != nil {
		f.Fatal(err)
	}
	other, err := keys.Generate(jwa.ES256, rand.Reader, fx.clock.Now())
	if err != nil {
		f.Fatal(err)
	}
	foreign := authntest.ResignClaims(f, other, good.Value, func(c map[string]any) { c["iss"] = "https://other.test" })
	return &fuzzTokens{fx: fx, good: good.Value, revoked: revoked.Value, foreign: foreign, goodJTI: good.Record.JTI}
}

// seeds are inputs built from the real tokens: each one, its high-S twin,
// and shapes around them.
func (ft *fuzzTokens) seeds(f *testing.F) []string {
	h, p, s := authntest.Parts(ft.good)
	return []string{
		ft.good, ft.revoked, ft.foreign,
		authntest.HighSTwin(f, ft.good), authntest.HighSTwin(f, ft.revoked),
		authntest.SwapPayload(ft.good, ft.revoked),
		h + "." + p + ".", h + ".." + s, h + "." + p + "." + s + ".",
		"eyJhbGciOiJub25lIn0." + p + ".",
	}
}

// authenticatedAs checks the property: a token authenticates only as the
// identity minted for the good token, with its jti.
func (ft *fuzzTokens) authenticatedAs(t *testing.T, input, name string, extra map[string][]string) {
	t.Helper()
	if name != fuzzSubject || !slices.Equal(extra[tokenfmt.CredentialIDExtra], []string{"JTI=" + ft.goodJTI}) {
		t.Fatalf("authenticated as %q %v for %q; only %q with jti %s may", name, extra[tokenfmt.CredentialIDExtra], input, fuzzSubject, ft.goodJTI)
	}
}

// FuzzVerify feeds arbitrary tokens to the verifier: it never panics or
// fails to decide, refuses with a reason, and authenticates only as the
// identity minted, never for the revoked or the foreign token (or any
// twin of them).
func FuzzVerify(f *testing.F) {
	ft := newFuzzTokens(f)
	for _, seed := range append(ft.seeds(f), "a.b.c", "...", "", "e30.e30.e30") {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		res, err := ft.fx.verifier.Review(context.Background(), token, nil)
		if err != nil {
			t.Fatalf("undecided for %q: %v", token, err)
		}
		if !res.Authenticated() {
			if res.Reason == "" {
				t.Fatalf("refused %q without a reason", token)
			}
			return
		}
		ft.authenticatedAs(t, token, res.User.Name, res.User.Extra)
	})
}

// FuzzWebhookDecode feeds arbitrary bodies to the webhook handler: it never
// panics, answers only 200, 400 or 413, and authenticates only as the
// identity minted for the good token.
func FuzzWebhookDecode(f *testing.F) {
	ft := newFuzzTokens(f)
	h := NewWebhookHandler(ft.fx.verifier, 4096, nil, nil)
	for _, tok := range ft.seeds(f) {
		f.Add([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `"}}`))
	}
	for _, seed := range []string{
		`{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"` + ft.good + `","audiences":["x"]}}`,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"TOKEN":"` + ft.good + `"}}`,
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
			var out struct {
				Status struct {
					Authenticated bool
					User          struct {
						Username string
						Extra    map[string][]string
					}
				}
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 with a body that is not JSON: %q", rec.Body.String())
			}
			if out.Status.Authenticated {
				ft.authenticatedAs(t, string(body), out.Status.User.Username, out.Status.User.Extra)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
