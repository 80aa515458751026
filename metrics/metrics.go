// Package metrics holds Portcullis' Prometheus metrics, registered on a
// registry the caller owns (no globals), and serves them.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters, histograms and gauges Portcullis exports.
type Metrics struct {
	reviews        *prometheus.CounterVec
	reviewDuration prometheus.Histogram
	mints          *prometheus.CounterVec
	revocations    *prometheus.CounterVec
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_reviews_total",
			Help: "TokenReviews answered, by result (authenticated, refused, undecided) and the reason of a refusal.",
		}, []string{"result", "reason"}),
		reviewDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portcullis_review_duration_seconds",
			Help:    "Time to decide a TokenReview.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_tokens_minted_total",
			Help: "Tokens minted, by kind (serviceaccount, user, vnc).",
		}, []string{"kind"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_revocations_total",
			Help: "Revocations stored, by scope (jti, subject).",
		}, []string{"scope"}),
	}
	reg.MustRegister(m.reviews, m.reviewDuration, m.mints, m.revocations)
	return m
}

// ObserveReview counts a review: result is authenticated, refused or
// undecided; reason is the refusal's.
func (m *Metrics) ObserveReview(result, reason string, d time.Duration) {
	m.reviews.WithLabelValues(result, reason).Inc()
	m.reviewDuration.Observe(d.Seconds())
}

// ObserveMint counts a minted token of kind.
func (m *Metrics) ObserveMint(kind string) { m.mints.WithLabelValues(kind).Inc() }

// ObserveRevocation counts a stored revocation of scope.
func (m *Metrics) ObserveRevocation(scope string) { m.revocations.WithLabelValues(scope).Inc() }

// GaugeFunc registers a gauge computed at scrape time, for state other
// packages own (cache hit ratio, key ring, watch lag, certificate expiry).
func GaugeFunc(reg prometheus.Registerer, name, help string, labels prometheus.Labels, f func() float64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// CounterFunc registers a counter read at scrape time.
func CounterFunc(reg prometheus.Registerer, name, help string, labels prometheus.Labels, f func() float64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
}
