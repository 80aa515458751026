package console

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// BearerProtocolPrefix is Kubernetes' websocket convention for a bearer
// token where browsers cannot set headers: a subprotocol
// base64url.bearer.authorization.k8s.io.<the token, base64url, no padding>,
// offered beside the data subprotocol.
const BearerProtocolPrefix = "base64url.bearer.authorization.k8s.io."

// DataProtocol is the one data subprotocol served: RFB bytes in binary
// websocket messages (noVNC's "binary").
const DataProtocol = "binary"

// Why a connection is refused before its session opens; metric labels.
const (
	refusedTokenInURL   = "token_in_url"
	refusedNoToken      = "no_token"
	refusedBadRequest   = "bad_request"
	refusedOrigin       = "origin"
	refusedToken        = "token"
	refusedOtherVM      = "other_vm"
	refusedUnavailable  = "verifier_unavailable"
	refusedNoConsole    = "no_console"
	refusedBackendError = "backend_unreachable"
	refusedSingleUse    = "single_use_unsupported"
	refusedUsed         = "single_use_used"
)

var (
	errTokenInURL     = errors.New("a token is never accepted in the URL, where access logs keep it: send it in the Authorization header or the " + BearerProtocolPrefix + "<token> subprotocol")
	errNoToken        = errors.New("no token: send it in the Authorization header (Bearer) or the " + BearerProtocolPrefix + "<token> subprotocol")
	errTwoTokens      = errors.New("more than one token offered")
	errBadProtocol    = errors.New("the bearer subprotocol does not hold a base64url token")
	errNoDataProtocol = errors.New(`the only data subprotocol served is "` + DataProtocol + `"`)
	errNotWebsocket   = errors.New("the console is a websocket: connect with a websocket client (or open /console/{namespace}/{vm} in a browser)")
)

// queryTokenNames are the query parameters that would carry a token.
var queryTokenNames = []string{"token", "access_token", "bearer"}

// tokenFrom finds the request's token: the Authorization header, or the
// bearer subprotocol. A token in the URL is refused outright, even beside a
// good one.
func tokenFrom(r *http.Request) (string, error) {
	q := r.URL.Query()
	for _, name := range queryTokenNames {
		if q.Has(name) {
			return "", errTokenInURL
		}
	}
	var token string
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, value, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(value) == "" {
			return "", errNoToken
		}
		token = strings.TrimSpace(value)
	}
	protocols := offeredProtocols(r)
	data := false
	for _, p := range protocols {
		encoded, ok := strings.CutPrefix(p, BearerProtocolPrefix)
		if !ok {
			data = data || p == DataProtocol
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(encoded)
		if err != nil || len(raw) == 0 {
			return "", errBadProtocol
		}
		if token != "" {
			return "", errTwoTokens
		}
		token = string(raw)
	}
	if len(protocols) > 0 && !data && !(len(protocols) == 1 && strings.HasPrefix(protocols[0], BearerProtocolPrefix)) {
		return "", errNoDataProtocol
	}
	if token == "" {
		return "", errNoToken
	}
	return token, nil
}

// offeredProtocols lists the Sec-WebSocket-Protocol values the client offered.
func offeredProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// originAllowed: a request without an Origin is not from a browser; a
// browser's must be the proxy's own origin (its console page) or one the
// admin allowed, so that no other site can use a visitor's session.
func originAllowed(r *http.Request, allowed map[string]bool) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return allowed[strings.ToLower(u.Scheme+"://"+u.Host)]
}
