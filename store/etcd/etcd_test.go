package etcd

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/storetest"
)

// startEtcd connects to a real etcd server started for the test.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{testutil.StartEtcd(t)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformance(t *testing.T) { storetest.RunTests(t, newEtcd(startEtcd(t))) }

func TestWatch(t *testing.T) { storetest.RunWatchTests(t, newEtcd(startEtcd(t))) }

// newEtcd makes stores on client, each under its own prefix: a fresh, empty
// store per test on one shared server.
func newEtcd(client *clientv3.Client) storetest.Factory {
	var n atomic.Int64
	return func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
		// A prefix per test: a fresh, empty store on the shared server.
		prefix := fmt.Sprintf("/test-%d/", n.Add(1))
		s := New(Config{Client: client, Prefix: prefix})
		reopen := func(t *testing.T) store.Store {
			s.Close()
			return New(Config{Client: client, Prefix: prefix})
		}
		return s, reopen
	}
}

// TestIndexesFilledForOldStores: records written before the indexes
// existed (here: with them deleted) are indexed on the first listing.
func TestIndexesFilledForOldStores(t *testing.T) {
	c := startEtcd(t)
	s := New(Config{Client: c, Prefix: "/old/"})
	exp := time.Now().Add(time.Hour)
	for _, jti := range []string{"j1", "j2"} {
		r := &store.Record{JTI: jti, Kind: store.KindUser, Subject: "alice", KeyID: "k", ExpiresAt: exp, User: &store.UserToken{Name: "token-" + jti}}
		if err := s.CreateRecord(t.Context(), r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Delete(t.Context(), "/old/index/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	s = New(Config{Client: c, Prefix: "/old/"})
	for _, opts := range []store.ListOptions{{Kind: store.KindUser, Subject: "alice"}, {KeyID: "k"}} {
		list, err := s.ListRecords(t.Context(), opts)
		if err != nil || len(list.Items) != 2 {
			t.Fatalf("ListRecords(%+v) on an old store = %+v, %v; want both records", opts, list, err)
		}
	}
}
