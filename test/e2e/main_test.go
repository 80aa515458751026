package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testutil"
)

// portcullisBin is the binary under test, built once by TestMain.
var portcullisBin string

// e2eBin is where hack/e2e-tools.sh put kube-apiserver, kubectl and etcd.
var e2eBin = os.Getenv("PORTCULLIS_E2E_BIN")

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	portcullisBin = filepath.Join(dir, "portcullis")
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", portcullisBin, "./cmd/portcullis")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build portcullis:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tool returns the path of an e2e binary; the test fails (it does not skip)
// when `make e2e-tools` was not run, so CI cannot pass without them.
func tool(t *testing.T, name string) string {
	t.Helper()
	if e2eBin == "" {
		t.Fatalf("PORTCULLIS_E2E_BIN is not set: run the suite with `make test` (it builds %s)", name)
	}
	path := filepath.Join(e2eBin, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s: %v (run `make e2e-tools`)", name, err)
	}
	return path
}

func freePorts(t *testing.T, n int) []int { return testutil.FreePorts(t, n) }

// run runs a command to completion and returns its stdout; stderr goes to the
// test log.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if errOut.Len() > 0 {
		t.Logf("%s stderr: %s", filepath.Base(name), errOut.String())
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %v: %w: %s", filepath.Base(name), args, err, errOut.String())
	}
	return out.String(), nil
}

// runQuiet runs a command and returns its stdout, with stderr in the error.
func runQuiet(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", filepath.Base(name), err, errOut.String())
	}
	return out.String(), nil
}

// runTo runs a command with stdout to out; the error carries stderr.
func runTo(out io.Writer, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, errOut.String())
	}
	return nil
}

// process is a started child process, stopped by PID.
type process struct {
	cmd  *exec.Cmd
	logs *testutil.Buffer
	done chan struct{}
	err  error
}

// start launches name with args; it is killed by PID when the test ends,
// and its output checked for token values.
func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), logs: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		// Every process's output (Portcullis at debug level, kube-apiserver,
		// etcd) is checked for token values.
		testutil.CheckNoTokens(t, "the output of "+filepath.Base(name), []byte(p.logs.String()), nil)
		if t.Failed() {
			t.Logf("%s logs:\n%s", filepath.Base(name), p.logs.String())
		}
	})
	return p
}

// stop sends sig to the process and waits for it, killing it if it does not
// exit within a bounded wait.
func (p *process) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// kill9 kills the process with SIGKILL, as a crash would.
func (p *process) kill9() {
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func itoa(i int) string { return strconv.Itoa(i) }

// jtiOf reads the jti claim of a token.
func jtiOf(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct{ JTI string }
	_ = json.Unmarshal(raw, &c)
	return c.JTI
}
