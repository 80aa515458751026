package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
)

// KeysOptions are `portcullis keys`' flags.
type KeysOptions struct {
	ClientOptions
	Algorithm string
	Now       bool
}

// AddFlags binds the options to fs.
func (o *KeysOptions) AddFlags(fs *pflag.FlagSet) {
	o.ClientOptions.AddFlags(fs)
	fs.StringVar(&o.Algorithm, "algorithm", "", "rotate: algorithm of the new key (ES256, EdDSA, RS256; default: the server's).")
	fs.BoolVar(&o.Now, "now", false, "rotate: sign with the new key at once, skipping the propagation delay (after a compromise).")
}

// client is the signingkeys resource; the server's warnings (which key
// signs after the active one was retired) are written to out.
func (o *KeysOptions) client(out io.Writer) (dynamic.ResourceInterface, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	cfg.WarningHandler = rest.NewWarningWriter(out, rest.WarningWriterOptions{})
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return c.Resource(v1alpha1.SchemeGroupVersion.WithResource("signingkeys")), nil
}

// RunKeys runs `portcullis keys list | rotate | retire KID | prune [KID…]`.
func RunKeys(ctx context.Context, o *KeysOptions, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: portcullis keys list | rotate [--algorithm A] [--now] | retire KID | prune [KID…]")
	}
	keys, err := o.client(out)
	if err != nil {
		return err
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "list":
		list, err := keys.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
		fmt.Fprintln(w, "KID\tALGORITHM\tSTATE\tCREATED\tPROMOTE AT")
		for _, k := range list.Items {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.GetName(), str(&k, "spec", "algorithm"), str(&k, "status", "state"),
				k.GetCreationTimestamp().UTC().Format("2006-01-02T15:04:05Z"), str(&k, "status", "promoteAt"))
		}
		return w.Flush()
	case "rotate":
		spec := map[string]any{"immediate": o.Now}
		if o.Algorithm != "" {
			spec["algorithm"] = o.Algorithm
		}
		k, err := keys.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.SchemeGroupVersion.String(), "kind": "SigningKey", "spec": spec,
		}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "signing key %s added (%s, %s); it signs from %s\n", k.GetName(), str(k, "spec", "algorithm"), str(k, "status", "state"), str(k, "status", "promoteAt"))
		return nil
	case "retire":
		if len(rest) != 1 {
			return errors.New("usage: portcullis keys retire KID")
		}
		if _, err := keys.Patch(ctx, rest[0], types.MergePatchType, []byte(`{"spec":{"retired":true}}`), metav1.PatchOptions{}); err != nil {
			return err
		}
		fmt.Fprintf(out, "signing key %s retired: every token it signed is refused\n", rest[0])
		return nil
	case "prune":
		return prune(ctx, keys, rest, out)
	}
	return fmt.Errorf("unknown keys command %q", args[0])
}

// prune deletes the named keys, or, with none named, every verifying or
// retired key whose tokens have all expired.
func prune(ctx context.Context, keys dynamic.ResourceInterface, kids []string, out io.Writer) error {
	explicit := len(kids) > 0
	if !explicit {
		list, err := keys.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, k := range list.Items {
			if s := str(&k, "status", "state"); s == "verifying" || s == "retired" {
				kids = append(kids, k.GetName())
			}
		}
	}
	for _, kid := range kids {
		err := keys.Delete(ctx, kid, metav1.DeleteOptions{})
		switch {
		case err == nil:
			fmt.Fprintf(out, "signing key %s pruned\n", kid)
		case apierrors.IsConflict(err) && !explicit:
			fmt.Fprintf(out, "signing key %s kept: %v\n", kid, err)
		default:
			return err
		}
	}
	return nil
}

func str(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, path...)
	return v
}
