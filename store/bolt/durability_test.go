//go:build linux

package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/lazyfs"
	"portcullis.dev/portcullis/store"
)

// crashRig is a store on a lazy filesystem that a test crashes and opens
// again, round after round.
type crashRig struct {
	t            *testing.T
	backing, dir string
	l            *lazyfs.Process
	s            *Store
}

func newCrashRig(t *testing.T) *crashRig {
	r := &crashRig{t: t, backing: t.TempDir(), dir: t.TempDir()}
	// A test that fails must still close and unmount, or its process cannot exit.
	t.Cleanup(func() {
		if r.s != nil {
			r.s.Close()
		}
		if r.l != nil {
			r.l.Unmount()
		}
	})
	return r
}

// open mounts the filesystem and opens the store on it, committing new
// records to the file every flushEvery.
func (r *crashRig) open(round int, flushEvery time.Duration) *Store {
	r.t.Helper()
	var err error
	if r.l, err = lazyfs.MountProcess(r.backing, r.dir); err != nil {
		r.t.Fatal(err)
	}
	if r.s, err = open(filepath.Join(r.dir, "portcullis.db"), time.Second, flushEvery); err != nil {
		r.t.Fatalf("round %d: the store does not open after a crash: %v", round, err)
	}
	return r.s
}

// crash: the process dies (closing the store as Close does, or dropping
// what waits for its commit to the file), then the power goes.
func (r *crashRig) crash(closeStore bool) {
	r.t.Helper()
	if closeStore {
		r.s.Close()
	} else {
		r.s.writes.close(false)
		r.s.log.close()
		r.s.db.Close()
	}
	r.s = nil
	err := r.l.Crash()
	r.l = nil
	if err != nil {
		r.t.Fatal(err)
	}
}

// TestAcknowledgedWritesSurviveLosingUnsyncedData puts the store on a
// filesystem that drops every write not fsynced when it "crashes" (a power
// cut, which kill -9 is not: that keeps the page cache). Every record,
// update and revocation the store acknowledged must be there after each
// crash, and the file must open cleanly. Without the fsync before each
// acknowledgement, this test loses them.
func TestAcknowledgedWritesSurviveLosingUnsyncedData(t *testing.T) {
	rig := newCrashRig(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	acked := map[string]bool{} // jti -> revoked
	const crashes, perRound = 5, 60
	for round := range crashes + 1 {
		s := rig.open(round, flushInterval)
		for jti, revoked := range acked {
			r, err := s.GetRecord(ctx, jti)
			if err != nil {
				t.Fatalf("round %d: acknowledged record %s lost: %v", round, jti, err)
			}
			if (r.RevokedAt != nil) != revoked || r.UID != "updated-"+jti {
				t.Fatalf("round %d: record %s came back as %+v (revoked %v)", round, jti, r, revoked)
			}
		}
		revs, err := s.ListRevocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, revoked := range acked {
			if revoked {
				want++
			}
		}
		if len(revs) != want {
			t.Fatalf("round %d: %d revocations, want the %d acknowledged", round, len(revs), want)
		}
		if round == crashes {
			break
		}
		for i := range perRound {
			jti := fmt.Sprintf("r%d-%d", round, i)
			rec := &store.Record{JTI: jti, Kind: store.KindServiceAccount, Subject: "s", Audiences: []string{"a"}, KeyID: "k", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.UpdateRecord(ctx, jti, func(r *store.Record) error { r.UID = "updated-" + jti; return nil }); err != nil {
				t.Fatal(err)
			}
			acked[jti] = false
			if i%3 == 0 {
				if err := s.Revoke(ctx, &store.Revocation{Name: "rev-" + jti, Scope: store.ScopeJTI, Target: jti, Created: now}); err != nil {
					t.Fatal(err)
				}
				acked[jti] = true
			}
		}
		rig.crash(true)
	}
	if len(acked) != crashes*perRound {
		t.Fatalf("%d records acknowledged, want %d", len(acked), crashes*perRound)
	}
}

// TestLoggedRecordsSurviveACrashBeforeTheirCommit: new records are
// acknowledged once the write-ahead log holds them, and reach the bbolt
// file only at a later commit. A crash between the two (the process dies,
// then the power goes) must lose none of them: the next open replays them
// from the log, and does not bring back what was deleted after its commit.
func TestLoggedRecordsSurviveACrashBeforeTheirCommit(t *testing.T) {
	rig := newCrashRig(t)
	ctx := context.Background()
	now := time.Now()
	record := func(jti string) *store.Record {
		return &store.Record{JTI: jti, Kind: store.KindUser, Subject: "alice", KeyID: "k", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
			User: &store.UserToken{Name: "token-" + jti, UID: jti, TTL: time.Hour}}
	}
	var live []string
	deleted := map[string]bool{}
	const rounds, perRound = 3, 40
	for round := range rounds + 1 {
		// No commit to the file but the ones this test asks for.
		s := rig.open(round, time.Hour)
		for _, jti := range live {
			if r, err := s.GetRecordByName(ctx, "token-"+jti); err != nil || r.JTI != jti {
				t.Fatalf("round %d: acknowledged record %s lost: %v", round, jti, err)
			}
		}
		for jti := range deleted {
			if _, err := s.GetRecord(ctx, jti); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("round %d: record %s deleted after its commit came back from the log: %v", round, jti, err)
			}
		}
		list, err := s.ListRecords(ctx, store.ListOptions{Kind: store.KindUser, Subject: "alice"})
		if err != nil || len(list.Items) != len(live) {
			t.Fatalf("round %d: alice lists %d records, want %d: %v", round, len(list.Items), len(live), err)
		}
		if round == rounds {
			break
		}
		// A record committed (a delete commits what is pending first), then deleted.
		gone := fmt.Sprintf("gone%d", round)
		if err := s.CreateRecord(ctx, record(gone), store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRecord(ctx, gone); err != nil {
			t.Fatal(err)
		}
		deleted[gone] = true
		var wg sync.WaitGroup
		errs := make(chan error, perRound)
		for i := range perRound {
			jti := fmt.Sprintf("r%d-%d", round, i)
			live = append(live, jti)
			wg.Go(func() { errs <- s.CreateRecord(ctx, record(jti), store.CreateOptions{}) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		s.writes.pendingMu.RLock()
		pending := s.writes.pending.len()
		s.writes.pendingMu.RUnlock()
		if pending != perRound {
			t.Fatalf("round %d: %d records wait for their commit, want %d: the crash would test nothing", round, pending, perRound)
		}
		// The process dies with the records in the log alone.
		rig.crash(false)
	}
}

// TestMain lets this test binary serve the lazy filesystem as a child
// process (see lazyfs.Process: bbolt maps its file, so the filesystem must
// be served by another process).
func TestMain(m *testing.M) {
	lazyfs.ServeIfChild()
	os.Exit(m.Run())
}
