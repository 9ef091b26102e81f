/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package imdsredirect keeps the iptables rules that send pods' instance metadata (IMDS) traffic to the node agent.
//
// Pods ask 169.254.169.254:80 for tokens, as they would on a bare VM. The node agent, running in the host network,
// must answer instead of Azure's IMDS so it can hand each pod only the identity bound to it, which it finds from the
// request's source IP. A nat chain does that, laid out as AAD Pod Identity's NMI lays it out so the agent can replace
// NMI on a node:
//
//	-A PREROUTING -j aad-metadata                      (first rule)
//	-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579
//	-A aad-metadata -j RETURN
//
// PREROUTING sees traffic from pods (it arrives on their veths) but not the node's own, so the agent itself and
// host-network processes still reach the real IMDS. Anything else on the node that edits the nat table (kube-proxy,
// CNI plugins, people) may move or remove these rules, which would let pods talk to IMDS directly and get the node's
// identities; Run therefore checks them periodically and repairs any drift.
//
// DNAT to 127.0.0.1 works only with net.ipv4.conf.all.route_localnet=1 on the node (EnableRouteLocalnet), and the
// rules only act on new connections: FlushConntrack drops tracked connections to IMDS opened before the rules.
//
// route_localnet=1 also lets pods and the node's neighbours reach whatever listens on the node's loopback only
// (CVE-2020-8558). With GuardLoopback, a filter chain of the same name, jumped to first from INPUT, drops packets to
// 127.0.0.0/8 from other sources, as kube-proxy's KUBE-FIREWALL rule does, except the connections DNAT sent there
// (the redirect's own):
//
//	-A INPUT -j aad-metadata                           (first rule; filter table)
//	-A aad-metadata -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
//	-A aad-metadata -j RETURN
package imdsredirect

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/go-logr/logr"
)

// Defaults, matching AAD Pod Identity.
const (
	DefaultChain        = "aad-metadata"
	DefaultMetadataIP   = "169.254.169.254"
	DefaultMetadataPort = 80
	DefaultTargetIP     = "127.0.0.1"
	DefaultTargetPort   = 2579
)

const (
	natTable    = "nat"
	preRouting  = "PREROUTING"
	filterTable = "filter"
	input       = "INPUT"
	// localhost is never redirected, so processes that reach IMDS through the loopback are not looped back to the
	// agent.
	localhost = "127.0.0.1/32"
)

// Rules describes the redirect and keeps it in place. The zero value is AAD Pod Identity's layout; set fields to
// change it. A Rules must not be copied after first use.
type Rules struct {
	// Chain is the nat chain holding the redirect; default "aad-metadata".
	Chain string
	// MetadataIP and MetadataPort are the address redirected; default 169.254.169.254:80.
	MetadataIP   string
	MetadataPort int
	// TargetIP and TargetPort are where the agent listens; default 127.0.0.1:2579.
	TargetIP   string
	TargetPort int
	// GuardLoopback also keeps the filter chain that drops packets to 127.0.0.0/8 arriving from outside the node,
	// except DNATed ones. Set it whenever route_localnet is on, as the redirect to a loopback address needs.
	GuardLoopback bool

	// IPTablesPath is the iptables program to run; empty looks up "iptables" in PATH. Tests point it at a script
	// that runs iptables inside a test network namespace.
	IPTablesPath string
	// ConntrackPath is the conntrack program FlushConntrack runs; empty looks up "conntrack" in PATH.
	ConntrackPath string
	// Log receives the errors Run retries, through the program's own structured logger; the zero Logger discards
	// them.
	Log logr.Logger

	mu  sync.Mutex
	ipt *iptables.IPTables
}

// spec is a Rules with defaults filled in and checked.
type spec struct {
	chain                string
	metadataIP, targetIP string
	metadataPort         int
	targetPort           int
}

