package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
)

// VNCOptions are `portcullis vnc`'s flags.
type VNCOptions struct {
	ClientOptions
	Duration string
}

// AddFlags binds the options to fs.
func (o *VNCOptions) AddFlags(fs *pflag.FlagSet) {
	o.ClientOptions.AddFlags(fs)
	fs.StringVar(&o.Duration, "duration", "", "Lifetime of the token, Go syntax (default 10m, at least 10m unless the server allows less).")
}

// RunVNC runs `portcullis vnc NS/NAME` (print a VNC token for the VM) and
// `portcullis vnc revoke NS/NAME` (revoke every VNC token of the VM), with
// the user's kubeconfig: directly at the issuer or through kube-apiserver.
func RunVNC(ctx context.Context, o *VNCOptions, args []string, out io.Writer) error {
	method := http.MethodGet
	if len(args) == 2 && args[0] == "revoke" {
		method, args = http.MethodDelete, args[1:]
	}
	if len(args) != 1 {
		return errors.New("usage: portcullis vnc NAMESPACE/VM [--duration 1h] | portcullis vnc revoke NAMESPACE/VM")
	}
	ns, vm, ok := strings.Cut(args[0], "/")
	if !ok || ns == "" || vm == "" {
		return fmt.Errorf("vnc: %q is not NAMESPACE/VM", args[0])
	}
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(cfg.Host, "/") + "/apis/token.kubevirt.io/v1/namespaces/" + url.PathEscape(ns) + "/virtualmachines/" + url.PathEscape(vm) + "/vnc"
	if o.Duration != "" && method == http.MethodGet {
		u += "?duration=" + url.QueryEscape(o.Duration)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var answer struct {
		Token   string `json:"token"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &answer)
	if resp.StatusCode != http.StatusOK {
		if answer.Message == "" {
			answer.Message = strings.TrimSpace(string(body))
		}
		return fmt.Errorf("vnc: %s: %s", resp.Status, answer.Message)
	}
	if method == http.MethodDelete {
		fmt.Fprintln(out, answer.Message)
		return nil
	}
	fmt.Fprintln(out, answer.Token)
	return nil
}
