package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/token"
)

// VerifyOptions are `portcullis verify`'s flags.
type VerifyOptions struct {
	WebhookKubeconfig string
	VM                string
	Audience          string
}

// AddFlags binds the options to fs.
func (o *VerifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.WebhookKubeconfig, "kubeconfig", "webhook.kubeconfig", "kubeconfig of Portcullis' webhook (init writes webhook.kubeconfig).")
	fs.StringVar(&o.VM, "vm", "", "NAMESPACE/NAME of the VM the token must open.")
	fs.StringVar(&o.Audience, "audience", token.VNCAudience, "VNC audience.")
}

// ErrRefused is returned by RunVerify when the token is not good for the VM.
var ErrRefused = errors.New("refused")

// RunVerify checks that token opens the VM's console and prints one line
// saying so or why not; a refusal returns ErrRefused (exit status 1).
func RunVerify(ctx context.Context, o *VerifyOptions, token string, out io.Writer) error {
	ns, vm, ok := strings.Cut(o.VM, "/")
	if !ok || ns == "" || vm == "" {
		return fmt.Errorf("verify: --vm %q is not NAMESPACE/NAME", o.VM)
	}
	c, err := vncproxy.New(vncproxy.Config{WebhookKubeconfig: o.WebhookKubeconfig, Audience: o.Audience})
	if err != nil {
		return err
	}
	defer c.Close()
	switch err := c.Check(ctx, strings.TrimSpace(token), ns, vm); {
	case err == nil:
		fmt.Fprintf(out, "ok: the token opens the VNC console of %s\n", o.VM)
		return nil
	case errors.Is(err, vncproxy.ErrNotAuthenticated), errors.Is(err, vncproxy.ErrOtherVM):
		fmt.Fprintf(out, "refused: %s\n", strings.TrimPrefix(err.Error(), "vncproxy: "))
		return ErrRefused
	default:
		return err
	}
}
