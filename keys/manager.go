package keys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/store"
)

// Errors of the manager's operations.
var (
	// ErrRotationPending means a next key already waits for promotion.
	ErrRotationPending = errors.New("keys: a rotation is already pending")
	// ErrKeyInUse means the key still signs, or tokens it signed still live.
	ErrKeyInUse = errors.New("keys: key is in use")
)

// maxSwapAttempts bounds how often one change is redone after other
// replicas changed the ring first.
const maxSwapAttempts = 10

// LiveTokens reports whether tokens signed by kid may still be valid.
type LiveTokens func(ctx context.Context, kid string) (bool, error)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// Store holds the ring every replica shares.
	Store store.KeyRings
	// Encryption seals private keys before they reach the store.
	Encryption *Encryption
	// Algorithm is the default algorithm of new keys.
	Algorithm jwa.SignatureAlgorithm
	// PropagationDelay is how long a new key is published before it signs,
	// so verifiers that cache the JWKS never meet an unknown kid.
	PropagationDelay time.Duration
	// RotationPeriod rotates the active key when it is this old (0: never).
	RotationPeriod time.Duration
	// Clock and Rand are the injected time and randomness.
	Clock clock.PassiveClock
	Rand  io.Reader
	// Logger gets key changes.
	Logger *slog.Logger
	// Audit, when set, also gets every key change.
	Audit *slog.Logger
}

// Manager changes the ring: rotation, promotion, retirement and pruning.
// The ring lives in the store; every change is a compare-and-swap on the
// stored ring's revision, so of replicas that change it at once exactly
// one succeeds and the others redo their change on the ring it stored (a
// rotation due on N replicas makes one key). Run follows the store's
// watch, so a change made through any replica is in force on all of them.
// Rotation is a step function (Step) stepped by a thin loop, as dex
// rotates keys.
type Manager struct {
	// mu orders this replica's changes and the rings it applies.
	mu       sync.Mutex
	ring     *Ring
	revision int64
	opts     ManagerOptions
	// changed wakes Run when the ring changed, to recompute its timer.
	changed chan struct{}
}

