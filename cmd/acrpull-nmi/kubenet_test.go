/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// node writes a kubelet flags file and CNI configuration files (name → content) into a temporary node root.
func node(t *testing.T, kubeletFlags string, cni map[string]string) (kubeletConfig, cniDir string) {
	t.Helper()
	root := t.TempDir()
	kubeletConfig, cniDir = filepath.Join(root, "kubelet"), filepath.Join(root, "net.d")
	if kubeletFlags != "" {
		if err := os.WriteFile(kubeletConfig, []byte(kubeletFlags), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if cni != nil {
		if err := os.Mkdir(cniDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range cni {
		if err := os.WriteFile(filepath.Join(cniDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kubeletConfig, cniDir
}

const (
	// What a kubenet node of a current AKS version has: the runtime's bridge configuration.
	bridgeConflist = `{"cniVersion":"0.3.1","name":"kubenet","plugins":[{"type":"bridge","bridge":"cbr0","ipam":{"type":"host-local"}},{"type":"portmap"}]}`
	azureConflist  = `{"cniVersion":"0.3.0","name":"azure","plugins":[{"type":"azure-vnet","mode":"transparent"},{"type":"portmap"}]}`
)

func TestKubenetIsRecognisedFromTheKubeletFlagsOrTheCNIBridge(t *testing.T) {
	for name, tc := range map[string]struct {
		kubeletFlags string
		cni          map[string]string
		want         string // a part of the evidence; "" for none
	}{
		"an older kubelet's flags file": {kubeletFlags: `KUBELET_FLAGS=--address=0.0.0.0 --network-plugin=kubenet --max-pods=110` + "\n", want: "--network-plugin=kubenet"},
		"a bridge configuration":        {cni: map[string]string{"10-containerd-net.conflist": bridgeConflist}, want: "10-containerd-net.conflist uses the bridge plugin"},
		"a single-plugin .conf":         {cni: map[string]string{"10-bridge.conf": `{"cniVersion":"0.3.1","type":"bridge"}`}, want: "bridge plugin"},
		"Azure CNI":                     {kubeletFlags: `KUBELET_FLAGS=--network-plugin=cni --max-pods=30`, cni: map[string]string{"10-azure.conflist": azureConflist}},
		// The runtime uses the first file by name; a bridge file after it is not in use.
		"only the first file counts": {cni: map[string]string{"05-azure.conflist": azureConflist, "10-containerd-net.conflist": bridgeConflist, "README": "not json"}},
		"nothing on the node":        {},
		"an empty CNI directory":     {cni: map[string]string{}},
	} {
		t.Run(name, func(t *testing.T) {
			kubelet, cni := node(t, tc.kubeletFlags, tc.cni)
			got, err := kubenetEvidence(kubelet, cni)
			if err != nil {
				t.Fatal(err)
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("evidence %q, want one containing %q", got, tc.want)
			}
		})
	}
}

// A configuration that exists but cannot be read or parsed stops the check with an error rather than passing it.
func TestUnreadableNetworkConfigurationIsAnError(t *testing.T) {
	kubelet, cni := node(t, "", map[string]string{"10-broken.conflist": `{"plugins": [`})
	if _, err := kubenetEvidence(kubelet, cni); err == nil || !strings.Contains(err.Error(), "10-broken.conflist") {
		t.Fatalf("error %v, want one naming the broken file", err)
	}
	dirAsFile := t.TempDir() // a directory where the kubelet's flags file should be
	if _, err := kubenetEvidence(dirAsFile, ""); err == nil {
		t.Fatal("a kubelet flags path that cannot be read must be an error")
	}
}
