package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/authn/authntest"
	"portcullis.dev/portcullis/keys"
)

// refusedReason matches the verifier's debug line for a refusal.
var refusedReason = regexp.MustCompile(`msg="token refused"[^\n]* reason=(\S+)`)

// TestHostileTableThroughKubeAPIServerClient is the verifier's hostile table
// through the webhook, asked by kube-apiserver's own webhook client, on a
// server whose clock the test moves. Every forgery starts from a real token
// minted through the API (its record exists); the reason each is refused
// for is read from the server's debug log.
func TestHostileTableThroughKubeAPIServerClient(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	h := startServerWithClock(t, clk, nil)
	h.writeCert("alice", "alice", "developers")
	wh := kubeAPIServerAuthenticator(t, h, "v1")
	n := 0
	mint := func() string { n++; return h.mint("ns", fmt.Sprintf("sa-%d", n), 3600).Status.Token }
	// The key that signs now, with its private half: the server's own ring
	// (the store holds keys only sealed).
	signer := func() *keys.Key {
		k, err := h.srv.ring.Signer()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	other, err := keys.Generate(jwa.ES256, rand.Reader, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(h.dir, AdminKubeconfig)
	revoke := func(o *RevokeOptions) {
		o.Kubeconfig = admin
		if err := RunRevoke(context.Background(), o, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	alice := h.tokensAs("alice")
	patchUserToken := func(name, patch string) {
		if _, err := alice.Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	check := func(t *testing.T, token string, auds []string, want authn.Reason) {
		t.Helper()
		if len(auds) == 0 {
			auds = h.cfg.APIAudiences
		}
		mark := len(h.logs.String())
		resp, ok, err := wh.AuthenticateToken(authenticator.WithAudiences(context.Background(), auds), token)
		if err != nil || ok {
			t.Fatalf("authenticated %v (%+v), err %v; want a clean refusal for %q", ok, resp, err, want)
		}
		m := refusedReason.FindStringSubmatch(h.logs.String()[mark:])
		if m == nil || authn.Reason(m[1]) != want {
			t.Fatalf("refused for %v; want %q", m, want)
		}
	}

	rows := []struct {
		name  string
		forge func(t *testing.T) (string, []string)
		want  authn.Reason
	}{
		{"jku header", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"jku": "https://evil.test/jwks"}), nil
		}, authn.ReasonHeader},
		{"x5u header", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"x5u": "https://evil.test/c"}), nil
		}, authn.ReasonHeader},
		{"jwk header", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"jwk": other.Public()}), nil
		}, authn.ReasonHeader},
		{"x5c header", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"x5c": []string{"MIIB"}}), nil
		}, authn.ReasonHeader},
		{"crit header", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"crit": []string{"exp"}}), nil
		}, authn.ReasonHeader},
		{"alg es256", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"alg": "es256"}), nil
		}, authn.ReasonAlgorithm},
		{"alg none", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"alg": "none"}), nil
		}, authn.ReasonAlgorithm},
		{"alg HS256", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"alg": "HS256"}), nil
		}, authn.ReasonAlgorithm},
		{"alg EdDSA on an ES256 key", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, signer(), mint(), map[string]any{"alg": "EdDSA"}), nil
		}, authn.ReasonAlgorithm},
		{"kid not in the ring", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, other, mint(), map[string]any{"kid": other.ID}), nil
		}, authn.ReasonUnknownKey},
		{"kid of the ring, signed by another key", func(t *testing.T) (string, []string) {
			return authntest.Resign(t, other, mint(), nil), nil
		}, authn.ReasonSignature},
		{"payload swapped under a valid signature", func(t *testing.T) (string, []string) {
			return authntest.SwapPayload(mint(), mint()), nil
		}, authn.ReasonSignature},
		{"unencoded payload (b64 false)", func(t *testing.T) (string, []string) {
			return authntest.UnencodedPayload(t, signer(), mint()), nil
		}, authn.ReasonHeader},
		{"another issuer, signed by our key", func(t *testing.T) (string, []string) {
			return authntest.ResignClaims(t, signer(), mint(), func(c map[string]any) { c["iss"] = "https://evil.test" }), nil
		}, authn.ReasonIssuer},
		{"audience not requested", func(t *testing.T) (string, []string) {
			return mint(), []string{"https://vault.test"}
		}, authn.ReasonAudience},
		{"another subject under a real jti", func(t *testing.T) (string, []string) {
			return authntest.ResignClaims(t, signer(), mint(), func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" }), nil
		}, authn.ReasonRecordMismatch},
		{"jti revoked", func(t *testing.T) (string, []string) {
			tok := mint()
			revoke(&RevokeOptions{JTI: jtiOf(t, tok)})
			return tok, nil
		}, authn.ReasonRevoked},
		{"high-S twin of a revoked token", func(t *testing.T) (string, []string) {
			tok := mint()
			revoke(&RevokeOptions{JTI: jtiOf(t, tok)})
			return authntest.HighSTwin(t, tok), nil
		}, authn.ReasonRevoked},
		{"subject revoked", func(t *testing.T) (string, []string) {
			tok := h.mint("ns", "revoked-subject", 3600).Status.Token
			revoke(&RevokeOptions{Subject: "system:serviceaccount:ns:revoked-subject"})
			return tok, nil
		}, authn.ReasonRevoked},
		{"user token deleted", func(t *testing.T) (string, []string) {
			name, tok := h.createToken("alice", nil)
			if err := alice.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			return tok, nil
		}, authn.ReasonRecordMissing},
		{"user token disabled", func(t *testing.T) (string, []string) {
			name, tok := h.createToken("alice", nil)
			patchUserToken(name, `{"spec":{"enabled":false}}`)
			return tok, nil
		}, authn.ReasonDisabled},
		{"signed again by the ring's newer key", func(t *testing.T) (string, []string) {
			tok := mint()
			h.keysCLI("rotate", "--now")
			return authntest.Resign(t, signer(), tok, map[string]any{"kid": signer().ID}), nil
		}, authn.ReasonRecordMismatch},
		{"key retired", func(t *testing.T) (string, []string) {
			tok := mint()
			old := signer().ID
			h.keysCLI("rotate", "--now")
			h.keysCLI("retire", old)
			return tok, nil
		}, authn.ReasonRetiredKey},
		// The clock moves from here on.
		{"user token ttl reduced", func(t *testing.T) (string, []string) {
			name, tok := h.createToken("alice", nil)
			patchUserToken(name, `{"spec":{"ttl":1000}}`)
			clk.Step(2 * time.Second)
			return tok, nil
		}, authn.ReasonRecordExpired},
		{"not yet valid past the leeway", func(t *testing.T) (string, []string) {
			tok := mint()
			clk.SetTime(clk.Now().Add(-authn.DefaultLeeway - time.Minute))
			return tok, nil
		}, authn.ReasonNotYetValid},
		{"expired past the leeway", func(t *testing.T) (string, []string) {
			clk.SetTime(clk.Now().Add(authn.DefaultLeeway + time.Minute))
			tok := h.mint("ns", "short", 600).Status.Token
			clk.Step(600*time.Second + authn.DefaultLeeway + time.Second)
			return tok, nil
		}, authn.ReasonExpired},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			token, auds := row.forge(t)
			h.remember(token)
			check(t, token, auds, row.want)
		})
	}
}
