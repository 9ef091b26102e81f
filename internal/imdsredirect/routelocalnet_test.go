/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package imdsredirect

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/netnstest"
)

// fakeSysctls is a kernel whose /proc/sys may be read-only, or may ignore writes.
type fakeSysctls struct {
	values   map[string]string
	readOnly bool
	ignore   bool
}

func (f *fakeSysctls) Read(name string) (string, error) {
	v, ok := f.values[name]
	if !ok {
		return "", os.ErrNotExist
	}
	return v, nil
}

func (f *fakeSysctls) Write(name, value string) error {
	if f.readOnly {
		return &os.PathError{Op: "open", Path: "/proc/sys/" + strings.ReplaceAll(name, ".", "/"), Err: errors.New("read-only file system")}
	}
	if !f.ignore {
		f.values[name] = value
	}
	return nil
}

// The verdict comes from reading the value back, never from the write: a read-only /proc/sys, or a write that did
// not stick, leaves the redirect unable to deliver, and the error says so and why.
func TestEnableRouteLocalnetReadsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		fake *fakeSysctls
		want []string // substrings of the error; nil for none
	}{
		{name: "writable", fake: &fakeSysctls{values: map[string]string{RouteLocalnet: "0"}}},
		{name: "read-only, already on", fake: &fakeSysctls{values: map[string]string{RouteLocalnet: "1"}, readOnly: true}},
		{name: "read-only, off", fake: &fakeSysctls{values: map[string]string{RouteLocalnet: "0"}, readOnly: true},
			want: []string{`net.ipv4.conf.all.route_localnet is "0"`, "drops pods' metadata requests", "read-only file system"}},
		{name: "write ignored", fake: &fakeSysctls{values: map[string]string{RouteLocalnet: "0"}, ignore: true},
			want: []string{`net.ipv4.conf.all.route_localnet is "0"`}},
		{name: "unreadable", fake: &fakeSysctls{values: map[string]string{}, ignore: true},
			want: []string{"reading net.ipv4.conf.all.route_localnet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := EnableRouteLocalnet(tc.fake)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("EnableRouteLocalnet: %v", err)
				}
				if err := RouteLocalnetOn(tc.fake); err != nil {
					t.Fatalf("RouteLocalnetOn after enabling: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("EnableRouteLocalnet reported success, but the kernel would drop redirected requests")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// ProcSys maps dotted names to files under its root.
func TestProcSysUnderRoot(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net", "ipv4", "conf", "all")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "route_localnet"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := ProcSys{Root: root}
	if err := RouteLocalnetOn(sys); err == nil {
		t.Fatal("route_localnet 0 read as on")
	}
	if err := EnableRouteLocalnet(sys); err != nil {
		t.Fatalf("EnableRouteLocalnet: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "route_localnet")); string(b) != "1" {
		t.Fatalf("route_localnet file holds %q", b)
	}
}

// serveSecret answers every connection on l with a fixed word, as a service listening only on the node's loopback
// (a kubelet's or a database's local port) would answer.
func serveSecret(t *testing.T, l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "loopback-only")
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
}

// CVE-2020-8558: route_localnet=1, which the redirect to 127.0.0.1 needs, makes the node accept packets to
// 127.0.0.0/8 from its pods and neighbours, so services listening only on the node's loopback answer them. With
// GuardLoopback the guard chain drops those packets, while pods' metadata requests, which DNAT sends to 127.0.0.1,
// still reach the agent; the guard is repaired like the redirect and removed with it.
func TestLoopbackGuardKeepsOthersOffTheNodesLoopback(t *testing.T) {
	node, r := newNode(t) // route_localnet=1 in the node, as the agent sets it
	workload := node.AddPod(t, "workload")
	attacker := node.AddPod(t, "attacker")
	// The attacker aims at the node's loopback: no loopback address of its own (removing it takes the local 127/8
	// routes away), a route to 127.0.0.0/8 through the node, and route_localnet so its kernel sends and takes such
	// packets on eth0.
	for _, args := range [][]string{
		{"ip", "addr", "del", "127.0.0.1/8", "dev", "lo"},
		{"ip", "route", "add", "127.0.0.0/8", "via", attacker.NodeIP(), "dev", "eth0"},
		{"sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.eth0.route_localnet=1"},
	} {
		if out, err := attacker.Command(context.Background(), args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	secret, err := node.Listen("tcp", "127.0.0.1:9099")
	if err != nil {
		t.Fatal(err)
	}
	serveSecret(t, secret)
	agent, err := node.Listen("tcp", "127.0.0.1:2579")
	if err != nil {
		t.Fatal(err)
	}
	serveRemoteAddr(t, agent)

	reach := func(ns *netnstest.Namespace) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := ns.Dialer("")(ctx, "tcp", "127.0.0.1:9099")
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		b, err := io.ReadAll(c)
		return string(b), err
	}

	// The redirect alone: the attack works (this is what the guard is for, and shows the test can see it).
	ensure(t, r, true)
	if got, err := reach(&attacker.Namespace); err != nil || got != "loopback-only" {
		t.Fatalf("without the guard the pod should reach the node's loopback-only service (got %q, %v): the test cannot see the attack", got, err)
	}

	r.GuardLoopback = true
	ensure(t, r, true)
	ensure(t, r, false)
	if got, err := reach(&attacker.Namespace); err == nil {
		t.Fatalf("with the guard a pod reached the node's loopback-only service: %q", got)
	}
	if got, err := reach(&node.Namespace); err != nil || got != "loopback-only" {
		t.Errorf("the node's own loopback traffic: %q, %v", got, err)
	}
	if ip, err := source(workload.HTTPClient("")); err != nil || ip != workload.IP() {
		t.Errorf("a pod's redirected metadata request: source %q, err %v; want it at the agent from %s", ip, err, workload.IP())
	}

	// Someone flushes the guard chain: Ensure puts it back.
	if out, err := node.Command(context.Background(), "iptables", "-F", "aad-metadata").CombinedOutput(); err != nil {
		t.Fatalf("flushing: %v %s", err, out)
	}
	if got, err := reach(&attacker.Namespace); err != nil {
		t.Fatalf("after flushing the guard the attack should work again (got %q, %v)", got, err)
	}
	ensure(t, r, true)
	if got, err := reach(&attacker.Namespace); err == nil {
		t.Fatalf("after repair a pod reached the node's loopback-only service: %q", got)
	}

	if err := r.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	out, err := node.Command(context.Background(), "iptables-save", "-t", "filter").CombinedOutput()
	if err != nil || strings.Contains(string(out), "aad-metadata") {
		t.Fatalf("guard left after Delete (%v):\n%s", err, out)
	}
}
