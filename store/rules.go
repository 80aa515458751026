package store

import "fmt"

// The rules of the contract that do not depend on the backend. Backends
// call them inside their transactions, so both enforce them the same way.

// ApplyUpdate runs update on r, a record read inside the backend's
// transaction, and checks that it changed none of the keys the record is
// found by: the jti, the user token's name, and what the indexes order it
// by (kind, subject, signing key).
func ApplyUpdate(r *Record, update func(*Record) error) error {
	jti, name, kind, subject, kid := r.JTI, UserName(r), r.Kind, r.Subject, r.KeyID
	if err := update(r); err != nil {
		return err
	}
	if r.JTI != jti || UserName(r) != name || r.Kind != kind || r.Subject != subject || r.KeyID != kid {
		return fmt.Errorf("store: update of %q changed its jti, name, kind, subject or signing key", jti)
	}
	return nil
}

// MarkRevoked applies a jti revocation to the record it targets: the
// record keeps the first RevokedAt, and the revocation expires with the
// record. It reports whether the record changed (and must be written).
func MarkRevoked(r *Record, rev *Revocation) bool {
	exp := r.ExpiresAt
	rev.ExpiresAt = &exp
	if r.RevokedAt != nil {
		return false
	}
	at := rev.Created
	r.RevokedAt = &at
	return true
}

// UserName is the API name of a user token's record ("" for other kinds).
func UserName(r *Record) string {
	if r.User == nil {
		return ""
	}
	return r.User.Name
}
