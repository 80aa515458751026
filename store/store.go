package store

import (
	"context"
	"errors"
	"time"
)

// Errors that are part of the Store contract. Backends wrap them with %w.
var (
	// ErrNotFound is returned when no record or revocation matches.
	ErrNotFound = errors.New("store: not found")
	// ErrExists is returned when a record or revocation with the same key is
	// already stored.
	ErrExists = errors.New("store: already exists")
	// ErrClosed is returned by a store that was closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalidContinue is returned for a continue token that does not
	// belong to the listing it is given to.
	ErrInvalidContinue = errors.New("store: invalid continue token")
	// ErrLimit is returned by a create that CreateOptions.MaxHeld refuses.
	ErrLimit = errors.New("store: limit reached")
)

// Kind says which front door minted a token.
type Kind string

// The token kinds.
const (
	// KindServiceAccount tokens come from the TokenRequest front door.
	KindServiceAccount Kind = "serviceaccount"
	// KindUser tokens are users' own API tokens (ext.cattle.io Token).
	KindUser Kind = "user"
	// KindVNC tokens open one VM's VNC console (token.kubevirt.io).
	KindVNC Kind = "vnc"
)

// BoundObject is the object a token is bound to (TokenRequest's boundObjectRef).
type BoundObject struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
}

// Record is what the store knows about one minted token. The token value is
// never part of it.
type Record struct {
	// JTI is the token's unique id, the record's key.
	JTI string `json:"jti"`
	// Kind is the front door that minted the token.
	Kind Kind `json:"kind"`
	// Subject is the username the token authenticates as.
	Subject string `json:"subject"`
	// UID is the user's uid in the review answer.
	UID string `json:"uid,omitempty"`
	// Groups are the user's groups in the review answer.
	Groups []string `json:"groups,omitempty"`
	// Extra is the user's extra information in the review answer.
	Extra map[string][]string `json:"extra,omitempty"`
	// Audiences are the token's audiences.
	Audiences []string `json:"audiences"`
	// KeyID is the kid of the key that signed the token.
	KeyID string `json:"kid"`
	// IssuedAt is when the token was minted, at full precision.
	IssuedAt time.Time `json:"issuedAt"`
	// ExpiresAt is when the token dies; the store's expiry wins over the token's.
	ExpiresAt time.Time `json:"expiresAt"`
	// Binding is the object the token is bound to, if any.
	Binding *BoundObject `json:"binding,omitempty"`
	// ServiceAccount is the ServiceAccount the token belongs to, with the
	// uid it had at minting (cluster-connected TokenRequest tokens): the
	// token dies with it.
	ServiceAccount *BoundObject `json:"serviceAccount,omitempty"`
	// RevokedAt is set once the token was revoked by its jti.
	RevokedAt *time.Time `json:"revokedAt,omitempty"`

	// User is set for user tokens (KindUser): what their API shows and
	// edits. Other kinds leave it nil.
	User *UserToken `json:"user,omitempty"`
}

