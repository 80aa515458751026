package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unique"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/cache"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
	tokenfmt "portcullis.dev/portcullis/token"
)

// MaxTokenBytes is the largest token looked at; larger ones are refused
// before any parsing.
const MaxTokenBytes = tokenfmt.MaxBytes

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = tokenfmt.DefaultLeeway

// Verifier checks tokens: signature, claims, then the exact store state.
type Verifier struct {
	opts   VerifierOptions
	ring   Keys
	state  State
	log    *slog.Logger
	keyer  *cache.Keyer
	tokens *cache.Cache[*Verified]
}

var _ authenticator.Token = (*Verifier)(nil)

// NewVerifier returns a Verifier of the tokens signed by ring's keys,
// deciding from state.
func NewVerifier(ring Keys, state State, opts VerifierOptions) (*Verifier, error) {
	if opts.Leeway == 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	// Cached entries share this slice: the caller's cannot change it.
	opts.APIAudiences = slices.Clone(opts.APIAudiences)
	keyer, err := cache.NewKeyer(opts.Rand)
	if err != nil {
		return nil, err
	}
	tokens, err := cache.New[*Verified](opts.CacheEntries)
	if err != nil {
		return nil, err
	}
	return &Verifier{opts: opts, ring: ring, state: state, log: opts.Logger, keyer: keyer, tokens: tokens}, nil
}

// Close stops the cache of signature checks.
func (v *Verifier) Close() { v.tokens.Close() }

// CacheStats returns the counters of the cache of signature checks.
func (v *Verifier) CacheStats() cache.Stats { return v.tokens.Stats() }

// WaitCache blocks until pending cache writes are applied; for benchmarks
// that need a warm cache.
func (v *Verifier) WaitCache() { v.tokens.Wait() }

// AuthenticateToken implements authenticator.Token for the issuer's own API:
// audiences come from the request context.
func (v *Verifier) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	auds, _ := authenticator.AudiencesFrom(ctx)
	res, err := v.Review(ctx, token, auds)
	if err != nil {
		return nil, false, err
	}
	if !res.Authenticated() {
		return nil, false, nil
	}
	return &authenticator.Response{User: res.User, Audiences: res.Audiences}, true, nil
}

