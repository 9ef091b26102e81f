/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package imdsredirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
)

// Backends of iptables, as --iptables-mode names them. A node's rules live in one of them (the kernel runs both),
// and the redirect must be in the one kube-proxy uses: a rule in the other backend's PREROUTING runs in an order
// against kube-proxy's rules that neither controls.
const (
	BackendAuto   = "auto"
	BackendLegacy = "legacy"
	BackendNFT    = "nft"
)

// RunFunc runs a program and returns its standard output; tests run it inside a network namespace.
type RunFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

// RunHere runs a program in this process's network namespace.
func RunHere(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).Output()
}

// hintChains are chains only Kubernetes' node components create, in the backend they use: the kubelet's and
// kube-proxy's markers in the mangle table.
var hintChains = [][]byte{[]byte(":KUBE-IPTABLES-HINT "), []byte(":KUBE-KUBELET-CANARY ")}

// ChooseIPTables returns the iptables program of a backend (iptables-legacy or iptables-nft) and why it was chosen.
// For BackendAuto it decides as the iptables wrapper of Kubernetes' own images does: the backend whose mangle table
// holds the kubelet's or kube-proxy's marker chain, else the one with more rules, else nf_tables. Where the
// backend-specific programs are not installed it returns "iptables", whatever that is.
func ChooseIPTables(ctx context.Context, mode string, run RunFunc) (path, reason string, err error) {
	switch mode {
	case BackendLegacy, BackendNFT:
		return "iptables-" + mode, "--iptables-mode=" + mode, nil
	case BackendAuto, "":
	default:
		return "", "", fmt.Errorf("imdsredirect: iptables mode %q: use %s, %s or %s", mode, BackendAuto, BackendLegacy, BackendNFT)
	}
	if _, err := exec.LookPath("iptables-nft"); err != nil {
		return "iptables", "no iptables-nft installed", nil
	}
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		return "iptables", "no iptables-legacy installed", nil
	}
	// A backend whose tables cannot be read (its kernel module absent, say) holds no rules; only both failing is an
	// error.
	saved := map[string][]byte{}
	var failures []error
	for _, backend := range []string{BackendNFT, BackendLegacy} {
		out, err := run(ctx, "iptables-"+backend+"-save")
		if err != nil {
			failures = append(failures, fmt.Errorf("iptables-%s-save: %w", backend, err))
			continue
		}
		saved[backend] = out
	}
	if len(failures) == 2 {
		return "", "", fmt.Errorf("imdsredirect: reading the node's rules: %w", errors.Join(failures...))
	}
	for _, backend := range []string{BackendNFT, BackendLegacy} {
		for _, hint := range hintChains {
			if bytes.Contains(saved[backend], hint) {
				return "iptables-" + backend, fmt.Sprintf("the %s backend holds %s", backend, bytes.TrimSpace(hint[1:])), nil
			}
		}
	}
	rules := map[string]int{}
	for backend, out := range saved {
		for line := range bytes.Lines(out) {
			if bytes.HasPrefix(line, []byte("-A ")) {
				rules[backend]++
			}
		}
	}
	if rules[BackendLegacy] > rules[BackendNFT] {
		return "iptables-legacy", fmt.Sprintf("the legacy backend holds more rules (%d against %d)", rules[BackendLegacy], rules[BackendNFT]), nil
	}
	return "iptables-nft", fmt.Sprintf("the nf_tables backend holds as many rules or more (%d against %d)", rules[BackendNFT], rules[BackendLegacy]), nil
}
