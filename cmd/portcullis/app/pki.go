package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"time"
)

// certKey is a certificate with its private key.
type certKey struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	kpem []byte
}

// certSpec says what certificate to issue.
type certSpec struct {
	commonName   string
	organization []string
	hosts        []string
	isCA         bool
	usages       []x509.ExtKeyUsage
	validFor     time.Duration
}

// issueCert signs spec with parent (nil: self-signed), from the injected
// randomness and time.
func issueCert(spec certSpec, parent *certKey, random io.Reader, now time.Time) (*certKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, fmt.Errorf("init: key for %q: %w", spec.commonName, err)
	}
	serialBytes := make([]byte, 16)
	if _, err := io.ReadFull(random, serialBytes); err != nil {
		return nil, fmt.Errorf("init: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(serialBytes),
		Subject:               pkix.Name{CommonName: spec.commonName, Organization: spec.organization},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(spec.validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           spec.usages,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
	}
	if spec.isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	for _, h := range spec.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(random, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("init: certificate %q: %w", spec.commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &certKey{
		cert: cert, key: key,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		kpem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// write stores the certificate (0644) and its key (0600) as base.crt/base.key.
func (c *certKey) write(base string) error {
	if err := os.WriteFile(base+".crt", c.pem, 0o644); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := os.WriteFile(base+".key", c.kpem, 0o600); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// WriteFile keeps the mode of a file that exists (--force): set it.
	return os.Chmod(base+".key", 0o600)
}
