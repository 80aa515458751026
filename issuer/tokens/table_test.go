package tokens

import (
	"testing"
	"time"
)

func TestHumanTTL(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * 24 * time.Hour: "90d",
		2 * time.Hour:       "2h",
		90 * time.Minute:    "90m",
		36 * time.Hour:      "36h",
		45 * time.Second:    "45s",
	} {
		if got := humanTTL(d); got != want {
			t.Errorf("humanTTL(%v) = %q, want %q", d, got, want)
		}
	}
}
