/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package buildinfo says which build of acrpull is running: for --version, the start log line and the build_info
// metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set at build time:
//
//	go build -ldflags "-X github.com/acrpull/acrpull/internal/buildinfo.version=v1.2.3"
var version string

// Version is the version set at build time, else the module version Go recorded (go install ...@v1.2.3), else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// String is the line --version prints.
func String(program string) string {
	return program + " " + Version() + " " + runtime.Version()
}

// Register adds acrpull_build_info{program,version,goversion} = 1 to reg, so dashboards can tell which build runs
// where.
func Register(reg prometheus.Registerer, program string) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "acrpull_build_info",
		Help:        "Always 1; the labels say which program and build is running.",
		ConstLabels: prometheus.Labels{"program": program, "version": Version(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return reg.Register(g)
}