func (r *Rules) spec() (spec, error) {
	s := spec{
		chain:        cmp.Or(r.Chain, DefaultChain),
		metadataIP:   cmp.Or(r.MetadataIP, DefaultMetadataIP),
		targetIP:     cmp.Or(r.TargetIP, DefaultTargetIP),
		metadataPort: cmp.Or(r.MetadataPort, DefaultMetadataPort),
		targetPort:   cmp.Or(r.TargetPort, DefaultTargetPort),
	}
	for _, ip := range []string{s.metadataIP, s.targetIP} {
		if parsed := net.ParseIP(ip); parsed == nil || parsed.To4() == nil {
			return spec{}, fmt.Errorf("imdsredirect: %q is not an IPv4 address", ip)
		}
	}
	for _, port := range []int{s.metadataPort, s.targetPort} {
		if port < 1 || port > 65535 {
			return spec{}, fmt.Errorf("imdsredirect: port %d is out of range", port)
		}
	}
	if strings.ContainsAny(s.chain, " \t\n") || len(s.chain) > 28 {
		return spec{}, fmt.Errorf("imdsredirect: %q is not a valid chain name", s.chain)
	}
	return s, nil
}

// dnatRule is the chain's first rule, as passed to iptables.
func (s spec) dnatRule() []string {
	return []string{
		"!", "-s", localhost,
		"-d", s.metadataIP + "/32",
		"-p", "tcp", "--dport", strconv.Itoa(s.metadataPort),
		"-j", "DNAT", "--to-destination", net.JoinHostPort(s.targetIP, strconv.Itoa(s.targetPort)),
	}
}

// loopbackGuardRule drops packets to the loopback network from other sources unless DNAT sent them there or they
// belong to a connection already accepted; kube-proxy's rule for CVE-2020-8558.
var loopbackGuardRule = []string{
	"-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
	"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT",
	"-j", "DROP",
}

// chainSpec is one chain Ensure keeps: in table, holding rule and then RETURN, and jumped to first from hook.
type chainSpec struct {
	table, hook, chain string
	rule               []string
}

// chains are the chains Ensure keeps, the guard first: it must be in place before the redirect can need
// route_localnet.
func (r *Rules) chains(s spec) []chainSpec {
	var cs []chainSpec
	if r.GuardLoopback {
		cs = append(cs, chainSpec{table: filterTable, hook: input, chain: s.chain, rule: loopbackGuardRule})
	}
	return append(cs, chainSpec{table: natTable, hook: preRouting, chain: s.chain, rule: s.dnatRule()})
}

// iptables returns the iptables handle, made on first use (go-iptables runs `iptables --version` to make one).
func (r *Rules) iptables() (*iptables.IPTables, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ipt != nil {
		return r.ipt, nil
	}
	var (
		ipt *iptables.IPTables
		err error
	)
	if r.IPTablesPath != "" {
		ipt, err = iptables.New(iptables.Path(r.IPTablesPath))
	} else {
		ipt, err = iptables.New()
	}
	if err != nil {
		return nil, fmt.Errorf("imdsredirect: setting up iptables: %w", err)
	}
	r.ipt = ipt
	return ipt, nil
}

