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

// procStat reads /proc/<pid>/stat: the command name, and the fields after it (field 3 of stat onwards). The name
// is in parentheses and may hold spaces, so the fields start after the last ')'.
func procStat(pid int) (name string, fields []string, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", nil, false
	}
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", nil, false
	}
	return s[open+1 : closing], strings.Fields(s[closing+1:]), true
}

// cpuSeconds reads the user+system CPU time a process has used; 0 if it cannot be read.
func cpuSeconds(pid int) float64 {
	_, fields, ok := procStat(pid)
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
	if !ok || len(fields) < 13 {
		return 0
	}
	user, _ := strconv.ParseFloat(fields[11], 64)
	system, _ := strconv.ParseFloat(fields[12], 64)
	return (user + system) / clockTicks
}

// processCPU is the CPU time used so far by the bench itself, the controller, and the control plane processes the
// bench started (its children named kube-apiserver and etcd).
func (b *bench) processCPU() map[string]float64 {
	self := os.Getpid()
	cpu := map[string]float64{"bench": cpuSeconds(self)}
	if b.controller != nil && b.controller.Process != nil {
		cpu["controller"] = cpuSeconds(b.controller.Process.Pid)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The parent's PID is field 4 of stat, 2 after the name.
		name, fields, ok := procStat(pid)
		if !ok || len(fields) < 2 || fields[1] != strconv.Itoa(self) {
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
