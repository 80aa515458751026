package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/healthz"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"

	"k8s.io/component-base/compatibility"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/keys"

	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	kubevirtv1 "portcullis.dev/portcullis/issuer/apis/kubevirt/v1"
	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
	"portcullis.dev/portcullis/issuer/claims"
	"portcullis.dev/portcullis/issuer/revocation"
	"portcullis.dev/portcullis/issuer/server/openapi"
	"portcullis.dev/portcullis/issuer/signingkeys"
	"portcullis.dev/portcullis/issuer/tokenrequest"
	"portcullis.dev/portcullis/issuer/tokens"
	"portcullis.dev/portcullis/issuer/vnc"
)

// Options configures the issuer API server.
type Options struct {
	// Listener is the TLS port to serve on.
	Listener net.Listener
	// CertFile and KeyFile are the serving certificate; reloaded when they change.
	CertFile, KeyFile string
	// ClientCAFile verifies x509 client certificates (CN = user, O = groups).
	ClientCAFile string
	// RequestHeader, when set, trusts identities forwarded by a front proxy
	// (kube-apiserver's aggregation layer).
	RequestHeader *genericoptions.RequestHeaderAuthenticationOptions
	// Kube, when set, is cluster-connected mode: other bearer tokens are
	// checked by TokenReview and requests authorized by SubjectAccessReview.
	Kube kubernetes.Interface
	// APIAudiences are the audiences a bearer token must have to call the API.
	APIAudiences []string
	// AdminGroups may use every API.
	AdminGroups []string
	// TokenAuthenticator checks Portcullis' own tokens given as bearer tokens.
	TokenAuthenticator authenticator.Token
	// Minter is the minting core, for the front doors.
	Minter tokenrequest.Minter
	// TokenRequest configures the TokenRequest front door.
	TokenRequest tokenrequest.Options
	// Revoker serves the Revocation API.
	Revoker revocation.Revoker
	// Claims, when set, serves the TokenClaim API (single-use tokens).
	Claims *claims.REST
	// UserTokens, when set, serves the ext.cattle.io user Token API on these records.
	UserTokens tokens.Records
	// UserTokenOptions configures the user Token API.
	UserTokenOptions tokens.Options
	// VNC configures the token.kubevirt.io VNC token API.
	VNC vnc.Options
	// Keys is the key ring's manager: the SigningKey API and the JWKS.
	Keys *keys.Manager
	// Records tells the SigningKey API whether a key's tokens still live.
	Records signingkeys.Records
	// Issuer is the iss of minted tokens, for OIDC discovery.
	Issuer string
	// ReadyChecks must pass for /readyz.
	ReadyChecks []healthz.HealthChecker
	// Version is reported on /version.
	Version string
	// Clock and Rand are the injected time and randomness.
	Clock clock.PassiveClock
	Rand  io.Reader
}

// Server is the issuer's API server.
type Server struct {
	generic *genericapiserver.GenericAPIServer
}

