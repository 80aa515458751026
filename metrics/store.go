package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis.dev/portcullis/store"
)

// instrumentedStore times every store call and counts its errors by
// operation; store.ErrNotFound and store.ErrExists are answers, not errors.
type instrumentedStore struct {
	store.Store
	latency *prometheus.HistogramVec
	errs    *prometheus.CounterVec
}

// InstrumentStore wraps s with portcullis_store_request_duration_seconds
// and portcullis_store_errors_total, registered on reg. The watch, if s has
// one, is passed through.
func InstrumentStore(s store.Store, reg prometheus.Registerer) store.Store {
	i := &instrumentedStore{
		Store: s,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_store_request_duration_seconds", Help: "Store calls, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18),
		}, []string{"operation"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_store_errors_total", Help: "Store calls that failed, by operation.",
		}, []string{"operation"}),
	}
	reg.MustRegister(i.latency, i.errs)
	return i
}

func (i *instrumentedStore) observe(op string, start time.Time, err error) {
	i.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrLimit) {
		i.errs.WithLabelValues(op).Inc()
	}
}

// CreateRecord implements store.Store.
func (i *instrumentedStore) CreateRecord(ctx context.Context, r *store.Record, opts store.CreateOptions) error {
	start := time.Now()
	err := i.Store.CreateRecord(ctx, r, opts)
	i.observe("create_record", start, err)
	return err
}

// GetRecord implements store.Store.
func (i *instrumentedStore) GetRecord(ctx context.Context, jti string) (*store.Record, error) {
	start := time.Now()
	r, err := i.Store.GetRecord(ctx, jti)
	i.observe("get_record", start, err)
	return r, err
}

// UpdateRecord implements store.Store.
func (i *instrumentedStore) UpdateRecord(ctx context.Context, jti string, f func(*store.Record) error) (*store.Record, error) {
	start := time.Now()
	r, err := i.Store.UpdateRecord(ctx, jti, f)
	i.observe("update_record", start, err)
	return r, err
}

// DeleteRecord implements store.Store.
func (i *instrumentedStore) DeleteRecord(ctx context.Context, jti string) error {
	start := time.Now()
	err := i.Store.DeleteRecord(ctx, jti)
	i.observe("delete_record", start, err)
	return err
}

// Revoke implements store.Store.
func (i *instrumentedStore) Revoke(ctx context.Context, rev *store.Revocation) error {
	start := time.Now()
	err := i.Store.Revoke(ctx, rev)
	i.observe("revoke", start, err)
	return err
}

// Ready implements store.Store.
func (i *instrumentedStore) Ready(ctx context.Context) error {
	start := time.Now()
	err := i.Store.Ready(ctx)
	i.observe("ready", start, err)
	return err
}

// Watch implements store.Watcher when the wrapped store does.
func (i *instrumentedStore) Watch(ctx context.Context) (<-chan store.Event, error) {
	w, ok := i.Store.(store.Watcher)
	if !ok {
		return nil, fmt.Errorf("metrics: %T has no watch", i.Store)
	}
	return w.Watch(ctx)
}
