package vnc

import (
	"context"
	"errors"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/store"
)

// RevokeOnDelete is the ServiceAccount informer handler that turns the
// deletion of a <vm>-vnc-access ServiceAccount Portcullis created into a
// durable "not before" mark on the VM's identity. Reviews already refuse
// the VM's tokens once the ServiceAccount is gone (they are bound to it);
// the mark is what offline verifiers, which watch revocations, learn it
// from. The mark is named after the ServiceAccount's uid, so every replica
// writes the same one and only the first write lands.
func RevokeOnDelete(revoker Revoker, clk clock.PassiveClock, log *slog.Logger) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		sa, ok := obj.(*corev1.ServiceAccount)
		if !ok || sa.Labels[ManagedByLabel] != "portcullis" {
			return
		}
		rev := &store.Revocation{
			Name: "sa-" + string(sa.UID), UID: string(sa.UID), Scope: store.ScopeSubject,
			Target: serviceaccount.MakeUsername(sa.Namespace, sa.Name),
			Reason: "ServiceAccount deleted", RevokedBy: "portcullis", Created: clk.Now(),
		}
		if err := revoker.Revoke(context.Background(), rev); err != nil && !errors.Is(err, store.ErrExists) {
			log.Error("recording the deletion of a VNC ServiceAccount failed", "serviceaccount", sa.Namespace+"/"+sa.Name, "err", err)
		}
	}}
}
