package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// RingFile is the file in a key directory that lists the keys and their states.
const RingFile = "ring.json"

// ringManifest is the on-disk form of a ring: states and metadata. Private
// keys live in one file each beside it, named <kid>.jwk, mode 0600.
type ringManifest struct {
	Keys []manifestEntry `json:"keys"`
}

type manifestEntry struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	State     State     `json:"state"`
	Created   time.Time `json:"created"`
	PromoteAt time.Time `json:"promoteAt,omitzero"`
	DemotedAt time.Time `json:"demotedAt,omitzero"`
	RetiredAt time.Time `json:"retiredAt,omitzero"`
}

// LoadDir reads the ring kept in dir.
func LoadDir(dir string) ([]*Key, error) {
	data, err := os.ReadFile(filepath.Join(dir, RingFile))
	if err != nil {
		return nil, fmt.Errorf("keys: read ring: %w", err)
	}
	var m ringManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("keys: parse %s: %w", RingFile, err)
	}
	var keys []*Key
	var errs []error
	for _, e := range m.Keys {
		k, err := loadKey(dir, e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

func loadKey(dir string, e manifestEntry) (*Key, error) {
	alg, err := ParseAlgorithm(e.Algorithm)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, e.ID+".jwk")
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: key %q: %w", e.ID, err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: key file %s has mode %o, expected 0600", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: key %q: %w", e.ID, err)
	}
	priv, err := jwk.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("keys: parse %s: %w", path, err)
	}
	k, err := fromPrivate(priv, alg, e.State, e.Created)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	k.PromoteAt, k.DemotedAt, k.RetiredAt = e.PromoteAt, e.DemotedAt, e.RetiredAt
	if k.ID != e.ID {
		return nil, fmt.Errorf("keys: %s holds key %q, expected %q", path, k.ID, e.ID)
	}
	return k, nil
}

// SaveDir writes keys into dir: each private key as <kid>.jwk (0600, written
// once), then the manifest, replaced atomically. Key files of keys no
// longer in the ring are removed after the manifest.
func SaveDir(dir string, keys []*Key) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	m := ringManifest{}
	for _, k := range keys {
		path := filepath.Join(dir, k.ID+".jwk")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			data, err := json.Marshal(k.Private())
			if err != nil {
				return fmt.Errorf("keys: encode %q: %w", k.ID, err)
			}
			if err := writeFileAtomic(path, data, 0o600); err != nil {
				return err
			}
		}
		m.Keys = append(m.Keys, manifestEntry{ID: k.ID, Algorithm: k.Algorithm.String(), State: k.State, Created: k.Created,
			PromoteAt: k.PromoteAt, DemotedAt: k.DemotedAt, RetiredAt: k.RetiredAt})
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("keys: encode ring: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, RingFile), append(data, '\n'), 0o600); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.jwk"))
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for _, f := range files {
		kid := strings.TrimSuffix(filepath.Base(f), ".jwk")
		if !slices.ContainsFunc(keys, func(k *Key) bool { return k.ID == kid }) {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("keys: remove pruned key: %w", err)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so a crash leaves the old file or the new one, never half.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keys: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keys: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}

// DefaultAlgorithm is the algorithm new keys use unless told otherwise.
var DefaultAlgorithm = jwa.ES256