// Ensure makes the nat table hold the redirect exactly: the chain with only the DNAT rule and RETURN, and the jump to
// it as PREROUTING's first rule and only jump; with GuardLoopback, the filter table likewise holds the guard chain and
// INPUT's jump to it. It changes only what drifted and reports whether it changed anything.
//
// Repairs add the correct rules before removing wrong ones, so the redirect is never missing while Ensure works; a
// chain whose content drifted is rebuilt by inserting its two rules at the top and deleting everything after them.
func (r *Rules) Ensure() (changed bool, err error) {
	s, err := r.spec()
	if err != nil {
		return false, err
	}
	ipt, err := r.iptables()
	if err != nil {
		return false, err
	}
	for _, c := range r.chains(s) {
		ch, err := ensureChain(ipt, c)
		changed = changed || ch
		if err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// ensureChain makes one chain and its jump exact.
func ensureChain(ipt *iptables.IPTables, c chainSpec) (changed bool, err error) {
	// The chain first, so the jump never points at a missing or wrong chain.
	exists, err := ipt.ChainExists(c.table, c.chain)
	if err != nil {
		return false, fmt.Errorf("imdsredirect: checking chain %s: %w", c.chain, err)
	}
	if !exists {
		if err := ipt.NewChain(c.table, c.chain); err != nil {
			return false, fmt.Errorf("imdsredirect: creating chain %s: %w", c.chain, err)
		}
		changed = true
	}
	ok, err := chainIsExact(ipt, c)
	if err != nil {
		return changed, err
	}
	if !ok {
		if err := rebuildChain(ipt, c); err != nil {
			return changed, err
		}
		changed = true
	}

	jumps, first, err := findJumps(ipt, c)
	if err != nil {
		return changed, err
	}
	if !first {
		if err := ipt.Insert(c.table, c.hook, 1, "-j", c.chain); err != nil {
			return changed, fmt.Errorf("imdsredirect: inserting the jump to %s at the top of %s: %w", c.chain, c.hook, err)
		}
		changed = true
		if jumps, _, err = findJumps(ipt, c); err != nil {
			return changed, err
		}
	}
	// Remove every jump but the first, from the bottom so the positions still hold.
	for i := len(jumps) - 1; i >= 1; i-- {
		if err := ipt.DeleteById(c.table, c.hook, jumps[i]); err != nil {
			return changed, fmt.Errorf("imdsredirect: deleting extra jump to %s at %s position %d: %w", c.chain, c.hook, jumps[i], err)
		}
		changed = true
	}
	return changed, nil
}

// chainIsExact reports whether the chain holds exactly its rule followed by RETURN. iptables prints rules in its own
// canonical form (it adds "-m tcp", for one), which differs between versions, so the rule is matched with iptables'
// own check (-C) and the count, rather than by comparing text.
func chainIsExact(ipt *iptables.IPTables, c chainSpec) (bool, error) {
	rules, err := chainRules(ipt, c.table, c.chain)
	if err != nil {
		return false, err
	}
	if len(rules) != 2 || rules[1] != "-A "+c.chain+" -j RETURN" {
		return false, nil
	}
	// Two rules, the second RETURN: the first is ours if iptables finds ours in the chain.
	ok, err := ipt.Exists(c.table, c.chain, c.rule...)
	if err != nil {
		return false, fmt.Errorf("imdsredirect: checking the rule in %s %s: %w", c.table, c.chain, err)
	}
	return ok, nil
}

// rebuildChain puts the two rules at the top of the chain and deletes whatever follows them.
func rebuildChain(ipt *iptables.IPTables, c chainSpec) error {
	if err := ipt.Insert(c.table, c.chain, 1, c.rule...); err != nil {
		return fmt.Errorf("imdsredirect: inserting the rule into %s %s: %w", c.table, c.chain, err)
	}
	if err := ipt.Insert(c.table, c.chain, 2, "-j", "RETURN"); err != nil {
		return fmt.Errorf("imdsredirect: inserting RETURN into %s %s: %w", c.table, c.chain, err)
	}
	rules, err := chainRules(ipt, c.table, c.chain)
	if err != nil {
		return err
	}
	for i := len(rules); i > 2; i-- {
		if err := ipt.DeleteById(c.table, c.chain, i); err != nil {
			return fmt.Errorf("imdsredirect: deleting stale rule %d of %s %s: %w", i, c.table, c.chain, err)
		}
	}
	return nil
}

// chainRules lists a chain's rules ("-A ..." lines), without the policy or chain declaration.
func chainRules(ipt *iptables.IPTables, table, chain string) ([]string, error) {
	lines, err := ipt.List(table, chain)
	if err != nil {
		return nil, fmt.Errorf("imdsredirect: listing %s %s: %w", table, chain, err)
	}
	var rules []string
	for _, line := range lines {
		if strings.HasPrefix(line, "-A ") {
			rules = append(rules, line)
		}
	}
	return rules, nil
}

// findJumps returns the 1-based positions of the hook's rules that jump (or go) to the chain, and whether rule 1 is
// the plain jump Ensure wants. A jump with extra matches counts as a jump to remove, not as the jump.
func findJumps(ipt *iptables.IPTables, c chainSpec) (positions []int, first bool, err error) {
	rules, err := chainRules(ipt, c.table, c.hook)
	if err != nil {
		return nil, false, err
	}
	want := "-A " + c.hook + " -j " + c.chain
	for i, rule := range rules {
		if targets(rule, c.chain) {
			positions = append(positions, i+1)
		}
	}
	return positions, len(rules) > 0 && rules[0] == want, nil
}

// targets reports whether a listed rule jumps or goes to chain.
func targets(rule, chain string) bool {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && f[i+1] == chain {
			return true
		}
	}
	return false
}

// Delete removes every PREROUTING rule that jumps to the chain, then the chain, and with GuardLoopback the guard
// chain and INPUT's jumps to it, the redirect first. Deleting what is not there is not an error.
func (r *Rules) Delete() error {
	s, err := r.spec()
	if err != nil {
		return err
	}
	ipt, err := r.iptables()
	if err != nil {
		return err
	}
	chains := r.chains(s)
	for i := len(chains) - 1; i >= 0; i-- {
		if err := deleteChain(ipt, chains[i]); err != nil {
			return err
		}
	}
	return nil
}

func deleteChain(ipt *iptables.IPTables, c chainSpec) error {
	jumps, _, err := findJumps(ipt, c)
	if err != nil {
		return err
	}
	for i := len(jumps) - 1; i >= 0; i-- {
		if err := ipt.DeleteById(c.table, c.hook, jumps[i]); err != nil {
			return fmt.Errorf("imdsredirect: deleting the jump to %s at %s position %d: %w", c.chain, c.hook, jumps[i], err)
		}
	}
	exists, err := ipt.ChainExists(c.table, c.chain)
	if err != nil {
		return fmt.Errorf("imdsredirect: checking chain %s: %w", c.chain, err)
	}
	if !exists {
		return nil
	}
	if err := ipt.ClearAndDeleteChain(c.table, c.chain); err != nil {
		return fmt.Errorf("imdsredirect: deleting chain %s %s: %w", c.table, c.chain, err)
	}
	return nil
}

// Run ensures the rules now and again every interval until ctx is done, then deletes them. onChange, if not nil, is
// called after each Ensure that changed something, the first one included. If the first Ensure fails, Run deletes
// whatever it made and returns that error: an agent that cannot redirect must not serve. Later failures are logged
// and retried at the next interval, since the redirect may still be in place. Run returns Delete's error once ctx is
// done.
func (r *Rules) Run(ctx context.Context, interval time.Duration, onChange func()) error {
	if interval <= 0 {
		return fmt.Errorf("imdsredirect: Run needs a positive interval, got %v", interval)
	}
	changed, err := r.Ensure()
	if err != nil {
		return errors.Join(err, r.Delete())
	}
	if changed && onChange != nil {
		onChange()
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return r.Delete()
		case <-ticker.C:
			changed, err := r.Ensure()
			if err != nil {
				r.Log.Error(err, "Repairing the IMDS redirect failed; retrying", "chain", cmp.Or(r.Chain, DefaultChain))
			}
			if changed && onChange != nil {
				onChange()
			}
		}
	}
}

// FlushConntrack deletes the kernel's tracked TCP connections to the metadata address. NAT is decided on a
// connection's first packet, so connections opened before Ensure keep reaching IMDS directly until they are
// forgotten; the agent calls this once the rules are in place. Finding nothing to delete is not an error.
func (r *Rules) FlushConntrack() error {
	s, err := r.spec()
	if err != nil {
		return err
	}
	path := cmp.Or(r.ConntrackPath, "conntrack")
	var stderr bytes.Buffer
	cmd := exec.Command(path, "-D", "-d", s.metadataIP, "-p", "tcp", "--dport", strconv.Itoa(s.metadataPort))
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && strings.Contains(stderr.String(), " 0 flow entries") {
		return nil // conntrack exits 1 when nothing matched
	}
	if err != nil {
		return fmt.Errorf("imdsredirect: deleting conntrack entries to %s:%d: %w: %s", s.metadataIP, s.metadataPort, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
