/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package upstreamcli holds the tests both pod identity programs (cmd/acrpull-nmi, cmd/acrpull-mic) run on their
// upstream command lines: upstream's chart-rendered arguments parse and name what they ignore, every upstream flag
// of the program's table is accepted, docs/pod-identity.md carries the table, and the real binary, built once, prints
// its version and starts with upstream's arguments (probe body, build_info, ignored flags logged once each).
package upstreamcli

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/upstreamflag"
)

// TestVersion is linked into the binaries the tests build, as the Makefile and the image build link the release's.
const TestVersion = "v0.0.0-test"

// Program is one program under test.
type Program struct {
	// Name is the binary's name (acrpull-nmi, acrpull-mic); Upstream names its upstream program (nmi, mic) in messages.
	Name, Upstream string
	// Table is the program's upstream flags.
	Table []upstreamflag.Flag
	// Parse parses args (with env as the environment) as the program does, returning the lines it would log for the
	// ignored flags given.
	Parse func(fs *flag.FlagSet, args []string, env map[string]string) (ignored []string, err error)
	// Required are arguments every command line needs besides the flag under test (e.g. --node).
	Required []string

	once    sync.Once
	dir     string
	bin     string
	err     error
	buildMu sync.Mutex
}

// CommandLine is an upstream command line and the ignored flags (in flag order) it should name.
type CommandLine struct {
	Name, WantIgnored string
	Args              []string
	Env               map[string]string
}

// IgnoredNames are the flag names of ignored-flag log lines ("--name=value: why").
func IgnoredNames(lines []string) []string {
	var names []string
	for _, l := range lines {
		names = append(names, strings.TrimPrefix(l[:strings.Index(l, "=")], "--"))
	}
	return names
}

// CheckCommandLines parses each command line: it must be accepted and log exactly its ignored flags, each with a
// reason.
func (p *Program) CheckCommandLines(t *testing.T, lines []CommandLine) {
	t.Helper()
	for _, tc := range lines {
		t.Run(tc.Name, func(t *testing.T) {
			ignored, err := p.Parse(flag.NewFlagSet(p.Name, flag.ContinueOnError), tc.Args, tc.Env)
			if err != nil {
				t.Fatalf("upstream's command line refused: %v", err)
			}
			if got := strings.Join(IgnoredNames(ignored), " "); got != tc.WantIgnored {
				t.Errorf("ignored flags logged: %q, want %q", got, tc.WantIgnored)
			}
			for _, line := range ignored {
				if !strings.Contains(line, ": ") || strings.HasSuffix(line, ": ") {
					t.Errorf("ignored flag %q is logged without a reason", line)
				}
			}
		})
	}
}

// CheckEveryFlagAccepted gives each upstream flag of the table alone (with a value of its kind): refused flags must
// be refused, the others accepted, and logged as ignored exactly when the table says so.
func (p *Program) CheckEveryFlagAccepted(t *testing.T) {
	t.Helper()
	for _, f := range p.Table {
		arg := "--" + f.Name
		if !f.Bool {
			arg += "=" + f.Default
		}
		fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		ignored, err := p.Parse(fs, append([]string{arg}, p.Required...), nil)
		if f.Disposition == upstreamflag.Refused {
			if err == nil {
				t.Errorf("%s: accepted, but the table says refused", arg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", arg, err)
			continue
		}
		if logged := len(ignored) == 1; logged != (f.Disposition == upstreamflag.Ignored) {
			t.Errorf("%s: logged as ignored %v, table says %s", arg, logged, f.Disposition)
		}
	}
}

// CheckDocumented: docs/pod-identity.md's "Upstream flags" table holds the program's rows as the code has them.
func (p *Program) CheckDocumented(t *testing.T) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "docs", "pod-identity.md"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := upstreamflag.Markdown(p.Table); !bytes.Contains(doc, []byte(rows)) {
		t.Errorf("docs/pod-identity.md lacks the %s rows of \"Upstream flags\"; they are:\n%s", p.Upstream, rows)
	}
}

// Binary builds the program (the package in the test's working directory) once, with TestVersion linked in.
func (p *Program) Binary(t *testing.T) string {
	t.Helper()
	p.once.Do(func() {
		p.buildMu.Lock()
		defer p.buildMu.Unlock()
		if p.dir, p.err = os.MkdirTemp("", p.Name+"-test-"); p.err != nil {
			return
		}
		p.bin = filepath.Join(p.dir, p.Name)
		build := exec.Command("go", "build", "-ldflags=-X github.com/acrpull/acrpull/internal/buildinfo.version="+TestVersion, "-o", p.bin, ".")
		if out, err := build.CombinedOutput(); err != nil {
			p.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.bin
}

// Remove deletes the built binary, if a test built it; TestMain calls it after the tests.
func (p *Program) Remove() {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

// CheckVersionFlag: --version prints "<name> <version> <go version>" and nothing else.
func (p *Program) CheckVersionFlag(t *testing.T) {
	t.Helper()
	out, err := exec.Command(p.Binary(t), "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if want := p.Name + " " + TestVersion + " " + runtime.Version() + "\n"; string(out) != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
}

// FreePort is a loopback port free a moment ago.
func FreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Process is the real binary running for one test; it is killed when the test ends.
type Process struct {
	Logs   testenv.Output
	exited chan error
}

// Start runs the built program with args and environ added to the test's environment.
func (p *Program) Start(t *testing.T, args, environ []string) *Process {
	t.Helper()
	proc := &Process{exited: make(chan error, 1)}
	cmd := exec.Command(p.Binary(t), args...)
	cmd.Env = append(os.Environ(), environ...)
	cmd.Stdout, cmd.Stderr = &proc.Logs, &proc.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { proc.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-proc.exited
	})
	return proc
}

// WaitFor polls until ready holds, failing the test if the program exits first or 30 s pass.
func (proc *Process) WaitFor(t *testing.T, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		select {
		case err := <-proc.exited:
			t.Fatalf("the program exited (%v):\n%s", err, proc.Logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in 30s:\n%s", what, proc.Logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Get fetches url, returning the status (0 when it could not) and the body.
func Get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// CheckServing: /healthz at probe answers upstream's "Active", /metrics at metrics has the build_info series of
// this program, each of logOnce is in the log exactly once, and the start line carries the version.
func (p *Program) CheckServing(t *testing.T, proc *Process, probe, metrics, startMsg string, logOnce []string) {
	t.Helper()
	if code, body := Get("http://127.0.0.1:" + probe + "/healthz"); code != http.StatusOK || body != "Active" {
		t.Errorf("/healthz: %d %q, want 200 Active", code, body)
	}
	if code, _ := Get("http://127.0.0.1:" + probe + "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d", code)
	}
	_, body := Get("http://127.0.0.1:" + metrics + "/metrics")
	if want := `acrpull_build_info{goversion="` + runtime.Version() + `",program="` + p.Name + `",version="` + TestVersion + `"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	out := proc.Logs.String()
	for _, want := range logOnce {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, out)
		}
	}
	if !strings.Contains(out, `"msg":"`+startMsg+`","version":"`+TestVersion+`"`) {
		t.Errorf("the start line lacks the version:\n%s", out)
	}
}
