/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a small program (see TestMain) so tests can run a process of their own in a
// namespace without depending on curl being installed.
const helperEnv = "NETNSTEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "get": // GET the URL in NETNSTEST_URL, print the body
		resp, err := (&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}).Get(os.Getenv("NETNSTEST_URL"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "netns": // print the inode of this process's network namespace
		ino, err := inode("/proc/self/ns/net")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(ino)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
	os.Exit(0)
}

// helper returns a command running this test binary as the named helper inside ns.
func helper(ctx context.Context, ns *Namespace, name string, env ...string) *exec.Cmd {
	cmd := ns.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+name), env...)
	return cmd
}

func inode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

func mustInode(t *testing.T, path string) uint64 {
	t.Helper()
	ino, err := inode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// serveRemoteAddr serves, on l, the source address of each request as the response body.
func serveRemoteAddr(t *testing.T, l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// get returns the body of a GET, or the error.
func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// sourceIP is the host part of an ip:port RemoteAddr.
func sourceIP(t *testing.T, remoteAddr string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		t.Fatalf("RemoteAddr %q: %v", remoteAddr, err)
	}
	return host
}

// addMetadataDNAT sets up by hand, in the node namespace, the redirect the node agent installs.
func addMetadataDNAT(t *testing.T, n *Node) {
	t.Helper()
	for _, args := range [][]string{
		{"-t", "nat", "-N", "aad-metadata"},
		{"-t", "nat", "-A", "aad-metadata", "!", "-s", "127.0.0.1/32", "-d", "169.254.169.254/32", "-p", "tcp", "--dport", "80",
			"-j", "DNAT", "--to-destination", "127.0.0.1:2579"},
		{"-t", "nat", "-A", "aad-metadata", "-j", "RETURN"},
		{"-t", "nat", "-I", "PREROUTING", "1", "-j", "aad-metadata"},
	} {
		if out, err := n.Command(context.Background(), "iptables", args...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", args, err, out)
		}
	}
}

func TestPodMetadataTrafficIsDNATedToNodeLoopbackWithPodSource(t *testing.T) {
	node := NewNode(t)
	pod := node.AddPod(t, "client")
	l, err := node.Listen("tcp", "127.0.0.1:2579")
	if err != nil {
		t.Fatal(err)
	}
	serveRemoteAddr(t, l)
	client := pod.HTTPClient("")

	// Without the DNAT the node has no route to the metadata address, so the request must fail.
	if body, err := get(client, "http://169.254.169.254/metadata/identity/oauth2/token"); err == nil {
		t.Fatalf("GET before the DNAT rule answered %q; want a failure", body)
	}

	addMetadataDNAT(t, node)
	if !strings.Contains(node.NATRules(t), "-A PREROUTING -j aad-metadata") {
		t.Fatalf("NATRules does not show the jump:\n%s", node.NATRules(t))
	}
	body, err := get(client, "http://169.254.169.254/metadata/identity/oauth2/token")
	if err != nil {
		t.Fatalf("GET after the DNAT rule: %v", err)
	}
	if got := sourceIP(t, body); got != pod.IP() {
		t.Errorf("node listener saw source %s, want the pod's IP %s", got, pod.IP())
	}
}

func TestClientBoundToSecondaryAddressArrivesWithIt(t *testing.T) {
	node := NewNode(t)
	pod := node.AddPod(t, "spoofer")
	const spoofed = "10.99.0.7"
	pod.AddAddress(t, spoofed)
	l, err := node.Listen("tcp", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	serveRemoteAddr(t, l)
	url := "http://" + net.JoinHostPort(pod.NodeIP(), "8080") + "/"

	body, err := get(pod.HTTPClient(spoofed), url)
	if err != nil {
		t.Fatalf("GET from %s: %v", spoofed, err)
	}
	if got := sourceIP(t, body); got != spoofed {
		t.Errorf("source from the bound client = %s, want %s", got, spoofed)
	}
	// The default source stays the pod's own IP after the address was added.
	body, err = get(pod.HTTPClient(""), url)
	if err != nil {
		t.Fatalf("GET from the default source: %v", err)
	}
	if got := sourceIP(t, body); got != pod.IP() {
		t.Errorf("default source = %s, want %s", got, pod.IP())
	}
}

func TestNodeReachesPodListener(t *testing.T) {
	node := NewNode(t)
	a, b := node.AddPod(t, "a"), node.AddPod(t, "b")
	if a.IP() == b.IP() {
		t.Fatalf("two pods got the same IP %s", a.IP())
	}
	l, err := b.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	serveRemoteAddr(t, l)
	url := "http://" + net.JoinHostPort(b.IP(), "8080") + "/"
	if _, err := get(node.HTTPClient(""), url); err != nil {
		t.Errorf("node to pod: %v", err)
	}
	// Pod to pod goes through the node, which forwards.
	body, err := get(a.HTTPClient(""), url)
	if err != nil {
		t.Fatalf("pod to pod: %v", err)
	}
	if got := sourceIP(t, body); got != a.IP() {
		t.Errorf("pod b saw source %s, want pod a's %s", got, a.IP())
	}
}

func TestForwardReachesHostLoopbackFromProcessInNode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the host")
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A node without Forward: the host's loopback is not there.
	isolated := NewNode(t)
	if out, err := helper(ctx, &isolated.Namespace, "get", "NETNSTEST_URL="+srv.URL).CombinedOutput(); err == nil {
		t.Fatalf("a process in a node without Forward reached %s: %s", srv.URL, out)
	}

	node := NewNode(t)
	node.Forward(t, srv.Listener.Addr().String())
	for i := range 3 { // several connections through the same forwarder
		out, err := helper(ctx, &node.Namespace, "get", "NETNSTEST_URL="+srv.URL).Output()
		if err != nil {
			t.Fatalf("request %d through Forward: %v", i, err)
		}
		if string(out) != "hello from the host" {
			t.Fatalf("request %d through Forward returned %q", i, out)
		}
	}
}

func TestCommandAndWrapperRunInsideTheNamespace(t *testing.T) {
	node := NewNode(t)
	want := mustInode(t, node.Path())
	if host := mustInode(t, "/proc/self/ns/net"); host == want {
		t.Fatal("the node namespace is the test process's own")
	}
	out, err := helper(context.Background(), &node.Namespace, "netns").Output()
	if err != nil {
		t.Fatalf("helper via Command: %v", err)
	}
	if got, _ := strconv.ParseUint(string(out), 10, 64); got != want {
		t.Errorf("Command ran in namespace inode %s, want %d", out, want)
	}

	wrapper := node.Wrapper(t, os.Args[0])
	cmd := exec.Command(wrapper, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=netns")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("helper via Wrapper: %v", err)
	}
	if got, _ := strconv.ParseUint(string(out), 10, 64); got != want {
		t.Errorf("Wrapper ran in namespace inode %s, want %d", out, want)
	}
}

func TestDoRunsChildProcessesInNamespaceAndRestoresThread(t *testing.T) {
	node := NewNode(t)
	want := mustInode(t, node.Path())
	host := mustInode(t, "/proc/self/ns/net")

	var child, thread uint64
	err := node.Do(func() error {
		ino, err := inode(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			return err
		}
		thread = ino
		// os/exec forks from this locked thread, so the child starts in the thread's namespace.
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=netns")
		out, err := cmd.Output()
		if err != nil {
			return err
		}
		child, err = strconv.ParseUint(string(out), 10, 64)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if thread != want || child != want {
		t.Errorf("inside Do: thread namespace %d, child namespace %d; want both %d", thread, child, want)
	}
	// Afterwards every goroutine is back in the host namespace; check many so a leaked thread would likely be hit.
	for range 50 {
		ch := make(chan uint64)
		go func() {
			ino, _ := inode(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
			ch <- ino
		}()
		if got := <-ch; got != host {
			t.Fatalf("a thread is in namespace %d after Do, want the host's %d", got, host)
		}
	}
}

func TestCleanupRemovesNamespaces(t *testing.T) {
	var names []string
	t.Run("create", func(t *testing.T) {
		node := NewNode(t)
		pod := node.AddPod(t, "Pod_With Odd*Name")
		names = []string{node.Name(), pod.Name()}
		listed, err := List()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !slices.Contains(listed, n) {
				t.Errorf("namespace %s missing from ip netns list %v while the test runs", n, listed)
			}
		}
	})
	listed, err := List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if slices.Contains(listed, n) {
			t.Errorf("namespace %s still listed after its test ended: %v", n, listed)
		}
	}
}

func TestNewNodeRemovesLeftoversOfDeadProcesses(t *testing.T) {
	// A pid that existed and is gone: a finished child's.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid
	stale := fmt.Sprintf("%s%d-1-pod", namePrefix, pid)
	alive := fmt.Sprintf("%s%d-999999", namePrefix, os.Getppid()) // our parent (go test) is alive
	for _, name := range []string{stale, alive} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	}

	NewNode(t)
	listed, err := List()
	if err != nil {
		t.Fatal(err)
	}
	if processExists(pid) {
		t.Skipf("pid %d was reused before the check", pid)
	}
	if slices.Contains(listed, stale) {
		t.Errorf("leftover %s of dead process %d was not removed", stale, pid)
	}
	if !slices.Contains(listed, alive) {
		t.Errorf("namespace %s of live process %d was removed", alive, os.Getppid())
	}
}
