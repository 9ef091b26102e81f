/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package buildinputs keeps go test's result cache honest for tests that build a program and run it.
//
// go test reuses a passing result until the test binary, its flags, an environment variable it read or a file of the
// module it opened changes. A program a test builds with `go build` and runs (the controller the soak kills, the
// agent the image holds) is none of those: without more, an edit to the controller would leave the soak passing from
// the cache. Record opens what such a program is built from, so the cache sees it.
package buildinputs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var recorded sync.Map // the programs' key -> *record

type record struct {
	once sync.Once
	err  error
}

// Record opens, in the running test, the directory of every package of the module that the programs (import paths
// or ./cmd/... patterns, relative to moduleRoot) link, and go.mod and go.sum: go test hashes an opened directory's
// listing with each file's size and modification time, so a changed, added or removed source file, or another
// dependency version, reruns the test. It runs `go list` once per set of programs per test process; call it from the
// test (or a helper it calls) that builds them, not from TestMain, whose own opens go test does not see.
func Record(moduleRoot string, programs ...string) error {
	key := moduleRoot + "\x00" + strings.Join(programs, "\x00")
	v, _ := recorded.LoadOrStore(key, &record{})
	r := v.(*record)
	r.once.Do(func() { r.err = open(moduleRoot, programs) })
	return r.err
}

func open(moduleRoot string, programs []string) error {
	list := exec.Command("go", append([]string{"list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}"}, programs...)...)
	list.Dir = moduleRoot
	var stdout, stderr bytes.Buffer
	list.Stdout, list.Stderr = &stdout, &stderr
	if err := list.Run(); err != nil {
		return fmt.Errorf("go list -deps %s: %w\n%s", strings.Join(programs, " "), err, stderr.Bytes())
	}
	paths := append(strings.Split(strings.TrimSpace(stdout.String()), "\n"),
		filepath.Join(moduleRoot, "go.mod"), filepath.Join(moduleRoot, "go.sum"))
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("recording the inputs of %s: %w", strings.Join(programs, " "), err)
		}
		// A directory is hashed by its listing, which go test reads itself: opening it is enough.
		_ = f.Close()
	}
	return nil
}
