package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/store"
)

func testRecord(jti string) *store.Record {
	return &store.Record{JTI: jti, Kind: store.KindServiceAccount, Subject: "system:serviceaccount:ns:sa",
		KeyID: "k1", IssuedAt: time.Unix(1, 0), ExpiresAt: time.Now().Add(time.Hour)}
}

// TestGroupCommitFailuresStayTheirOwn: writes committed together where
// half collide. Each colliding write gets ErrExists, and every other write in
// its group is committed all the same.
func TestGroupCommitFailuresStayTheirOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const distinct = 200
	var created, exists atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 * distinct {
		wg.Go(func() {
			switch err := s.CreateRecord(context.Background(), testRecord(fmt.Sprintf("j%d", i%distinct)), store.CreateOptions{}); {
			case err == nil:
				created.Add(1)
			case errors.Is(err, store.ErrExists):
				exists.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if created.Load() != distinct || exists.Load() != distinct {
		t.Fatalf("created %d, refused as existing %d; want %d each", created.Load(), exists.Load(), distinct)
	}
	for i := range distinct {
		if _, err := s.GetRecord(context.Background(), fmt.Sprintf("j%d", i)); err != nil {
			t.Fatalf("j%d: %v", i, err)
		}
	}
}

// TestGroupCommitSurvivesAPanickingWrite: a write that panics gets an error;
// the writes beside it are committed and the committer goes on.
func TestGroupCommitSurvivesAPanickingWrite(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "portcullis.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	var panicked error
	wg.Go(func() { panicked = s.writes.do(func(*bbolt.Tx) error { panic("boom") }) })
	for i := range 50 {
		wg.Go(func() {
			if err := s.CreateRecord(context.Background(), testRecord(fmt.Sprintf("j%d", i)), store.CreateOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if panicked == nil {
		t.Fatal("a panicking write was acknowledged")
	}
	if err := s.CreateRecord(context.Background(), testRecord("after"), store.CreateOptions{}); err != nil {
		t.Fatalf("a write after the panic: %v", err)
	}
}

// TestCloseCommitsWhatWasAcknowledged: writers racing Close either get an
// error or find their record in the reopened file; none waits for ever.
func TestCloseCommitsWhatWasAcknowledged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var acked sync.Map
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			jti := fmt.Sprintf("j%d", i)
			if s.CreateRecord(context.Background(), testRecord(jti), store.CreateOptions{}) == nil {
				acked.Store(jti, true)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	acked.Range(func(k, _ any) bool {
		n++
		if _, err := s.GetRecord(context.Background(), k.(string)); err != nil {
			t.Errorf("%s was acknowledged but is not in the file: %v", k, err)
		}
		return true
	})
	t.Logf("%d of 100 writes acknowledged before Close", n)
}

// BenchmarkCreateRecord16 creates records from 16 goroutines, as the mint
// benchmark's clients do: the rate of durable creates the group commit gives.
func BenchmarkCreateRecord16(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "portcullis.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.CreateRecord(context.Background(), testRecord(fmt.Sprintf("j%d", n.Add(1))), store.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestAFailedLogMakesTheStoreUnready: once an append to the log fails, no
// write is taken until a restart, and Ready says so, so that /readyz takes
// the replica out of service; records already written are still read.
func TestAFailedLogMakesTheStoreUnready(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "portcullis.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateRecord(ctx, testRecord("j1"), store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("ready before the failure: %v", err)
	}
	s.log.f.Close() // the disk goes away under the log
	if err := s.CreateRecord(ctx, testRecord("j2"), store.CreateOptions{}); err == nil {
		t.Fatal("a create was acknowledged without its log append")
	}
	if err := s.Ready(ctx); err == nil {
		t.Fatal("ready with writes stopped")
	}
	if err := s.CreateRecord(ctx, testRecord("j3"), store.CreateOptions{}); err == nil {
		t.Fatal("a write was taken after the log failed")
	}
	if _, err := s.GetRecord(ctx, "j1"); err != nil {
		t.Fatalf("a record written before the failure: %v", err)
	}
}

// TestAppendedBucketsFillTheirPages: records created in minting order fill
// the pages of the buckets they append to (records, expiry, key index) to
// about 90%, where bbolt's default split leaves each page half empty.
func TestAppendedBucketsFillTheirPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(time.Hour)
	for i := range 3000 {
		r := testRecord(fmt.Sprintf("j%06d", i))
		r.ExpiresAt = start.Add(time.Duration(i) * time.Second)
		if err := s.CreateRecord(context.Background(), r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketExpiry, indexBuckets[store.IndexKey]} {
			st := tx.Bucket(name).Stats()
			if st.LeafPageN < 2 {
				t.Fatalf("bucket %s: %d leaf pages; the test needs splits", name, st.LeafPageN)
			}
			if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.8 {
				t.Errorf("bucket %s: leaf pages %.0f%% full, want at least 80%%", name, 100*fill)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