// NewManager manages ring, which Load fills from the store.
func NewManager(ring *Ring, opts ManagerOptions) *Manager {
	if opts.Algorithm == "" {
		opts.Algorithm = DefaultAlgorithm
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{ring: ring, opts: opts, changed: make(chan struct{}, 1)}
}

// Ring is the managed ring.
func (m *Manager) Ring() *Ring { return m.ring }

// PropagationDelay is how long a new key is published before it signs.
func (m *Manager) PropagationDelay() time.Duration { return m.opts.PropagationDelay }

// changedKey logs a key change to the logger and the audit log.
func (m *Manager) changedKey(level slog.Level, msg, event, kid string, attrs ...any) {
	m.opts.Logger.Log(context.Background(), level, msg, append([]any{"kid", kid}, attrs...)...)
	if m.opts.Audit != nil {
		m.opts.Audit.Info("signing key changed", append([]any{"event", event, "kid", kid}, attrs...)...)
	}
}

// Load reads the ring from the store. A store without a ring gets one:
// the keys of importDir when it holds a ring (the key directory of earlier
// versions, imported once), otherwise a new active key. Of replicas that
// start together one stores it; the others load what it stored.
func (m *Manager) Load(ctx context.Context, importDir string) error {
	stored, err := m.opts.Store.GetKeyRing(ctx)
	if err != nil {
		return fmt.Errorf("keys: read the ring: %w", err)
	}
	if len(stored.Keys) > 0 {
		return m.apply(ctx, stored)
	}
	initial, source, err := m.initialKeys(importDir)
	if err != nil {
		return err
	}
	rev, err := m.swap(ctx, initial, 0)
	if errors.Is(err, store.ErrConflict) {
		if stored, err = m.opts.Store.GetKeyRing(ctx); err != nil {
			return fmt.Errorf("keys: read the ring: %w", err)
		}
		return m.apply(ctx, stored)
	}
	if err != nil {
		return err
	}
	m.install(initial, rev)
	for _, k := range initial {
		if source == "imported" {
			m.changedKey(slog.LevelWarn, "signing key imported into the store from the key directory; delete the directory, it holds private keys in the clear",
				"key-imported", k.ID, "state", k.State, "from", importDir)
		} else {
			m.changedKey(slog.LevelInfo, "first signing key created in the store", "key-created", k.ID, "state", k.State)
		}
	}
	return nil
}

// initialKeys are the keys of importDir, or one new active key.
func (m *Manager) initialKeys(importDir string) ([]*Key, string, error) {
	if importDir != "" {
		keys, err := LoadDir(importDir)
		if err == nil && len(keys) > 0 {
			return keys, "imported", nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("keys: import %s: %w", importDir, err)
		}
	}
	k, err := Generate(m.opts.Algorithm, m.opts.Rand, m.opts.Clock.Now())
	if err != nil {
		return nil, "", err
	}
	k.State = StateActive
	k.PromoteAt = k.Created
	return []*Key{k}, "created", nil
}

// swap seals the keys not yet sealed and stores the ring over revision rev.
func (m *Manager) swap(ctx context.Context, keys []*Key, rev int64) (int64, error) {
	ring := &store.KeyRing{Revision: rev}
	for _, k := range keys {
		if k.sealed.Ciphertext == nil {
			sealed, err := seal(ctx, m.opts.Encryption, m.opts.Rand, k)
			if err != nil {
				return 0, err
			}
			k.sealed = sealed
		}
		sk, err := k.stored()
		if err != nil {
			return 0, err
		}
		ring.Keys = append(ring.Keys, sk)
	}
	next, err := m.opts.Store.SwapKeyRing(ctx, ring)
	if err != nil {
		return 0, fmt.Errorf("keys: store the ring: %w", err)
	}
	return next, nil
}

// install makes keys, stored at rev, this replica's ring, unless a newer
// ring is already installed.
func (m *Manager) install(keys []*Key, rev int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev <= m.revision {
		return false
	}
	if err := m.ring.Replace(keys); err != nil {
		m.opts.Logger.Error("a stored key ring is inconsistent; keeping the current one", "revision", rev, "err", err)
		return false
	}
	m.revision = rev
	select {
	case m.changed <- struct{}{}:
	default:
	}
	return true
}

// apply installs a ring read from the store and unseals the keys that sign
// or are about to. A key already in the ring keeps its unsealed private
// half. A failure to unseal is returned but does not undo the ring: public
// keys verify without the key-encryption provider.
func (m *Manager) apply(ctx context.Context, stored *store.KeyRing) error {
	current := map[string]*Key{}
	for _, k := range m.ring.Keys() {
		current[k.ID] = k
	}
	keys := make([]*Key, 0, len(stored.Keys))
	for _, sk := range stored.Keys {
		k, err := fromStored(sk)
		if err != nil {
			return err
		}
		if cur, ok := current[k.ID]; ok {
			k.private = cur.private
		}
		keys = append(keys, k)
	}
	if !m.install(keys, stored.Revision) {
		return nil
	}
	return m.Unseal(ctx)
}

// Refresh reads the stored ring and applies it, for a caller that must see
// a change made through another replica that the watch may not have
// delivered yet (a key rotated through A, retired through B at once).
func (m *Manager) Refresh(ctx context.Context) error {
	stored, err := m.opts.Store.GetKeyRing(ctx)
	if err != nil {
		return fmt.Errorf("keys: read the ring: %w", err)
	}
	return m.apply(ctx, stored)
}

// Unseal unseals the private keys of the active and next keys, the ones
// that sign or will. Run calls it every tick while one is still sealed.
func (m *Manager) Unseal(ctx context.Context) error {
	var errs []error
	for _, k := range m.ring.Keys() {
		if k.State != StateActive && k.State != StateNext {
			continue
		}
		if err := k.unsealWith(ctx, m.opts.Encryption); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cloneKeys copies the ring's keys so they can be changed.
func (m *Manager) cloneKeys() ([]*Key, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Key
	for _, k := range m.ring.Keys() {
		c := *k
		out = append(out, &c)
	}
	return out, m.revision
}

// errNoChange tells update that the change found nothing to do.
var errNoChange = errors.New("keys: nothing to change")

// update applies change to a copy of the ring and stores the result over
// the revision it was made from. When another replica stored a ring first,
// it reads that ring and redoes the change on it.
func (m *Manager) update(ctx context.Context, change func(keys []*Key) ([]*Key, error)) ([]*Key, error) {
	for attempt := 1; ; attempt++ {
		keys, rev := m.cloneKeys()
		keys, err := change(keys)
		if err != nil {
			return nil, err
		}
		next, err := m.swap(ctx, keys, rev)
		if errors.Is(err, store.ErrConflict) && attempt < maxSwapAttempts {
			stored, err := m.opts.Store.GetKeyRing(ctx)
			if err != nil {
				return nil, fmt.Errorf("keys: read the ring: %w", err)
			}
			if err := m.apply(ctx, stored); err != nil {
				m.opts.Logger.Warn("unsealing the signing key failed", "err", err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		m.install(keys, next)
		return keys, nil
	}
}

func find(keys []*Key, state State) *Key {
	for _, k := range keys {
		if k.State == state {
			return k
		}
	}
	return nil
}

// Rotate adds a new key of alg (empty: the default) as the next key. It
// signs after the propagation delay, or at once when now is set (after a
// compromise: verifiers that cache the JWKS may then briefly miss it).
func (m *Manager) Rotate(ctx context.Context, alg jwa.SignatureAlgorithm, now bool) (*Key, error) {
	if alg == "" {
		alg = m.opts.Algorithm
	}
	var added *Key
	_, err := m.update(ctx, func(keys []*Key) ([]*Key, error) {
		if find(keys, StateNext) != nil {
			return nil, ErrRotationPending
		}
		t := m.opts.Clock.Now()
		key, err := m.newKey(alg, t, now)
		if err != nil {
			return nil, err
		}
		added = key
		if now {
			promote(keys, key, t)
		}
		return append(keys, key), nil
	})
	if err != nil {
		return nil, err
	}
	m.changedKey(slog.LevelInfo, "signing key added", "key-added", added.ID, "alg", alg.String(), "state", added.State, "promoteAt", added.PromoteAt)
	return added, nil
}

// newKey generates a next key promoted after the propagation delay, or at
// t when now is set.
func (m *Manager) newKey(alg jwa.SignatureAlgorithm, t time.Time, now bool) (*Key, error) {
	key, err := Generate(alg, m.opts.Rand, t)
	if err != nil {
		return nil, err
	}
	key.PromoteAt = t.Add(m.opts.PropagationDelay)
	if now {
		key.PromoteAt = t
	}
	return key, nil
}

// promote makes next the active key and demotes the active one to verifying.
func promote(keys []*Key, next *Key, now time.Time) {
	for _, k := range keys {
		if k.State == StateActive {
			k.State, k.DemotedAt = StateVerifying, now
		}
	}
	next.State = StateActive
	if next.PromoteAt.After(now) {
		next.PromoteAt = now
	}
}

// Step promotes a next key whose time has come and, with a rotation period,
// starts a rotation when the active key is old enough. It reports whether
// the ring changed. Every replica steps; the compare-and-swap makes each
// change happen once.
func (m *Manager) Step(ctx context.Context, now time.Time) (bool, error) {
	var event *Key
	var promoted bool
	_, err := m.update(ctx, func(keys []*Key) ([]*Key, error) {
		next, active := find(keys, StateNext), find(keys, StateActive)
		switch {
		case next != nil && !now.Before(next.PromoteAt):
			promote(keys, next, now)
			event, promoted = next, true
			return keys, nil
		case next == nil && m.rotationDue(active, now):
			key, err := m.newKey(m.opts.Algorithm, now, false)
			if err != nil {
				return nil, err
			}
			event, promoted = key, false
			return append(keys, key), nil
		}
		return nil, errNoChange
	})
	switch {
	case errors.Is(err, errNoChange):
		return false, nil
	case err != nil:
		return false, err
	case promoted:
		m.changedKey(slog.LevelInfo, "signing key promoted", "key-promoted", event.ID)
	default:
		m.changedKey(slog.LevelInfo, "signing key added", "key-added", event.ID, "alg", event.Algorithm.String(), "state", event.State, "promoteAt", event.PromoteAt, "reason", "rotation period")
	}
	return true, nil
}

func (m *Manager) rotationDue(active *Key, now time.Time) bool {
	return m.opts.RotationPeriod > 0 && active != nil && !now.Before(active.Created.Add(m.opts.RotationPeriod))
}

// nextStep is when Step next has something to do (zero: nothing planned).
func (m *Manager) nextStep() time.Time {
	keys := m.ring.Keys()
	if next := find(keys, StateNext); next != nil {
		return next.PromoteAt
	}
	if active := find(keys, StateActive); active != nil && m.opts.RotationPeriod > 0 {
		return active.Created.Add(m.opts.RotationPeriod)
	}
	return time.Time{}
}

// Retirement is what Retire did.
type Retirement struct {
	// Retired is the retired key.
	Retired *Key
	// Promoted is the key that signs in its place when the active key was
	// retired: the newest next key, or one made for it (nil otherwise).
	Promoted *Key
	// Unreplaced is set when the active key was retired and no key could
	// be made to sign in its place (the key-encryption provider did not
	// answer): minting answers 503 until a rotation succeeds.
	Unreplaced error
	// changed is false when the key was retired already.
	changed bool
}

// Retire refuses every token kid signed, at once and durably. Retiring the
// active key never leaves the ring without a signer when it can be
// helped: the next key is promoted at once, or a new key made and
// promoted. The retirement itself never waits for that: if no key can be
// sealed, the key is retired all the same and Unreplaced says why.
func (m *Manager) Retire(ctx context.Context, kid string) (*Retirement, error) {
	res, err := m.retire(ctx, kid, true)
	if errors.Is(err, ErrSealed) {
		cause := err
		if res, err = m.retire(ctx, kid, false); err == nil {
			res.Unreplaced = cause
		}
	}
	if err != nil {
		return nil, err
	}
	if !res.changed {
		return res, nil
	}
	m.changedKey(slog.LevelWarn, "signing key retired: its tokens are refused", "key-retired", kid)
	switch {
	case res.Promoted != nil:
		m.changedKey(slog.LevelWarn, "the retired key was active: another key signs in its place", "key-promoted", res.Promoted.ID, "replaces", kid)
	case res.Unreplaced != nil:
		m.opts.Logger.Error("the active key was retired and no key could replace it: minting fails until a rotation succeeds", "kid", kid, "err", res.Unreplaced)
	}
	return res, nil
}

func (m *Manager) retire(ctx context.Context, kid string, replace bool) (*Retirement, error) {
	var res *Retirement
	_, err := m.update(ctx, func(keys []*Key) ([]*Key, error) {
		res = &Retirement{}
		i := slices.IndexFunc(keys, func(k *Key) bool { return k.ID == kid })
		if i < 0 {
			return nil, ErrUnknownKey
		}
		k := keys[i]
		res.Retired = k
		if k.State == StateRetired {
			return nil, errNoChange
		}
		res.changed = true
		now := m.opts.Clock.Now()
		wasActive := k.State == StateActive
		k.State, k.RetiredAt = StateRetired, now
		if !wasActive || !replace {
			return keys, nil
		}
		next := find(keys, StateNext)
		if next == nil {
			var err error
			if next, err = m.newKey(m.opts.Algorithm, now, true); err != nil {
				return nil, err
			}
			keys = append(keys, next)
		}
		promote(keys, next, now)
		res.Promoted = next
		return keys, nil
	})
	if errors.Is(err, errNoChange) {
		return res, nil
	}
	return res, err
}

// Prune removes kid from the ring: only a verifying or retired key none of
// whose tokens can still be valid (ErrKeyInUse otherwise).
func (m *Manager) Prune(ctx context.Context, kid string, live LiveTokens) error {
	prunable := func(keys []*Key) (int, error) {
		i := slices.IndexFunc(keys, func(k *Key) bool { return k.ID == kid })
		if i < 0 {
			return 0, ErrUnknownKey
		}
		if s := keys[i].State; s != StateVerifying && s != StateRetired {
			return 0, fmt.Errorf("%w: a %s key cannot be pruned", ErrKeyInUse, s)
		}
		return i, nil
	}
	keys, _ := m.cloneKeys()
	if _, err := prunable(keys); err != nil {
		return err
	}
	inUse, err := live(ctx, kid)
	if err != nil {
		return err
	}
	if inUse {
		return fmt.Errorf("%w: tokens it signed are still valid", ErrKeyInUse)
	}
	if _, err := m.update(ctx, func(keys []*Key) ([]*Key, error) {
		i, err := prunable(keys)
		if err != nil {
			return nil, err
		}
		return slices.Delete(keys, i, i+1), nil
	}); err != nil {
		return err
	}
	m.changedKey(slog.LevelInfo, "signing key pruned", "key-pruned", kid)
	return nil
}

// Run keeps this replica's ring the stored one and steps the rotation
// until ctx is done: it follows the store's watch (after a break, with a
// jittered backoff), steps when a promotion or rotation falls due and at
// least every tick, and retries unsealing while a signing key is sealed.
func (m *Manager) Run(ctx context.Context, tick time.Duration) {
	go m.follow(ctx)
	timer := time.NewTimer(0)
	defer timer.Stop()
	failed := false // a failed step is retried after a tick, not at once
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
		case <-timer.C:
			failed = false
			if _, err := m.Step(ctx, m.opts.Clock.Now()); err != nil && ctx.Err() == nil {
				m.opts.Logger.Error("key rotation step failed", "err", err)
				failed = true
			}
			if err := m.Unseal(ctx); err != nil && ctx.Err() == nil {
				m.opts.Logger.Warn("a signing key is still sealed; minting fails until the key-encryption provider answers", "err", err)
			}
		}
		wait := tick
		if due := m.nextStep(); !due.IsZero() && !failed {
			wait = min(tick, max(due.Sub(m.opts.Clock.Now()), 0))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// watchBackoff spaces the key ring watch's restarts after a break.
var watchBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 8, Cap: 10 * time.Second}

// follow applies every ring stored through any replica.
func (m *Manager) follow(ctx context.Context) {
	backoff := watchBackoff
	for ctx.Err() == nil {
		rings, err := m.opts.Store.WatchKeyRing(ctx)
		if err == nil {
			for ring := range rings {
				backoff = watchBackoff
				if err := m.apply(ctx, ring); err != nil {
					m.opts.Logger.Warn("applying the stored key ring", "revision", ring.Revision, "err", err)
				}
			}
		} else if ctx.Err() == nil {
			m.opts.Logger.Warn("watching the key ring failed", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff.Step()):
		}
	}
}
