package authn

import (
	"context"
	"errors"
	"testing"
	"time"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/store"
)

// fakeBindings says which objects exist, by kind/namespace/name -> uid.
type fakeBindings struct {
	objects map[string]string
	err     error
}

func (f fakeBindings) Exists(b *store.BoundObject) (bool, error) {
	if f.err != nil {
		return false, f.err
	}
	uid, ok := f.objects[b.Kind+"/"+b.Namespace+"/"+b.Name]
	return ok && uid == b.UID, nil
}

// TestBoundTokensDieWithWhatTheyAreBoundTo: a TokenRequest token minted
// bound to its ServiceAccount and a Pod is refused once either is gone or
// was recreated (another uid), undecided while the informers have not
// synced, and refused where nothing can check (standalone).
func TestBoundTokensDieWithWhatTheyAreBoundTo(t *testing.T) {
	f := newFixture(t)
	tok, err := f.minter.Mint(context.Background(), issuer.Request{
		Kind: store.KindServiceAccount, Subject: "system:serviceaccount:apps:web", UID: "sa-uid",
		Audiences: []string{testAudience}, Lifetime: time.Hour,
		ServiceAccount: &store.BoundObject{Kind: "ServiceAccount", Namespace: "apps", Name: "web", UID: "sa-uid"},
		Binding:        &store.BoundObject{APIVersion: "v1", Kind: "Pod", Namespace: "apps", Name: "web-0", UID: "pod-uid"},
	})
	if err != nil {
		t.Fatal(err)
	}
	both := map[string]string{"ServiceAccount/apps/web": "sa-uid", "Pod/apps/web-0": "pod-uid"}
	without := func(key string) map[string]string {
		m := map[string]string{}
		for k, v := range both {
			if k != key {
				m[k] = v
			}
		}
		return m
	}
	recreated := without("Pod/apps/web-0")
	recreated["Pod/apps/web-0"] = "new-uid"
	errNotSynced := errors.New("not synced")
	for name, tc := range map[string]struct {
		bindings Bindings
		want     Reason
		undecide bool
	}{
		"both there":                 {bindings: fakeBindings{objects: both}},
		"ServiceAccount deleted":     {bindings: fakeBindings{objects: without("ServiceAccount/apps/web")}, want: ReasonBindingGone},
		"Pod deleted":                {bindings: fakeBindings{objects: without("Pod/apps/web-0")}, want: ReasonBindingGone},
		"Pod recreated":              {bindings: fakeBindings{objects: recreated}, want: ReasonBindingGone},
		"informers not synced":       {bindings: fakeBindings{err: errNotSynced}, undecide: true},
		"nothing to check them with": {bindings: nil, want: ReasonBindingGone},
	} {
		t.Run(name, func(t *testing.T) {
			v := NewVerifier(f.ring, f.cache, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock, Bindings: tc.bindings})
			res, err := v.Review(context.Background(), tok.Value, nil)
			switch {
			case tc.undecide:
				if err == nil {
					t.Fatalf("decided %+v; want undecided (fail closed, 503)", res)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want == "" && !res.Authenticated():
				t.Fatalf("refused (%s); want authenticated", res.Reason)
			case tc.want != "" && res.Reason != tc.want:
				t.Fatalf("reason %q (authenticated %v); want %q", res.Reason, res.Authenticated(), tc.want)
			}
		})
	}
}
