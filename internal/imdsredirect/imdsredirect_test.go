/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package imdsredirect

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/netnstest"
	"github.com/go-logr/logr/funcr"
)

// The nat rules Ensure must leave, as iptables-save prints them (it adds "-m tcp").
var wantRules = []string{
	"-A PREROUTING -j aad-metadata",
	"-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579",
	"-A aad-metadata -j RETURN",
}

// newNode returns a test node namespace and Rules that manage it. Every iptables and conntrack call of the Rules runs
// inside the namespace through netnstest wrappers; the test also fails if the host's nat table changed meanwhile.
func newNode(t *testing.T) (*netnstest.Node, *Rules) {
	t.Helper()
	before := hostNAT(t)
	t.Cleanup(func() { // registered first, so it runs after the namespace is gone
		if after := hostNAT(t); after != before {
			t.Errorf("the host's nat table changed during the test:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	node := netnstest.NewNode(t)
	return node, &Rules{IPTablesPath: node.Wrapper(t, "iptables"), ConntrackPath: node.Wrapper(t, "conntrack")}
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// hostNAT is the host's `iptables-save -t nat` without comments and counters. It only reads.
func hostNAT(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save on the host: %v", err)
	}
	var kept []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "#") {
			kept = append(kept, counters.ReplaceAllString(line, ""))
		}
	}
	return strings.Join(kept, "\n")
}

// natRules is the node's nat rules ("-A" lines) and user chains.
func natRules(t *testing.T, node *netnstest.Node) (rules, chains []string) {
	t.Helper()
	for _, line := range strings.Split(node.NATRules(t), "\n") {
		switch {
		case strings.HasPrefix(line, "-A "):
			rules = append(rules, line)
		case strings.HasPrefix(line, ":") && !slices.Contains([]string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, strings.Fields(line[1:])[0]):
			chains = append(chains, strings.Fields(line[1:])[0])
		}
	}
	return rules, chains
}

func requireRules(t *testing.T, node *netnstest.Node, want []string) {
	t.Helper()
	if got, _ := natRules(t, node); !slices.Equal(got, want) {
		t.Fatalf("nat rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// tamper runs iptables in the node namespace, to tamper with the rules as another program on the node would.
func tamper(t *testing.T, node *netnstest.Node, args ...string) {
	t.Helper()
	if out, err := node.Command(context.Background(), "iptables", append([]string{"-t", "nat"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables %v: %v: %s", args, err, out)
	}
}

func ensure(t *testing.T, r *Rules, wantChanged bool) {
	t.Helper()
	changed, err := r.Ensure()
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if changed != wantChanged {
		t.Fatalf("Ensure reported changed=%v, want %v", changed, wantChanged)
	}
}

func TestEnsureCreatesChainAndJumpOnce(t *testing.T) {
	node, r := newNode(t)
	if rules, chains := natRules(t, node); len(rules)+len(chains) != 0 {
		t.Fatalf("fresh node has nat rules %v, chains %v", rules, chains)
	}
	ensure(t, r, true)
	requireRules(t, node, wantRules)
	if _, chains := natRules(t, node); !slices.Equal(chains, []string{"aad-metadata"}) {
		t.Errorf("user chains = %v, want [aad-metadata]", chains)
	}
	ensure(t, r, false)
	requireRules(t, node, wantRules)
}

func TestEnsureKeepsForeignRulesAndJumpsFirst(t *testing.T) {
	node, r := newNode(t)
	// kube-proxy's and others' rules are already there.
	tamper(t, node, "-N", "KUBE-SERVICES")
	tamper(t, node, "-A", "PREROUTING", "-j", "KUBE-SERVICES")
	ensure(t, r, true)
	requireRules(t, node, []string{
		"-A PREROUTING -j aad-metadata",
		"-A PREROUTING -j KUBE-SERVICES",
		wantRules[1], wantRules[2],
	})
	ensure(t, r, false)
}

func TestEnsureRepairsDrift(t *testing.T) {
	const dnat = "! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579"
	for _, tc := range []struct {
		name   string
		tamper [][]string
		// foreign is what the tampering added that is not Ensure's to remove, in the order it ends up.
		foreign []string
	}{
		{name: "DNAT rule deleted", tamper: [][]string{append([]string{"-D", "aad-metadata"}, strings.Fields(dnat)...)}},
		{name: "RETURN deleted", tamper: [][]string{{"-D", "aad-metadata", "-j", "RETURN"}}},
		{name: "chain flushed", tamper: [][]string{{"-F", "aad-metadata"}}},
		{name: "rules reordered", tamper: [][]string{{"-D", "aad-metadata", "-j", "RETURN"}, {"-I", "aad-metadata", "1", "-j", "RETURN"}}},
		{name: "rule added to the chain", tamper: [][]string{{"-I", "aad-metadata", "1", "-p", "tcp", "-j", "ACCEPT"}}},
		{name: "rule appended to the chain", tamper: [][]string{{"-A", "aad-metadata", "-p", "udp", "-j", "ACCEPT"}}},
		{name: "DNAT rule duplicated", tamper: [][]string{append([]string{"-A", "aad-metadata"}, strings.Fields(dnat)...)}},
		{name: "DNAT target changed", tamper: [][]string{append([]string{"-R", "aad-metadata", "1"},
			strings.Fields(strings.Replace(dnat, "2579", "9999", 1))...)}},
		{name: "jump deleted", tamper: [][]string{{"-D", "PREROUTING", "-j", "aad-metadata"}}},
		{name: "jump duplicated", tamper: [][]string{{"-A", "PREROUTING", "-j", "aad-metadata"}}},
		{name: "goto added", tamper: [][]string{{"-A", "PREROUTING", "-g", "aad-metadata"}}},
		{name: "jump narrowed", tamper: [][]string{{"-R", "PREROUTING", "1", "-p", "udp", "-j", "aad-metadata"}}},
		{
			name:    "rule inserted before the jump",
			tamper:  [][]string{{"-I", "PREROUTING", "1", "-p", "tcp", "-d", "169.254.169.254/32", "-j", "ACCEPT"}},
			foreign: []string{"-A PREROUTING -d 169.254.169.254/32 -p tcp -j ACCEPT"},
		},
		{name: "chain and jump deleted", tamper: [][]string{{"-D", "PREROUTING", "-j", "aad-metadata"}, {"-F", "aad-metadata"}, {"-X", "aad-metadata"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, r := newNode(t)
			ensure(t, r, true)
			for _, args := range tc.tamper {
				tamper(t, node, args...)
			}
			if got, _ := natRules(t, node); slices.Equal(got, wantRules) {
				t.Fatalf("tampering left the rules as they were: %v", got)
			}
			ensure(t, r, true)
			want := append([]string{wantRules[0]}, tc.foreign...)
			requireRules(t, node, append(want, wantRules[1:]...))
			ensure(t, r, false)
		})
	}
}

func TestDeleteRemovesJumpsAndChainAndIsIdempotent(t *testing.T) {
	node, r := newNode(t)
	if err := r.Delete(); err != nil {
		t.Fatalf("Delete with nothing installed: %v", err)
	}
	ensure(t, r, true)
	tamper(t, node, "-A", "PREROUTING", "-p", "udp", "-j", "ACCEPT") // someone else's
	tamper(t, node, "-A", "PREROUTING", "-j", "aad-metadata")        // a duplicate jump
	if err := r.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	rules, chains := natRules(t, node)
	if !slices.Equal(rules, []string{"-A PREROUTING -p udp -j ACCEPT"}) || len(chains) != 0 {
		t.Fatalf("after Delete: rules %v, chains %v; want only the foreign rule and no chain", rules, chains)
	}
	if err := r.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestRunRepairsAndCleansUpWhenCancelled(t *testing.T) {
	node, r := newNode(t)
	var changes atomic.Int32
	changed := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, 50*time.Millisecond, func() { changes.Add(1); changed <- struct{}{} })
	}()
	waitChange := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case err := <-done:
			t.Fatalf("Run returned while waiting for %s: %v", what, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("no onChange for %s within 5 s", what)
		}
	}
	waitChange("the initial Ensure")
	requireRules(t, node, wantRules)

	tamper(t, node, "-F", "aad-metadata")
	waitChange("the repair")
	requireRules(t, node, wantRules)
	time.Sleep(200 * time.Millisecond) // several intervals with nothing to repair
	if n := changes.Load(); n != 2 {
		t.Errorf("onChange called %d times, want 2 (initial install and one repair)", n)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancel")
	}
	if rules, chains := natRules(t, node); len(rules)+len(chains) != 0 {
		t.Errorf("after Run ended: rules %v, chains %v; want none", rules, chains)
	}
}

func TestRunFailsFastWithoutIptables(t *testing.T) {
	r := &Rules{IPTablesPath: "/nonexistent/iptables"}
	err := r.Run(context.Background(), time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "setting up iptables") {
		t.Fatalf("Run with a missing iptables returned %v, want a setup error", err)
	}
}

func TestInvalidRulesAreRejected(t *testing.T) {
	for _, r := range []*Rules{
		{MetadataIP: "metadata"},
		{TargetIP: "::1"},
		{TargetPort: 70000},
		{MetadataPort: -1},
		{Chain: "two words"},
	} {
		if _, err := r.Ensure(); err == nil {
			t.Errorf("Ensure accepted %+v", r)
		}
		if err := r.Delete(); err == nil {
			t.Errorf("Delete accepted %+v", r)
		}
	}
}

func TestCustomChainAndAddresses(t *testing.T) {
	node, r := newNode(t)
	r.Chain, r.MetadataIP, r.MetadataPort, r.TargetIP, r.TargetPort = "acrpull-imds", "169.254.169.253", 8080, "10.0.0.1", 8443
	ensure(t, r, true)
	requireRules(t, node, []string{
		"-A PREROUTING -j acrpull-imds",
		"-A acrpull-imds ! -s 127.0.0.1/32 -d 169.254.169.253/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.1:8443",
		"-A acrpull-imds -j RETURN",
	})
	ensure(t, r, false)
	if err := r.Delete(); err != nil {
		t.Fatal(err)
	}
	requireRules(t, node, nil)
}

// serveRemoteAddr answers every request on l with its source address.
func serveRemoteAddr(t *testing.T, l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// source GETs the metadata address with c and returns the source IP the agent's listener saw.
func source(c *http.Client) (string, error) {
	resp, err := c.Get("http://169.254.169.254/metadata/identity/oauth2/token?resource=https://management.azure.com/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	host, _, err := net.SplitHostPort(string(b))
	return host, err
}

func TestPodMetadataTrafficReachesAgentOnlyWhileRulesExist(t *testing.T) {
	node, r := newNode(t)
	pod := node.AddPod(t, "workload")
	const unknown = "10.99.0.9"
	pod.AddAddress(t, unknown)
	l, err := node.Listen("tcp", "127.0.0.1:2579")
	if err != nil {
		t.Fatal(err)
	}
	serveRemoteAddr(t, l)

	if ip, err := source(pod.HTTPClient("")); err == nil {
		t.Fatalf("before Ensure the pod's request reached the agent (source %s)", ip)
	}

	ensure(t, r, true)
	if err := r.FlushConntrack(); err != nil {
		t.Fatalf("FlushConntrack: %v", err)
	}
	ip, err := source(pod.HTTPClient(""))
	if err != nil {
		t.Fatalf("after Ensure: %v", err)
	}
	if ip != pod.IP() {
		t.Errorf("agent saw source %s, want the pod's IP %s", ip, pod.IP())
	}
	if ip, err := source(pod.HTTPClient(unknown)); err != nil || ip != unknown {
		t.Errorf("from a secondary address: source %q, err %v; want %s", ip, err, unknown)
	}
	// The node's own traffic is not in PREROUTING: the agent and host-network processes are not redirected.
	if ip, err := source(node.HTTPClient("")); err == nil {
		t.Errorf("the node's own request was redirected to the agent (source %s)", ip)
	}

	if err := r.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if ip, err := source(pod.HTTPClient("")); err == nil {
		t.Errorf("after Delete the pod's request still reached the agent (source %s)", ip)
	}
}

func TestFlushConntrackDeletesOnlyMetadataEntries(t *testing.T) {
	node, r := newNode(t)
	conntrack := func(args ...string) string {
		t.Helper()
		out, err := node.Command(context.Background(), "conntrack", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("conntrack %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	conntrack("-I", "-s", "10.244.1.2", "-d", "169.254.169.254", "-p", "tcp", "--sport", "40000", "--dport", "80",
		"--state", "ESTABLISHED", "-u", "ASSURED", "-t", "120")
	conntrack("-I", "-s", "10.244.1.2", "-d", "10.244.1.1", "-p", "tcp", "--sport", "40001", "--dport", "80",
		"--state", "ESTABLISHED", "-u", "ASSURED", "-t", "120")
	if !strings.Contains(conntrack("-L"), "dst=169.254.169.254") {
		t.Fatal("the metadata entry was not created")
	}

	if err := r.FlushConntrack(); err != nil {
		t.Fatalf("FlushConntrack: %v", err)
	}
	left := conntrack("-L")
	if strings.Contains(left, "dst=169.254.169.254") {
		t.Errorf("metadata entry survived FlushConntrack:\n%s", left)
	}
	if !strings.Contains(left, "dst=10.244.1.1") {
		t.Errorf("FlushConntrack deleted an unrelated entry:\n%s", left)
	}
	if err := r.FlushConntrack(); err != nil {
		t.Errorf("FlushConntrack with nothing to delete: %v", err)
	}
}

// The agent's own tests may prefer running Rules unchanged on a thread inside the node namespace: iptables, forked
// from that thread, then acts on the namespace too.
func TestEnsureFromThreadInsideNamespace(t *testing.T) {
	node, _ := newNode(t)
	want, err := os.Stat(node.Path())
	if err != nil {
		t.Fatal(err)
	}
	err = node.Do(func() error {
		// Guard: never run iptables unless this thread really is in the node namespace.
		own, err := os.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			return err
		}
		if own.Sys().(*syscall.Stat_t).Ino != want.Sys().(*syscall.Stat_t).Ino {
			return fmt.Errorf("thread is not in namespace %s", node.Name())
		}
		r := &Rules{}
		if changed, err := r.Ensure(); err != nil || !changed {
			return fmt.Errorf("Ensure: changed=%v, err %v", changed, err)
		}
		if changed, err := r.Ensure(); err != nil || changed {
			return fmt.Errorf("second Ensure: changed=%v, err %v", changed, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	requireRules(t, node, wantRules)
}

// A repair that fails is said through the program's own structured logger (the agent's zap JSON), not as plain text
// on the side.
func TestRunLogsFailedRepairsThroughItsLogger(t *testing.T) {
	_, r := newNode(t)
	broken := filepath.Join(t.TempDir(), "broken")
	script := filepath.Join(t.TempDir(), "iptables")
	// iptables fails once the test says so, as a node's iptables might after the agent started.
	body := fmt.Sprintf("#!/bin/sh\n[ -e %q ] && { echo 'iptables v1.8.9: cannot initialize table' >&2; exit 3; }\nexec %q \"$@\"\n", broken, r.IPTablesPath)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	r.IPTablesPath = script
	var mu sync.Mutex
	var lines []string
	r.Log = funcr.New(func(prefix, args string) { mu.Lock(); lines = append(lines, args); mu.Unlock() }, funcr.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	installed := make(chan struct{}, 1)
	go func() {
		done <- r.Run(ctx, 50*time.Millisecond, func() {
			select {
			case installed <- struct{}{}:
			default:
			}
		})
	}()
	defer func() {
		_ = os.Remove(broken)
		cancel()
		<-done
	}()
	select {
	case err := <-done:
		t.Fatalf("Run returned at once: %v", err)
	case <-installed:
	case <-time.After(10 * time.Second):
		t.Fatal("the redirect was not installed within 10 s")
	}
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(lines, "\n")
		mu.Unlock()
		if strings.Contains(got, `"msg"="Repairing the IMDS redirect failed; retrying"`) && strings.Contains(got, `"error"=`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed repair reached the logger; it got %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