// UserToken is the part of a user token's record that its API manages.
type UserToken struct {
	// Name is the token's unique API name (token-…); records are indexed by it.
	Name string `json:"name"`
	// UID is the API object's uid.
	UID string `json:"uid"`
	// Description is free text.
	Description string `json:"description,omitempty"`
	// TokenKind is "session" for login tokens, anything else derived.
	TokenKind string `json:"tokenKind,omitempty"`
	// TTL is the lifetime from IssuedAt; ExpiresAt follows it.
	TTL time.Duration `json:"ttl"`
	// Disabled tokens are refused.
	Disabled bool `json:"disabled,omitempty"`
	// DisabledBy is who disabled the token, and DisabledByAdmin whether
	// they did so as an admin: then only an admin may enable it again.
	DisabledBy      string `json:"disabledBy,omitempty"`
	DisabledByAdmin bool   `json:"disabledByAdmin,omitempty"`
	// LastUpdated is when the token was created or last edited.
	LastUpdated time.Time `json:"lastUpdated"`
	// LastUsedAt is when the token last authenticated (minute precision).
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	// Generation counts edits; it is the object's resourceVersion.
	Generation int64 `json:"generation"`
	// Labels and Annotations are the API object's.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Scope says what a revocation applies to.
type Scope string

// The revocation scopes.
const (
	// ScopeJTI revokes one token.
	ScopeJTI Scope = "jti"
	// ScopeSubject revokes every token of a subject minted at or before the
	// revocation.
	ScopeSubject Scope = "subject"
)

// Revocation is a durable revocation: of one token (by jti) or of every token
// of a subject minted up to its creation (a "not before" mark).
type Revocation struct {
	// Name identifies the revocation.
	Name string `json:"name"`
	// UID is a unique id given when the revocation was stored.
	UID string `json:"uid"`
	// Scope says what Target names.
	Scope Scope `json:"scope"`
	// Target is the jti or the subject.
	Target string `json:"target"`
	// Reason is the free-text reason given by the caller.
	Reason string `json:"reason,omitempty"`
	// RevokedBy is the username of the caller.
	RevokedBy string `json:"revokedBy,omitempty"`
	// Created is when the revocation took effect. Subject tokens issued at or
	// before it are revoked.
	Created time.Time `json:"created"`
	// ExpiresAt, when set, is when the revocation may be purged because nothing
	// it revokes can still be valid (a jti revocation ends with its record).
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// ListOptions filters record listings and pages through them. A listing
// reads only its own range of an index: by kind and subject when Kind is
// set (with or without Subject), by signing key when KeyID is set. Subject
// without Kind, or no filter, reads every record.
type ListOptions struct {
	// Subject, when set, keeps only the records of that subject.
	Subject string
	// Kind, when set, keeps only the records of that kind.
	Kind Kind
	// KeyID, when set, keeps only the records of tokens that key signed.
	KeyID string
	// Limit, when positive, is the most records one call returns; Continue
	// of the answer then resumes after them.
	Limit int64
	// Continue is the Continue of the previous page, to read the next one.
	Continue string
}

// Matches reports whether r passes the filter.
func (o ListOptions) Matches(r *Record) bool {
	return (o.Subject == "" || r.Subject == o.Subject) && (o.Kind == "" || r.Kind == o.Kind) && (o.KeyID == "" || r.KeyID == o.KeyID)
}

// CreateOptions are the conditions a CreateRecord holds to.
type CreateOptions struct {
	// MaxHeld, when positive, refuses the record with ErrLimit if the store
	// already holds MaxHeld records of its Kind and Subject, expired or not
	// (purge the subject's expired records first). The count and the write
	// are one atomic step: of concurrent creates, only as many pass as the
	// bound leaves room for.
	MaxHeld int
}

// RecordList is one page of a listing.
type RecordList struct {
	// Items are the page's records, in the order of the index read.
	Items []*Record
	// Continue, when not empty, reads the next page.
	Continue string
}

// Store is the revocation and TTL store. Every method is safe for concurrent
// use. A write that returns nil is durable (fsync or quorum) before it returns.
type Store interface {
	// CreateRecord stores a new record. ErrExists if its jti, or the name of
	// its user token, is taken; ErrLimit if opts.MaxHeld refuses it.
	CreateRecord(ctx context.Context, r *Record, opts CreateOptions) error
	// GetRecord returns the record with jti, or ErrNotFound.
	GetRecord(ctx context.Context, jti string) (*Record, error)
	// GetRecordByName returns the user token record named name, or ErrNotFound.
	GetRecordByName(ctx context.Context, name string) (*Record, error)
	// UpdateRecord applies update to the record with jti atomically and
	// stores the result: ErrNotFound if there is none; an error from update
	// aborts and is returned as is. update may run more than once and must
	// not change JTI or the user token's Name.
	UpdateRecord(ctx context.Context, jti string, update func(*Record) error) (*Record, error)
	// DeleteRecord deletes the record with jti: ErrNotFound if there is none.
	// A deleted token is refused like one that never existed.
	DeleteRecord(ctx context.Context, jti string) error
	// ListRecords returns the records that match opts, a page at a time
	// when opts.Limit is set, reading only the index range opts selects.
	// ErrInvalidContinue for a Continue this listing did not make.
	ListRecords(ctx context.Context, opts ListOptions) (*RecordList, error)
	// Revoke stores rev. For ScopeJTI the record must exist (ErrNotFound
	// otherwise); it is marked revoked and rev expires with it. ErrExists if a
	// revocation with rev.Name exists. Revoking a token twice is allowed: the
	// record keeps the first RevokedAt.
	Revoke(ctx context.Context, rev *Revocation) error
	// GetRevocation returns the revocation named name, or ErrNotFound.
	GetRevocation(ctx context.Context, name string) (*Revocation, error)
	// ListRevocations returns every stored revocation, in no set order.
	ListRevocations(ctx context.Context) ([]*Revocation, error)
	// PurgeExpired deletes records whose ExpiresAt is before now, the
	// revocations whose ExpiresAt is before now, and every subject mark
	// but the newest of its subject (see SupersededMarks); it says how many
	// records went.
	PurgeExpired(ctx context.Context, now time.Time) (int, error)
	// KeyRings holds the signing key ring.
	KeyRings
	// Ready returns nil when the store can answer reads and writes.
	Ready(ctx context.Context) error
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// SupersededMarks returns the subject revocations that a newer mark of the
// same subject makes redundant: the newest mark refuses every token an
// older one does, so only it is kept. Of two marks made at the same
// instant the one with the greater name is kept.
func SupersededMarks(revs []*Revocation) []*Revocation {
	newest := map[string]*Revocation{}
	for _, r := range revs {
		if r.Scope != ScopeSubject {
			continue
		}
		cur, ok := newest[r.Target]
		if !ok || r.Created.After(cur.Created) || (r.Created.Equal(cur.Created) && r.Name > cur.Name) {
			newest[r.Target] = r
		}
	}
	var out []*Revocation
	for _, r := range revs {
		if r.Scope == ScopeSubject && newest[r.Target] != r {
			out = append(out, r)
		}
	}
	return out
}

// EventType says what an Event reports.
type EventType int

// The event types.
const (
	// EventSynced is the first event: the watch is established, and every
	// change after it will be reported. Read the state after it.
	EventSynced EventType = iota
	// EventRevocation: a revocation was stored.
	EventRevocation
	// EventRecordChanged: a record was updated (not created).
	EventRecordChanged
	// EventRecordDeleted: a record was deleted.
	EventRecordDeleted
	// EventProgress: nothing was missed up to now (sent at least every
	// ProgressInterval while the watch is healthy).
	EventProgress
)

// ProgressInterval is how often a healthy watch sends EventProgress.
const ProgressInterval = time.Second

// Event is a change made through any replica.
type Event struct {
	Type       EventType
	Revocation *Revocation // EventRevocation
	Record     *Record     // EventRecordChanged
	JTI        string      // EventRecordChanged, EventRecordDeleted
}

// Watcher is implemented by stores whose changes other replicas must see.
type Watcher interface {
	// Watch reports changes until ctx is done or the watch breaks, then
	// closes the channel: watch again and re-read the state.
	Watch(ctx context.Context) (<-chan Event, error)
}
