package app

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// servedSerial is the serial of the certificate a listener presents.
func servedSerial(t *testing.T, h *harness, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.caPool(), ServerName: "127.0.0.1", Certificates: h.clientCert(webhookClientBase)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func (h *harness) clientCert(base string) []tls.Certificate {
	h.t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(h.dir, base+".crt"), filepath.Join(h.dir, base+".key"))
	if err != nil {
		h.t.Fatal(err)
	}
	return []tls.Certificate{c}
}

// TestServingCertificateReload replaces the serving certificate files (from
// the same CA, as kube-apiserver's webhook kubeconfig needs) and checks both
// listeners present the new one without a restart, and the expiry metric
// follows.
func TestServingCertificateReload(t *testing.T) {
	h := startServer(t, nil)
	before := servedSerial(t, h, h.srv.WebhookAddr().String())
	expBefore := scrape(t, h, "portcullis_serving_certificate_expiry_timestamp_seconds")

	next, err := issueCert(certSpec{commonName: "portcullis", hosts: []string{"127.0.0.1", "localhost"},
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, validFor: 2 * leafValidity}, h.loadCA(), rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Replace key and certificate by rename, as a Secret update does.
	for name, data := range map[string][]byte{servingBase + ".key": next.kpem, servingBase + ".crt": next.pem} {
		tmp := filepath.Join(h.dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(h.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	want := next.cert.SerialNumber.String()
	for range 200 {
		if servedSerial(t, h, h.srv.WebhookAddr().String()) == want && servedSerial(t, h, h.srv.IssuerAddr().String()) == want {
			if exp := scrape(t, h, "portcullis_serving_certificate_expiry_timestamp_seconds"); exp <= expBefore {
				t.Fatalf("expiry metric %v did not follow the new certificate (was %v)", exp, expBefore)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("still serving the old certificate (serial %s, want %s)", before, want)
}
