package testutil

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// compactJWS matches a compact JWS whose header and payload are JSON
// objects, as every token is.
var compactJWS = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.(eyJ[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]{16,}`)

// CountTokens counts the Portcullis tokens in data: compact JWSs whose
// payload carries the "portcullis.dev" claim. It finds every token value
// written anywhere, including ones a test never saw.
func CountTokens(data []byte) int {
	n := 0
	for _, m := range compactJWS.FindAllSubmatch(data, -1) {
		raw, err := base64.RawURLEncoding.DecodeString(string(m[1]))
		if err != nil {
			continue
		}
		var claims map[string]json.RawMessage
		if json.Unmarshal(raw, &claims) == nil && claims["portcullis.dev"] != nil {
			n++
		}
	}
	return n
}

// CheckNoTokens fails t if a Portcullis token, or the signature of one of
// known (token values the test handed out), is in data. source names where
// data came from; the token itself is never printed.
func CheckNoTokens(t testing.TB, source string, data []byte, known []string) {
	t.Helper()
	if n := CountTokens(data); n > 0 {
		t.Errorf("leak: %d token value(s) in %s", n, source)
		return
	}
	for _, tok := range known {
		if i := bytes.LastIndexByte([]byte(tok), '.'); i >= 0 && len(tok)-i > 16 && bytes.Contains(data, []byte(tok[i+1:])) {
			t.Errorf("leak: a token's signature is in %s", source)
			return
		}
	}
}

// CheckNoTokensInTree runs CheckNoTokens on every regular file under root
// (store files, audit logs, an etcd member's WAL and snapshots).
func CheckNoTokensInTree(t testing.TB, root string, known []string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		CheckNoTokens(t, path, data, known)
		return nil
	})
	if err != nil {
		t.Errorf("leak check of %s: %v", root, err)
	}
}
