package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kubectlAt runs kubectl with base (server, CA, credentials) plus args,
// feeding stdin; it returns stdout and stderr.
func kubectlAt(t *testing.T, base []string, stdin string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "kubectl"), append(append([]string{}, base...), args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

var tokenValue = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// runSeedExamples runs every kubectl example of the user Token document as
// alice (and the Forbidden one as system:admin) and checks what kubectl
// prints. base and sysAdmin are the kubectl flags reaching the API.
func runSeedExamples(t *testing.T, base, sysAdmin []string) (value string) {
	t.Helper()
	create := func(base []string, manifest string) (string, string, error) {
		return kubectlAt(t, base, manifest, nil, "create", "-o", "jsonpath={.status.value}", "-f", "-")
	}
	// Start from none of alice's tokens (deletecollection of her own).
	if _, stderr, err := kubectlAt(t, base, "", nil, "delete", "tokens.ext.cattle.io", "--all"); err != nil {
		t.Fatalf("delete --all: %s %v", stderr, err)
	}
	_, stderr, err := create(sysAdmin, "apiVersion: ext.cattle.io/v1\nkind: Token\n")
	want := `Error from server (Forbidden): error when creating "STDIN": tokens.ext.cattle.io is forbidden: user system:admin is not a Portcullis user`
	if err == nil || strings.TrimSpace(stderr) != want {
		t.Fatalf("system:admin create printed %q, want %q", stderr, want)
	}
	for _, manifest := range []string{
		"apiVersion: ext.cattle.io/v1\nkind: Token\n",
		"apiVersion: ext.cattle.io/v1\nkind: Token\nspec:\n  description: My Token\n",
		"apiVersion: ext.cattle.io/v1\nkind: Token\nspec:\n  ttl: 7200000 # 2 hours\n",
	} {
		out, stderr, err := create(base, manifest)
		if err != nil || !tokenValue.MatchString(out) {
			t.Fatalf("create %q printed %q (%s), %v; want the token value", manifest, out, stderr, err)
		}
		value = out
	}

	out, _, err := kubectlAt(t, base, "", nil, "get", "tokens.ext.cattle.io")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || !regexp.MustCompile(`^NAME\s+KIND\s+TTL\s+AGE$`).MatchString(lines[0]) || len(lines) != 4 {
		t.Fatalf("get tokens printed\n%s\n%v", out, err)
	}
	if !strings.Contains(out, " 90d ") || !strings.Contains(out, " 2h ") {
		t.Fatalf("get tokens printed\n%s\nwithout the TTLs 90d and 2h", out)
	}
	out, _, err = kubectlAt(t, base, "", nil, "get", "tokens.ext.cattle.io", "-o", "wide")
	if err != nil || !regexp.MustCompile(`^NAME\s+USER\s+KIND\s+TTL\s+AGE\s+DESCRIPTION\n`).MatchString(out) ||
		!regexp.MustCompile(`token-\S+\s+alice\s+90d\s+\S+\s+My Token`).MatchString(out) {
		t.Fatalf("get tokens -o wide printed\n%s\n%v", out, err)
	}
	name := regexp.MustCompile(`(token-\S+)\s+alice\s+90d\s+\S+\s+My Token`).FindStringSubmatch(out)[1]

	out, _, err = kubectlAt(t, base, "", nil, "get", "tokens.ext.cattle.io", name)
	if err != nil || !regexp.MustCompile(`^NAME\s+KIND\s+TTL\s+AGE\n`+name+`\s+90d\s+`).MatchString(out) {
		t.Fatalf("get token %s printed\n%s\n%v", name, out, err)
	}
	out, _, err = kubectlAt(t, base, "", nil, "get", "tokens.ext.cattle.io", name, "-o", "wide")
	if err != nil || !regexp.MustCompile(name+`\s+alice\s+90d\s+\S+\s+My Token`).MatchString(out) {
		t.Fatalf("get token %s -o wide printed\n%s\n%v", name, out, err)
	}

	// kubectl edit, with an editor that rewrites the description.
	editor := filepath.Join(t.TempDir(), "editor.sh")
	os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/description: My Token/description: Edited/' \"$1\"\n"), 0o700)
	out, stderr, err = kubectlAt(t, base, "", []string{"KUBE_EDITOR=" + editor}, "edit", "tokens.ext.cattle.io", name)
	if err != nil || !strings.Contains(out, `token.ext.cattle.io/`+name+` edited`) {
		t.Fatalf("edit printed %q %q, %v", out, stderr, err)
	}
	if out, _, _ := kubectlAt(t, base, "", nil, "get", "tokens.ext.cattle.io", name, "-o", "jsonpath={.spec.description}"); out != "Edited" {
		t.Fatalf("description after edit = %q", out)
	}

	out, _, err = kubectlAt(t, base, "", nil, "delete", "tokens.ext.cattle.io", name)
	if err != nil || strings.TrimSpace(out) != `token.ext.cattle.io "`+name+`" deleted` {
		t.Fatalf("delete printed %q, %v", out, err)
	}
	return value
}
