package server

import (
	"fmt"
	"time"

	apiserverconfig "k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authorizerunion "k8s.io/apiserver/pkg/authorization/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericoptions "k8s.io/apiserver/pkg/server/options"
)

// delegatedCacheTTL is how long answers of kube-apiserver's TokenReview and
// SubjectAccessReview are reused, as aggregated API servers do by default.
const delegatedCacheTTL = 10 * time.Second

// newAuthenticator builds the issuer's caller authentication, in order:
//  1. Portcullis' own tokens as bearer tokens (checked locally);
//  2. k8s.io/apiserver's delegating authenticator: the front proxy
//     (requestheader: its client certificate checked against the
//     requestheader CA and allowed names, identity from X-Remote-*),
//     x509 client certificates (CN = user, O = groups), and, when
//     cluster-connected, other bearer tokens by TokenReview;
//  3. anonymous, for the public paths only.
//
// Anonymous access is off elsewhere, so a request without credentials gets
// 401, as kube-apiserver answers with --anonymous-auth=false.
func newAuthenticator(info *genericapiserver.AuthenticationInfo, serving *genericapiserver.SecureServingInfo, opts Options) (authenticator.Request, error) {
	delegated := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserverconfig.AnonymousAuthConfig{Enabled: false},
		APIAudiences:             opts.APIAudiences,
		CacheTTL:                 delegatedCacheTTL,
		WebhookRetryBackoff:      genericoptions.DefaultAuthWebhookRetryBackoff(),
		TokenAccessReviewTimeout: 10 * time.Second,
	}
	configured := false
	if opts.ClientCAFile != "" {
		clientCA, err := dynamiccertificates.NewDynamicCAContentFromFile("issuer-client-ca", opts.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("issuer: client CA: %w", err)
		}
		if err := info.ApplyClientCert(clientCA, serving); err != nil {
			return nil, fmt.Errorf("issuer: client CA: %w", err)
		}
		delegated.ClientCertificateCAContentProvider = clientCA
		configured = true
	}
	if opts.RequestHeader != nil && opts.RequestHeader.ClientCAFile != "" {
		rh, err := opts.RequestHeader.ToAuthenticationRequestHeaderConfig()
		if err != nil {
			return nil, fmt.Errorf("issuer: requestheader: %w", err)
		}
		if err := info.ApplyClientCert(rh.CAContentProvider, serving); err != nil {
			return nil, fmt.Errorf("issuer: requestheader CA: %w", err)
		}
		// The generic server strips these headers after authentication.
		info.RequestHeaderConfig = rh
		delegated.RequestHeaderConfig = rh
		configured = true
	}
	if opts.Kube != nil {
		delegated.TokenAccessReviewClient = opts.Kube.AuthenticationV1()
		configured = true
	}
	chain := []authenticator.Request{bearertoken.New(opts.TokenAuthenticator)}
	if configured {
		d, _, err := delegated.New()
		if err != nil {
			return nil, fmt.Errorf("issuer: delegated authentication: %w", err)
		}
		chain = append(chain, d)
	}
	// Every authenticated caller is in system:authenticated, as at kube-apiserver.
	authenticated := group.NewAuthenticatedGroupAdder(union.New(chain...))
	return union.New(authenticated, publicPathAuthenticator{}), nil
}

// newAuthorizer is the built-in policy (admin groups, discovery, public
// paths) and, when cluster-connected, SubjectAccessReview against
// kube-apiserver, so that RBAC decides the rest.
func newAuthorizer(opts Options) (authorizer.Authorizer, error) {
	if opts.Kube == nil {
		return policy{adminGroups: opts.AdminGroups, standalone: true}.authorizer(), nil
	}
	builtin := policy{adminGroups: opts.AdminGroups}.authorizer()
	sar, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: opts.Kube.AuthorizationV1(),
		AllowCacheTTL:             delegatedCacheTTL,
		DenyCacheTTL:              delegatedCacheTTL,
		WebhookRetryBackoff:       genericoptions.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("issuer: delegated authorization: %w", err)
	}
	authz, err := authorizerunion.New(
		authorizerunion.NamedAuthorizer{AuthorizerName: "portcullis-builtin", Authorizer: builtin},
		authorizerunion.NamedAuthorizer{AuthorizerName: "subjectaccessreview", Authorizer: sar},
	)
	if err != nil {
		return nil, fmt.Errorf("issuer: authorization: %w", err)
	}
	return authz, nil
}
