package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"k8s.io/utils/clock"
)

// Errors of the manager's operations.
var (
	// ErrRotationPending means a next key already waits for promotion.
	ErrRotationPending = errors.New("keys: a rotation is already pending")
	// ErrKeyInUse means the key still signs, or tokens it signed still live.
	ErrKeyInUse = errors.New("keys: key is in use")
)

// LiveTokens reports whether tokens signed by kid may still be valid.
type LiveTokens func(ctx context.Context, kid string) (bool, error)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// Dir is the key directory (ring.json and <kid>.jwk files).
	Dir string
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

// changed logs a key change to the logger and the audit log.
func (m *Manager) changed(level slog.Level, msg, event, kid string, attrs ...any) {
	m.opts.Logger.Log(context.Background(), level, msg, append([]any{"kid", kid}, attrs...)...)
	if m.opts.Audit != nil {
		m.opts.Audit.Info("signing key changed", append([]any{"event", event, "kid", kid}, attrs...)...)
	}
}

// Manager changes the ring: rotation, promotion, retirement and pruning,
// stored in the key directory and applied to the ring at once. Rotation is a
// step function (Step) stepped by a thin loop (Run), as dex rotates keys.
type Manager struct {
	mu   sync.Mutex
	ring *Ring
	opts ManagerOptions
	// manifest is the ring.json last loaded by Reload, to skip a reload
	// when nothing changed.
	manifest []byte
}

