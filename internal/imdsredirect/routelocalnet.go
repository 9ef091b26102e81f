/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package imdsredirect

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RouteLocalnet is the kernel parameter the redirect to a loopback address needs: without it the kernel drops packets
// that arrive from pods and are DNATed to 127.0.0.1 (it treats them as martians), so pods' metadata requests vanish.
// The kernel honours the setting of "all" or of the interface a packet arrives on; the agent cannot know every pod's
// interface (new ones come with every pod), so it relies on "all".
const RouteLocalnet = "net.ipv4.conf.all.route_localnet"

// Sysctls reads and writes kernel parameters by their dotted names ("net.ipv4.conf.all.route_localnet").
type Sysctls interface {
	Read(name string) (string, error)
	Write(name, value string) error
}

// ProcSys is the kernel parameters under Root (default /proc/sys), as the calling process's network namespace sees
// them. In a container without privileges /proc/sys is mounted read-only, and writes fail.
type ProcSys struct {
	Root string
}

func (p ProcSys) path(name string) string {
	return filepath.Join(cmp.Or(p.Root, "/proc/sys"), filepath.Join(strings.Split(name, ".")...))
}

// Read returns the parameter's value without surrounding white space.
func (p ProcSys) Read(name string) (string, error) {
	b, err := os.ReadFile(p.path(name))
	return strings.TrimSpace(string(b)), err
}

// Write sets the parameter.
func (p ProcSys) Write(name, value string) error {
	return os.WriteFile(p.path(name), []byte(value), 0o644)
}

// EnableRouteLocalnet sets route_localnet for all interfaces, then reads it back: a write can fail (read-only
// /proc/sys) or not stick, and only what the kernel reports decides. It returns RouteLocalnetOn's verdict, with the
// write's failure when there was one.
func EnableRouteLocalnet(s Sysctls) error {
	werr := s.Write(RouteLocalnet, "1")
	if err := RouteLocalnetOn(s); err != nil {
		if werr != nil {
			return fmt.Errorf("%w (setting it failed: %v)", err, werr)
		}
		return err
	}
	return nil
}

// RouteLocalnetOn returns nil when the kernel delivers pods' requests redirected to a loopback address, and otherwise
// an error saying why not and what to do.
func RouteLocalnetOn(s Sysctls) error {
	v, err := s.Read(RouteLocalnet)
	if err != nil {
		return fmt.Errorf("reading %s: %w; the redirect to 127.0.0.1 cannot be confirmed to deliver", RouteLocalnet, err)
	}
	if v != "1" {
		return fmt.Errorf("%s is %q, so the kernel drops pods' metadata requests redirected to 127.0.0.1: run the agent "+
			"with a writable /proc/sys (privileged), or set it to 1 on the node", RouteLocalnet, v)
	}
	return nil
}
