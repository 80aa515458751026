//go:build linux

package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// TestMain lets this test binary serve the lazy filesystem as a child
// process (see lazyfs.Process: bbolt maps its file, so the filesystem must
// be served by another process).
func TestMain(m *testing.M) {
	lazyfs.ServeIfChild()
	os.Exit(m.Run())
}
