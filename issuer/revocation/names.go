package revocation

import (
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// nameAlphabet is the alphabet Kubernetes uses for generated name suffixes:
// no vowels (no words) and no look-alike characters.
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// randomSuffix returns five characters for generateName, as Kubernetes does.
func randomSuffix(random io.Reader) (string, error) {
	var b [5]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("revocation: name suffix: %w", err)
	}
	for i := range b {
		b[i] = nameAlphabet[int(b[i])%len(nameAlphabet)]
	}
	return string(b[:]), nil
}

// randomUID returns an RFC 4122 version 4 UUID from random.
func randomUID(random io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("revocation: uid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// shortAge prints an age as kubectl does ("5m", "2d").
func shortAge(d time.Duration) string { return duration.HumanDuration(d) }
