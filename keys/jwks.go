package keys

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The paths the key documents are served on, without authentication.
const (
	JWKSPath          = "/openid/v1/jwks"
	WellKnownJWKSPath = "/.well-known/jwks.json"
	DiscoveryPath     = "/.well-known/openid-configuration"
)

// JWKSHandler serves the ring's public keys (next, active and verifying;
// never retired ones, never private parts). Verifiers may cache the answer
// for maxAge: keep it well below the propagation delay, so that a next key
// is fetched before it signs.
func JWKSHandler(ring *Ring, maxAge time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "only GET is allowed", http.StatusMethodNotAllowed)
			return
		}
		set, err := ring.PublicSet()
		if err != nil {
			http.Error(w, "key set unavailable", http.StatusInternalServerError)
			return
		}
		body, err := json.Marshal(set)
		if err != nil {
			http.Error(w, "key set unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds())))
		w.Write(body)
	})
}

// discovery is the OpenID provider metadata Kubernetes publishes for its
// service account issuer, which is what verifiers of JWTs look for.
type discovery struct {
	Issuer        string   `json:"issuer"`
	JWKSURI       string   `json:"jwks_uri"`
	ResponseTypes []string `json:"response_types_supported"`
	SubjectTypes  []string `json:"subject_types_supported"`
	SigningAlgs   []string `json:"id_token_signing_alg_values_supported"`
}

// DiscoveryHandler serves /.well-known/openid-configuration for issuer.
func DiscoveryHandler(issuer string, maxAge time.Duration) http.Handler {
	var algs []string
	for _, a := range Algorithms {
		algs = append(algs, a.String())
	}
	body, _ := json.Marshal(discovery{
		Issuer:        issuer,
		JWKSURI:       strings.TrimSuffix(issuer, "/") + JWKSPath,
		ResponseTypes: []string{"id_token"},
		SubjectTypes:  []string{"public"},
		SigningAlgs:   algs,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds())))
		w.Write(body)
	})
}
