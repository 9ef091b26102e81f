/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memoryLimitRatio is the share of the container's memory limit given to Go as its soft limit: the rest is for
// what the runtime does not count (the binary, thread stacks outside the heap) and for the collector to act before
// the kernel does.
const memoryLimitRatio = 0.9

// setMemoryLimit gives the Go runtime a soft memory limit at nine tenths of the container's (cgroup) memory limit.
// Without one the collector lets the heap grow to twice what is live before collecting: at 100,000 bindings the live
// heap is under 300 MiB, but twice that is past the chart's 512Mi limit, and the kernel would kill the controller
// for garbage it had not collected yet. With it the collector works harder near the limit instead. An explicit
// GOMEMLIMIT (or AUTOMEMLIMIT=off) wins; without a cgroup limit nothing changes. It returns the limit now in force.
func setMemoryLimit(limit memlimit.Provider) (int64, error) {
	return memlimit.Set(memlimit.WithProvider(limit), memlimit.WithRatio(memoryLimitRatio))
}
