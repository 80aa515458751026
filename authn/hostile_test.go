package authn

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"portcullis.dev/portcullis/authn/authntest"
	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store"
)

// hostileCase is one forgery. forge starts from a real token minted on f
// (its record exists) and changes one thing, so that the check under test
// is the only one that can refuse it; it may move f's clock or change its
// store and ring. The review must refuse it for exactly the reason want.
type hostileCase struct {
	name  string
	forge func(t *testing.T, f *fixture) (token string, audiences []string)
	want  Reason
}

const subject = "system:serviceaccount:ns:sa"

// real mints a token of subject for an hour.
func real(t *testing.T, f *fixture) *issuer.Token { return f.mint(t, subject, time.Hour) }

// warm reviews tok once, so that its signature check and record are cached
// before the state the case changes.
func warm(t *testing.T, f *fixture, tok string) {
	t.Helper()
	if res, err := f.verifier.Review(context.Background(), tok, nil); err != nil || !res.Authenticated() {
		t.Fatalf("the real token was not authenticated before the change: %+v %v", res, err)
	}
	f.wait()
}

// stateless mints a stateless (VNC) token of subject.
func stateless(t *testing.T, f *fixture) *issuer.Token {
	t.Helper()
	tok, err := f.minter.Mint(context.Background(), issuer.Request{
		Kind: store.KindVNC, Subject: subject, Groups: []string{"system:serviceaccounts"},
		Audiences: []string{testAudience}, Lifetime: time.Hour, Stateless: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func revoke(t *testing.T, f *fixture, scope store.Scope, target string) {
	t.Helper()
	err := f.state.Revoke(context.Background(), &store.Revocation{Name: "r-" + string(scope), Scope: scope, Target: target, Created: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
}

func resignClaims(t *testing.T, f *fixture, mod func(map[string]any)) string {
	return authntest.ResignClaims(t, f.key, real(t, f).Value, mod)
}

func withHeader(t *testing.T, f *fixture, field string, value any) string {
	return authntest.Resign(t, f.key, real(t, f).Value, map[string]any{field: value})
}

// hostileCases is the table, one check per row.
func hostileCases() []hostileCase {
	only := func(tok string) func(*testing.T, *fixture) (string, []string) {
		return func(*testing.T, *fixture) (string, []string) { return tok, nil }
	}
	return []hostileCase{
		{"empty", only(""), ReasonEmpty},
		{"over 16 KiB", only(strings.Repeat("a", MaxTokenBytes+1)), ReasonTooLarge},
		{"not a JWS", only("hello"), ReasonMalformed},
		{"four segments", func(t *testing.T, f *fixture) (string, []string) { return real(t, f).Value + ".x", nil }, ReasonMalformed},
		{"header not base64", func(t *testing.T, f *fixture) (string, []string) {
			_, p, s := authntest.Parts(real(t, f).Value)
			return "!!!." + p + "." + s, nil
		}, ReasonMalformed},

		// The header may not name its own trust or demand extensions.
		{"jku header", func(t *testing.T, f *fixture) (string, []string) {
			return withHeader(t, f, "jku", "https://evil.test/jwks"), nil
		}, ReasonHeader},
		{"x5u header", func(t *testing.T, f *fixture) (string, []string) {
			return withHeader(t, f, "x5u", "https://evil.test/cert"), nil
		}, ReasonHeader},
		{"jwk header", func(t *testing.T, f *fixture) (string, []string) {
			return withHeader(t, f, "jwk", f.key.Public()), nil
		}, ReasonHeader},
		{"x5c header", func(t *testing.T, f *fixture) (string, []string) {
			return withHeader(t, f, "x5c", []string{"MIIBszCCAVmgAwIBAgIUQ"}), nil
		}, ReasonHeader},
		{"crit header", func(t *testing.T, f *fixture) (string, []string) {
			return withHeader(t, f, "crit", []string{"exp"}), nil
		}, ReasonHeader},

		// Algorithms: the allow-list, spelled exactly, and the key's own.
		{"alg es256 (lower case)", func(t *testing.T, f *fixture) (string, []string) { return withHeader(t, f, "alg", "es256"), nil }, ReasonAlgorithm},
		{"alg none", func(t *testing.T, f *fixture) (string, []string) { return withHeader(t, f, "alg", "none"), nil }, ReasonAlgorithm},
		{"alg HS256", func(t *testing.T, f *fixture) (string, []string) { return withHeader(t, f, "alg", "HS256"), nil }, ReasonAlgorithm},
		{"alg of another key type (EdDSA)", func(t *testing.T, f *fixture) (string, []string) { return withHeader(t, f, "alg", "EdDSA"), nil }, ReasonAlgorithm},

		// Keys and signatures.
		{"kid not in the ring", func(t *testing.T, f *fixture) (string, []string) {
			other, err := keys.Generate(jwa.ES256, rand.Reader, f.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			return authntest.Resign(t, other, real(t, f).Value, map[string]any{"kid": other.ID}), nil
		}, ReasonUnknownKey},
		{"kid of the ring, signed by another key", func(t *testing.T, f *fixture) (string, []string) {
			other, err := keys.Generate(jwa.ES256, rand.Reader, f.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			return authntest.Resign(t, other, real(t, f).Value, nil), nil
		}, ReasonSignature},
		{"signature tampered", func(t *testing.T, f *fixture) (string, []string) {
			h, p, s := authntest.Parts(real(t, f).Value)
			// Another base64url character, so the signature still decodes
			// (flipping bits could make '-' a '.', a malformed token).
			b := []byte(s)
			if b[5] == 'A' {
				b[5] = 'B'
			} else {
				b[5] = 'A'
			}
			return h + "." + p + "." + string(b), nil
		}, ReasonSignature},
		{"payload swapped under a valid signature", func(t *testing.T, f *fixture) (string, []string) {
			other := f.mint(t, "system:serviceaccount:ns:admin", time.Hour)
			return authntest.SwapPayload(real(t, f).Value, other.Value), nil
		}, ReasonSignature},
		{"unencoded payload (b64 false)", func(t *testing.T, f *fixture) (string, []string) {
			return authntest.UnencodedPayload(t, f.key, real(t, f).Value), nil
		}, ReasonHeader},

		// Claims, signed by a key of ours.
		{"another issuer", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { c["iss"] = "https://evil.test" }), nil
		}, ReasonIssuer},
		{"no sub", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { delete(c, "sub") }), nil
		}, ReasonMalformed},
		{"no jti", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { delete(c, "jti") }), nil
		}, ReasonMalformed},
		{"no exp", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { delete(c, "exp") }), nil
		}, ReasonMalformed},
		{"no iat", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { delete(c, "iat") }), nil
		}, ReasonMalformed},
		{"no aud", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { delete(c, "aud") }), nil
		}, ReasonMalformed},
		{"audience not requested", func(t *testing.T, f *fixture) (string, []string) {
			return real(t, f).Value, []string{"https://other.test"}
		}, ReasonAudience},

		// Times, by moving the clock on real tokens.
		{"expired past the leeway", func(t *testing.T, f *fixture) (string, []string) {
			tok := f.mint(t, subject, 10*time.Minute)
			f.clock.Step(10*time.Minute + DefaultLeeway + time.Second)
			return tok.Value, nil
		}, ReasonExpired},
		{"not yet valid past the leeway", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			f.clock.SetTime(f.clock.Now().Add(-DefaultLeeway - time.Minute))
			return tok.Value, nil
		}, ReasonNotYetValid},
		{"issued in the future, no nbf", func(t *testing.T, f *fixture) (string, []string) {
			tok := resignClaims(t, f, func(c map[string]any) { delete(c, "nbf") })
			f.clock.SetTime(f.clock.Now().Add(-DefaultLeeway - time.Minute))
			return tok, nil
		}, ReasonIssuedInFuture},

		// The record: exact state in the store.
		{"record deleted", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			if err := f.state.DeleteRecord(context.Background(), tok.Record.JTI); err != nil {
				t.Fatal(err)
			}
			return tok.Value, nil
		}, ReasonRecordMissing},
		{"record deleted after the token was cached", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			warm(t, f, tok.Value)
			if err := f.state.DeleteRecord(context.Background(), tok.Record.JTI); err != nil {
				t.Fatal(err)
			}
			return tok.Value, nil
		}, ReasonRecordMissing},
		{"another subject under a real jti", func(t *testing.T, f *fixture) (string, []string) {
			return resignClaims(t, f, func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" }), nil
		}, ReasonRecordMismatch},
		{"signed again by another key of the ring", func(t *testing.T, f *fixture) (string, []string) {
			return authntest.Resign(t, f.next, real(t, f).Value, map[string]any{"kid": f.next.ID}), nil
		}, ReasonRecordMismatch},
		{"record expiry shortened", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			warm(t, f, tok.Value)
			_, err := f.state.UpdateRecord(context.Background(), tok.Record.JTI, func(r *store.Record) error {
				r.ExpiresAt = f.clock.Now().Add(-time.Second)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return tok.Value, nil
		}, ReasonRecordExpired},
		{"user token disabled after it was cached", func(t *testing.T, f *fixture) (string, []string) {
			tok, err := f.minter.Mint(context.Background(), issuer.Request{
				Kind: store.KindUser, Subject: "alice", Audiences: []string{testAudience}, Lifetime: time.Hour,
				User: &store.UserToken{Name: "token-abc", UID: "u1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			warm(t, f, tok.Value)
			_, err = f.state.UpdateRecord(context.Background(), tok.Record.JTI, func(r *store.Record) error {
				r.User.Disabled = true
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return tok.Value, nil
		}, ReasonDisabled},

		// Keys retired after minting.
		{"key retired", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			retire(t, f)
			return tok.Value, nil
		}, ReasonRetiredKey},
		{"key retired after the token was cached", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			warm(t, f, tok.Value)
			retire(t, f)
			return tok.Value, nil
		}, ReasonRetiredKey},

		// Revocations.
		{"jti revoked after the token was cached", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			warm(t, f, tok.Value)
			revoke(t, f, store.ScopeJTI, tok.Record.JTI)
			return tok.Value, nil
		}, ReasonRevoked},
		{"high-S twin of a revoked token", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			revoke(t, f, store.ScopeJTI, tok.Record.JTI)
			return authntest.HighSTwin(t, tok.Value), nil
		}, ReasonRevoked},
		{"jti revoked, on a replica whose cached record predates it", func(t *testing.T, f *fixture) (string, []string) {
			// The replica learns the revocation through its index (a reload
			// of the revocations), while the record it cached before the
			// revocation is still in its cache without RevokedAt.
			tok := real(t, f)
			other := f.freshVerifier(t)
			if res, err := other.Review(context.Background(), tok.Value, nil); err != nil || !res.Authenticated() {
				t.Fatalf("before the revocation: %+v %v", res, err)
			}
			other.WaitCache()
			other.state.(*revocation.Authority).Wait()
			revoke(t, f, store.ScopeJTI, tok.Record.JTI)
			if err := other.state.(*revocation.Authority).Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.verifier = other
			return tok.Value, nil
		}, ReasonRevoked},
		{"subject revoked after the token was cached", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			warm(t, f, tok.Value)
			revoke(t, f, store.ScopeSubject, subject)
			return tok.Value, nil
		}, ReasonRevoked},
		{"stateless token's subject revoked", func(t *testing.T, f *fixture) (string, []string) {
			tok := stateless(t, f)
			warm(t, f, tok.Value)
			revoke(t, f, store.ScopeSubject, subject)
			return tok.Value, nil
		}, ReasonRevoked},
		{"record revoked, on a replica that has not heard of it", func(t *testing.T, f *fixture) (string, []string) {
			tok := real(t, f)
			other := f.freshVerifier(t)
			revoke(t, f, store.ScopeJTI, tok.Record.JTI)
			f.verifier = other
			return tok.Value, nil
		}, ReasonRevoked},

		// Bound objects.
		{"bound token where nothing can check the binding", func(t *testing.T, f *fixture) (string, []string) {
			return bound(t, f).Value, nil
		}, ReasonBindingGone},
		{"bound ServiceAccount recreated", func(t *testing.T, f *fixture) (string, []string) {
			tok := bound(t, f)
			f.verifier = newVerifier(t, f.ring, f.state, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock,
				Bindings: fakeBindings{objects: map[string]string{"ServiceAccount/ns/sa": "new-uid"}}})
			return tok.Value, nil
		}, ReasonBindingGone},
	}
}

