// Command portcullis is the token authority of a Kubernetes cluster: it
// answers kube-apiserver's TokenReview webhook for tokens it minted itself
// and mints them through the TokenRequest API.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/cmd/portcullis/app"
	"portcullis.dev/portcullis/config"
)

const usage = `portcullis: the token authority of a Kubernetes cluster

Usage:
  portcullis init    --dir DIR --hosts localhost,127.0.0.1   write certificates, keys, kubeconfigs and config
  portcullis serve   --config DIR/portcullis.yaml [flags]    answer TokenReviews and serve the issuer API
  portcullis token create NAME -n NS [--audience A] [--duration 1h]   mint a service account token
  portcullis revoke  --jti JTI | --subject USER [--reason R]   revoke tokens
  portcullis vnc NAMESPACE/VM [--duration 1h] [--single-use] [--open] | vnc revoke NAMESPACE/VM   VNC console tokens of a VM (--open: the console page's URL)
  portcullis vnc-proxy --backend kubevirt|map:FILE --webhook-kubeconfig F | --issuer-kubeconfig F --issuer ISS [flags]   VNC console websocket proxy
  portcullis verify --vm NAMESPACE/VM [--kubeconfig webhook.kubeconfig] TOKEN   is TOKEN good for the VM? (exit status)
  portcullis keys list | rotate [--algorithm A] [--now] | retire KID | prune [KID…]   manage signing keys
  portcullis version

Each command takes --help.
`

// errSilent fails the command after it printed why.
var errSilent = errors.New("")

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, pflag.ErrHelp) && !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "portcullis:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, args := args[0], args[1:]
	fs := pflag.NewFlagSet("portcullis "+cmd, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	switch cmd {
	case "init":
		o := app.NewInitOptions()
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return app.RunInit(o, stdout, clock.RealClock{}, rand.Reader)
	case "serve":
		cfg, err := serveConfig(fs, args)
		if err != nil {
			return err
		}
		log := app.NewLogger(stderr, cfg.Log)
		srv, err := app.NewServer(cfg, log, clock.RealClock{}, rand.Reader)
		if err != nil {
			return err
		}
		return srv.Run(ctx)
	case "token":
		if len(args) == 0 || args[0] != "create" {
			return errors.New("usage: portcullis token create NAME -n NS [--audience A] [--duration 1h]")
		}
		o := &app.TokenCreateOptions{}
		o.AddFlags(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("token create: give exactly one service account name")
		}
		return app.RunTokenCreate(ctx, o, fs.Arg(0), stdout)
	case "revoke":
		o := &app.RevokeOptions{}
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return app.RunRevoke(ctx, o, stdout)
	case "vnc":
		o := &app.VNCOptions{}
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return app.RunVNC(ctx, o, fs.Args(), stdout)
	case "vnc-proxy":
		o := &app.VNCProxyOptions{}
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		log := app.NewLogger(stderr, config.Log{Level: o.Log})
		p, err := app.NewVNCProxy(ctx, o, log, log.With("log", "audit"), clock.RealClock{})
		if err != nil {
			return err
		}
		log.Info("vnc-proxy serving", "address", p.Addr().String())
		return p.Run(ctx)
	case "verify":
		o := &app.VerifyOptions{}
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: portcullis verify --vm NAMESPACE/VM TOKEN")
		}
		err := app.RunVerify(ctx, o, fs.Arg(0), stdout)
		if errors.Is(err, app.ErrRefused) {
			return errSilent
		}
		return err
	case "keys":
		o := &app.KeysOptions{}
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return app.RunKeys(ctx, o, fs.Args(), stdout)
	case "version":
		fmt.Fprintln(stdout, app.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// serveConfig reads --config first, then parses every flag over it, so that
// flags win over the file and the file over the defaults.
func serveConfig(fs *pflag.FlagSet, args []string) (*config.Config, error) {
	probe := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	probe.ParseErrorsAllowlist.UnknownFlags = true
	probe.SetOutput(io.Discard)
	path := probe.String("config", "", "")
	probe.Usage = func() {}
	_ = probe.Parse(args)

	cfg := config.Default()
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			return nil, err
		}
	}
	fs.String("config", *path, "Config file (YAML, "+config.APIVersion+" "+config.Kind+"); flags override it.")
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return cfg, nil
}
