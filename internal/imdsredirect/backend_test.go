/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package imdsredirect

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/acrpull/acrpull/internal/harness/netnstest"
)

// In auto mode the redirect goes to the backend that holds the node's Kubernetes rules: the one with the kubelet's or
// kube-proxy's marker chain first, else the one with more rules, else nf_tables. Each case is a fresh node namespace
// set up with the real iptables-legacy and iptables-nft.
func TestAutoModeFollowsTheNodesBackend(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		setup      [][]string // iptables-<backend> commands run on the node before choosing
		want       string
		wantReason string
	}{
		"an empty node":                {want: "iptables-nft", wantReason: "as many rules or more (0 against 0)"},
		"kube-proxy's rules in legacy": {setup: [][]string{{"legacy", "-t", "nat", "-N", "KUBE-SERVICES"}, {"legacy", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES"}}, want: "iptables-legacy", wantReason: "more rules (1 against 0)"},
		"kube-proxy's rules in nft":    {setup: [][]string{{"nft", "-t", "nat", "-N", "KUBE-SERVICES"}, {"nft", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES"}}, want: "iptables-nft"},
		// The marker wins over a count: a node moving to nf_tables may still hold old legacy rules.
		"the kubelet's canary in nft, more rules in legacy": {setup: [][]string{{"nft", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY"},
			{"legacy", "-t", "nat", "-A", "PREROUTING", "-j", "RETURN"}, {"legacy", "-t", "nat", "-A", "OUTPUT", "-j", "RETURN"}}, want: "iptables-nft", wantReason: "KUBE-KUBELET-CANARY"},
		"the proxy's hint in legacy": {setup: [][]string{{"legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"}}, want: "iptables-legacy", wantReason: "KUBE-IPTABLES-HINT"},
	} {
		t.Run(name, func(t *testing.T) {
			node, _ := newNode(t)
			for _, cmd := range tc.setup {
				if out, err := node.Command(ctx, "iptables-"+cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("iptables-%s %v: %v\n%s", cmd[0], cmd[1:], err, out)
				}
			}
			path, reason, err := ChooseIPTables(ctx, BackendAuto, inNamespace(node))
			if err != nil {
				t.Fatal(err)
			}
			if path != tc.want || !strings.Contains(reason, tc.wantReason) {
				t.Fatalf("chose %s (%s), want %s (%s)", path, reason, tc.want, tc.wantReason)
			}
		})
	}
}

func TestExplicitModesAndBadModes(t *testing.T) {
	for mode, want := range map[string]string{BackendLegacy: "iptables-legacy", BackendNFT: "iptables-nft"} {
		if path, _, err := ChooseIPTables(context.Background(), mode, nil); err != nil || path != want {
			t.Errorf("mode %s: %s, %v", mode, path, err)
		}
	}
	if _, _, err := ChooseIPTables(context.Background(), "iptables", nil); err == nil || !strings.Contains(err.Error(), "use auto, legacy or nft") {
		t.Errorf("a bad mode: %v", err)
	}
}

func inNamespace(ns *netnstest.Node) RunFunc {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return ns.Command(ctx, name, args...).Output()
	}
}

// A backend whose tables cannot be read counts as empty; the choice fails only when neither can be read.
func TestUnreadableBackendCountsAsEmpty(t *testing.T) {
	nftRules := "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"
	run := func(failing ...string) RunFunc {
		return func(_ context.Context, name string, _ ...string) ([]byte, error) {
			for _, f := range failing {
				if name == "iptables-"+f+"-save" {
					return nil, errors.New("modprobe: FATAL: Module ip_tables not found")
				}
			}
			if name == "iptables-nft-save" {
				return []byte(nftRules), nil
			}
			return []byte("-A PREROUTING -j A\n-A PREROUTING -j B\n"), nil
		}
	}
	if path, reason, err := ChooseIPTables(context.Background(), BackendAuto, run(BackendLegacy)); err != nil || path != "iptables-nft" {
		t.Errorf("legacy unreadable: %s (%s), %v", path, reason, err)
	}
	if path, reason, err := ChooseIPTables(context.Background(), BackendAuto, run(BackendNFT)); err != nil || path != "iptables-legacy" {
		t.Errorf("nft unreadable: %s (%s), %v", path, reason, err)
	}
	if _, _, err := ChooseIPTables(context.Background(), BackendAuto, run(BackendNFT, BackendLegacy)); err == nil || !strings.Contains(err.Error(), "ip_tables not found") {
		t.Errorf("both unreadable: %v", err)
	}
}
