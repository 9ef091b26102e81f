/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package upstreamflag lists the command-line flags of aad-pod-identity v1.8.x's nmi and mic with what acrpull does
// with each, so that the DaemonSet and Deployment upstream's chart rendered start acrpull's programs unchanged, and so
// that the migration table in docs/pod-identity.md is written from (and checked against) one list.
package upstreamflag

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Disposition says what acrpull does with an upstream flag.
type Disposition string

const (
	// Same: the flag is accepted with upstream's meaning.
	Same Disposition = "same"
	// Renamed: upstream's spelling is accepted and means what the flag in Flag.Here means.
	Renamed Disposition = "renamed"
	// Ignored: accepted so that upstream's command lines start the program, and named in the log at start.
	Ignored Disposition = "accepted and ignored"
	// Refused: the program exits with a flag error.
	Refused Disposition = "refused"
)

// Kind is the kind of value a flag takes.
type Kind int

const (
	// Text takes any value.
	Text Kind = iota
	// Duration takes a Go duration (1h, 30s).
	Duration
	// Count takes a non-negative integer.
	Count
)

// Flag is one upstream flag.
type Flag struct {
	// Name is upstream's spelling, without dashes.
	Name string
	// Bool flags take no value (--name alone means true); the rest take one.
	Bool bool
	// Kind is the kind of value an ignored flag takes: a value upstream would refuse is refused here too.
	Kind Kind
	// Default is upstream's default, shown in --help for ignored flags.
	Default     string
	Disposition Disposition
	// Here is the flag that means the same here, for Renamed.
	Here string
	// Why says why a flag is ignored, refused or renamed, or how a Same flag differs in detail.
	Why string
}

// Klog are the flags klog.InitFlags (klog v2.30, upstream v1.8.9 to v1.8.17; earlier releases had a subset) adds to
// both programs' command lines. acrpull logs with zap to standard error.
var Klog = []Flag{
	{Name: "v", Default: "0", Disposition: Same, Why: "-v=N shows log lines of verbosity N and below (zap level -N), unless --zap-log-level is given"},
	{Name: "logtostderr", Bool: true, Default: "true", Disposition: Ignored, Why: "logs always go to standard error"},
	{Name: "alsologtostderr", Bool: true, Default: "false", Disposition: Ignored, Why: "logs always go to standard error"},
	{Name: "log_dir", Disposition: Ignored, Why: "no log files are written; logs go to standard error"},
	{Name: "log_file", Disposition: Ignored, Why: "no log files are written; logs go to standard error"},
	{Name: "log_file_max_size", Kind: Count, Default: "1800", Disposition: Ignored, Why: "no log files are written; logs go to standard error"},
	{Name: "skip_log_headers", Bool: true, Default: "false", Disposition: Ignored, Why: "no log files are written; logs go to standard error"},
	{Name: "stderrthreshold", Default: "2", Disposition: Ignored, Why: "every level goes to standard error"},
	{Name: "one_output", Bool: true, Default: "false", Disposition: Ignored, Why: "each line is written once, to standard error"},
	{Name: "add_dir_header", Bool: true, Default: "false", Disposition: Ignored, Why: "lines are zap's JSON or console encoding (--log-format, --zap-encoder), not klog's header"},
	{Name: "skip_headers", Bool: true, Default: "false", Disposition: Ignored, Why: "lines are zap's JSON or console encoding (--log-format, --zap-encoder), not klog's header"},
	{Name: "vmodule", Disposition: Ignored, Why: "no per-file verbosity; -v applies to every line"},
	{Name: "log_backtrace_at", Disposition: Ignored, Why: "use --zap-stacktrace-level"},
}

// Register defines on fs each flag of table whose disposition is Ignored; the program defines the rest itself.
func Register(fs *flag.FlagSet, table []Flag) {
	for _, f := range table {
		if f.Disposition != Ignored {
			continue
		}
		usage := "Upstream flag, accepted and ignored: " + f.Why + "."
		switch {
		case f.Bool:
			fs.Bool(f.Name, f.Default == "true", usage)
		case f.Kind == Duration:
			fs.Var(&checkedValue{value: f.Default, check: func(v string) error { _, err := time.ParseDuration(v); return err }}, f.Name, usage)
		case f.Kind == Count:
			fs.Var(&checkedValue{value: f.Default, check: func(v string) error { _, err := strconv.ParseUint(v, 10, 64); return err }}, f.Name, usage)
		default:
			fs.String(f.Name, f.Default, usage)
		}
	}
}

// checkedValue holds an ignored flag's value, refusing values upstream would have refused.
type checkedValue struct {
	value string
	check func(string) error
}

func (c *checkedValue) String() string { return c.value }

func (c *checkedValue) Set(v string) error {
	if err := c.check(v); err != nil {
		return err
	}
	c.value = v
	return nil
}

// IgnoredGiven returns, for each ignored flag of table given on the command line fs parsed, a line naming it, its
// value and why it is ignored, for the log at start.
func IgnoredGiven(fs *flag.FlagSet, table []Flag) []string {
	var lines []string
	fs.Visit(func(given *flag.Flag) {
		for _, f := range table {
			if f.Name == given.Name && f.Disposition == Ignored {
				lines = append(lines, fmt.Sprintf("--%s=%s: %s", f.Name, given.Value, f.Why))
			}
		}
	})
	return lines
}

// Logging holds upstream's logging flags that have a meaning here: -v and --log-format.
type Logging struct {
	verbosity    int
	verbositySet bool
	format       string
}

// RegisterLogging defines -v and --log-format on fs.
func RegisterLogging(fs *flag.FlagSet) *Logging {
	l := &Logging{format: "text"}
	fs.Func("v", "Upstream's klog verbosity: -v=N logs lines of verbosity N and below (zap level -N); --zap-log-level wins.", func(v string) error {
		n, err := fmt.Sscan(v, &l.verbosity)
		if err != nil || n != 1 || l.verbosity < 0 || l.verbosity > 127 {
			return fmt.Errorf("want a verbosity from 0 to 127")
		}
		l.verbositySet = true
		return nil
	})
	fs.Func("log-format", "Upstream's log format, text or json (zap's console or JSON encoding); --zap-encoder wins.", func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("unknown logging format %q: use text or json", v)
		}
		l.format = v
		return nil
	})
	return l
}

// Apply sets o's level and encoder from -v and --log-format where --zap-log-level and --zap-encoder did not set them
// (zap.Options.BindFlags sets them only when given). Without --log-format the encoder stays zap's default (JSON).
func (l *Logging) Apply(fs *flag.FlagSet, o *zap.Options) {
	if l.verbositySet && o.Level == nil {
		o.Level = zapcore.Level(-int8(l.verbosity))
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "log-format" })
	if given && o.NewEncoder == nil {
		if l.format == "json" {
			zap.JSONEncoder()(o)
		} else {
			zap.ConsoleEncoder()(o)
		}
	}
}

// Markdown renders table as the rows of docs/pod-identity.md's migration table (upstream flag | here | why).
func Markdown(table []Flag) string {
	var b strings.Builder
	for _, f := range table {
		here := string(f.Disposition)
		if f.Disposition == Renamed {
			here = "renamed to `--" + f.Here + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s |\n", f.Name, here, f.Why)
	}
	return b.String()
}