// New assembles the server; Run serves it.
func New(opts Options) (*Server, error) {
	scheme, codecs, err := newScheme()
	if err != nil {
		return nil, err
	}
	cfg := genericapiserver.NewConfig(codecs)
	cfg.EffectiveVersion = compatibility.NewEffectiveVersionFromString(kubeCompatibleVersion, "", "")
	servingCert, err := dynamiccertificates.NewDynamicServingContentFromFiles("issuer-serving-cert", opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("issuer: serving certificate: %w", err)
	}
	cfg.SecureServing = &genericapiserver.SecureServingInfo{
		Listener:      opts.Listener,
		Cert:          servingCert,
		MinTLSVersion: tls.VersionTLS12,
	}
	authn, err := newAuthenticator(&cfg.Authentication, cfg.SecureServing, opts)
	if err != nil {
		return nil, err
	}
	cfg.Authentication.Authenticator = authn
	cfg.Authentication.APIAudiences = opts.APIAudiences
	if cfg.Authorization.Authorizer, err = newAuthorizer(opts); err != nil {
		return nil, err
	}
	cfg.LoopbackClientConfig = &restclient.Config{Host: "https://" + opts.Listener.Addr().String()}
	cfg.ExternalAddress = opts.Listener.Addr().String()
	cfg.ReadyzChecks = append(cfg.ReadyzChecks, opts.ReadyChecks...)
	cfg.HealthzChecks = append(cfg.HealthzChecks, opts.ReadyChecks...)
	namer := openapinamer.NewDefinitionNamer(scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIConfig.Info.Title, cfg.OpenAPIConfig.Info.Version = "Portcullis", opts.Version
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIV3Config.Info.Title, cfg.OpenAPIV3Config.Info.Version = "Portcullis", opts.Version
	cfg.EnableProfiling = false
	cfg.ShutdownDelayDuration = 0
	cfg.RequestTimeout = 60 * time.Second

	generic, err := cfg.Complete(nil).New("portcullis-issuer", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	paramCodec := runtime.NewParameterCodec(scheme)

	legacy := genericapiserver.NewDefaultAPIGroupInfo("", scheme, paramCodec, codecs)
	legacy.VersionedResourcesStorageMap[corev1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"serviceaccounts":       tokenrequest.ServiceAccounts{},
		"serviceaccounts/token": tokenrequest.New(opts.Minter, opts.TokenRequest),
	}
	if err := generic.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &legacy); err != nil {
		return nil, fmt.Errorf("issuer: install /api: %w", err)
	}

	own := genericapiserver.NewDefaultAPIGroupInfo(v1alpha1.GroupName, scheme, paramCodec, codecs)
	own.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"revocations": revocation.New(opts.Revoker, opts.Clock, opts.Rand),
		"signingkeys": signingkeys.New(opts.Keys, opts.Records, opts.Clock),
	}
	if opts.Claims != nil {
		own.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version]["tokenclaims"] = opts.Claims
	}
	if err := generic.InstallAPIGroup(&own); err != nil {
		return nil, fmt.Errorf("issuer: install %s: %w", v1alpha1.GroupName, err)
	}
	kubevirt := genericapiserver.NewDefaultAPIGroupInfo(kubevirtv1.GroupName, scheme, paramCodec, codecs)
	kubevirt.VersionedResourcesStorageMap[kubevirtv1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"virtualmachines":     vnc.VirtualMachines{},
		"virtualmachines/vnc": vnc.New(opts.Minter, opts.Revoker, opts.VNC, opts.Clock, opts.Rand),
	}
	if err := generic.InstallAPIGroup(&kubevirt); err != nil {
		return nil, fmt.Errorf("issuer: install %s: %w", kubevirtv1.GroupName, err)
	}
	if opts.UserTokens != nil {
		ext := genericapiserver.NewDefaultAPIGroupInfo(extv1.GroupName, scheme, paramCodec, codecs)
		ext.VersionedResourcesStorageMap[extv1.SchemeGroupVersion.Version] = map[string]rest.Storage{
			"tokens": tokens.New(opts.Minter, opts.UserTokens, cfg.Authorization.Authorizer, opts.UserTokenOptions, opts.Clock, opts.Rand),
		}
		if err := generic.InstallAPIGroup(&ext); err != nil {
			return nil, fmt.Errorf("issuer: install %s: %w", extv1.GroupName, err)
		}
	}
	// The key documents, unauthenticated (see publicPaths): verifiers may
	// cache them for half the propagation delay, so a new key is fetched
	// before it signs.
	maxAge := opts.Keys.PropagationDelay() / 2
	jwks := keys.JWKSHandler(opts.Keys.Ring(), maxAge)
	generic.Handler.NonGoRestfulMux.Handle(keys.JWKSPath, jwks)
	generic.Handler.NonGoRestfulMux.Handle(keys.WellKnownJWKSPath, jwks)
	generic.Handler.NonGoRestfulMux.Handle(keys.DiscoveryPath, keys.DiscoveryHandler(opts.Issuer, maxAge))
	return &Server{generic: generic}, nil
}

// kubeCompatibleVersion is the Kubernetes API level the issuer's generic
// server reports compatibility with.
const kubeCompatibleVersion = "1.37"

// Run serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	err := s.generic.PrepareRun().RunWithContext(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
