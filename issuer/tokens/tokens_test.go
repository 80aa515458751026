package tokens

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/issuer"
	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	"portcullis.dev/portcullis/store"
)

// memRecords is an in-memory Records: the front door's own logic is under
// test here, the store contract has its own conformance suite.
type memRecords struct {
	mu   sync.Mutex
	recs map[string]*store.Record
	err  error // every call fails with it when set
	// afterList, when set, runs at the end of a listing, under the lock.
	afterList func()
}

func newMemRecords() *memRecords { return &memRecords{recs: map[string]*store.Record{}} }

func (m *memRecords) CreateRecord(_ context.Context, r *store.Record, opts store.CreateOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if opts.MaxHeld > 0 && m.countLocked(r.Kind, r.Subject) >= opts.MaxHeld {
		return store.ErrLimit
	}
	m.recs[r.JTI] = r
	return nil
}

func (m *memRecords) countLocked(kind store.Kind, subject string) int {
	n := 0
	for _, r := range m.recs {
		if r.Kind == kind && r.Subject == subject {
			n++
		}
	}
	return n
}

func (m *memRecords) GetRecordByName(_ context.Context, name string) (*store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	for _, r := range m.recs {
		if r.User != nil && r.User.Name == name {
			c := *r
			u := *r.User
			c.User = &u
			return &c, nil
		}
	}
	return nil, store.ErrNotFound
}

func (m *memRecords) ListRecords(_ context.Context, opts store.ListOptions) (*store.RecordList, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	out := &store.RecordList{}
	for _, r := range m.recs {
		if opts.Matches(r) {
			out.Items = append(out.Items, r)
		}
	}
	if m.afterList != nil {
		m.afterList()
	}
	return out, nil
}

func (m *memRecords) UpdateRecord(_ context.Context, jti string, update func(*store.Record) error) (*store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	r, ok := m.recs[jti]
	if !ok {
		return nil, store.ErrNotFound
	}
	c := *r
	u := *r.User
	c.User = &u
	if err := update(&c); err != nil {
		return nil, err
	}
	m.recs[jti] = &c
	return &c, nil
}

func (m *memRecords) DeleteRecord(_ context.Context, jti string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if _, ok := m.recs[jti]; !ok {
		return store.ErrNotFound
	}
	delete(m.recs, jti)
	return nil
}

func (m *memRecords) count(owner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.recs {
		if r.Subject == owner {
			n++
		}
	}
	return n
}

// recordingMinter records like the minting core, without signing.
type recordingMinter struct {
	records *memRecords
	clock   *testingclock.FakeClock
	n       int
}

func (m *recordingMinter) Mint(ctx context.Context, req issuer.Request) (*issuer.Token, error) {
	m.n++
	now := m.clock.Now()
	exp := now.Add(req.Lifetime)
	if req.RecordLifetime > 0 {
		exp = now.Add(req.RecordLifetime)
	}
	rec := &store.Record{JTI: "jti-" + string(rune('a'+m.n%26)) + time.Duration(m.n).String(), Kind: req.Kind, Subject: req.Subject,
		IssuedAt: now, ExpiresAt: exp, User: req.User}
	if err := m.records.CreateRecord(ctx, rec, store.CreateOptions{MaxHeld: req.MaxHeld}); err != nil {
		return nil, err
	}
	return &issuer.Token{Value: "value", Record: rec}, nil
}

// adminsGroup is who the fake authorizer treats as admins.
const adminsGroup = "admins"

type fixture struct {
	rest    *REST
	records *memRecords
	clock   *testingclock.FakeClock
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	recs := newMemRecords()
	authz := authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if slices.Contains(a.GetUser().GetGroups(), adminsGroup) {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	})
	return &fixture{rest: New(&recordingMinter{records: recs, clock: clk}, recs, authz, opts, clk, rand.Reader), records: recs, clock: clk}
}

func as(name string, groups ...string) context.Context {
	return genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: name, Groups: groups})
}

func (f *fixture) create(t *testing.T, ctx context.Context, tok *extv1.Token) (*extv1.Token, error) {
	t.Helper()
	out, err := f.rest.Create(ctx, tok, nil, &metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return out.(*extv1.Token), nil
}

func (f *fixture) update(ctx context.Context, name string, change func(*extv1.Token)) error {
	cur, err := f.rest.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return err
	}
	tok := cur.(*extv1.Token).DeepCopyObject().(*extv1.Token)
	change(tok)
	_, _, err = f.rest.Update(ctx, name, rest.DefaultUpdatedObjectInfo(tok), nil, nil, false, &metav1.UpdateOptions{})
	return err
}

func statusCode(err error) int32 {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Code
	}
	return 0
}

// TestStoreErrorsStayInTheLog: store failures answer 503 with a generic
// message; the store's own error (a path, an endpoint) stays in the log.
func TestStoreErrorsStayInTheLog(t *testing.T) {
	f := newFixture(t, Options{MaxPerUser: 10})
	f.records.err = errors.New("open /var/lib/portcullis/data/portcullis.db: input/output error")
	alice := as("alice")
	_, createErr := f.create(t, alice, &extv1.Token{})
	_, getErr := f.rest.Get(alice, "token-x", &metav1.GetOptions{})
	_, listErr := f.rest.List(alice, &metainternalversion.ListOptions{})
	for name, err := range map[string]error{"create": createErr, "get": getErr, "list": listErr} {
		if statusCode(err) != http.StatusServiceUnavailable {
			t.Fatalf("%s: %v, want 503", name, err)
		}
		if strings.Contains(err.Error(), "/var/lib") || strings.Contains(err.Error(), "input/output") {
			t.Fatalf("%s: the client is told %q", name, err)
		}
	}
}

