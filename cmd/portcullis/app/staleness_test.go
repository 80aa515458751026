package app

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
)

// stalledWatch is a real store whose watch streams can be made to hang
// while every other call still answers: a watch stream starved or cut off
// on its own, which a real etcd cannot be made to do on demand here. It is
// the one fake in the test, and it fakes only that.
type stalledWatch struct {
	store.Store
	stalled atomic.Bool
}

// Watch implements store.Watcher: while stalled, a new watch never sends
// anything (not even progress) until its context ends.
func (s *stalledWatch) Watch(ctx context.Context) (<-chan store.Event, error) {
	if s.stalled.Load() {
		ch := make(chan store.Event)
		go func() { <-ctx.Done(); close(ch) }()
		return ch, nil
	}
	events, err := s.Store.(store.Watcher).Watch(ctx)
	if err != nil {
		return nil, err
	}
	// A stream open when the stall begins goes silent too.
	out := make(chan store.Event)
	go func() {
		defer close(out)
		for e := range events {
			if s.stalled.Load() {
				continue
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// TestStaleReplicaFailsClosedAndRecovers is the case the staleness bound
// exists for: replica B's watch is broken while its store still answers,
// and a subject is revoked through replica A. B cannot know; once the bound
// passes it must answer 503 (never a yes) and report not ready on both
// listeners; when its watch returns it recovers by itself and refuses the
// token.
func TestStaleReplicaFailsClosedAndRecovers(t *testing.T) {
	etcd := testutil.NewEtcd(t)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{etcd.URL}, Prefix: "/stale/"}
		c.Cache.Staleness = metav1.Duration{Duration: 2 * time.Second}
	})
	fault := &stalledWatch{}
	b := a.replicaWith(func(s store.Store) store.Store { fault.Store = s; return fault })

	tok := a.mint("ns", "sa", 3600).Status.Token
	if !b.reviewAt(tok) {
		t.Fatal("B refused a fresh token")
	}
	review := func() (int, bool) {
		code, body := post(t, b.httpClient(webhookClientBase), b.webhookURL(),
			`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tok+`"}}`)
		return code, strings.Contains(body, `"authenticated":true`)
	}
	ready := func() (webhook, issuer int) {
		// The webhook's listener serves only kube-apiserver's certificate.
		for i, c := range []struct{ url, cert string }{
			{"https://" + b.srv.WebhookAddr().String() + "/readyz", webhookClientBase}, {b.issuerURL("/readyz"), ""},
		} {
			resp, err := b.httpClient(c.cert).Get(c.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if i == 0 {
				webhook = resp.StatusCode
			} else {
				issuer = resp.StatusCode
			}
		}
		return webhook, issuer
	}

	fault.stalled.Store(true)
	err := RunRevoke(context.Background(), &RevokeOptions{
		ClientOptions: ClientOptions{Kubeconfig: filepath.Join(a.dir, AdminKubeconfig)},
		Subject:       "system:serviceaccount:ns:sa",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a.reviewAt(tok) {
		t.Fatal("A accepted the token it revoked")
	}
	// Until the bound passes B may still say yes (that is the bound); then
	// it must fail closed and stay closed.
	closed := false
	for range 400 {
		code, _ := review()
		if code == http.StatusServiceUnavailable {
			closed = true
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !closed {
		t.Fatal("B never failed closed with its watch broken")
	}
	for range 5 {
		if code, yes := review(); code != http.StatusServiceUnavailable || yes {
			t.Fatalf("stale B answered %d (authenticated %v); want 503 while its watch is broken", code, yes)
		}
	}
	if w, i := ready(); w == http.StatusOK || i == http.StatusOK {
		t.Fatalf("stale B reports ready (webhook %d, issuer %d)", w, i)
	}

	fault.stalled.Store(false)
	recovered := false
	for range 400 {
		code, yes := review()
		if yes {
			t.Fatal("B accepted the revoked token after its watch came back")
		}
		if w, i := ready(); code == http.StatusOK && w == http.StatusOK && i == http.StatusOK {
			recovered = true
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !recovered {
		t.Fatal("B did not recover by itself when its watch came back")
	}
}
