/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"pault.ag/go/debian/deb"
)

// unpackDeb writes a package's files (its data.tar member) into root, as `dpkg-deb -x` does. Paths stay inside root:
// os.Root refuses any that would leave it, through ".." or a symbolic link.
func unpackDeb(file string, root *os.Root) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	ar, err := deb.LoadAr(f)
	if err != nil {
		return fmt.Errorf("not a Debian package: %w", err)
	}
	for {
		member, err := ar.Next()
		if errors.Is(err, io.EOF) {
			return errors.New("the package has no data.tar member")
		}
		if err != nil {
			return fmt.Errorf("reading the package: %w", err)
		}
		if !strings.HasPrefix(member.Name, "data.tar") {
			continue
		}
		data, err := decompress(member.Name, member.Data)
		if err != nil {
			return fmt.Errorf("%s: %w", member.Name, err)
		}
		defer data.Close()
		if err := untar(tar.NewReader(data), root); err != nil {
			return fmt.Errorf("%s: %w", member.Name, err)
		}
		return nil
	}
}

// decompress reads a data.tar member by its compression, named by its suffix (deb(5): xz, zstd, gzip or none).
func decompress(name string, r io.Reader) (io.ReadCloser, error) {
	// The decompressors read a few bytes at a time: unbuffered, each is a system call (xz ten times slower).
	r = bufio.NewReaderSize(r, 1<<16)
	switch path.Ext(name) {
	case ".xz":
		x, err := xz.NewReader(r)
		return io.NopCloser(x), err
	case ".zst":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	case ".gz":
		return gzip.NewReader(r)
	case ".tar":
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", path.Ext(name))
}

// untar writes a tar stream's directories, files and links into root, with the modes it gives them (owners are the
// layer's to set: every file of the image is root's).
func untar(tr *tar.Reader, root *os.Root) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "/" {
			continue
		}
		mode := fs.FileMode(h.Mode).Perm()
		if h.Mode&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := replace(root, name); err != nil {
				return err
			}
			out, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := replace(root, name); err != nil {
				return err
			}
			// The target is read inside the image, where absolute links point into its own root.
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := replace(root, name); err != nil {
				return err
			}
			if err := root.Link(path.Clean(strings.TrimPrefix(h.Linkname, "./")), name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected entry type %q", name, h.Typeflag)
		}
	}
}

// replace makes way for a file another package (or an earlier entry) already wrote, as dpkg does, and creates its
// parent directories.
func replace(root *os.Root, name string) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
