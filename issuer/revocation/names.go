package revocation

import (
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// shortAge prints an age as kubectl does ("5m", "2d").
func shortAge(d time.Duration) string { return duration.HumanDuration(d) }
