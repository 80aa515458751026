package config

import (
	genericoptions "k8s.io/apiserver/pkg/server/options"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/issuer/tokenrequest"
	"portcullis.dev/portcullis/issuer/tokens"
	"portcullis.dev/portcullis/issuer/vnc"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/token"
)

// Completed is a validated Config as each component takes it: the
// Options/Validate/Complete pattern of k8s.io/apiserver. Fields the
// configuration cannot hold (clocks, randomness, loggers, clients, hooks)
// are left for the wiring to set.
type Completed struct {
	*Config
	Keys         keys.ManagerOptions
	Revocation   revocation.Options
	Verifier     authn.VerifierOptions
	VNC          vnc.Options
	TokenRequest tokenrequest.Options
	UserTokens   tokens.Options
	// RequestHeader is the front proxy's (kube-apiserver aggregation) trust.
	RequestHeader *genericoptions.RequestHeaderAuthenticationOptions
}

// Complete validates c and derives each component's configuration.
func (c *Config) Complete() (*Completed, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	alg, _ := keys.ParseAlgorithm(c.KeyRotation.Algorithm) // validated
	return &Completed{
		Config: c,
		Keys: keys.ManagerOptions{
			Algorithm: alg, PropagationDelay: c.KeyRotation.PropagationDelay.Duration,
			RotationPeriod: c.KeyRotation.Period.Duration,
		},
		Revocation: revocation.Options{
			MaxEntries: c.Cache.MaxEntries, Staleness: c.Cache.Staleness.Duration,
			Shared: c.Store.Type == StoreEtcd, PurgeInterval: c.PurgeInterval.Duration,
			// A subject mark outlives every token it can refuse (leeway included).
			SubjectMarkLifetime: c.LongestTokenLifetime() + token.DefaultLeeway,
		},
		Verifier: authn.VerifierOptions{Issuer: c.Issuer, APIAudiences: c.APIAudiences, CacheEntries: c.Cache.MaxEntries},
		VNC: vnc.Options{
			MinDuration: c.VNC.MinDuration.Duration, MaxDuration: c.VNC.MaxDuration.Duration,
			APIAudiences: c.APIAudiences, Audience: c.VNC.Audience,
		},
		TokenRequest: tokenrequest.Options{APIAudiences: c.APIAudiences, MaxExpiration: c.MaxTokenExpiration.Duration},
		UserTokens: tokens.Options{
			MaxTTL: c.UserTokens.MaxTTL.Duration, MaxPerUser: c.UserTokens.MaxPerUser, APIAudiences: c.APIAudiences,
		},
		RequestHeader: &genericoptions.RequestHeaderAuthenticationOptions{
			ClientCAFile:        c.RequestHeader.ClientCAFile,
			AllowedNames:        c.RequestHeader.AllowedNames,
			UsernameHeaders:     c.RequestHeader.UsernameHeaders,
			UIDHeaders:          c.RequestHeader.UIDHeaders,
			GroupHeaders:        c.RequestHeader.GroupHeaders,
			ExtraHeaderPrefixes: c.RequestHeader.ExtraHeaderPrefixes,
		},
	}, nil
}
