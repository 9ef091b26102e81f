/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package image

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A package's files land inside the image's root or not at all: neither ".." nor a link it made earlier leads out.
func TestUnpackStaysInsideTheRoot(t *testing.T) {
	for name, entries := range map[string][]tar.Header{
		"dot-dot":        {{Name: "./../outside", Typeflag: tar.TypeReg, Mode: 0o644}},
		"through a link": {{Name: "./lib", Typeflag: tar.TypeSymlink, Linkname: "PARENT"}, {Name: "./lib/outside", Typeflag: tar.TypeReg, Mode: 0o644}},
		"hard link out":  {{Name: "./passwd", Typeflag: tar.TypeLink, Linkname: "../outside-target"}},
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			if err := os.WriteFile(filepath.Join(parent, "outside-target"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			rootfs := filepath.Join(parent, "rootfs")
			if err := os.Mkdir(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range entries {
				if h.Linkname == "PARENT" {
					h.Linkname = parent
				}
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			root, err := os.OpenRoot(rootfs)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			if err := untar(tar.NewReader(&buf), root); err == nil {
				t.Fatal("unpacked an entry that leaves the root")
			}
			if _, err := os.Lstat(filepath.Join(parent, "outside")); err == nil {
				t.Fatal("a file was written outside the root")
			}
		})
	}
}
