package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestEveryMutantApplies keeps the list in step with the code: a mutant
// whose code was changed or duplicated fails here, in seconds, instead of
// at the end of the gate's forty-minute run.
func TestEveryMutantApplies(t *testing.T) {
	names := map[string]bool{}
	for _, m := range mutants {
		if names[m.name] {
			t.Errorf("mutant %q: name used twice", m.name)
		}
		names[m.name] = true
		if m.from == m.to {
			t.Errorf("mutant %q: changes nothing", m.name)
		}
		src, err := os.ReadFile(filepath.Join("..", "..", m.file))
		if err != nil {
			t.Errorf("mutant %q: %v", m.name, err)
			continue
		}
		if n := bytes.Count(src, []byte(m.from)); n != 1 {
			t.Errorf("mutant %q: its code is found %d times in %s, want once", m.name, n, m.file)
		}
	}
}
