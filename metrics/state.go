package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"portcullis.dev/portcullis/cache"
	"portcullis.dev/portcullis/keys"
)

// State is what the scrape-time metrics read from the components that own
// the state.
type State struct {
	// TokenCache and RecordCache are the accelerators' counters.
	TokenCache, RecordCache func() cache.Stats
	// SyncAge is how long ago the store's watch proved the replica current.
	SyncAge func() time.Duration
	// Keys lists the signing key ring.
	Keys func() []*keys.Key
	// CertificateExpiry is when the serving certificate in use expires
	// (zero: unknown).
	CertificateExpiry func() time.Time
}

// RegisterState registers the process and Go collectors and the metrics
// computed at scrape time from s.
func RegisterState(reg prometheus.Registerer, s State) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	GaugeFunc(reg, "portcullis_cache_hit_ratio", "Share of verified-token lookups answered by the cache.", nil, func() float64 {
		st := s.TokenCache()
		if st.Hits+st.Misses == 0 {
			return 0
		}
		return float64(st.Hits) / float64(st.Hits+st.Misses)
	})
	CounterFunc(reg, "portcullis_cache_hits_total", "Verified-token lookups the cache answered.", nil,
		func() float64 { return float64(s.TokenCache().Hits) })
	CounterFunc(reg, "portcullis_cache_misses_total", "Verified-token lookups the cache could not answer.", nil,
		func() float64 { return float64(s.TokenCache().Misses) })
	CounterFunc(reg, "portcullis_cache_evictions_total", "Entries evicted from the review caches.", nil,
		func() float64 { return float64(s.TokenCache().Evictions + s.RecordCache().Evictions) })
	GaugeFunc(reg, "portcullis_store_watch_lag_seconds", "Time since the store's watch last proved this replica current.", nil,
		func() float64 { return s.SyncAge().Seconds() })
	for _, state := range []keys.State{keys.StateNext, keys.StateActive, keys.StateVerifying, keys.StateRetired} {
		GaugeFunc(reg, "portcullis_signing_keys", "Signing keys in the ring, by state.", prometheus.Labels{"state": string(state)},
			func() float64 {
				n := 0
				for _, k := range s.Keys() {
					if k.State == state {
						n++
					}
				}
				return float64(n)
			})
	}
	GaugeFunc(reg, "portcullis_serving_certificate_expiry_timestamp_seconds", "When the serving certificate in use expires (Unix time).", nil,
		func() float64 {
			t := s.CertificateExpiry()
			if t.IsZero() {
				return 0
			}
			return float64(t.Unix())
		})
}
