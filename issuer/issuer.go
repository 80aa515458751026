package issuer

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
)

// RecordWriter is where minted tokens are recorded (the cache, which writes
// through to the store).
type RecordWriter interface {
	CreateRecord(ctx context.Context, r *store.Record, opts store.CreateOptions) error
}

// Request is what a front door asks the core to mint.
type Request struct {
	// Kind is the front door.
	Kind store.Kind
	// Subject is the username the token authenticates as (the sub claim).
	Subject string
	// UID, Groups and Extra are the rest of the identity in review answers.
	UID    string
	Groups []string
	Extra  map[string][]string
	// Audiences are the token's audiences; at least one.
	Audiences []string
	// Lifetime is how long the token lives from now (its exp claim).
	Lifetime time.Duration
	// RecordLifetime, when set, is the record's (shorter) lifetime: the
	// store's expiry wins, and an admin may later move it up to Lifetime.
	RecordLifetime time.Duration
	// User is the API state of a user token (KindUser).
	User *store.UserToken
	// Binding is the object the token is bound to, if any.
	Binding *store.BoundObject
	// ServiceAccount is the ServiceAccount a TokenRequest token belongs
	// to, with its uid (cluster-connected mode).
	ServiceAccount *store.BoundObject
	// Kubernetes is the kubernetes.io claim (service account and VNC tokens).
	Kubernetes *token.Kubernetes
	// Name is a user token's API name, written in the private claim.
	Name string
	// DryRun signs nothing and records nothing; the answer has no value.
	DryRun bool
	// Stateless tokens are not recorded: their identity travels in the
	// signed claims, and they can be revoked only by subject marks and keys
	// (VNC tokens: per VM). No store write per token.
	Stateless bool
	// SingleUse marks a VNC token that opens at most one console session.
	SingleUse bool
	// MaxHeld, when positive, is how many records of Kind and Subject the
	// store may hold: the record is refused with store.ErrLimit beyond it,
	// in the same atomic step as its write.
	MaxHeld int
}

// Token is a minted token and what was recorded about it.
type Token struct {
	// Value is the compact JWS. Never log or store it.
	Value string
	// Record is what the store holds for the token.
	Record *store.Record
}

// Errors returned by Mint.
var (
	// ErrInvalidRequest means the request cannot be minted as it is.
	ErrInvalidRequest = errors.New("issuer: invalid request")
)

// Minter signs tokens with the ring's active key and records them.
type Minter struct {
	issuer  string
	ring    *keys.Ring
	records RecordWriter
	clock   clock.PassiveClock
	rand    io.Reader
	onMint  func(ctx context.Context, r *store.Record)
}

// OnMint has f told of every token minted (not dry runs), for metrics and
// audit. Call it before serving.
func (m *Minter) OnMint(f func(ctx context.Context, r *store.Record)) { m.onMint = f }

// NewMinter returns a Minter that writes iss as issuer. clk and random are
// the injected time and randomness sources.
func NewMinter(iss string, ring *keys.Ring, records RecordWriter, clk clock.PassiveClock, random io.Reader) *Minter {
	return &Minter{issuer: iss, ring: ring, records: records, clock: clk, rand: random}
}

// Issuer returns the iss value of minted tokens.
func (m *Minter) Issuer() string { return m.issuer }

// Mint signs a token for req and records it; the record is durable before
// Mint returns the token.
func (m *Minter) Mint(ctx context.Context, req Request) (*Token, error) {
	if req.Subject == "" || len(req.Audiences) == 0 || req.Lifetime <= 0 {
		return nil, fmt.Errorf("%w: subject, audiences and a positive lifetime are required", ErrInvalidRequest)
	}
	key, err := m.ring.Signer()
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	now := m.clock.Now()
	jti, err := m.newJTI(now)
	if err != nil {
		return nil, err
	}
	exp := now.Add(req.Lifetime)
	recordExp := exp
	if req.RecordLifetime > 0 && req.RecordLifetime < req.Lifetime {
		recordExp = now.Add(req.RecordLifetime)
	}
	rec := &store.Record{
		JTI:       jti,
		Kind:      req.Kind,
		Subject:   req.Subject,
		UID:       req.UID,
		Groups:    req.Groups,
		Extra:     req.Extra,
		Audiences: req.Audiences,
		KeyID:     key.ID,
		IssuedAt:  now,
		ExpiresAt: recordExp,
		Binding:   req.Binding,
		User:      req.User,

		ServiceAccount: req.ServiceAccount,
	}
	if req.DryRun {
		return &Token{Record: rec}, nil
	}
	private := key.Private()
	if private == nil {
		return nil, fmt.Errorf("issuer: key %s: %w", key.ID, keys.ErrSealed)
	}
	claims := token.Claims{
		Issuer:     m.issuer,
		Subject:    req.Subject,
		Audience:   req.Audiences,
		Expiry:     token.NumericDate(exp),
		IssuedAt:   token.NumericDate(now),
		NotBefore:  token.NumericDate(now),
		ID:         jti,
		Private:    token.Private{Kind: string(req.Kind), Name: req.Name, SingleUse: req.SingleUse},
		Kubernetes: req.Kubernetes,
	}
	if req.Stateless {
		claims.Private.Stateless = true
		claims.Private.IssuedAt = token.FormatIssuedAt(now)
		claims.Private.Groups = req.Groups
		claims.Private.Extra = req.Extra
		if b := req.Binding; b != nil {
			claims.Private.Binding = &token.Binding{APIVersion: b.APIVersion, Kind: b.Kind, Namespace: b.Namespace, Name: b.Name, UID: b.UID}
		}
	}
	payload, err := claims.Encode()
	if err != nil {
		return nil, fmt.Errorf("issuer: encode claims: %w", err)
	}
	hdr := jws.NewHeaders()
	for k, v := range map[string]any{jws.KeyIDKey: key.ID, jws.TypeKey: "JWT"} {
		if err := hdr.Set(k, v); err != nil {
			return nil, fmt.Errorf("issuer: header %s: %w", k, err)
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(key.Algorithm, private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return nil, fmt.Errorf("issuer: sign: %w", err)
	}
	if !req.Stateless {
		if err := m.records.CreateRecord(ctx, rec, store.CreateOptions{MaxHeld: req.MaxHeld}); err != nil {
			return nil, fmt.Errorf("issuer: record token %s: %w", jti, err)
		}
	}
	if m.onMint != nil {
		m.onMint(ctx, rec)
	}
	return &Token{Value: string(signed), Record: rec}, nil
}

// jtiEncoding is base64url's alphabet in byte order, so that encoded jtis
// sort as their bytes do.
var jtiEncoding = base64.NewEncoding("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz").WithPadding(base64.NoPadding)

// newJTI returns a jti that sorts by minting time: 48 bits of milliseconds
// since the epoch, then 80 random bits (the layout of a version 7 UUID,
// without its version bits). Records are keyed by jti, so a store's B+trees
// take new tokens at their right edge, a page or two a commit, instead of
// one random page per token in each of them.
func (m *Minter) newJTI(now time.Time) (string, error) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := io.ReadFull(m.rand, b[6:]); err != nil {
		return "", fmt.Errorf("issuer: jti: %w", err)
	}
	return jtiEncoding.EncodeToString(b[:]), nil
}
