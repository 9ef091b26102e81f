/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestVersionIsTheLinkedOneElseDev(t *testing.T) {
	if got := Version(); got != "dev" {
		t.Errorf("test binary's version %q, want dev (no -X, no module version)", got)
	}
	defer func(v string) { version = v }(version)
	version = "v9.8.7"
	if got := String("acrpull-nmi"); got != "acrpull-nmi v9.8.7 "+runtime.Version() {
		t.Errorf("--version line %q", got)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Register(reg, "acrpull-mic"); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP acrpull_build_info Always 1; the labels say which program and build is running.
# TYPE acrpull_build_info gauge
acrpull_build_info{goversion="` + runtime.Version() + `",program="acrpull-mic",version="dev"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "acrpull_build_info"); err != nil {
		t.Error(err)
	}
}
