package lazyfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Process is a lazy filesystem served by a child process. A process must
// not serve a FUSE filesystem it also maps into memory (bbolt does): a page
// fault on the mapping waits for the server inside a thread the garbage
// collector cannot stop, and the collector's stop-the-world then waits for
// ever. So the store under test and the filesystem live in two processes.
type Process struct {
	// Dir is where the filesystem is mounted.
	Dir   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// ServeIfChild serves the filesystem and exits when the process is the
// child MountProcess started; otherwise it returns at once. Call it first
// thing in TestMain.
func ServeIfChild() {
	backing, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	dir := os.Getenv(childDirEnv)
	l, err := Mount(backing, dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "crash" {
			if err := l.Crash(); err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			fmt.Println("ok")
			os.Exit(0)
		}
	}
	// stdin closed: the parent is done (or died); leave nothing mounted.
	l.Unmount()
	os.Exit(0)
}

// MountProcess mounts a lazy view of backing at dir, served by this test
// binary run again as a child (its TestMain must call ServeIfChild).
func MountProcess(backing, dir string) (*Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+backing, childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Dir: dir, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	if err := p.expect("ready"); err != nil {
		p.Unmount()
		return nil, err
	}
	return p, nil
}

func (p *Process) expect(want string) error {
	line, err := p.out.ReadString('\n')
	if got := strings.TrimSpace(line); got != want {
		return fmt.Errorf("lazyfs: child answered %q (%v), want %q", got, err, want)
	}
	return nil
}

// Crash unmounts the filesystem and drops every write not fsynced, as
// FS.Crash does, then ends the child.
func (p *Process) Crash() error {
	if _, err := io.WriteString(p.stdin, "crash\n"); err != nil {
		return err
	}
	err := p.expect("ok")
	p.stdin.Close()
	if werr := p.cmd.Wait(); err == nil {
		err = werr
	}
	return err
}

// Unmount unmounts the filesystem without a crash and ends the child.
func (p *Process) Unmount() error {
	p.stdin.Close()
	return p.cmd.Wait()
}

// childEnv and childDirEnv carry the backing directory and the mount
// point to a test binary run again to serve the filesystem.
const (
	childEnv    = "PORTCULLIS_LAZYFS_BACKING"
	childDirEnv = "PORTCULLIS_LAZYFS_DIR"
)
