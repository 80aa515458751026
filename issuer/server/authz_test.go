package server

import (
	"context"
	"net/http/httptest"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// TestPolicy: the built-in authorizer allows admins everything, everyone
// the public paths, authenticated users discovery, and their own user
// tokens only standalone; everything else it leaves to the next
// authorizer (RBAC when cluster-connected), never denying outright.
func TestPolicy(t *testing.T) {
	admin := &user.DefaultInfo{Name: "root", Groups: []string{"portcullis:admins", user.AllAuthenticated}}
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"developers", user.AllAuthenticated}}
	anonymous := &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}
	resource := func(u user.Info, group, res, verb string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, ResourceRequest: true, APIGroup: group, Resource: res, Verb: verb}
	}
	path := func(u user.Info, p, verb string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, Path: p, Verb: verb}
	}
	for _, tc := range []struct {
		name       string
		attrs      authorizer.Attributes
		standalone bool
		want       authorizer.Decision
	}{
		{"admin creates a revocation", resource(admin, "portcullis.dev", "revocations", "create"), false, authorizer.DecisionAllow},
		{"admin rotates keys", resource(admin, "portcullis.dev", "signingkeys", "create"), true, authorizer.DecisionAllow},
		{"user creates a revocation", resource(alice, "portcullis.dev", "revocations", "create"), true, authorizer.DecisionNoOpinion},
		{"user mints a TokenRequest", resource(alice, "", "serviceaccounts", "create"), true, authorizer.DecisionNoOpinion},
		{"user's own tokens, standalone", resource(alice, "ext.cattle.io", "tokens", "create"), true, authorizer.DecisionAllow},
		{"user's own tokens, cluster-connected: RBAC decides", resource(alice, "ext.cattle.io", "tokens", "create"), false, authorizer.DecisionNoOpinion},
		{"anonymous user tokens, standalone", resource(anonymous, "ext.cattle.io", "tokens", "list"), true, authorizer.DecisionNoOpinion},
		{"user tokens of another group name", resource(alice, "ext.example.io", "tokens", "create"), true, authorizer.DecisionNoOpinion},
		{"anyone reads readyz", path(anonymous, "/readyz", "get"), false, authorizer.DecisionAllow},
		{"anyone reads the JWKS", path(anonymous, "/openid/v1/jwks", "get"), false, authorizer.DecisionAllow},
		{"user reads discovery", path(alice, "/apis/portcullis.dev/v1alpha1", "get"), false, authorizer.DecisionAllow},
		{"anonymous reads discovery", path(anonymous, "/apis", "get"), false, authorizer.DecisionNoOpinion},
		{"user posts to a discovery path", path(alice, "/apis", "post"), false, authorizer.DecisionNoOpinion},
		{"user reads metrics", path(alice, "/metrics", "get"), false, authorizer.DecisionNoOpinion},
		{"a path that only starts like a public one", path(anonymous, "/readyzz", "get"), false, authorizer.DecisionNoOpinion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{adminGroups: []string{"portcullis:admins"}, standalone: tc.standalone}
			got, _, err := p.authorize(context.Background(), tc.attrs)
			if err != nil || got != tc.want {
				t.Fatalf("decision %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if got, _, _ := (policy{}).authorize(context.Background(), authorizer.AttributesRecord{Path: "/readyz"}); got != authorizer.DecisionDeny {
		t.Fatalf("no user: %v, want deny", got)
	}
}

// TestPublicPathAuthenticator: a request without credentials is anonymous
// on the public paths only; elsewhere it is not authenticated (401).
func TestPublicPathAuthenticator(t *testing.T) {
	for path, want := range map[string]bool{
		"/readyz": true, "/healthz/ping": true, "/.well-known/openid-configuration": true, "/openid/v1/jwks": true,
		"/apis": false, "/readyzz": false, "/api/v1/namespaces/a/serviceaccounts/b/token": false, "/metrics": false,
	} {
		resp, ok, err := publicPathAuthenticator{}.AuthenticateRequest(httptest.NewRequest("GET", path, nil))
		if err != nil || ok != want {
			t.Fatalf("%s: authenticated %v, %v; want %v", path, ok, err, want)
		}
		if ok && resp.User.GetName() != user.Anonymous {
			t.Fatalf("%s: user %q, want anonymous", path, resp.User.GetName())
		}
	}
}
