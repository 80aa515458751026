package tokens

import (
	"context"
	"strconv"
	"sync/atomic"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/watch"

	"portcullis.dev/portcullis/internal/fanout"
	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	"portcullis.dev/portcullis/store"
)

// sequence numbers the changes made through this replica; lists report it
// as their resourceVersion.
type sequence struct{ n atomic.Int64 }

func (s *sequence) next() int64     { return s.n.Add(1) }
func (s *sequence) current() string { return strconv.FormatInt(s.n.Load(), 10) }

// watchBuffer is how many events a watcher may fall behind before it is
// closed: a write never waits on a watcher (its client lists again).
const watchBuffer = 256

// emit tells watchers of a change made through this replica, without
// waiting for any of them.
func (r *REST) emit(t watch.EventType, rec *store.Record) {
	r.seq.next()
	r.events.Send(watch.Event{Type: t, Object: r.toAPI(rec, caller{})})
}

// eventWatch is a fanout watcher as a watch.Interface.
type eventWatch struct{ w *fanout.Watcher[watch.Event] }

func (e eventWatch) ResultChan() <-chan watch.Event { return e.w.C() }
func (e eventWatch) Stop()                          { e.w.Stop() }

// Watch implements rest.Watcher. Without a resourceVersion (or with "0") it
// starts with an ADDED event for every token the caller may see; then it
// sends the changes made through this replica, filtered the same way.
func (r *REST) Watch(ctx context.Context, options *metainternalversion.ListOptions) (watch.Interface, error) {
	c, err := r.caller(ctx, "watch")
	if err != nil {
		return nil, err
	}
	var initial []watch.Event
	if options == nil || options.ResourceVersion == "" || options.ResourceVersion == "0" {
		recs, err := r.listAll(ctx, c, options)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			initial = append(initial, watch.Event{Type: watch.Added, Object: r.toAPI(rec, c)})
		}
	}
	fw, err := r.events.Watch(initial)
	if err != nil {
		return nil, err
	}
	w := eventWatch{fw}
	ls, fs := selectors(options)
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		t, ok := e.Object.(*extv1.Token)
		if !ok {
			return e, false
		}
		if !c.admin && t.Spec.UserID != c.user.GetName() {
			return e, false
		}
		rec := &store.Record{Subject: t.Spec.UserID, User: &store.UserToken{Name: t.Name, Labels: t.Labels}}
		return e, matches(rec, ls, fs)
	}), nil
}