// header is the part of the JOSE header that is looked at. Fields that
// would make the token name its own trust (jku, x5u, jwk, x5c), demand
// extensions (crit) or change what is signed (b64, RFC 7797) are only
// checked for presence.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	JKU  json.RawMessage `json:"jku"`
	X5U  json.RawMessage `json:"x5u"`
	JWK  json.RawMessage `json:"jwk"`
	X5C  json.RawMessage `json:"x5c"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

// Review decides a token for the requested audiences (none: the API
// audiences). The error is set only when the token could not be decided
// (the store did not answer); a bad token is a Result with a Reason.
func (v *Verifier) Review(ctx context.Context, token string, requested []string) (Result, error) {
	if len(requested) == 0 {
		requested = v.opts.APIAudiences
	}
	res, err := v.review(ctx, token, requested)
	if err != nil {
		v.log.DebugContext(ctx, "review undecided", "jti", res.JTI, "err", err)
		return Result{}, err
	}
	if !res.Authenticated() {
		v.log.DebugContext(ctx, "token refused", "reason", res.Reason, "jti", res.JTI)
	}
	return res, nil
}

func (v *Verifier) review(ctx context.Context, token string, requested []string) (Result, error) {
	switch {
	case token == "":
		return Result{Reason: ReasonEmpty}, nil
	case len(token) > MaxTokenBytes:
		return Result{Reason: ReasonTooLarge}, nil
	}
	key := v.keyer.Key(token)
	verified, hit := v.tokens.Get(key)
	if hit {
		// The signature was checked before; the key may have been retired since.
		if _, err := v.ring.VerificationKey(verified.KeyID); err != nil {
			return Result{Reason: keyReason(err), JTI: verified.JTI}, nil
		}
	} else {
		var reason Reason
		verified, reason = v.verify(token)
		if reason != "" {
			res := Result{Reason: reason}
			if verified != nil {
				res.JTI = verified.JTI
			}
			return res, nil
		}
	}
	res := Result{JTI: verified.JTI}
	now := v.opts.Clock.Now()
	if reason := v.checkTimes(verified, now); reason != "" {
		res.Reason = reason
		return res, nil
	}
	res.Audiences = intersect(verified.Audiences, requested)
	if len(res.Audiences) == 0 {
		res.Reason = ReasonAudience
		return res, nil
	}
	// A replica that fell behind its store decides nothing, and does not
	// wait on a store that cannot answer.
	if err := v.state.Fresh(); err != nil {
		return res, fmt.Errorf("authn: %w", err)
	}
	var rec *store.Record
	var err error
	if verified.Record != nil {
		rec = verified.Record
	} else {
		rec, err = v.state.Record(ctx, verified.JTI)
	}
	if errors.Is(err, store.ErrNotFound) {
		res.Reason = ReasonRecordMissing
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("authn: record %s: %w", verified.JTI, err)
	}
	if rec.Subject != verified.Subject || rec.KeyID != verified.KeyID {
		res.Reason = ReasonRecordMismatch
		return res, nil
	}
	// The store's expiry wins: it may be shorter than the token's exp. It is
	// the authority's own clock, so no leeway.
	if !now.Before(rec.ExpiresAt) {
		res.Reason = ReasonRecordExpired
		return res, nil
	}
	// The ServiceAccount and the object the token is bound to must still
	// exist with the uids recorded at minting. Without a way to look them
	// up (standalone) such a token cannot be vouched for: refused.
	for _, b := range []*store.BoundObject{rec.ServiceAccount, rec.Binding} {
		if b == nil {
			continue
		}
		if v.opts.Bindings == nil {
			res.Reason = ReasonBindingGone
			return res, nil
		}
		switch ok, err := v.opts.Bindings.Exists(b); {
		case err != nil:
			return res, fmt.Errorf("authn: bound object: %w", err)
		case !ok:
			res.Reason = ReasonBindingGone
			return res, nil
		}
	}
	if rec.User != nil && rec.User.Disabled {
		res.Reason = ReasonDisabled
		return res, nil
	}
	if _, revoked, err := v.state.Revoked(rec); err != nil {
		return res, fmt.Errorf("authn: revocation state: %w", err)
	} else if revoked {
		res.Reason = ReasonRevoked
		return res, nil
	}
	if !hit {
		// The subjects are equal (checked above): the cached entry shares
		// the record's copy rather than holding one of its own.
		verified.Subject = rec.Subject
		v.tokens.Set(key, verified, time.Unix(verified.Expiry, 0).Sub(now))
	}
	if rec.Kind == store.KindUser {
		v.state.Touch(rec.JTI, now)
	}
	res.User = userFor(rec)
	return res, nil
}

// verify checks everything that needs no store: shape, header, key,
// signature, issuer and the presence of the claims. Cheap before expensive:
// the issuer is checked on the unverified payload before the signature.
func (v *Verifier) verify(token string) (*Verified, Reason) {
	// More than three segments fail below: a payload segment holding a
	// dot is not base64url.
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first <= 0 || last == first || last == len(token)-1 {
		return nil, ReasonMalformed
	}
	var h header
	if raw, err := base64.RawURLEncoding.DecodeString(token[:first]); err != nil || json.Unmarshal(raw, &h) != nil {
		return nil, ReasonMalformed
	}
	if h.JKU != nil || h.X5U != nil || h.JWK != nil || h.X5C != nil || h.Crit != nil || h.B64 != nil {
		return nil, ReasonHeader
	}
	alg, ok := allowedAlgorithm(h.Alg)
	if !ok {
		return nil, ReasonAlgorithm
	}
	// WARNING: not verified yet; only used to refuse foreign issuers early.
	rawPayload, err := base64.RawURLEncoding.DecodeString(token[first+1 : last])
	if err != nil {
		return nil, ReasonMalformed
	}
	p, err := tokenfmt.Decode(rawPayload)
	if err != nil {
		return nil, ReasonMalformed
	}
	if p.Issuer != v.opts.Issuer {
		return nil, ReasonIssuer
	}
	key, err := v.ring.VerificationKey(h.Kid)
	if err != nil {
		return nil, keyReason(err)
	}
	if key.Algorithm != alg {
		return nil, ReasonAlgorithm
	}
	// The header is already parsed and checked above, so jwx checks only the
	// signature over the signing input: the very bytes the payload was
	// decoded from.
	sig, err := base64.RawURLEncoding.DecodeString(token[last+1:])
	if err != nil {
		return nil, ReasonSignature
	}
	if err := signatureVerifiers[alg].Verify([]byte(token[:last]), sig, key.RawPublic()); err != nil {
		return nil, ReasonSignature
	}
	if p.Subject == "" || p.ID == "" || p.Expiry == nil || p.IssuedAt == nil || len(p.Audience) == 0 {
		return &Verified{JTI: p.ID}, ReasonMalformed
	}
	vt := &Verified{
		JTI:       p.ID,
		Subject:   p.Subject,
		KeyID:     key.ID,
		Audiences: v.sharedAudiences(p.Audience),
		IssuedAt:  *p.IssuedAt,
		Expiry:    *p.Expiry,
	}
	if p.NotBefore != nil {
		vt.NotBefore = *p.NotBefore
	}
	if p.Private.Stateless {
		issued, err := tokenfmt.ParseIssuedAt(p.Private.IssuedAt)
		if err != nil {
			return vt, ReasonMalformed
		}
		vt.Record = &store.Record{
			JTI: p.ID, Kind: store.Kind(p.Private.Kind), Subject: p.Subject, Groups: p.Private.Groups, Extra: p.Private.Extra,
			Audiences: vt.Audiences, KeyID: key.ID, IssuedAt: issued, ExpiresAt: tokenfmt.Time(p.Expiry), Binding: boundObject(p.Private.Binding),
		}
	}
	return vt, ""
}

func (v *Verifier) checkTimes(vt *Verified, now time.Time) Reason {
	leeway := v.opts.Leeway
	t := vt.times()
	switch {
	case now.After(t.Expiry.Add(leeway)):
		return ReasonExpired
	case !t.NotBefore.IsZero() && now.Add(leeway).Before(t.NotBefore):
		return ReasonNotYetValid
	case now.Add(leeway).Before(t.IssuedAt):
		return ReasonIssuedInFuture
	}
	return ""
}

func keyReason(err error) Reason {
	if errors.Is(err, keys.ErrRetiredKey) {
		return ReasonRetiredKey
	}
	return ReasonUnknownKey
}

// signatureVerifiers holds jwx's verifier of each allowed algorithm; they
// are stateless.
var signatureVerifiers = func() map[jwa.SignatureAlgorithm]jws.Verifier {
	m := make(map[jwa.SignatureAlgorithm]jws.Verifier, len(keys.Algorithms))
	for _, alg := range keys.Algorithms {
		v, err := jws.NewVerifier(alg)
		if err != nil {
			panic(fmt.Sprintf("authn: jwx has no verifier for %s: %v", alg, err))
		}
		m[alg] = v
	}
	return m
}()

func allowedAlgorithm(name string) (jwa.SignatureAlgorithm, bool) {
	for _, alg := range keys.Algorithms {
		if alg.String() == name {
			return alg, true
		}
	}
	return "", false
}

// boundObject is a stateless token's binding as the store names objects.
func boundObject(b *tokenfmt.Binding) *store.BoundObject {
	if b == nil {
		return nil
	}
	return &store.BoundObject{APIVersion: b.APIVersion, Kind: b.Kind, Namespace: b.Namespace, Name: b.Name, UID: b.UID}
}

// sharedAudiences returns the API audiences' own slice when list equals it,
// as most tokens' audiences do, so that the cached entries of those tokens
// hold one list between them; any other list with each audience interned.
func (v *Verifier) sharedAudiences(list []string) []string {
	if slices.Equal(list, v.opts.APIAudiences) {
		return v.opts.APIAudiences
	}
	return internAll(list)
}

// internAll replaces each string of list by its canonical copy: the few
// distinct audiences are then held once, not once per cached token.
func internAll(list []string) []string {
	for i, s := range list {
		list[i] = unique.Make(s).Value()
	}
	return list
}

// intersect returns the audiences in both lists, in the order of want.
func intersect(have, want []string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(have, w) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// userFor builds the review answer's user from the record: the store, not
// the token, is the authority on identity.
func userFor(r *store.Record) *user.DefaultInfo {
	extra := make(map[string][]string, len(r.Extra)+1)
	for k, v := range r.Extra {
		extra[k] = v
	}
	extra[tokenfmt.CredentialIDExtra] = []string{"JTI=" + r.JTI}
	return &user.DefaultInfo{Name: r.Subject, UID: r.UID, Groups: r.Groups, Extra: extra}
}
