package token

import (
	"reflect"
	"testing"
	"time"
)

func TestDecodeReadsWhatEncodeWrote(t *testing.T) {
	at := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	c := &Claims{
		Issuer: "https://issuer", Subject: "system:serviceaccount:ns:sa", Audience: Audience{"a1", "a2"},
		Expiry: NumericDate(at.Add(time.Hour)), IssuedAt: NumericDate(at), NotBefore: NumericDate(at), ID: "jti-1",
		Private: Private{
			Kind: KindVNC, Name: "token-a", Stateless: true, SingleUse: true, IssuedAt: FormatIssuedAt(at),
			Groups: []string{"g"}, Extra: map[string][]string{"e": {"v"}},
			Binding: &Binding{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "vm-uid"},
		},
		Kubernetes: &Kubernetes{
			Namespace: "ns", ServiceAccount: &ObjectRef{Name: "sa", UID: "sa-uid"}, Pod: &ObjectRef{Name: "p", UID: "p-uid"},
			Secret: &ObjectRef{Name: "s", UID: "s-uid"}, Node: &ObjectRef{Name: "n", UID: "n-uid"},
		},
	}
	payload, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("decoded claims differ:\n got %+v\nwant %+v", got, c)
	}
}

func TestDecodeReadsASingleStringAudience(t *testing.T) {
	got, err := Decode([]byte(`{"aud":"a1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Audience, Audience{"a1"}) {
		t.Errorf("aud = %q, want [a1]", got.Audience)
	}
}

// A claim is read from its exact name only, and only once: a payload that
// names one twice, or under another case, cannot hide a second value from
// one reader of the token and show it to another.
func TestDecodeRefusesAmbiguousClaims(t *testing.T) {
	for _, payload := range []string{
		`{"sub":"alice","sub":"admin"}`,
		`{"aud":["a"],"aud":["b"]}`,
		`{"portcullis.dev":{"kind":"user","kind":"vnc"}}`,
	} {
		if _, err := Decode([]byte(payload)); err == nil {
			t.Errorf("%s was decoded", payload)
		}
	}
	got, err := Decode([]byte(`{"sub":"alice","SUB":"admin","Jti":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "alice" || got.ID != "" {
		t.Errorf("sub=%q jti=%q: a claim was read under another case", got.Subject, got.ID)
	}
}
