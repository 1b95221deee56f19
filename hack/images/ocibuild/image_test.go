/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readTar returns the regular files, symlink targets and directory modes of a tar.
type tarContent struct {
	files map[string][]byte
	modes map[string]int64
	links map[string]string
	dirs  map[string]bool
	order []string
}

func readTar(t *testing.T, r io.Reader) tarContent {
	t.Helper()
	c := tarContent{files: map[string][]byte{}, modes: map[string]int64{}, links: map[string]string{}, dirs: map[string]bool{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return c
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: owner %d:%d, mtime %v; want root and the epoch", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		c.order = append(c.order, h.Name)
		c.modes[h.Name] = h.Mode
		switch h.Typeflag {
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			c.files[h.Name] = b
		case tar.TypeSymlink:
			c.links[h.Name] = h.Linkname
		case tar.TypeDir:
			c.dirs[h.Name] = true
		}
	}
}

func TestWriteImageLayout(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "app"), []byte("#!binary"), 0o755))
	must(os.MkdirAll(filepath.Join(src, "tree", "usr", "sbin"), 0o755))
	must(os.WriteFile(filepath.Join(src, "tree", "usr", "sbin", "multi"), []byte("multi"), 0o4755))
	must(os.Symlink("multi", filepath.Join(src, "tree", "usr", "sbin", "tool")))
	must(os.Symlink("usr/sbin", filepath.Join(src, "tree", "sbin")))

	tests := []struct {
		name    string
		spec    Spec
		wantErr string
		// layer: path → content ("" for directories), "->target" for symlinks.
		layer map[string]string
		modes map[string]int64
	}{
		{
			name: "binary at a nested path",
			spec: Spec{Name: "docker.io/library/app:dev", Entrypoint: []string{"/bin/app"}, User: "65532:65532",
				Adds: []Add{{Src: filepath.Join(src, "app"), Dst: "/bin/app"}}},
			layer: map[string]string{"bin/": "", "bin/app": "#!binary", "tmp/": "", "etc/": ""},
			modes: map[string]int64{"bin/app": 0o755, "tmp/": 0o1777, "bin/": 0o755},
		},
		{
			name:  "staged tree merged at the root keeps symlinks and drops setuid",
			spec:  Spec{Name: "docker.io/library/tree:dev", Adds: []Add{{Src: filepath.Join(src, "tree"), Dst: "/"}}},
			layer: map[string]string{"usr/sbin/multi": "multi", "usr/sbin/tool": "->multi", "sbin": "->usr/sbin"},
			modes: map[string]int64{"usr/sbin/multi": 0o755},
		},
		{
			name:    "a file cannot become the root",
			spec:    Spec{Name: "docker.io/library/bad:dev", Adds: []Add{{Src: filepath.Join(src, "app"), Dst: "/"}}},
			wantErr: "only a directory can be added at the root",
		},
		{
			name:    "missing source",
			spec:    Spec{Name: "docker.io/library/bad:dev", Adds: []Add{{Src: filepath.Join(src, "nope"), Dst: "/nope"}}},
			wantErr: "no such file",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "image.tar")
			digest, err := Write(out, tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Write error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			layout := readTar(t, f)
			if got := string(layout.files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
				t.Errorf("oci-layout = %q", got)
			}
			blob := func(d string) []byte {
				t.Helper()
				b, ok := layout.files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")]
				if !ok {
					t.Fatalf("blob %s missing from the layout", d)
				}
				if got := digestOf(b); got != d {
					t.Fatalf("blob %s has digest %s", d, got)
				}
				return b
			}
			var idx index
			must(json.Unmarshal(layout.files["index.json"], &idx))
			if len(idx.Manifests) != 1 {
				t.Fatalf("index has %d manifests, want 1", len(idx.Manifests))
			}
			md := idx.Manifests[0]
			if md.Digest != digest || md.Annotations[annotationImageName] != tc.spec.Name || md.Annotations[annotationRefName] != "dev" {
				t.Errorf("index descriptor %+v; want digest %s, name %s, tag dev", md, digest, tc.spec.Name)
			}
			var m manifest
			must(json.Unmarshal(blob(md.Digest), &m))
			var cfg imageConfig
			must(json.Unmarshal(blob(m.Config.Digest), &cfg))
			if len(m.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest {
				t.Fatalf("layers %+v, diff IDs %v: want one uncompressed layer whose diff ID is its digest", m.Layers, cfg.RootFS.DiffIDs)
			}
			if strings.Join(cfg.Config.Entrypoint, " ") != strings.Join(tc.spec.Entrypoint, " ") || cfg.Config.User != tc.spec.User {
				t.Errorf("config %+v does not carry the entrypoint %v and user %q", cfg.Config, tc.spec.Entrypoint, tc.spec.User)
			}
			layer := readTar(t, bytes.NewReader(blob(m.Layers[0].Digest)))
			for i := 1; i < len(layer.order); i++ {
				if layer.order[i-1] >= layer.order[i] {
					t.Errorf("layer entries out of order: %q before %q", layer.order[i-1], layer.order[i])
				}
			}
			for p, want := range tc.layer {
				switch {
				case strings.HasSuffix(p, "/"):
					if !layer.dirs[p] {
						t.Errorf("layer lacks directory %s", p)
					}
				case strings.HasPrefix(want, "->"):
					if got := layer.links[p]; got != strings.TrimPrefix(want, "->") {
						t.Errorf("symlink %s -> %q, want %q", p, got, strings.TrimPrefix(want, "->"))
					}
				default:
					if got, ok := layer.files[p]; !ok || string(got) != want {
						t.Errorf("file %s = %q (present %v), want %q", p, got, ok, want)
					}
				}
			}
			for p, want := range tc.modes {
				if got := layer.modes[p]; got != want {
					t.Errorf("mode of %s = %o, want %o", p, got, want)
				}
			}

			// The same inputs give the same image: nothing to re-import.
			again, err := Write(filepath.Join(t.TempDir(), "again.tar"), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if again != digest {
				t.Errorf("rebuilding gave digest %s, first build %s", again, digest)
			}
		})
	}
}