// NewManager manages ring, whose keys were loaded from opts.Dir.
func NewManager(ring *Ring, opts ManagerOptions) *Manager {
	if opts.Algorithm == "" {
		opts.Algorithm = DefaultAlgorithm
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{ring: ring, opts: opts}
}

// SetAudit has key changes also written to audit. Call it before Run.
func (m *Manager) SetAudit(audit *slog.Logger) { m.opts.Audit = audit }

// Ring is the managed ring.
func (m *Manager) Ring() *Ring { return m.ring }

// PropagationDelay is how long a new key is published before it signs.
func (m *Manager) PropagationDelay() time.Duration { return m.opts.PropagationDelay }

// commit stores keys and makes them the ring. Keys are never changed in
// place: readers may hold the previous snapshot.
func (m *Manager) commit(keys []*Key) error {
	if err := SaveDir(m.opts.Dir, keys); err != nil {
		return err
	}
	return m.ring.Replace(keys)
}

// cloneKeys copies the ring's keys so they can be changed.
func (m *Manager) cloneKeys() []*Key {
	var out []*Key
	for _, k := range m.ring.Keys() {
		c := *k
		out = append(out, &c)
	}
	return out
}

// Rotate adds a new key of alg (empty: the default) as the next key. It
// signs after the propagation delay, or at once when now is set (after a
// compromise: verifiers that cache the JWKS may then briefly miss it).
func (m *Manager) Rotate(alg jwa.SignatureAlgorithm, now bool) (*Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if alg == "" {
		alg = m.opts.Algorithm
	}
	keys := m.cloneKeys()
	if slices.ContainsFunc(keys, func(k *Key) bool { return k.State == StateNext }) {
		return nil, ErrRotationPending
	}
	t := m.opts.Clock.Now()
	key, err := Generate(alg, m.opts.Rand, t)
	if err != nil {
		return nil, err
	}
	key.PromoteAt = t.Add(m.opts.PropagationDelay)
	if now {
		key.PromoteAt = t
	}
	keys = append(keys, key)
	if now {
		promote(keys, key, t)
	}
	if err := m.commit(keys); err != nil {
		return nil, err
	}
	m.changed(slog.LevelInfo, "signing key added", "key-added", key.ID, "alg", alg.String(), "state", key.State, "promoteAt", key.PromoteAt)
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
}

// Step promotes a next key whose time has come and, with a rotation period,
// starts a rotation when the active key is old enough. It reports whether
// the ring changed.
func (m *Manager) Step(now time.Time) (bool, error) {
	m.mu.Lock()
	keys := m.cloneKeys()
	var next, active *Key
	for _, k := range keys {
		switch k.State {
		case StateNext:
			next = k
		case StateActive:
			active = k
		}
	}
	if next != nil && !now.Before(next.PromoteAt) {
		promote(keys, next, now)
		err := m.commit(keys)
		m.mu.Unlock()
		if err != nil {
			return false, err
		}
		m.changed(slog.LevelInfo, "signing key promoted", "key-promoted", next.ID)
		return true, nil
	}
	m.mu.Unlock()
	if next == nil && m.opts.RotationPeriod > 0 && active != nil && !now.Before(active.Created.Add(m.opts.RotationPeriod)) {
		if _, err := m.Rotate("", false); err != nil && !errors.Is(err, ErrRotationPending) {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// Retire refuses every token kid signed, at once and durably. Retiring the
// active key leaves the ring without a signer until a next key is promoted
// (rotate with now first, after a compromise).
func (m *Manager) Retire(kid string) (*Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := m.cloneKeys()
	i := slices.IndexFunc(keys, func(k *Key) bool { return k.ID == kid })
	if i < 0 {
		return nil, ErrUnknownKey
	}
	if keys[i].State != StateRetired {
		keys[i].State, keys[i].RetiredAt = StateRetired, m.opts.Clock.Now()
		if err := m.commit(keys); err != nil {
			return nil, err
		}
		m.changed(slog.LevelWarn, "signing key retired: its tokens are refused", "key-retired", kid)
	}
	return keys[i], nil
}

// Prune removes kid from the ring: only a verifying or retired key none of
// whose tokens can still be valid (ErrKeyInUse otherwise).
func (m *Manager) Prune(ctx context.Context, kid string, live LiveTokens) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := m.cloneKeys()
	i := slices.IndexFunc(keys, func(k *Key) bool { return k.ID == kid })
	if i < 0 {
		return ErrUnknownKey
	}
	if s := keys[i].State; s != StateVerifying && s != StateRetired {
		return fmt.Errorf("%w: a %s key cannot be pruned", ErrKeyInUse, s)
	}
	inUse, err := live(ctx, kid)
	if err != nil {
		return err
	}
	if inUse {
		return fmt.Errorf("%w: tokens it signed are still valid", ErrKeyInUse)
	}
	if err := m.commit(slices.Delete(keys, i, i+1)); err != nil {
		return err
	}
	m.changed(slog.LevelInfo, "signing key pruned", "key-pruned", kid)
	return nil
}

// Reload reads the ring from the key directory, for changes made by another
// process.
func (m *Manager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys, err := LoadDir(m.opts.Dir)
	if err != nil {
		return err
	}
	return m.ring.Replace(keys)
}

// reloadIfChanged reloads the ring when ring.json (through whatever
// symlinks lead to it) differs from the one last loaded.
func (m *Manager) reloadIfChanged() error {
	data, err := os.ReadFile(filepath.Join(m.opts.Dir, RingFile))
	if err != nil {
		return fmt.Errorf("keys: read ring: %w", err)
	}
	m.mu.Lock()
	same := bytes.Equal(data, m.manifest)
	m.mu.Unlock()
	if same {
		return nil
	}
	if err := m.Reload(); err != nil {
		return err
	}
	m.mu.Lock()
	m.manifest = data
	m.mu.Unlock()
	return nil
}

// Run steps the rotation every tick and reloads the ring when the key
// directory changes, until ctx is done. Any event in the directory
// triggers a check, and so does every tick, whether or not the file watch
// works: a Secret volume is updated by kubelet swapping its ..data symlink,
// an event that names neither ring.json nor a key file, and watches can
// miss events.
func (m *Manager) Run(ctx context.Context, tick time.Duration) {
	watcher, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	if err == nil {
		defer watcher.Close()
		if err := watcher.Add(m.opts.Dir); err == nil {
			events = watcher.Events
		} else {
			m.opts.Logger.Warn("cannot watch the key directory; reloading on each tick", "err", err)
		}
	}
	reload := func() {
		if err := m.reloadIfChanged(); err != nil {
			m.opts.Logger.Warn("reloading the key ring failed; keeping the current one", "err", err)
		}
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			reload()
		case <-t.C:
			reload()
			if _, err := m.Step(m.opts.Clock.Now()); err != nil {
				m.opts.Logger.Error("key rotation step failed", "err", err)
			}
		}
	}
}
