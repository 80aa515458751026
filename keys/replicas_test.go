package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/etcd"
)

// replicas are n managers, each with its own etcd client, on one real etcd
// server and one key-encryption key, each running its Run loop.
func replicas(t *testing.T, n int, opts ManagerOptions) []*Manager {
	t.Helper()
	url := testutil.StartEtcd(t)
	enc := testEncryption()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out []*Manager
	for range n {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		o := opts
		o.Store, o.Encryption, o.Clock, o.Rand = etcd.New(etcd.Config{Client: c}), enc, clock.RealClock{}, rand.Reader
		m := NewManager(mustRing(t), o)
		if err := m.Load(ctx, ""); err != nil {
			t.Fatal(err)
		}
		go m.Run(ctx, time.Second)
		out = append(out, m)
	}
	return out
}

// eventually polls cond; the bound is generous, the point is that it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never: %s", what)
}

func signerID(m *Manager) string {
	k, err := m.Ring().Signer()
	if err != nil || k.Private() == nil {
		return ""
	}
	return k.ID
}

// TestReplicasShareOneRing: replicas started together store one ring; a
// key rotated through A is published and signs on B and C, a key retired
// through C is refused on A and B, a key pruned through B is gone on all.
func TestReplicasShareOneRing(t *testing.T) {
	ms := replicas(t, 3, ManagerOptions{PropagationDelay: 300 * time.Millisecond})
	a, b, c := ms[0], ms[1], ms[2]
	first := signerID(a)
	for _, m := range ms {
		if got := signerID(m); got != first || got == "" {
			t.Fatalf("replicas sign with different first keys: %q and %q", first, got)
		}
	}
	next, err := a.Rotate(t.Context(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Manager{b, c} {
		eventually(t, "the rotated key is published on every replica", func() bool {
			_, err := m.Ring().VerificationKey(next.ID)
			return err == nil
		})
	}
	for _, m := range ms {
		eventually(t, "every replica signs with the promoted key", func() bool { return signerID(m) == next.ID })
	}
	ret, err := c.Retire(t.Context(), first)
	if err != nil || ret.Promoted != nil {
		t.Fatalf("retire the verifying key = %+v, %v", ret, err)
	}
	for _, m := range []*Manager{a, b} {
		eventually(t, "the retired key is refused on every replica", func() bool {
			_, err := m.Ring().VerificationKey(first)
			return errors.Is(err, ErrRetiredKey)
		})
	}
	if err := b.Prune(t.Context(), first, func(context.Context, string) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		eventually(t, "the pruned key is gone on every replica", func() bool {
			_, err := m.Ring().VerificationKey(first)
			return errors.Is(err, ErrUnknownKey)
		})
	}
}

// TestRetiringTheActiveKeyKeepsMinting: after rotate (the next key waits)
// and retire of the active key, the next key signs at once; with no next
// key, a new one is made and signs.
func TestRetiringTheActiveKeyKeepsMinting(t *testing.T) {
	m, _ := newManager(t, ManagerOptions{PropagationDelay: 10 * time.Minute})
	active := signerID(m)
	next, err := m.Rotate(t.Context(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Retire(t.Context(), active)
	if err != nil {
		t.Fatal(err)
	}
	if res.Promoted == nil || res.Promoted.ID != next.ID || signerID(m) != next.ID {
		t.Fatalf("retiring the active key promoted %+v; signer %q, want the next key %q", res.Promoted, signerID(m), next.ID)
	}
	res, err = m.Retire(t.Context(), next.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Promoted == nil || signerID(m) != res.Promoted.ID || res.Promoted.ID == next.ID {
		t.Fatalf("retiring the only signing key made no new signer: %+v", res)
	}
	if got := storedStates(t, m); got != "retired,retired,active" {
		t.Fatalf("stored ring = %s, want retired,retired,active", got)
	}
}

// TestRotationPeriodOnReplicas: three replicas with a 2 s rotation period
// make one key per period between them, never two.
func TestRotationPeriodOnReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 20 s")
	}
	const period, window = 2 * time.Second, 20 * time.Second
	ms := replicas(t, 3, ManagerOptions{RotationPeriod: period, PropagationDelay: 500 * time.Millisecond})
	start := time.Now()
	time.Sleep(window)
	var created []time.Time
	for _, k := range ms[0].Ring().Keys() {
		if k.Created.After(start) {
			created = append(created, k.Created)
		}
	}
	sort.Slice(created, func(i, j int) bool { return created[i].Before(created[j]) })
	t.Logf("%d keys made in %s by 3 replicas with period %s", len(created), window, period)
	if n := len(created); n < 9 || n > 11 {
		t.Fatalf("%d new keys in %s, want 10 (±1)", n, window)
	}
	for i := 1; i < len(created); i++ {
		if gap := created[i].Sub(created[i-1]); gap < period-100*time.Millisecond {
			t.Fatalf("two keys %s apart: two rotations in one period", gap)
		}
	}
	// The replicas keep rotating: B's ring is compared with the stored one
	// until it matches between two rotations, as its watch delivers them.
	eventually(t, "replica B's ring is the stored one", func() bool {
		ring, err := ms[1].opts.Store.GetKeyRing(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return slices.Equal(storedKeyIDs(ring), ringKeyIDs(ms[1].Ring()))
	})
}

// storedKeyIDs and ringKeyIDs are a ring's key ids and states, sorted.
func storedKeyIDs(ring *store.KeyRing) []string {
	var ids []string
	for _, k := range ring.Keys {
		ids = append(ids, k.ID+" "+k.State)
	}
	slices.Sort(ids)
	return ids
}

func ringKeyIDs(r *Ring) []string {
	var ids []string
	for _, k := range r.Keys() {
		ids = append(ids, k.ID+" "+string(k.State))
	}
	slices.Sort(ids)
	return ids
}
