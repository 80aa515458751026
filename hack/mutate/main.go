// Command mutate is the mutation gate of the review path: it breaks each
// check of a curated list, one at a time, runs the tests and requires each
// mutant to be killed (some test fails). It prints which test killed each.
//
// A mutant is applied with `go test -overlay`, so the working copy is never
// touched. It first runs the unit tests of the packages that import the
// mutated one; only a mutant they miss gets the integration tests
// (cmd/portcullis/app, real servers). The end-to-end and benchmark suites
// are not run. A mutant that no longer applies (its code changed) or does
// not compile fails the gate: the list must follow the code.
//
// Usage: go run ./hack/mutate [-run regexp]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// module is this repository's module path.
const module = "portcullis.dev/portcullis"

// integration is the package whose tests start real servers: slow, so it
// runs only for mutants the unit tests did not kill.
const integration = module + "/cmd/portcullis/app"

// excluded packages are never run by the gate.
var excluded = []string{module + "/test/e2e", module + "/test/bench"}

// result is one mutant's outcome.
type result struct {
	mutant   mutant
	killedBy []string // failing tests; empty: survived
	stage    string
	err      error
	took     time.Duration
}

func main() {
	only := flag.String("run", "", "only mutants whose name matches this regexp")
	flag.Parse()
	var filter *regexp.Regexp
	if *only != "" {
		filter = regexp.MustCompile(*only)
	}
	tmp, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)

	var results []result
	start := time.Now()
	for i, m := range mutants {
		if filter != nil && !filter.MatchString(m.name) {
			continue
		}
		r := run(m, filepath.Join(tmp, fmt.Sprint(i)))
		fmt.Fprintf(os.Stderr, "%-58s %s (%s)\n", m.name, verdict(r), r.took.Round(time.Second))
		results = append(results, r)
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MUTANT\tFILE\tRESULT\tKILLED BY")
	bad := 0
	for _, r := range results {
		if r.err != nil || len(r.killedBy) == 0 {
			bad++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.mutant.name, r.mutant.file, verdict(r), strings.Join(first(r.killedBy, 3), ", "))
	}
	w.Flush()
	fmt.Printf("\n%d mutants, %d killed, %d not, in %s\n", len(results), len(results)-bad, bad, time.Since(start).Round(time.Second))
	if bad > 0 {
		os.Exit(1)
	}
}

func verdict(r result) string {
	switch {
	case r.err != nil:
		return "ERROR: " + r.err.Error()
	case len(r.killedBy) == 0:
		return "SURVIVED"
	default:
		return "killed (" + r.stage + ")"
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("+%d more", len(s)-n))
	}
	return s
}

// run applies m through an overlay and runs the tests.
func run(m mutant, dir string) (r result) {
	start := time.Now()
	r.mutant = m
	defer func() { r.took = time.Since(start) }()
	src, err := os.ReadFile(m.file)
	if err != nil {
		r.err = err
		return r
	}
	if n := bytes.Count(src, []byte(m.from)); n != 1 {
		r.err = fmt.Errorf("its code is found %d times in %s, want once", n, m.file)
		return r
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.err = err
		return r
	}
	mutated := filepath.Join(dir, filepath.Base(m.file))
	if err := os.WriteFile(mutated, bytes.Replace(src, []byte(m.from), []byte(m.to), 1), 0o644); err != nil {
		r.err = err
		return r
	}
	abs, _ := filepath.Abs(m.file)
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{abs: mutated}})
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		r.err = err
		return r
	}
	pkg := module + "/" + filepath.ToSlash(filepath.Dir(m.file))
	unit, err := dependents(pkg)
	if err != nil {
		r.err = err
		return r
	}
	stages := []struct {
		name string
		pkgs []string
	}{{"unit", slices.DeleteFunc(slices.Clone(unit), func(p string) bool { return p == integration })}}
	if slices.Contains(unit, integration) {
		stages = append(stages, struct {
			name string
			pkgs []string
		}{"integration", []string{integration}})
	}
	for _, st := range stages {
		if len(st.pkgs) == 0 {
			continue
		}
		failed, err := goTest(overlayFile, st.pkgs)
		if err != nil {
			r.err = err
			return r
		}
		if len(failed) > 0 {
			r.killedBy, r.stage = failed, st.name
			return r
		}
	}
	return r
}

// dependents lists the packages whose tests import pkg (pkg included, if
// it has tests), without the excluded suites.
func dependents(pkg string) ([]string, error) {
	out, err := exec.Command("go", "list", "-test", "-f", `{{if .ForTest}}{{.ForTest}} {{join .Deps " "}}{{end}}`, "./...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || slices.Contains(excluded, fields[0]) || slices.Contains(pkgs, fields[0]) {
			continue
		}
		if fields[0] == pkg || slices.Contains(fields[1:], pkg) {
			pkgs = append(pkgs, fields[0])
		}
	}
	return pkgs, sc.Err()
}

// goTest runs the tests of pkgs with the overlay and returns the tests
// that failed. A build failure is an error: a mutant must compile.
func goTest(overlay string, pkgs []string) ([]string, error) {
	args := append([]string{"test", "-overlay", overlay, "-count=1", "-vet=off", "-failfast", "-json", "-timeout", "10m"}, pkgs...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output()
	var failed []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var ev struct {
			Action, Package, Test, Output string
		}
		if err := dec.Decode(&ev); err != nil {
			break
		}
		if ev.Action == "build-fail" || strings.Contains(ev.Output, "[build failed]") || strings.Contains(ev.Output, "[setup failed]") {
			return nil, fmt.Errorf("does not compile")
		}
		if ev.Action == "fail" && ev.Test != "" && !strings.Contains(ev.Test, "/") {
			failed = append(failed, strings.TrimPrefix(ev.Package, module+"/")+"."+ev.Test)
		}
		if ev.Action == "fail" && ev.Test == "" && len(failed) == 0 {
			// A package failed without a failing test: it crashed (panic, timeout).
			failed = append(failed, strings.TrimPrefix(ev.Package, module+"/")+" (crashed)")
		}
	}
	if strings.Contains(stderr.String(), "build failed") || strings.Contains(stderr.String(), "cannot use") {
		return nil, fmt.Errorf("does not compile: %s", firstLine(stderr.String()))
	}
	return failed, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	os.Exit(2)
}