func bound(t *testing.T, f *fixture) *issuer.Token {
	t.Helper()
	tok, err := f.minter.Mint(context.Background(), issuer.Request{
		Kind: store.KindServiceAccount, Subject: subject, UID: "sa-uid", Audiences: []string{testAudience}, Lifetime: time.Hour,
		ServiceAccount: &store.BoundObject{Kind: "ServiceAccount", Namespace: "ns", Name: "sa", UID: "sa-uid"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func retire(t *testing.T, f *fixture) {
	t.Helper()
	retired := *f.key
	retired.State = keys.StateRetired
	next := *f.next
	next.State = keys.StateActive
	if err := f.ring.Replace([]*keys.Key{&retired, &next}); err != nil {
		t.Fatal(err)
	}
}

// TestHostileTokensRefusedForTheirReason runs the hostile table against the
// verifier: every forgery is refused, for its own reason.
func TestHostileTokensRefusedForTheirReason(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			token, auds := tc.forge(t, f)
			res, err := f.verifier.Review(context.Background(), token, auds)
			if err != nil {
				t.Fatalf("undecided (%v); want refused for %q", err, tc.want)
			}
			if res.Authenticated() || res.Reason != tc.want {
				t.Fatalf("authenticated %v, reason %q; want refused for %q", res.Authenticated(), res.Reason, tc.want)
			}
		})
	}
}

// TestForgeriesOfNothingAuthenticate proves the table's tools: a token
// re-signed with nothing changed, and the high-S twin of a good token, are
// good tokens. So each row above is refused for its change alone.
func TestForgeriesOfNothingAuthenticate(t *testing.T) {
	f := newFixture(t)
	for name, forge := range map[string]func(t *testing.T) string{
		"resigned, header unchanged": func(t *testing.T) string { return authntest.Resign(t, f.key, real(t, f).Value, nil) },
		"resigned, claims unchanged": func(t *testing.T) string {
			return authntest.ResignClaims(t, f.key, real(t, f).Value, func(map[string]any) {})
		},
		"high-S twin": func(t *testing.T) string { return authntest.HighSTwin(t, real(t, f).Value) },
		"stateless":   func(t *testing.T) string { return stateless(t, f).Value },
		"bound, binding there": func(t *testing.T) string {
			f.verifier = newVerifier(t, f.ring, f.state, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock,
				Bindings: fakeBindings{objects: map[string]string{"ServiceAccount/ns/sa": "sa-uid"}}})
			return bound(t, f).Value
		},
	} {
		t.Run(name, func(t *testing.T) {
			tok := forge(t)
			res, err := f.verifier.Review(context.Background(), tok, nil)
			if err != nil || !res.Authenticated() || res.User.Name != subject {
				t.Fatalf("Review = %+v, %v; want authenticated as %s", res, err, subject)
			}
		})
	}
}
