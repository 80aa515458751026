package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
)

// VNCOptions are `portcullis vnc`'s flags.
type VNCOptions struct {
	ClientOptions
	Duration string
	// SingleUse mints a token that opens one console session.
	SingleUse bool
	// Open prints the console page's URL, the token in its fragment.
	Open bool
	// ConsoleURL is vnc-proxy's base URL, for Open.
	ConsoleURL string
}

// AddFlags binds the options to fs.
func (o *VNCOptions) AddFlags(fs *pflag.FlagSet) {
	o.ClientOptions.AddFlags(fs)
	fs.StringVar(&o.Duration, "duration", "", "Lifetime of the token, Go syntax (default 10m, at least 10m unless the server allows less).")
	fs.BoolVar(&o.SingleUse, "single-use", false, "Mint a token that opens at most one console session (the proxy claims it at the issuer).")
	fs.BoolVar(&o.Open, "open", false, "Print the URL of the VM's console page on vnc-proxy, with the token in the URL fragment (which browsers do not send to servers), instead of the bare token.")
	fs.StringVar(&o.ConsoleURL, "console-url", os.Getenv("PORTCULLIS_CONSOLE_URL"), "vnc-proxy's base URL for --open, e.g. https://console.example:8443 (default $PORTCULLIS_CONSOLE_URL).")
}

// consolePageURL is the console page of VM ns/vm on the vnc-proxy at base.
func consolePageURL(base, ns, vm string) (string, error) {
	if base == "" {
		return "", errors.New("vnc: --open needs vnc-proxy's URL: set --console-url or PORTCULLIS_CONSOLE_URL")
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("vnc: --console-url %q is not an https://HOST[:PORT][/PATH] URL (vnc-proxy serves only TLS)", base)
	}
	return strings.TrimSuffix(u.String(), "/") + "/console/" + url.PathEscape(ns) + "/" + url.PathEscape(vm), nil
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
		return errors.New("usage: portcullis vnc NAMESPACE/VM [--duration 1h] [--single-use] [--open --console-url URL] | portcullis vnc revoke NAMESPACE/VM")
	}
	ns, vm, ok := strings.Cut(args[0], "/")
	if !ok || ns == "" || vm == "" {
		return fmt.Errorf("vnc: %q is not NAMESPACE/VM", args[0])
	}
	var page string
	if o.Open {
		if method == http.MethodDelete {
			return errors.New("vnc: --open is for minting a token, not for revoke")
		}
		var err error
		if page, err = consolePageURL(o.ConsoleURL, ns, vm); err != nil {
			return err
		}
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
	if method == http.MethodGet {
		q := url.Values{}
		if o.Duration != "" {
			q.Set("duration", o.Duration)
		}
		if o.SingleUse {
			q.Set("singleUse", "true")
		}
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
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
	if page != "" {
		fmt.Fprintln(out, page+"#token="+answer.Token)
		return nil
	}
	fmt.Fprintln(out, answer.Token)
	return nil
}
