package testutil

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Etcd is a real one-member etcd server (go.etcd.io/etcd/server/v3/embed)
// on loopback, which a test may stop and start again on the same data.
type Etcd struct {
	t      testing.TB
	cfg    *embed.Config
	server *embed.Etcd
	// URL is the client URL.
	URL string
}

// StartEtcd runs an etcd server until the test ends and returns its client URL.
func StartEtcd(t testing.TB) string { return NewEtcd(t).URL }

// NewEtcd starts an etcd server that is stopped when the test ends.
func NewEtcd(t testing.TB) *Etcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	ports := FreePorts(t, 2)
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[0]))
	peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[1]))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e := &Etcd{t: t, cfg: cfg, URL: client.String()}
	e.Start()
	t.Cleanup(e.stopAndCheckLeaks)
	return e
}

// Start starts the server (again, on the same data and ports).
func (e *Etcd) Start() {
	e.t.Helper()
	s, err := embed.StartEtcd(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-s.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.t.Fatal("etcd did not start")
	}
	e.server = s
}

// stopAndCheckLeaks stops the server, then checks that no token value is
// in its data (WAL, snapshots, database).
func (e *Etcd) stopAndCheckLeaks() {
	e.Stop()
	CheckNoTokensInTree(e.t, e.cfg.Dir, nil)
}

// Stop stops the server, as a crash of the member would.
func (e *Etcd) Stop() {
	if e.server != nil {
		e.server.Close()
		e.server = nil
	}
}

// EtcdCluster is a real etcd cluster of several members on loopback, whose
// members a test may stop and start again.
type EtcdCluster struct {
	Members []*Etcd
}

// NewEtcdCluster starts an n-member cluster that is stopped when the test ends.
func NewEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	ports := FreePorts(t, 2*n)
	var initial string
	c := &EtcdCluster{}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		cfg.LogLevel = "error"
		client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
		if initial != "" {
			initial += ","
		}
		initial += cfg.Name + "=" + peer.String()
		c.Members = append(c.Members, &Etcd{t: t, cfg: cfg, URL: client.String()})
	}
	errs := make(chan error, n)
	for _, m := range c.Members {
		m.cfg.InitialCluster = initial
		go func() {
			s, err := embed.StartEtcd(m.cfg)
			if err == nil {
				m.server = s
				<-s.Server.ReadyNotify()
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.stopAndCheckLeaks()
		}
	})
	return c
}

// URLs are the members' client URLs.
func (c *EtcdCluster) URLs() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.URL)
	}
	return out
}

// StartAsync starts a stopped member again without waiting for a quorum
// (a member alone waits for its peers).
func (e *Etcd) StartAsync() {
	s, err := embed.StartEtcd(e.cfg)
	if err != nil {
		e.t.Error(err)
		return
	}
	e.server = s
}
