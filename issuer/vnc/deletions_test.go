package vnc

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/store"
)

// recordingRevoker keeps what it is asked to revoke, failing with err.
type recordingRevoker struct {
	revs []*store.Revocation
	err  error
}

func (r *recordingRevoker) Revoke(_ context.Context, rev *store.Revocation) error {
	r.revs = append(r.revs, rev)
	return r.err
}

func TestRevokeOnDeleteMarksOnlyPortcullisServiceAccounts(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	ours := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "vm1-vnc-access", UID: "u1",
		Labels: map[string]string{ManagedByLabel: "portcullis"}}}
	foreign := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "vm2-vnc-access", UID: "u2"}}
	rr := &recordingRevoker{}
	h := RevokeOnDelete(rr, clk, slog.New(slog.DiscardHandler))
	h.OnDelete(foreign)
	h.OnDelete(ours)
	h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "vms/vm1-vnc-access", Obj: ours})
	if len(rr.revs) != 2 {
		t.Fatalf("%d revocations for one of ours deleted (seen twice) and one foreign: %+v", len(rr.revs), rr.revs)
	}
	got := rr.revs[0]
	if got.Name != "sa-u1" || got.Scope != store.ScopeSubject || got.Target != Subject("vms", "vm1") || !got.Created.Equal(clk.Now()) {
		t.Fatalf("revocation = %+v; want a subject mark named after the uid on %s", got, Subject("vms", "vm1"))
	}
	// Another replica wrote the same mark first: nothing to report.
	rr.err = store.ErrExists
	h.OnDelete(ours)
	rr.err = errors.New("store down")
	h.OnDelete(ours)
	if len(rr.revs) != 4 {
		t.Fatalf("%d revocations, want 4", len(rr.revs))
	}
}
