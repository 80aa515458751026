package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	toolscache "k8s.io/client-go/tools/cache"

	etcdstore "portcullis.dev/portcullis/store/etcd"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/issuer/tokenrequest"
	"portcullis.dev/portcullis/issuer/tokens"
	"portcullis.dev/portcullis/issuer/vnc"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
)

// storeLockTimeout is how long serve waits for another process to let go of
// the bbolt file before giving up.
const storeLockTimeout = 10 * time.Second

// userTokens is what serves the user Token API, nil when the UserTokens
// feature gate is off (the group is then absent from discovery).
func userTokens(cfg *config.Config, c *revocation.Authority) tokens.Records {
	if !cfg.Enabled(config.UserTokens) {
		return nil
	}
	return c
}

// openStore opens the configured store backend.
func openStore(c config.Store) (store.Store, error) {
	if c.Type != config.StoreEtcd {
		return bolt.Open(c.Path, storeLockTimeout)
	}
	cfg := clientv3.Config{
		Endpoints: c.Endpoints, DialTimeout: 10 * time.Second,
		// gRPC's default reconnect backoff grows to two minutes; a token
		// authority must be back within seconds of its store.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	}
	if c.CAFile != "" || c.CertFile != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
		tlsCfg, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("serve: etcd TLS: %w", err)
		}
		cfg.TLS = tlsCfg
	}
	s, err := etcdstore.Dial(cfg, c.Prefix)
	if err != nil {
		return nil, err
	}
	// A store written by a version without record indexes gets them here,
	// once, before this replica serves (about a minute per million records).
	ctx, cancel := context.WithTimeout(context.Background(), indexBuildTimeout)
	defer cancel()
	if err := s.EnsureIndexes(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("serve: index the etcd store: %w", err)
	}
	return s, nil
}

// indexBuildTimeout bounds the one-time indexing of an etcd store.
const indexBuildTimeout = 30 * time.Minute

// kube is the clients of cluster-connected mode.
type kube struct {
	client   kubernetes.Interface
	dynamic  dynamic.Interface
	metadata metadata.Interface
}

// kubeClients returns the clients of cluster-connected mode, nil when standalone.
func kubeClients(cfg *config.Config) (*kube, error) {
	rc, err := cfg.RESTConfig()
	if err != nil || rc == nil {
		return nil, err
	}
	rc.UserAgent = "portcullis/" + Version
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	d, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	m, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &kube{client: c, dynamic: d, metadata: m}, nil
}

// watchBindings starts nothing yet: it sets up the informers that reviews
// check bound tokens against (cluster-connected mode) — every
// ServiceAccount, and the metadata of Pods, Secrets and Nodes (never secret
// data) — and returns what checks them. Each deletion of a <vm>-vnc-access
// ServiceAccount Portcullis created is also written as a durable "not
// before" mark on the VM's identity, so offline verifiers watching
// revocations learn of it too.
func (s *Server) watchBindings(k *kube, log *slog.Logger) authn.Bindings {
	s.informers = informers.NewSharedInformerFactory(k.client, 0)
	s.metadataInformers = metadatainformer.NewSharedInformerFactory(k.metadata, 0)
	sas := s.informers.Core().V1().ServiceAccounts().Informer()
	_, _ = sas.AddEventHandler(vnc.RevokeOnDelete(s.revocations, s.clock, log))
	listers := map[string]toolscache.GenericLister{
		"ServiceAccount": toolscache.NewGenericLister(sas.GetIndexer(), corev1.Resource("serviceaccounts")),
	}
	synced := []toolscache.InformerSynced{sas.HasSynced}
	for kind, gvr := range map[string]schema.GroupVersionResource{
		"Pod":    corev1.SchemeGroupVersion.WithResource("pods"),
		"Secret": tokenrequest.SecretsGVR,
		"Node":   corev1.SchemeGroupVersion.WithResource("nodes"),
	} {
		inf := s.metadataInformers.ForResource(gvr)
		listers[kind] = inf.Lister()
		synced = append(synced, inf.Informer().HasSynced)
	}
	return authn.ObjectBindings{Listers: listers, Synced: func() bool {
		for _, ok := range synced {
			if !ok() {
				return false
			}
		}
		return true
	}}
}
