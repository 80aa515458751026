package names

import (
	"crypto/rand"
	"strings"
	"testing"
)

func TestSuffixUsesTheAlphabetEvenly(t *testing.T) {
	counts := map[rune]int{}
	for range 2000 {
		s, err := Suffix(rand.Reader, 10)
		if err != nil || len(s) != 10 {
			t.Fatalf("Suffix = %q, %v", s, err)
		}
		for _, c := range s {
			if !strings.ContainsRune(alphabet, c) {
				t.Fatalf("%q is outside the alphabet", c)
			}
			counts[c]++
		}
	}
	// 20000 draws over 27 letters: about 740 each.
	for c, n := range counts {
		if n < 550 || n > 950 {
			t.Errorf("letter %q drawn %d times of 20000; want about 740", c, n)
		}
	}
}

func TestUIDIsVersion4(t *testing.T) {
	u, err := UID(rand.Reader)
	if err != nil || len(u) != 36 || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) {
		t.Fatalf("UID = %q, %v", u, err)
	}
}
