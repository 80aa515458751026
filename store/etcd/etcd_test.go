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

func TestConformance(t *testing.T) {
	client := startEtcd(t)
	var n atomic.Int64
	storetest.RunTests(t, func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
		// A prefix per test: a fresh, empty store on the shared server.
		prefix := fmt.Sprintf("/test-%d/", n.Add(1))
		s := New(Config{Client: client, Prefix: prefix})
		reopen := func(t *testing.T) store.Store {
			s.Close()
			return New(Config{Client: client, Prefix: prefix})
		}
		return s, reopen
	})
}
