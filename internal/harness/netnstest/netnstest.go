/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package netnstest builds throwaway Linux network namespaces for tests that need real kernel networking: a "node"
// namespace standing in for a Kubernetes node's host network, and "pod" namespaces joined to it by veth pairs.
//
// The node agent redirects pod traffic for the instance metadata address (169.254.169.254) with iptables DNAT and
// tells pods apart by their source IP. Neither can be faked in-process, and neither may be tried on the machine's own
// network namespace, which belongs to the developer or CI host. So every namespace, veth pair, address, route, sysctl
// and iptables rule made here lives only inside namespaces this package created, and all of them go away in
// t.Cleanup. Namespaces are named acrpull-<pid>-<n>[-<pod>]; those left by a process that no longer exists (a test
// binary killed before its cleanups ran) are deleted by the next NewNode.
//
// Tests must run as root with `ip` (iproute2) and `sysctl` (procps) installed; hack/install-netns-tools.sh installs
// those and iptables and conntrack.
//
// A test talks to a namespace from its own process with Listen, Dialer and HTTPClient, which create the socket inside
// the namespace, and runs programs there with Command or Wrapper.
package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// namePrefix starts every namespace name this package creates; leftover removal only ever looks at such names.
const namePrefix = "acrpull-"

// leftoverName matches the names this package gives, capturing the pid of the process that created the namespace.
var leftoverName = regexp.MustCompile(`^` + namePrefix + `(\d+)-\d+(-[a-z0-9-]+)?$`)

// seq numbers the namespaces of this process so concurrent tests never collide.
var seq atomic.Int64

// Namespace is one named network namespace (under /run/netns) and what the test process can do inside it. Node and
// Pod embed it.
type Namespace struct {
	name string
}

// Name is the namespace's name, as `ip netns list` shows it and `ip netns exec` takes it.
func (ns *Namespace) Name() string { return ns.name }

// Path is the namespace's bind-mount file, which setns(2) and the kernel's /proc/<pid>/ns/net links refer to.
func (ns *Namespace) Path() string { return "/run/netns/" + ns.name }

// Do runs fn on an OS thread that has joined the namespace, and returns fn's error.
//
// Linux network namespaces belong to threads, not processes, so fn runs on a fresh goroutine locked to its thread.
// Sockets created by fn stay in the namespace after Do returns, and programs started by fn (os/exec forks from the
// calling thread) run in it. fn must finish its work on its own goroutine: anything it hands to another goroutine
// runs in the test process's namespace. fn must not call t.Fatal or t.FailNow, which only work on the test's
// goroutine. If the thread cannot be moved back to its namespace afterwards, it is left locked so the Go runtime
// destroys it instead of reusing it.
func (ns *Namespace) Do(fn func() error) error {
	target, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netnstest: opening namespace %s: %w", ns.name, err)
	}
	defer unix.Close(target)

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		orig, err := unix.Open(own, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netnstest: opening this thread's namespace %s: %w", own, err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netnstest: joining namespace %s: %w", ns.name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Still locked: the thread dies with this goroutine.
			done <- errors.Join(fnErr, fmt.Errorf("netnstest: leaving namespace %s: %w", ns.name, err))
			return
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	return <-done
}

// Listen is net.Listen inside the namespace.
func (ns *Namespace) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netnstest: listening on %s %s in %s: %w", network, addr, ns.name, err)
	}
	return l, nil
}

// Dialer returns a DialContext function whose connections start inside the namespace. With a non-empty sourceIP the
// socket is bound to that address first (it must be an address of the namespace, see Pod.AddAddress), so the peer
// sees it as the source.
//
// Only the dialing goroutine is in the namespace, so Happy Eyeballs (which dials address families on separate
// goroutines) is off.
func (ns *Namespace) Dialer(sourceIP string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{FallbackDelay: -1}
		if sourceIP != "" {
			ip := net.ParseIP(sourceIP)
			if ip == nil {
				return nil, fmt.Errorf("netnstest: source IP %q is not an IP address", sourceIP)
			}
			if strings.HasPrefix(network, "udp") {
				d.LocalAddr = &net.UDPAddr{IP: ip}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: ip}
			}
		}
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("netnstest: dialing %s %s from %s (source %q): %w", network, addr, ns.name, sourceIP, err)
		}
		return c, nil
	}
}

