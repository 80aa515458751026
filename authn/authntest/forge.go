// Package authntest forges hostile tokens from real minted ones, for the
// tests that prove each check of the review path on its own: a forgery
// keeps everything of the real token (and so its record) except the one
// thing the check under test must refuse.
package authntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"portcullis.dev/portcullis/keys"
)

// Parts splits a compact JWS into its three segments.
func Parts(token string) (header, payload, signature string) {
	p := strings.SplitN(token, ".", 3)
	for len(p) < 3 {
		p = append(p, "")
	}
	return p[0], p[1], p[2]
}

// Claims decodes the payload of a token.
func Claims(token string) (map[string]any, error) {
	_, payload, _ := Parts(token)
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, err
	}
	var c map[string]any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	return c, d.Decode(&c)
}

// Header decodes the protected header of a token.
func Header(token string) (map[string]any, error) {
	h, _, _ := Parts(token)
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(raw, &out)
}

// Segment base64url-encodes v as JSON.
func Segment(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// SignES256 signs header.payload (both already encoded segments) with an
// ES256 key, as an attacker holding that key would: the header bytes are
// exactly the caller's, so any field or spelling can be put in it.
func SignES256(t testing.TB, key *keys.Key, header, payload string) string {
	t.Helper()
	priv := ecdsaKey(t, key)
	digest := sha256.Sum256([]byte(header + "." + payload))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return header + "." + payload + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Resign signs token's payload again with key under the header fields of
// the token changed by hdr (a nil value deletes the field).
func Resign(t testing.TB, key *keys.Key, token string, hdr map[string]any) string {
	t.Helper()
	h, err := Header(token)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	_, payload, _ := Parts(token)
	return SignES256(t, key, Segment(h), payload)
}

// ResignClaims signs token's claims, changed by mod, again with key, under
// a header naming key.
func ResignClaims(t testing.TB, key *keys.Key, token string, mod func(claims map[string]any)) string {
	t.Helper()
	c, err := Claims(token)
	if err != nil {
		t.Fatal(err)
	}
	mod(c)
	return SignES256(t, key, Segment(map[string]any{"alg": "ES256", "kid": key.ID}), Segment(c))
}

// HighSTwin returns the other valid ES256 signature of the same token: s
// replaced by n-s. ECDSA accepts both, so the twin is a different string
// for the same claims.
func HighSTwin(t testing.TB, token string) string {
	t.Helper()
	h, p, sigSeg := Parts(token)
	sig, err := base64.RawURLEncoding.DecodeString(sigSeg)
	if err != nil || len(sig) != 64 {
		t.Fatal("authntest: not an ES256 signature")
	}
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	twin := make([]byte, 64)
	copy(twin, sig[:32])
	new(big.Int).Sub(n, s).FillBytes(twin[32:])
	return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(twin)
}

// SwapPayload puts other's payload under token's header and signature.
func SwapPayload(token, other string) string {
	h, _, s := Parts(token)
	_, p, _ := Parts(other)
	return h + "." + p + "." + s
}

// UnencodedPayload signs token's payload with key as an RFC 7797 JWS with
// "b64": false: the signature then covers the payload segment's text as
// it is, while a reader that decodes it sees the real claims. Only a check
// that the verified bytes are the decoded ones refuses it.
func UnencodedPayload(t testing.TB, key *keys.Key, token string) string {
	t.Helper()
	return Resign(t, key, token, map[string]any{"b64": false})
}

func ecdsaKey(t testing.TB, key *keys.Key) *ecdsa.PrivateKey {
	t.Helper()
	var raw any
	if err := key.Private().Raw(&raw); err != nil {
		t.Fatal(err)
	}
	priv, ok := raw.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("authntest: key %s is %T, not ECDSA", key.ID, raw)
	}
	return priv
}
