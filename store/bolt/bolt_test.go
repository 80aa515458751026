package bolt

import (
	"path/filepath"
	"testing"
	"time"

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