// HTTPClient returns an HTTP client whose connections start inside the namespace, from sourceIP if it is not empty
// (see Dialer). It uses no proxy whatever the environment says, opens a new connection for every request (so each
// request's source address is the one asked for, and no idle connection keeps a deleted namespace alive) and gives
// up after 10 s.
func (ns *Namespace) HTTPClient(sourceIP string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: ns.Dialer(sourceIP), DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// Command returns a command that runs name with args inside the namespace (`ip netns exec`). ip execs the program
// in place, so killing the command (through ctx or Process.Kill) kills the program.
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// Wrapper writes an executable script that runs name, with the script's arguments, inside the namespace, and returns
// its path. It serves code that takes the path of a tool it execs, such as the iptables path of go-iptables: given
// the wrapper, that code manages the namespace instead of the host. The script lives in t.TempDir().
func (ns *Namespace) Wrapper(t testing.TB, name string) string {
	t.Helper()
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("netnstest: %v (run hack/install-netns-tools.sh)", err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", shellQuote(ipPath), shellQuote(ns.name), shellQuote(name))
	path := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatalf("netnstest: writing wrapper for %s: %v", name, err)
	}
	return path
}

// ip runs `ip -n <ns> args...` and fails the test if it fails.
func (ns *Namespace) ip(t testing.TB, args ...string) {
	t.Helper()
	mustRun(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// Node is a namespace standing in for a node's host network: loopback up, packets forwarded, and route_localnet on so
// traffic arriving from pods may be DNATed to 127.0.0.1 (as the node agent does).
type Node struct {
	Namespace
	pods atomic.Int64
}

// NewNode creates a node namespace that is deleted when the test ends. It fails the test if it is not running as
// root or the tools are missing. It first deletes namespaces left by test processes that no longer exist.
func NewNode(t testing.TB) *Node {
	t.Helper()
	requireTools(t)
	removeLeftovers(t)
	n := &Node{Namespace: *newNamespace(t, "")}
	n.ip(t, "link", "set", "lo", "up")
	mustRun(t, "ip", "netns", "exec", n.name, "sysctl", "-q", "-w",
		"net.ipv4.conf.all.route_localnet=1", "net.ipv4.ip_forward=1")
	return n
}

// NATRules returns `iptables-save -t nat` inside the node namespace, for assertions. The comment lines (which carry a
// timestamp) are left out.
func (n *Node) NATRules(t testing.TB) string {
	t.Helper()
	out := mustRun(t, "ip", "netns", "exec", n.name, "iptables-save", "-t", "nat")
	var kept []string
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n") + "\n"
}

// Forward listens inside the node namespace on hostAddr (an ip:port such as 127.0.0.1:6443) and pipes every
// connection to hostAddr in the test process's own namespace. A program run in the node namespace can then reach a
// server the test runs on the host loopback (a kube-apiserver, a fake Azure) with unchanged URLs and TLS names.
// The listener and the open connections are closed when the test ends. hostAddr must be a loopback ip:port: the
// test's servers live there, and a forwarder must not become a way out of the test namespaces.
func (n *Node) Forward(t testing.TB, hostAddr string) {
	t.Helper()
	host, _, err := net.SplitHostPort(hostAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("netnstest: Forward needs a loopback ip:port such as 127.0.0.1:6443, got %q", hostAddr)
	}
	l, err := n.Listen("tcp", hostAddr)
	if err != nil {
		t.Fatalf("netnstest: forwarding %s: %v", hostAddr, err)
	}
	var (
		mu     sync.Mutex
		open   = map[net.Conn]struct{}{}
		closed bool
		wg     sync.WaitGroup
	)
	track := func(cs ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return false
		}
		for _, c := range cs {
			open[c] = struct{}{}
		}
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return // listener closed
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				// This goroutine is not locked to a namespace thread, so the dial happens in the test process's
				// own namespace, where hostAddr listens.
				out, err := net.DialTimeout("tcp", hostAddr, 10*time.Second)
				if err != nil {
					t.Logf("netnstest: forward %s: dialing the host: %v", hostAddr, err)
					return
				}
				defer out.Close()
				if !track(in, out) {
					return
				}
				pipe(in, out)
				mu.Lock()
				delete(open, in)
				delete(open, out)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		closed = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// pipe copies both ways until both directions are done, passing each half-close on so request/response protocols
// that rely on it still work.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go half(a, b)
	go half(b, a)
	wg.Wait()
}

// Pod is a namespace joined to its node by a veth pair: eth0 in the pod, veth<k> in the node, on the subnet
// 10.244.<k>.0/24 where k numbers the node's pods. The node side is .1 and the pod .2; the pod's default route goes
// through the node, so pod traffic to any address (169.254.169.254 included) enters the node namespace's PREROUTING.
type Pod struct {
	Namespace
	node   *Node
	hostIf string
	addr   string
	nodeIP string
}

// maxPods bounds the pods per node so the subnet numbering stays in 10.244.1.0/24 to 10.244.254.0/24.
const maxPods = 254

// AddPod creates a pod namespace wired to the node, deleted when the test ends. name is for people reading
// `ip netns list`; it need not be unique.
func (n *Node) AddPod(t testing.TB, name string) *Pod {
	t.Helper()
	k := n.pods.Add(1)
	if k > maxPods {
		t.Fatalf("netnstest: a node holds at most %d pods", maxPods)
	}
	p := &Pod{
		Namespace: *newNamespace(t, name),
		node:      n,
		hostIf:    fmt.Sprintf("veth%d", k),
		addr:      fmt.Sprintf("10.244.%d.2", k),
		nodeIP:    fmt.Sprintf("10.244.%d.1", k),
	}
	// Created inside the node namespace with the peer placed straight into the pod's: the host's namespace never
	// sees either end.
	n.ip(t, "link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	n.ip(t, "addr", "add", p.nodeIP+"/24", "dev", p.hostIf)
	n.ip(t, "link", "set", p.hostIf, "up")
	p.ip(t, "link", "set", "lo", "up")
	p.ip(t, "addr", "add", p.addr+"/24", "dev", "eth0")
	p.ip(t, "link", "set", "eth0", "up")
	// src pins the pod's own address as the default source even after AddAddress adds more.
	p.ip(t, "route", "add", "default", "via", p.nodeIP, "dev", "eth0", "src", p.addr)
	return p
}

// IP is the pod's address, the source of its connections unless a test picks another.
func (p *Pod) IP() string { return p.addr }

// NodeIP is the node's address on the pod's veth, where the pod reaches node listeners bound to 0.0.0.0.
func (p *Pod) NodeIP() string { return p.nodeIP }

// AddAddress adds ip as a further /32 address on the pod's eth0 and routes it back to this pod in the node, so a
// client bound to it (Dialer, HTTPClient) reaches the node with that source address and gets answers. Tests use it to
// arrive from an address the node agent does not know, or from another pod's address (the /32 route then steers
// that address's replies to this pod).
func (p *Pod) AddAddress(t testing.TB, ip string) {
	t.Helper()
	if parsed := net.ParseIP(ip); parsed == nil || parsed.To4() == nil {
		t.Fatalf("netnstest: AddAddress needs an IPv4 address, got %q", ip)
	}
	p.ip(t, "addr", "add", ip+"/32", "dev", "eth0")
	p.node.ip(t, "route", "replace", ip+"/32", "dev", p.hostIf)
}

// newNamespace creates a namespace named after this process and registers its deletion.
func newNamespace(t testing.TB, label string) *Namespace {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), seq.Add(1))
	if s := sanitize(label); s != "" {
		name += "-" + s
	}
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("netnstest: deleting namespace %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
	})
	return &Namespace{name: name}
}

// sanitize keeps a label to lower-case letters, digits and dashes, short enough for a readable name.
func sanitize(label string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(label) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
		if b.Len() == 32 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// requireTools fails the test with what to do when the namespaces cannot be made.
func requireTools(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		t.Fatalf("netnstest: network namespace tests must run as root (euid is %d): they create namespaces with `ip netns add`", euid)
	}
	for _, tool := range []string{"ip", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("netnstest: %s is not installed (run hack/install-netns-tools.sh): %v", tool, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Fatalf("netnstest: `ip netns` is not usable here: %v: %s", err, bytes.TrimSpace(out))
	}
}

// removeLeftovers deletes namespaces created by test processes that have exited without running their cleanups.
func removeLeftovers(t testing.TB) {
	t.Helper()
	names, err := List()
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	for _, name := range names {
		m := leftoverName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || processExists(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("netnstest: removing leftover namespace %s: %v: %s", name, err, bytes.TrimSpace(out))
			continue
		}
		t.Logf("netnstest: removed leftover namespace %s (process %d is gone)", name, pid)
	}
}

// processExists reports whether pid is a live process; EPERM means it exists but belongs to someone else.
func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// List returns the names of all named network namespaces (`ip netns list`), this package's and any others.
func List() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("listing network namespaces: %w: %s", err, bytes.TrimSpace(out))
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// Lines look like "name" or "name (id: 3)".
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// mustRun runs a command and returns its stdout, failing the test with its output if it fails.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("netnstest: %s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
