package vncproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	tokenfmt "portcullis.dev/portcullis/token"
)

// ErrClaimed: the single-use token was claimed before (it opened a session).
var ErrClaimed = errors.New("vncproxy: single-use token already used")

// Claims uses up single-use VNC tokens at the issuer: it creates a
// portcullis.dev/v1alpha1 TokenClaim, which succeeds once per token across
// every proxy and Portcullis replica (the claim is in Portcullis' store).
type Claims struct {
	client   *http.Client
	url      string
	audience string
}

// NewClaims returns a client of the issuer API at cfg (its identity needs
// create on tokenclaims.portcullis.dev); audience is the VNC audience.
func NewClaims(cfg *rest.Config, audience string) (*Claims, error) {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	if audience == "" {
		audience = tokenfmt.VNCAudience
	}
	return &Claims{client: client, url: strings.TrimSuffix(cfg.Host, "/") + "/apis/portcullis.dev/v1alpha1/tokenclaims", audience: audience}, nil
}

// Claim claims token: nil the first time, ErrClaimed after,
// ErrNotAuthenticated when the issuer finds the token not good (or not
// single-use), another error when it could not answer.
func (c *Claims) Claim(ctx context.Context, token string) error {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "portcullis.dev/v1alpha1", "kind": "TokenClaim",
		"spec": map[string]string{"token": token, "audience": c.audience},
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("vncproxy: claim: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		return nil
	case http.StatusConflict:
		return ErrClaimed
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return ErrNotAuthenticated
	}
	var st metav1.Status
	if json.Unmarshal(answer, &st) == nil && st.Message != "" {
		return fmt.Errorf("vncproxy: claim: %s: %s", resp.Status, st.Message)
	}
	return fmt.Errorf("vncproxy: claim: %s", resp.Status)
}
