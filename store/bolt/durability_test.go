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

// TestAcknowledgedWritesSurviveLosingUnsyncedData puts the store on a
// filesystem that drops every write not fsynced when it "crashes" (a power
// cut, which kill -9 is not: that keeps the page cache). Every record,
// update and revocation the store acknowledged must be there after each
// crash, and the file must open cleanly. Without the fsync before each
// acknowledgement, this test loses them.
func TestAcknowledgedWritesSurviveLosingUnsyncedData(t *testing.T) {
	backing, dir := t.TempDir(), t.TempDir()
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	acked := map[string]bool{} // jti -> revoked
	const crashes, perRound = 5, 60
	var l *lazyfs.Process
	var s *Store
	// A test that fails must still close and unmount, or its process cannot exit.
	t.Cleanup(func() {
		if s != nil {
			s.Close()
		}
		if l != nil {
			l.Unmount()
		}
	})
	for round := range crashes + 1 {
		var err error
		if l, err = lazyfs.MountProcess(backing, dir); err != nil {
			t.Fatal(err)
		}
		if s, err = Open(filepath.Join(dir, "portcullis.db"), time.Second); err != nil {
			t.Fatalf("round %d: the store does not open after a crash: %v", round, err)
		}
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
		// The process dies: nothing more reaches the file, then the power goes.
		s.Close()
		s = nil
		err = l.Crash()
		l = nil
		if err != nil {
			t.Fatal(err)
		}
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
	backing, dir := t.TempDir(), t.TempDir()
	ctx := context.Background()
	now := time.Now()
	var l *lazyfs.Process
	var s *Store
	t.Cleanup(func() {
		if s != nil {
			s.Close()
		}
		if l != nil {
			l.Unmount()
		}
	})
	path := filepath.Join(dir, "portcullis.db")
	record := func(jti string) *store.Record {
		return &store.Record{JTI: jti, Kind: store.KindUser, Subject: "alice", KeyID: "k", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
			User: &store.UserToken{Name: "token-" + jti, UID: jti, TTL: time.Hour}}
	}
	var live []string
	deleted := map[string]bool{}
	const rounds, perRound = 3, 40
	for round := range rounds + 1 {
		var err error
		if l, err = lazyfs.MountProcess(backing, dir); err != nil {
			t.Fatal(err)
		}
		// No commit to the file but the ones this test asks for.
		if s, err = open(path, time.Second, time.Hour); err != nil {
			t.Fatalf("round %d: the store does not open after a crash: %v", round, err)
		}
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
		s.writes.close(false)
		s.log.close()
		s.db.Close()
		s = nil
		err = l.Crash()
		l = nil
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestMain lets this test binary serve the lazy filesystem as a child
// process (see lazyfs.Process: bbolt maps its file, so the filesystem must
// be served by another process).
func TestMain(m *testing.M) {
	lazyfs.ServeIfChild()
	os.Exit(m.Run())
}
