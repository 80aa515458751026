package console

import (
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"testing"
)

func TestTokenFrom(t *testing.T) {
	const tok = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	bearer := BearerProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(tok))
	for _, tc := range []struct {
		name      string
		target    string
		auth      string
		protocols string
		want      string
		err       error
	}{
		{"authorization header", "/vnc/ns/vm", "Bearer " + tok, "binary", tok, nil},
		{"bearer subprotocol", "/vnc/ns/vm", "", "binary, " + bearer, tok, nil},
		{"bearer subprotocol alone", "/vnc/ns/vm", "", bearer, tok, nil},
		{"token in the query", "/vnc/ns/vm?token=" + tok, "", "", "", errTokenInURL},
		{"access_token in the query beside a header", "/vnc/ns/vm?access_token=x", "Bearer " + tok, "", "", errTokenInURL},
		{"nothing", "/vnc/ns/vm", "", "binary", "", errNoToken},
		{"basic auth", "/vnc/ns/vm", "Basic dXNlcjpwYXNz", "", "", errNoToken},
		{"two tokens", "/vnc/ns/vm", "Bearer " + tok, "binary, " + bearer, "", errTwoTokens},
		{"bearer subprotocol not base64url", "/vnc/ns/vm", "", "binary, " + BearerProtocolPrefix + "not+base64/", "", errBadProtocol},
		{"no data subprotocol served", "/vnc/ns/vm", "Bearer " + tok, "base64.channel.k8s.io", "", errNoDataProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.protocols != "" {
				r.Header.Set("Sec-WebSocket-Protocol", tc.protocols)
			}
			got, err := tokenFrom(r)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestOriginAllowed(t *testing.T) {
	allowed := map[string]bool{"https://console.example": true}
	for origin, want := range map[string]bool{
		"":                             true, // not a browser
		"https://proxy.example:8443":   true, // the proxy's own console page
		"https://PROXY.example:8443":   true,
		"http://proxy.example:8443":    false, // its host, but not over TLS
		"https://proxy.example":        false, // another port is another origin
		"https://console.example":      true,
		"https://evil.example":         false,
		"https://console.example.evil": false,
		"null":                         false,
	} {
		r := httptest.NewRequest("GET", "https://proxy.example:8443/vnc/ns/vm", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if got := originAllowed(r, allowed); got != want {
			t.Errorf("origin %q: allowed %v, want %v", origin, got, want)
		}
	}
}
