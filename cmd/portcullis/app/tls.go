package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// servingCert holds the parsed serving certificate and swaps it when the
// files change, so certificates rotate without a restart.
type servingCert struct {
	content *dynamiccertificates.DynamicCertKeyPairContent
	current atomic.Pointer[tls.Certificate]
}

func newServingCert(certFile, keyFile string) (*servingCert, error) {
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("webhook-serving-cert", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("serve: serving certificate: %w", err)
	}
	s := &servingCert{content: content}
	if err := s.reload(); err != nil {
		return nil, err
	}
	content.AddListener(s)
	return s, nil
}

// Enqueue implements dynamiccertificates.Listener: the files changed.
func (s *servingCert) Enqueue() { _ = s.reload() }

func (s *servingCert) reload() error {
	certPEM, keyPEM := s.content.CurrentCertKeyContent()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("serve: serving certificate: %w", err)
	}
	s.current.Store(&cert)
	return nil
}

// run watches the files until ctx is done.
func (s *servingCert) run(ctx context.Context) { s.content.Run(ctx, 1) }

func (s *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}

// webhookTLS is the webhook listener's TLS: 1.2 or later, a client
// certificate always required and verified against the (reloadable) webhook
// client CA, and its common name checked against allowedNames. There is no
// way to run it without a CA: an unverified certificate would make the
// webhook an oracle for stolen tokens.
func webhookTLS(cert *servingCert, clientCA *dynamiccertificates.DynamicFileCAContent, allowedNames []string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cert.get,
		ClientAuth:     tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("webhook: a client certificate is required")
			}
			leaf := cs.PeerCertificates[0]
			if clientCA == nil {
				return errors.New("webhook: no client CA configured")
			}
			opts, ok := clientCA.VerifyOptions()
			if !ok {
				return errors.New("webhook: client CA not loaded")
			}
			opts.Intermediates = x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := leaf.Verify(opts); err != nil {
				return fmt.Errorf("webhook: client certificate: %w", err)
			}
			if len(allowedNames) > 0 && !slices.Contains(allowedNames, leaf.Subject.CommonName) {
				return fmt.Errorf("webhook: client certificate common name %q is not allowed", leaf.Subject.CommonName)
			}
			return nil
		},
	}
}
