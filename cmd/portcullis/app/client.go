package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
)

// ClientOptions locate the issuer API, as kubectl does.
type ClientOptions struct {
	Kubeconfig string
	Context    string
}

// AddFlags binds the options to fs.
func (o *ClientOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the issuer API (init writes admin.kubeconfig); default as kubectl finds it.")
	fs.StringVar(&o.Context, "context", o.Context, "kubeconfig context to use.")
}

func (o *ClientOptions) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "portcullis"
	return cfg, nil
}

// TokenCreateOptions are `portcullis token create`'s flags.
type TokenCreateOptions struct {
	ClientOptions
	Namespace string
	Audiences []string
	Duration  time.Duration
}

// AddFlags binds the options to fs.
func (o *TokenCreateOptions) AddFlags(fs *pflag.FlagSet) {
	o.ClientOptions.AddFlags(fs)
	fs.StringVarP(&o.Namespace, "namespace", "n", "default", "Namespace of the service account.")
	fs.StringSliceVar(&o.Audiences, "audience", nil, "Audiences of the token (default: the issuer's API audiences).")
	fs.DurationVar(&o.Duration, "duration", time.Hour, "Lifetime of the token (at least 10m).")
}

// RunTokenCreate mints a service account token through the TokenRequest API
// and prints it.
func RunTokenCreate(ctx context.Context, o *TokenCreateOptions, name string, out io.Writer) error {
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	seconds := int64(o.Duration / time.Second)
	tr, err := client.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: o.Audiences, ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, tr.Status.Token)
	return nil
}

// RevokeOptions are `portcullis revoke`'s flags.
type RevokeOptions struct {
	ClientOptions
	JTI     string
	Subject string
	Reason  string
}

// AddFlags binds the options to fs.
func (o *RevokeOptions) AddFlags(fs *pflag.FlagSet) {
	o.ClientOptions.AddFlags(fs)
	fs.StringVar(&o.JTI, "jti", "", "Revoke the one token with this id.")
	fs.StringVar(&o.Subject, "subject", "", "Revoke every token of this username minted until now.")
	fs.StringVar(&o.Reason, "reason", "", "Why, for the audit trail.")
}

// RunRevoke creates a Revocation through the issuer API and prints its name.
func RunRevoke(ctx context.Context, o *RevokeOptions, out io.Writer) error {
	if (o.JTI == "") == (o.Subject == "") {
		return fmt.Errorf("revoke: give exactly one of --jti and --subject")
	}
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	spec := map[string]any{"reason": o.Reason}
	if o.JTI != "" {
		spec["jti"] = o.JTI
	} else {
		spec["subject"] = o.Subject
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.SchemeGroupVersion.String(),
		"kind":       "Revocation",
		"metadata":   map[string]any{"generateName": "revoke-"},
		"spec":       spec,
	}}
	created, err := client.Resource(v1alpha1.SchemeGroupVersion.WithResource("revocations")).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "revocation.%s/%s created\n", v1alpha1.GroupName, created.GetName())
	return nil
}
