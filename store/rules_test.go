package store

import (
	"errors"
	"testing"
	"time"
)

func TestApplyUpdateRefusesChangesToKeys(t *testing.T) {
	for name, update := range map[string]func(*Record) error{
		"jti":       func(r *Record) error { r.JTI = "other"; return nil },
		"user name": func(r *Record) error { r.User.Name = "token-b"; return nil },
		"no user":   func(r *Record) error { r.User = nil; return nil },
		"kind":      func(r *Record) error { r.Kind = KindVNC; return nil },
		"subject":   func(r *Record) error { r.Subject = "bob"; return nil },
		"key":       func(r *Record) error { r.KeyID = "k2"; return nil },
	} {
		r := &Record{JTI: "j", Kind: KindUser, Subject: "alice", KeyID: "k1", User: &UserToken{Name: "token-a"}}
		if err := ApplyUpdate(r, update); err == nil {
			t.Errorf("%s: an update changing it was allowed", name)
		}
	}
	r := &Record{JTI: "j", User: &UserToken{Name: "token-a"}}
	if err := ApplyUpdate(r, func(r *Record) error { r.User.Disabled = true; return nil }); err != nil || !r.User.Disabled {
		t.Fatalf("a plain update: %v", err)
	}
	boom := errors.New("boom")
	if err := ApplyUpdate(r, func(*Record) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("the update's own error: %v", err)
	}
}

func TestMarkRevokedKeepsTheFirstMark(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	r := &Record{JTI: "j", ExpiresAt: t0.Add(time.Hour)}
	first := &Revocation{Scope: ScopeJTI, Target: "j", Created: t0}
	if !MarkRevoked(r, first) || !r.RevokedAt.Equal(t0) || !first.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("first revocation: record %+v, revocation expires %v", r, first.ExpiresAt)
	}
	second := &Revocation{Scope: ScopeJTI, Target: "j", Created: t0.Add(time.Minute)}
	if MarkRevoked(r, second) || !r.RevokedAt.Equal(t0) || !second.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("second revocation changed the mark: %+v", r)
	}
}
