package server

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// publicPaths are served to anyone, credentials or not: probes and (later)
// the key documents verifiers fetch.
var publicPaths = []string{"/healthz", "/livez", "/readyz", "/.well-known/openid-configuration", "/openid/v1/jwks", "/.well-known/jwks.json"}

func isPublicPath(path string) bool {
	for _, p := range publicPaths {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// publicPathAuthenticator makes a request without credentials anonymous, but
// only for public paths: everywhere else a request without credentials is a
// 401, as kube-apiserver answers with anonymous auth off.
type publicPathAuthenticator struct{}

func (publicPathAuthenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if !isPublicPath(req.URL.Path) {
		return nil, false, nil
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}}, true, nil
}

// policy is the built-in authorizer: admins may do everything, any
// authenticated user may read discovery and version, anyone may read the
// public paths. Standalone (no kube-apiserver to ask) it also lets every
// authenticated user manage their own user tokens; cluster-connected it
// says nothing about them, so that RBAC (SubjectAccessReview) decides, and
// the portcullis:user-tokens ClusterRole means what it says.
type policy struct {
	adminGroups []string
	// standalone is true when there is no SubjectAccessReview to defer to.
	standalone bool
}

var _ authenticator.Request = publicPathAuthenticator{}

// authorizer returns the policy as an authorizer.Authorizer.
func (p policy) authorizer() authorizer.Authorizer { return authorizer.AuthorizerFunc(p.authorize) }

func (p policy) authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	u := a.GetUser()
	if u == nil {
		return authorizer.DecisionDeny, "no user", nil
	}
	if slices.ContainsFunc(u.GetGroups(), func(g string) bool { return slices.Contains(p.adminGroups, g) }) {
		return authorizer.DecisionAllow, "member of an admin group", nil
	}
	if p.standalone && a.IsResourceRequest() && isUserTokens(a) && isAuthenticated(u) {
		// Standalone, every user may manage their own tokens; the API shows
		// each user only their own.
		return authorizer.DecisionAllow, "own user tokens", nil
	}
	if !a.IsResourceRequest() {
		path := a.GetPath()
		if isPublicPath(path) {
			return authorizer.DecisionAllow, "public path", nil
		}
		if isAuthenticated(u) && a.GetVerb() == "get" && isDiscoveryPath(path) {
			return authorizer.DecisionAllow, "discovery", nil
		}
	}
	return authorizer.DecisionNoOpinion, "only members of the admin groups " + strings.Join(p.adminGroups, ", ") + " may use this API", nil
}

func isAuthenticated(u user.Info) bool {
	return u.GetName() != user.Anonymous && !slices.Contains(u.GetGroups(), user.AllUnauthenticated)
}

func isUserTokens(a authorizer.Attributes) bool {
	return a.GetAPIGroup() == "ext.cattle.io" && a.GetResource() == "tokens"
}

func isDiscoveryPath(path string) bool {
	return path == "/api" || path == "/apis" || path == "/version" ||
		strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/apis/") || path == "/openapi/v2" || strings.HasPrefix(path, "/openapi/v3")
}
