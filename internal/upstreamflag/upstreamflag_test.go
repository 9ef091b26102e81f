/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package upstreamflag

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func parse(args ...string) (*flag.FlagSet, *Logging, error) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := RegisterLogging(fs)
	Register(fs, Klog)
	return fs, l, fs.Parse(args)
}

// Ignored flags refuse what upstream's klog refused, and only the given ones are logged, with value and reason.
func TestIgnoredFlags(t *testing.T) {
	fs, _, err := parse("--logtostderr", "--log_file_max_size=100", "--vmodule=agent=4", "-v=2")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--log_file_max_size=100: no log files are written; logs go to standard error",
		"--logtostderr=true: logs always go to standard error",
		"--vmodule=agent=4: no per-file verbosity; -v applies to every line",
	}
	if got := IgnoredGiven(fs, Klog); !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
	for _, bad := range []string{"--log_file_max_size=big", "-v=-1", "-v=many", "--log-format=xml"} {
		if _, _, err := parse(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
