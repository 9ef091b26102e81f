/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acrpull/acrpull/internal/harness/buildinputs"
	"github.com/acrpull/acrpull/internal/harness/netnstest"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// An agent in an unprivileged container cannot set route_localnet (/proc/sys is read-only there), and without it the
// kernel drops every pod's redirected metadata request. The real binary, run in a node namespace whose
// route_localnet is 0 with /proc/sys mounted read-only, as such a container has it: /readyz fails, naming the check,
// the check's own endpoint and the log say why, and the loopback guard is in place anyway.
func TestAgentIsNotReadyWhenTheRedirectCannotDeliver(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "acrpull-nmi")
	build := exec.Command("go", "build", "-o", bin, "./cmd/acrpull-nmi")
	build.Dir = testenv.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	if err := buildinputs.Record(testenv.ModuleRoot(), "./cmd/acrpull-nmi"); err != nil {
		t.Fatal(err)
	}
	node := netnstest.NewNode(t)
	if out, err := node.Command(context.Background(), "sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=0").CombinedOutput(); err != nil {
		t.Fatalf("turning route_localnet off in the node: %v: %s", err, out)
	}
	apiserver, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	node.Forward(t, apiserver.Host)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// /proc/sys read-only, in the mount namespace `ip netns exec` makes for the command (never seen by the host).
	shell := `mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$0" "$@"`
	cmd := node.Command(ctx, "sh", "-c", shell, bin, "--kubeconfig", env.KubeconfigPath, "--node", "unready-node",
		"--tenant-id", tenantID, "--http-probe-port", "18087", "--prometheus-port", "0", "--ipt-update-interval-sec", "1")
	cmd.Env = os.Environ()
	var log testenv.Output
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	}()

	probe := node.HTTPClient("")
	get := func(path string) (int, string) {
		resp, err := probe.Get("http://127.0.0.1:18087" + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Once the metadata API serves, only route_localnet keeps the agent unready.
	var status int
	var body string
	eventually(t, "/readyz to answer with the metadata API serving", func() bool {
		status, body = get("/readyz")
		return status == http.StatusOK || strings.Contains(body, "[+]serving ok")
	})
	if status != http.StatusInternalServerError || !strings.Contains(body, "[-]route-localnet failed") {
		t.Fatalf("/readyz: %d\n%s\nwant 500 with route-localnet failing", status, body)
	}
	status, body = get("/readyz/route-localnet")
	if status != http.StatusInternalServerError || !strings.Contains(body, `net.ipv4.conf.all.route_localnet is "0"`) {
		t.Errorf("/readyz/route-localnet: %d %s; want 500 saying route_localnet is 0", status, body)
	}
	for _, want := range []string{"The redirect cannot deliver", "route_localnet", "read-only file system"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the agent's log does not say %q", want)
		}
	}
	out, err := node.Command(context.Background(), "iptables-save", "-t", "filter").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-A INPUT -j aad-metadata") ||
		!strings.Contains(string(out), "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP") {
		t.Errorf("the loopback guard is not in the node's filter table (%v):\n%s", err, out)
	}
}
