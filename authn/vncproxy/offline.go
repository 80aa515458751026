package vncproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	tokenfmt "portcullis.dev/portcullis/token"
)

// ErrNotSynced means the revocations were not loaded yet: refuse (fail
// closed) and retry.
var ErrNotSynced = errors.New("vncproxy: revocations not synced yet")

// OfflineConfig configures an Offline verifier.
type OfflineConfig struct {
	// Issuer is the issuer API (a kubeconfig's rest.Config): the JWKS comes
	// from Issuer.Host + /openid/v1/jwks, revocations from its watch. The
	// credentials need get, list and watch on revocations.portcullis.dev.
	Issuer *rest.Config
	// Iss is the tokens' iss.
	Iss string
	// Audience is the VNC audience (default token.kubevirt.io/vnc).
	Audience string
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
}

// JWKSRefresh is how often the offline verifier fetches the JWKS, whatever
// its Cache-Control allows: a retired key leaves the set at once, so live
// sessions it signed end within this plus a session's recheck (under a
// second). The fetch is a small GET to the issuer; a failed one keeps the
// last set.
const JWKSRefresh = 500 * time.Millisecond

// Offline checks VNC tokens without asking Portcullis on every connect: the
// signature against the JWKS (fetched every JWKSRefresh, so a retired key
// drops out within that), the claims, and the revocations of VMs, kept
// current by a watch (relisted by itself after a lost watch).
type Offline struct {
	cfg      OfflineConfig
	jwks     *jwk.Cache
	jwksURL  string
	informer toolscache.SharedIndexInformer

	mu    sync.RWMutex
	marks map[string]time.Time // subject -> tokens issued at or before are revoked
}

// NewOffline starts fetching the JWKS and watching revocations until ctx is done.
func NewOffline(ctx context.Context, cfg OfflineConfig) (*Offline, error) {
	if cfg.Audience == "" {
		cfg.Audience = tokenfmt.VNCAudience
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	httpClient, err := rest.HTTPClientFor(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	o := &Offline{cfg: cfg, marks: map[string]time.Time{}, jwksURL: strings.TrimSuffix(cfg.Issuer.Host, "/") + "/openid/v1/jwks"}
	// Under 1s httprc falls back to a 15 minute window.
	o.jwks = jwk.NewCache(ctx, jwk.WithRefreshWindow(time.Second))
	// The cache's own refresh ticks by the second at best: it is the
	// fallback, the loop below the schedule.
	if err := o.jwks.Register(o.jwksURL, jwk.WithHTTPClient(httpClient), jwk.WithRefreshInterval(time.Minute)); err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	ticks, ok := cfg.Clock.(clock.WithTicker)
	if !ok {
		ticks = clock.RealClock{}
	}
	go o.refreshJWKS(ctx, ticks)
	dyn, err := dynamic.NewForConfig(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	revocations := dyn.Resource(revocationsGVR)
	o.informer = toolscache.NewSharedIndexInformer(listThenWatch{&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return revocations.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return revocations.Watch(ctx, opts)
		},
	}}, &unstructured.Unstructured{}, 0, toolscache.Indexers{})
	if _, err := o.informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: o.add}); err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	go o.informer.RunWithContext(ctx)
	return o, nil
}

// refreshJWKS fetches the JWKS every JWKSRefresh until ctx is done.
func (o *Offline) refreshJWKS(ctx context.Context, ticks clock.WithTicker) {
	t := ticks.NewTicker(JWKSRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			// A failure keeps the last set; the next tick tries again.
			_, _ = o.jwks.Refresh(ctx, o.jwksURL)
		}
	}
}

// Synced reports whether the revocations were listed once.
func (o *Offline) Synced() bool { return o.informer.HasSynced() }

// add records a subject revocation as a "not before" mark.
func (o *Offline) add(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	subject, _, _ := unstructured.NestedString(u.Object, "spec", "subject")
	if subject == "" {
		return
	}
	// The exact time, else creationTimestamp's second rounded up: a tie or
	// doubt counts as revoked (fail closed).
	at := u.GetCreationTimestamp().Add(time.Second)
	if s, _, _ := unstructured.NestedString(u.Object, "status", "effectiveAt"); s != "" {
		if t, err := time.Parse(metav1.RFC3339Micro, s); err == nil {
			at = t
		}
	}
	o.mu.Lock()
	if cur, ok := o.marks[subject]; !ok || at.After(cur) {
		o.marks[subject] = at
	}
	o.mu.Unlock()
}

// Check returns nil if token opens the console of VM namespace/name.
func (o *Offline) Check(ctx context.Context, token, namespace, name string) error {
	if !o.Synced() {
		return ErrNotSynced
	}
	set, err := o.jwks.Get(ctx, o.jwksURL)
	if err != nil {
		return fmt.Errorf("vncproxy: JWKS: %w", err)
	}
	// The key set pins each key to its own algorithm (its alg member).
	payload, err := jws.Verify([]byte(token), jws.WithKeySet(set, jws.WithRequireKid(true)))
	if err != nil {
		return ErrNotAuthenticated
	}
	c, err := tokenfmt.Decode(payload)
	if err != nil || c.Expiry == nil {
		return ErrNotAuthenticated
	}
	now := o.cfg.Clock.Now()
	issued, err := tokenfmt.ParseIssuedAt(c.Private.IssuedAt)
	switch {
	case err != nil, c.Private.Kind != tokenfmt.KindVNC, c.Issuer != o.cfg.Iss, !slices.Contains(c.Audience, o.cfg.Audience),
		now.After(tokenfmt.Time(c.Expiry).Add(tokenfmt.DefaultLeeway)), now.Add(tokenfmt.DefaultLeeway).Before(tokenfmt.Time(c.NotBefore)):
		return ErrNotAuthenticated
	}
	o.mu.RLock()
	mark, marked := o.marks[c.Subject]
	o.mu.RUnlock()
	// The mark has microseconds: compare at that precision.
	if marked && !issued.Truncate(time.Microsecond).After(mark) {
		return ErrNotAuthenticated
	}
	if vm := c.Private.Extra; len(vm[tokenfmt.ExtraVMNamespace]) != 1 || len(vm[tokenfmt.ExtraVMName]) != 1 {
		return ErrNotAuthenticated
	} else if vm[tokenfmt.ExtraVMNamespace][0] != namespace || vm[tokenfmt.ExtraVMName][0] != name {
		return ErrOtherVM
	}
	return nil
}

// listThenWatch makes the informer list, then watch: the issuer's watch
// does not stream the initial list with a bookmark (WatchList).
type listThenWatch struct{ *toolscache.ListWatch }

// IsWatchListSemanticsUnSupported tells client-go to list before watching.
func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

var revocationsGVR = schema.GroupVersionResource{Group: "portcullis.dev", Version: "v1alpha1", Resource: "revocations"}
