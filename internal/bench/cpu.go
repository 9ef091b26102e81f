/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times; 100 on every Linux architecture Go builds for
// except alpha and ia64.
const clockTicks = 100

// cpuSeconds reads the user+system CPU time a process has used.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces; the fields after it are space-separated.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
	if len(fields) < 13 {
		return 0
	}
	user, _ := strconv.ParseFloat(fields[11], 64)
	system, _ := strconv.ParseFloat(fields[12], 64)
	return (user + system) / clockTicks
}

// processCPU is the CPU time used so far by the bench itself, the controller, and the control plane processes the
// bench started (children named kube-apiserver and etcd).
func (b *bench) processCPU() map[string]float64 {
	cpu := map[string]float64{"bench": cpuSeconds(os.Getpid())}
	if b.controller != nil && b.controller.Process != nil {
		cpu["controller"] = cpuSeconds(b.controller.Process.Pid)
	}
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		name := s[open+1 : closing]
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 || fields[1] != self {
			continue
		}
		if name == "kube-apiserver" || name == "etcd" {
			cpu[name] += cpuSeconds(pid)
		}
	}
	return cpu
}

// cpuSpent is the CPU time each process used between two processCPU readings.
func cpuSpent(before, after map[string]float64) map[string]float64 {
	spent := map[string]float64{}
	for k, v := range after {
		spent[k] = v - before[k]
	}
	return spent
}
