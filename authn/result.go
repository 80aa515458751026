package authn

import (
	"context"
	"io"
	"log/slog"
	"time"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
)

// Reason says why a token was not authenticated. It goes to debug logs and
// metric labels, never to the caller.
type Reason string

// The reasons a token is refused.
const (
	ReasonEmpty          Reason = "empty"
	ReasonTooLarge       Reason = "too_large"
	ReasonMalformed      Reason = "malformed"
	ReasonHeader         Reason = "forbidden_header"
	ReasonAlgorithm      Reason = "algorithm"
	ReasonUnknownKey     Reason = "unknown_key"
	ReasonRetiredKey     Reason = "retired_key"
	ReasonSignature      Reason = "signature"
	ReasonIssuer         Reason = "issuer"
	ReasonAudience       Reason = "audience"
	ReasonExpired        Reason = "expired"
	ReasonNotYetValid    Reason = "not_yet_valid"
	ReasonIssuedInFuture Reason = "issued_in_future"
	ReasonRecordMissing  Reason = "record_missing"
	ReasonRecordMismatch Reason = "record_mismatch"
	ReasonRecordExpired  Reason = "record_expired"
	ReasonRevoked        Reason = "revoked"
	ReasonDisabled       Reason = "disabled"
	ReasonBindingGone    Reason = "binding_gone"
)

// Bindings tells whether the object a token is bound to still exists with
// the uid the token names (cluster-connected mode). An error means it
// cannot tell yet (not synced): the review is then undecided.
type Bindings interface {
	Exists(b *store.BoundObject) (bool, error)
}

// Keys finds the key a token names (keys.Ring).
type Keys interface {
	// VerificationKey returns the key kid, keys.ErrRetiredKey for a
	// retired one, another error for an unknown one.
	VerificationKey(kid string) (*keys.Key, error)
}

// State is the exact state a review decides from (revocation.Authority).
type State interface {
	// Fresh fails while the state may be staler than its bound.
	Fresh() error
	// Record returns a token's record; store.ErrNotFound if it has none.
	Record(ctx context.Context, jti string) (*store.Record, error)
	// Revoked says whether r is revoked.
	Revoked(r *store.Record) (store.Scope, bool, error)
	// Touch notes that a user token authenticated at now.
	Touch(jti string, now time.Time)
}

// Verified is what a signature check proved about a token: the claims the
// review needs afterwards. It is cached so a repeated token skips the crypto,
// so it holds only what a review reads: the issuer was checked and is not
// kept, and the key id and audiences are shared with other entries.
type Verified struct {
	JTI       string
	Subject   string
	KeyID     string
	Audiences []string
	// IssuedAt, NotBefore and Expiry are the token's iat, nbf (0: none) and
	// exp as it carries them, whole seconds since the epoch: a third of the
	// size of a time.Time, in every cached entry.
	IssuedAt, NotBefore, Expiry int64
	// Record is set for stateless tokens, which have no stored record: their
	// identity, built from the claims.
	Record *store.Record
}

// verifiedTimes are a verified token's times as time.Time; NotBefore is
// zero when the token has none.
type verifiedTimes struct{ IssuedAt, NotBefore, Expiry time.Time }

func (v *Verified) times() verifiedTimes {
	t := verifiedTimes{IssuedAt: time.Unix(v.IssuedAt, 0), Expiry: time.Unix(v.Expiry, 0)}
	if v.NotBefore != 0 {
		t.NotBefore = time.Unix(v.NotBefore, 0)
	}
	return t
}

// Result is the outcome of a review that could be decided.
type Result struct {
	// User is set when the token is authenticated.
	User *user.DefaultInfo
	// Audiences is the intersection of the token's and the requested audiences.
	Audiences []string
	// Reason is set when the token is not authenticated.
	Reason Reason
	// JTI is the token's id once its signature verified, for logs.
	JTI string
}

// Authenticated reports whether the token was good.
func (r Result) Authenticated() bool { return r.User != nil }

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// Issuer is the only accepted iss.
	Issuer string
	// APIAudiences are used when a review names no audiences.
	APIAudiences []string
	// Leeway is the allowed clock skew; zero means DefaultLeeway.
	Leeway time.Duration
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
	// Logger gets the reasons for refusals at debug level.
	Logger *slog.Logger
	// Bindings, when set, checks bound objects (cluster-connected mode).
	Bindings Bindings
	// CacheEntries bounds the cache of signature checks (0: cache.DefaultMaxEntries).
	CacheEntries int64
	// Rand is the randomness for the cache's HMAC key; nil means crypto/rand.
	Rand io.Reader
}
