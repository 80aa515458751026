package bolt

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunTests(t, newBolt)
}

func TestWatch(t *testing.T) { storetest.RunWatchTests(t, newBolt) }

func newBolt(t *testing.T) (store.Store, func(*testing.T) store.Store) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	reopen := func(t *testing.T) store.Store {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s2.Close() })
		return s2
	}
	return s, reopen
}

func TestSecondOpenerIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path, 50*time.Millisecond); err == nil {
		t.Fatal("a second Open of a held file succeeded; two writers would lose revocations")
	}
}

// TestIndexesFilledForOldFiles: a file written before the indexes existed
// (here: with them dropped) gets them filled when it is opened.
func TestIndexesFilledForOldFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for _, jti := range []string{"j1", "j2"} {
		r := &store.Record{JTI: jti, Kind: store.KindUser, Subject: "alice", KeyID: "k", ExpiresAt: exp, User: &store.UserToken{Name: "token-" + jti}}
		if err := s.CreateRecord(t.Context(), r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range indexBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path, time.Second); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, opts := range []store.ListOptions{{Kind: store.KindUser, Subject: "alice"}, {KeyID: "k"}} {
		list, err := s.ListRecords(t.Context(), opts)
		if err != nil || len(list.Items) != 2 {
			t.Fatalf("ListRecords(%+v) after reopening = %+v, %v; want both records", opts, list, err)
		}
	}
}

// TestNewFileBesideAnOldLogIsRefused: an operator who removes the file to
// start empty, and leaves its log, must not get the old records back from
// the log's replay.
func TestNewFileBesideAnOldLogIsRefused(t *testing.T) {
	path := closedStoreWithJ1(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, time.Second); !errors.Is(err, errForeignLog) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open beside the old log = %v, want a refusal naming it", err)
	}
	if err := os.RemoveAll(path + ".wal"); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetRecord(t.Context(), "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the removed file's record = %v, want it gone", err)
	}
}

// TestOpeningAStoreFileCommitsNothing: a file with every bucket, whose log
// holds nothing it lacks, is only read at open. A commit there (two
// fdatasyncs and the freelist) would be paid before every start is ready.
func TestOpeningAStoreFileCommitsNothing(t *testing.T) {
	path := closedStoreWithJ1(t)
	txid := func() int {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tx, err := db.Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		return tx.ID()
	}
	before := txid()
	for range 2 {
		s, err := Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetRecord(t.Context(), "j1"); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if after := txid(); after != before {
		t.Fatalf("two opens and closes moved the file from transaction %d to %d", before, after)
	}
}

// closedStoreWithJ1 is the path of a closed store file (and its log)
// holding the record j1.
func closedStoreWithJ1(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRecord(t.Context(), testRecord("j1"), store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path
}
