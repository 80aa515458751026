package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// memoryCgroup is a cgroup v1 memory group made under this process's own:
// the bench runs a server in it with a memory limit, as a container runtime
// runs a container with `resources.limits.memory`. Page cache is charged to
// the group that brings a page in, so a server in the group pays for the
// pages of its store file it reads, and the kernel reclaims them before it
// kills anything.
type memoryCgroup struct {
	dir   string
	limit int64
}

// newMemoryCgroup makes a memory cgroup limited to limit bytes, or returns
// nil, saying why, when this machine does not let the bench make one (no
// cgroup v1 memory hierarchy, or not writable: cgroup v2 is not handled).
func newMemoryCgroup(t *testing.T, limit int64) (*memoryCgroup, string) {
	t.Helper()
	const root = "/sys/fs/cgroup/memory"
	own := ""
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err.Error()
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
			own = f[2]
		}
	}
	parent := filepath.Join(root, own)
	if _, err := os.Stat(filepath.Join(parent, "memory.limit_in_bytes")); err != nil {
		return nil, "no cgroup v1 memory hierarchy at " + parent
	}
	dir := filepath.Join(parent, fmt.Sprintf("portcullis-bench-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err.Error()
	}
	// Removed once the test's servers have exited: what page cache the
	// group is still charged for goes to its parent.
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		return nil, err.Error()
	}
	return &memoryCgroup{dir: dir, limit: limit}, ""
}

// wrap returns the command line that runs bin with args inside the group:
// the shell joins the group, then becomes bin, so that everything the
// server allocates from its first instruction is charged to the group.
func (g *memoryCgroup) wrap(bin string, args []string) (string, []string) {
	return "/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(g.dir, "cgroup.procs"), bin}, args...)
}

// cgroupMemory is what the kernel charged a memory cgroup.
type cgroupMemory struct {
	limit, usage, peak  int64
	anon, pageCache     int64 // memory.stat: rss, cache
	limitHits, oomKills int64 // memory.failcnt, memory.oom_control oom_kill
}

func (m cgroupMemory) String() string {
	return fmt.Sprintf("charged %d MB (allocated %d MB, page cache %d MB), peak %d MB of the %d MB limit, the limit reached %d times (reclaim), %d OOM kills",
		m.usage/1e6, m.anon/1e6, m.pageCache/1e6, m.peak/1e6, m.limit/1e6, m.limitHits, m.oomKills)
}

// memory reads what the group was charged.
func (g *memoryCgroup) memory(t *testing.T) cgroupMemory {
	t.Helper()
	m := cgroupMemory{limit: g.limit, usage: g.read(t, "memory.usage_in_bytes"), peak: g.read(t, "memory.max_usage_in_bytes"),
		limitHits: g.read(t, "memory.failcnt")}
	stat := g.keyed(t, "memory.stat")
	m.anon, m.pageCache = stat["rss"], stat["cache"]
	m.oomKills = g.keyed(t, "memory.oom_control")["oom_kill"]
	return m
}

func (g *memoryCgroup) read(t *testing.T, file string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(g.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

// keyed reads a file of "name value" lines.
func (g *memoryCgroup) keyed(t *testing.T, file string) map[string]int64 {
	t.Helper()
	f, err := os.Open(filepath.Join(g.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok {
			out[name], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return out
}

// dropCachedPages syncs path and asks the kernel to drop its clean pages
// from the page cache, so that the next process to read them pays for them.
func dropCachedPages(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}