// TestMetadataAndDescriptionAreBounded: metadata is validated as
// kube-apiserver validates it, and the description is capped, on create and
// on update.
func TestMetadataAndDescriptionAreBounded(t *testing.T) {
	f := newFixture(t, Options{})
	alice := as("alice")
	ok, err := f.create(t, alice, &extv1.Token{})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		change func(*extv1.Token)
		field  string
	}{
		"a 2 MiB annotation":          {func(t *extv1.Token) { t.Annotations = map[string]string{"a": strings.Repeat("x", 2<<20)} }, "metadata.annotations"},
		"a bad label key":             {func(t *extv1.Token) { t.Labels = map[string]string{"bad key!!": "v"} }, "metadata.labels"},
		"a bad label value":           {func(t *extv1.Token) { t.Labels = map[string]string{"k": "not a value!"} }, "metadata.labels"},
		"a 500 KB description":        {func(t *extv1.Token) { t.Spec.Description = strings.Repeat("d", 500<<10) }, "spec.description"},
		"a description of 1025 chars": {func(t *extv1.Token) { t.Spec.Description = strings.Repeat("é", MaxDescriptionLength+1) }, "spec.description"},
	} {
		t.Run(name, func(t *testing.T) {
			in := &extv1.Token{}
			tc.change(in)
			_, err := f.create(t, alice, in)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("create: %v; want 422 naming %s", err, tc.field)
			}
			if tc.field == "spec.description" && !strings.Contains(err.Error(), "1024") {
				t.Fatalf("create: %v; want the limit said", err)
			}
			if err := f.update(alice, ok.Name, tc.change); !apierrors.IsInvalid(err) {
				t.Fatalf("update: %v; want 422", err)
			}
		})
	}
	if n := f.records.count("alice"); n != 1 {
		t.Fatalf("the store holds %d tokens of alice, want only the valid one", n)
	}
	if _, err := f.create(t, alice, &extv1.Token{Spec: extv1.TokenSpec{Description: strings.Repeat("é", MaxDescriptionLength)}}); err != nil {
		t.Fatalf("a description at the limit: %v", err)
	}
}

// TestPerUserLimitCountsWhatTheStoreHolds: cutting tokens' ttl to 1 ms must
// not let a user hold more than the limit in the store; their expired
// tokens are purged when they create.
func TestPerUserLimitCountsWhatTheStoreHolds(t *testing.T) {
	const limit = 3
	f := newFixture(t, Options{MaxPerUser: limit})
	alice := as("alice")
	for round := range 3 {
		for range limit {
			tok, err := f.create(t, alice, &extv1.Token{})
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if err := f.update(alice, tok.Name, func(t *extv1.Token) { t.Spec.TTL = 1 }); err != nil {
				t.Fatal(err)
			}
		}
		f.clock.Step(time.Second)
		if n := f.records.count("alice"); n > limit {
			t.Fatalf("round %d: the store holds %d tokens of alice, over the limit of %d", round, n, limit)
		}
	}
	for range limit {
		if _, err := f.create(t, alice, &extv1.Token{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.create(t, alice, &extv1.Token{}); !apierrors.IsForbidden(err) {
		t.Fatalf("create over the limit: %v, want 403", err)
	}
}

// TestPerUserLimitHoldsAgainstConcurrentCreates: a token another create
// (on this replica or another) adds between the front door's count and its
// write is counted by the store, which refuses the create over the limit.
func TestPerUserLimitHoldsAgainstConcurrentCreates(t *testing.T) {
	const limit = 2
	f := newFixture(t, Options{MaxPerUser: limit})
	alice := as("alice")
	if _, err := f.create(t, alice, &extv1.Token{}); err != nil {
		t.Fatal(err)
	}
	// The next create counts one token; another lands before its write.
	f.records.afterList = func() {
		f.records.afterList = nil
		f.records.recs["concurrent"] = &store.Record{JTI: "concurrent", Kind: store.KindUser, Subject: "alice",
			ExpiresAt: f.clock.Now().Add(time.Hour), User: &store.UserToken{Name: "token-concurrent"}}
	}
	_, err := f.create(t, alice, &extv1.Token{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create over the limit after a concurrent create: %v, want 403", err)
	}
	if n := f.records.count("alice"); n != limit {
		t.Fatalf("the store holds %d tokens of alice, want the limit, %d", n, limit)
	}
}

// TestAdminDisableSticks: a token an admin disabled stays disabled until an
// admin enables it; what the owner disabled, the owner may enable.
func TestAdminDisableSticks(t *testing.T) {
	f := newFixture(t, Options{})
	alice, admin := as("alice"), as("root", adminsGroup)
	tok, err := f.create(t, alice, &extv1.Token{})
	if err != nil {
		t.Fatal(err)
	}
	setEnabled := func(ctx context.Context, on bool) error {
		return f.update(ctx, tok.Name, func(t *extv1.Token) { t.Spec.Enabled = &on })
	}
	if err := setEnabled(admin, false); err != nil {
		t.Fatal(err)
	}
	if err := setEnabled(alice, true); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "root") {
		t.Fatalf("the owner enabling an admin-disabled token: %v; want 403 naming the admin", err)
	}
	if err := f.update(alice, tok.Name, func(t *extv1.Token) { t.Spec.Description = "still mine" }); err != nil {
		t.Fatalf("the owner editing the description of an admin-disabled token: %v", err)
	}
	if err := setEnabled(admin, true); err != nil {
		t.Fatalf("an admin enabling it: %v", err)
	}
	if err := setEnabled(alice, false); err != nil {
		t.Fatal(err)
	}
	if err := setEnabled(alice, true); err != nil {
		t.Fatalf("the owner enabling what the owner disabled: %v", err)
	}
}
