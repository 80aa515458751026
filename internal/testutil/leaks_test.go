package testutil

import (
	"encoding/base64"
	"testing"
)

func TestCountTokensFindsPortcullisTokensOnly(t *testing.T) {
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	ours := seg(`{"alg":"ES256","kid":"k"}`) + "." + seg(`{"iss":"x","portcullis.dev":{"kind":"user"}}`) + "." + seg("0123456789abcdef0123456789abcdef")
	theirs := seg(`{"alg":"RS256"}`) + "." + seg(`{"iss":"https://kubernetes.default.svc"}`) + "." + seg("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		data string
		want int
	}{
		{`level=DEBUG msg=x token=` + ours + ` jti=j`, 1},
		{`{"token":"` + ours + `"} and ` + ours, 2},
		{theirs, 0},
		{`jti=AAAA reason=expired`, 0},
	} {
		if got := CountTokens([]byte(tc.data)); got != tc.want {
			t.Errorf("CountTokens(%.40q…) = %d, want %d", tc.data, got, tc.want)
		}
	}
}
