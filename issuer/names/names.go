// Package names generates the names and uids the issuer gives the objects
// it creates, from the injected randomness.
package names

import (
	"fmt"
	"io"

	"github.com/google/uuid"
)

// alphabet is the alphabet Kubernetes uses for generated name suffixes: no
// vowels (no words) and no look-alike characters.
const alphabet = "bcdfghjklmnpqrstvwxz2456789"

// Suffix returns n characters of the alphabet. Rejection sampling keeps
// every character equally likely.
func Suffix(random io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	var b [1]byte
	// 256 - 256%27 = 243: bytes at or above it would favour the first letters.
	const limit = 256 - 256%len(alphabet)
	for len(out) < n {
		if _, err := io.ReadFull(random, b[:]); err != nil {
			return "", fmt.Errorf("names: %w", err)
		}
		if int(b[0]) < limit {
			out = append(out, alphabet[int(b[0])%len(alphabet)])
		}
	}
	return string(out), nil
}

// UID returns an RFC 4122 version 4 UUID drawn from random.
func UID(random io.Reader) (string, error) {
	u, err := uuid.NewRandomFromReader(random)
	if err != nil {
		return "", fmt.Errorf("names: uid: %w", err)
	}
	return u.String(), nil
}
