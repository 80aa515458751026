package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// registerAggregation creates the ExternalName Service and the APIService
// that make kube-apiserver's aggregation layer forward portcullis.dev to
// the issuer on 127.0.0.1, and the RBAC Portcullis needs as a delegating
// server.
func (c *cluster) registerAggregation(api *kubeAPIServer) {
	c.t.Helper()
	ca, err := os.ReadFile(filepath.Join(c.portcullis.dir, "ca.crt"))
	if err != nil {
		c.t.Fatal(err)
	}
	// KubeVirt's VirtualMachine, as far as Portcullis looks at it: a CRD.
	c.apply(api, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: virtualmachines.kubevirt.io}
spec:
  group: kubevirt.io
  names: {kind: VirtualMachine, plural: virtualmachines, singular: virtualmachine, shortNames: [vm]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`)
	if _, err := c.kubectl(api, adminToken, "wait", "--for", "condition=established", "--timeout", "60s", "crd/virtualmachines.kubevirt.io"); err != nil {
		c.t.Fatal(err)
	}
	c.apply(api, `apiVersion: v1
kind: Namespace
metadata: {name: vms}
---
apiVersion: v1
kind: Namespace
metadata: {name: portcullis}
---
apiVersion: v1
kind: Service
metadata: {name: portcullis, namespace: portcullis}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: https, port: `+itoa(c.portcullis.securePort)+`}]
`+c.apiServices(ca)+`
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: fedora, namespace: vms}
spec: {running: false}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: centos, namespace: vms}
spec: {running: false}
---
# Who may mint VNC tokens: alice, for the VMs of namespace vms.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: vnc-tokens, namespace: vms}
rules:
- apiGroups: [token.kubevirt.io]
  resources: [virtualmachines/vnc]
  verbs: [get, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: vnc-tokens:alice, namespace: vms}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vnc-tokens}
subjects: [{kind: User, name: alice}]
---
# Who may own user tokens: the developers group (alice).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: portcullis:user-tokens}
rules:
- apiGroups: [ext.cattle.io]
  resources: [tokens]
  verbs: [get, list, watch, create, update, patch, delete, deletecollection]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis:user-tokens:developers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis:user-tokens}
subjects: [{kind: Group, name: developers}]
---
# Who may revoke: alice yes, bob no.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: portcullis:revoker}
rules:
- apiGroups: [portcullis.dev]
  resources: [revocations]
  verbs: [get, list, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis:revoker:alice}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis:revoker}
subjects: [{kind: User, name: alice}]
`)
	for _, g := range aggregatedGroups {
		apiService := g.version + "." + g.group
		for range 300 {
			out, _ := c.kubectlQuiet(api, adminToken, "get", "apiservice", apiService, "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
			if out == "True" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// kube-apiserver fetches an APIService's OpenAPI after it is available;
	// until then kubectl cannot validate objects of the group on the server.
	for range 300 {
		out, _ := c.kubectlQuiet(api, adminToken, "get", "--raw", "/openapi/v3")
		if strings.Contains(out, "apis/portcullis.dev/v1alpha1") && strings.Contains(out, "apis/ext.cattle.io/v1") && strings.Contains(out, "apis/token.kubevirt.io/v1") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := c.kubectlQuiet(api, adminToken, "get", "apiservice", "v1alpha1.portcullis.dev", "-o", "yaml")
	c.t.Fatalf("APIService never became available:\n%s", out)
}

// aggregatedGroups are Portcullis' API groups behind the aggregation layer,
// with the priorities their upstream APIServices use.
var aggregatedGroups = []struct {
	group, version             string
	groupPriority, versionPrio int
}{
	{"portcullis.dev", "v1alpha1", 1000, 15},
	{"ext.cattle.io", "v1", 1000, 15},
	{"token.kubevirt.io", "v1", 2000, 10},
}

// apiServices is an APIService per aggregated group, all pointing at the
// issuer through the ExternalName Service.
func (c *cluster) apiServices(ca []byte) string {
	var b strings.Builder
	for _, g := range aggregatedGroups {
		fmt.Fprintf(&b, `---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: %s.%s}
spec:
  group: %s
  version: %s
  groupPriorityMinimum: %d
  versionPriority: %d
  caBundle: %s
  service: {name: portcullis, namespace: portcullis, port: %d}
`, g.version, g.group, g.group, g.version, g.groupPriority, g.versionPrio, base64.StdEncoding.EncodeToString(ca), c.portcullis.securePort)
	}
	return b.String()
}

func (c *cluster) writeFrontProxyPKI() {
	c.t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "front-proxy-ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: frontProxyName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	c.frontProxy.ca = filepath.Join(c.dir, "front-proxy-ca.crt")
	c.frontProxy.cert = filepath.Join(c.dir, "front-proxy-client.crt")
	c.frontProxy.key = filepath.Join(c.dir, "front-proxy-client.key")
	os.WriteFile(c.frontProxy.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(c.frontProxy.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(c.frontProxy.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

func writeECKey(t *testing.T, path string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
