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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Media types of the OCI image specification (image-spec v1.1).
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	// Uncompressed: the tarball is imported locally, never sent over a network, and
	// gzip would only cost CPU on a 2-core machine.
	mediaTypeLayer = "application/vnd.oci.image.layer.v1.tar"

	// annotationImageName is the name containerd's importer gives the image;
	// annotationRefName is the OCI layout's own tag annotation.
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// epoch dates every entry so that the layer's digest depends on content only.
var epoch = time.Unix(0, 0).UTC()

// Add copies Src from the host to Dst in the image. A directory is copied with its
// whole tree (Dst "/" merges it into the root); symlinks are kept as symlinks, not
// followed.
type Add struct {
	Src, Dst string
}

// Spec describes a single-layer image.
type Spec struct {
	// Name is the full reference, e.g. docker.io/library/pause:dev.
	Name       string
	Entrypoint []string
	Env        []string
	User       string
	WorkingDir string
	Adds       []Add
}

// entry is one file system object of the layer.
type entry struct {
	hdr  tar.Header
	data []byte
}

// baseFiles are in every image: a writable /tmp and the users the Weft images run as,
// so that numeric UIDs have names and tools that look users up do not fail.
func baseFiles() map[string]*entry {
	dir := func(name string, mode int64) *entry {
		return &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
	}
	file := func(name, content string) *entry {
		return &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}, data: []byte(content)}
	}
	return map[string]*entry{
		"etc": dir("etc", 0o755),
		"tmp": dir("tmp", 0o1777),
		"etc/passwd": file("etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\n"+
			"weft-proxy:x:2102:2102:weft-proxy:/:/sbin/nologin\n"+
			"nonroot:x:65532:65532:nonroot:/:/sbin/nologin\n"+
			"nobody:x:65534:65534:nobody:/:/sbin/nologin\n"),
		"etc/group": file("etc/group", "root:x:0:\nweft-proxy:x:2102:\nnonroot:x:65532:\nnobody:x:65534:\n"),
	}
}

// collect reads the host files named by adds into entries keyed by their path in the
// image (relative, without a leading slash).
func collect(adds []Add) (map[string]*entry, error) {
	entries := baseFiles()
	for _, a := range adds {
		// A destination of "/" merges a staged directory tree into the root.
		dst := strings.TrimPrefix(path.Clean(a.Dst), "/")
		root := filepath.Clean(a.Src)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			name := path.Join(dst, filepath.ToSlash(rel))
			if name == "." || name == "" {
				if !d.IsDir() {
					return fmt.Errorf("%s: only a directory can be added at the root", p)
				}
				return nil
			}
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			e := &entry{hdr: tar.Header{Name: name, Mode: int64(info.Mode().Perm())}}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				e.hdr.Typeflag, e.hdr.Linkname, e.hdr.Mode = tar.TypeSymlink, target, 0o777
			case info.IsDir():
				e.hdr.Typeflag = tar.TypeDir
			case info.Mode().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				e.hdr.Typeflag, e.hdr.Size, e.data = tar.TypeReg, int64(len(data)), data
			default:
				return fmt.Errorf("%s: unsupported file type %v", p, info.Mode().Type())
			}
			if info.Mode()&fs.ModeSetuid != 0 || info.Mode()&fs.ModeSetgid != 0 {
				// Images here never need privilege elevation by file mode.
				e.hdr.Mode &^= 0o6000
			}
			entries[name] = e
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", a.Src, err)
		}
	}
	// Parents that were not added explicitly become plain directories.
	for name := range entries {
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}}
			}
		}
	}
	return entries, nil
}

// layerTar writes the entries as a tar archive: sorted by path, so parents precede
// their children, and with owner and times fixed.
func layerTar(entries map[string]*entry) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		h := e.hdr
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = epoch, time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string   `json:"User,omitempty"`
		Env        []string `json:"Env,omitempty"`
		Entrypoint []string `json:"Entrypoint,omitempty"`
		WorkingDir string   `json:"WorkingDir,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		CreatedBy string `json:"created_by"`
	} `json:"history"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Build returns the blobs of the image (digest → content) and the index.json, and the
// manifest's digest, which is what containerd reports as the image's digest.
func Build(spec Spec) (blobs map[string][]byte, indexJSON []byte, manifestDigest string, err error) {
	entries, err := collect(spec.Adds)
	if err != nil {
		return nil, nil, "", err
	}
	layer, err := layerTar(entries)
	if err != nil {
		return nil, nil, "", err
	}
	layerDigest := digestOf(layer)

	var cfg imageConfig
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config.User = spec.User
	cfg.Config.Env = spec.Env
	if len(cfg.Config.Env) == 0 {
		cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cfg.Config.Entrypoint = spec.Entrypoint
	cfg.Config.WorkingDir = spec.WorkingDir
	cfg.RootFS.Type = "layers"
	// The layer is uncompressed, so its diff ID is its digest.
	cfg.RootFS.DiffIDs = []string{layerDigest}
	cfg.History = []struct {
		CreatedBy string `json:"created_by"`
	}{{CreatedBy: "hack/images/ocibuild"}}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, "", err
	}

	m := manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: digestOf(cfgJSON), Size: int64(len(cfgJSON))},
		Layers:        []descriptor{{MediaType: mediaTypeLayer, Digest: layerDigest, Size: int64(len(layer))}},
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return nil, nil, "", err
	}
	manifestDigest = digestOf(mJSON)

	tag := "latest"
	if i := strings.LastIndex(spec.Name, ":"); i > strings.LastIndex(spec.Name, "/") {
		tag = spec.Name[i+1:]
	}
	idx := index{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []descriptor{{
			MediaType: mediaTypeManifest, Digest: manifestDigest, Size: int64(len(mJSON)),
			Platform:    &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{annotationImageName: spec.Name, annotationRefName: tag},
		}},
	}
	indexJSON, err = json.Marshal(idx)
	if err != nil {
		return nil, nil, "", err
	}
	blobs = map[string][]byte{layerDigest: layer, m.Config.Digest: cfgJSON, manifestDigest: mJSON}
	return blobs, indexJSON, manifestDigest, nil
}

// Write builds the image and writes it as an OCI image layout tarball at out (replaced
// atomically). It returns the manifest digest.
func Write(out string, spec Spec) (string, error) {
	blobs, indexJSON, digest, err := Build(spec)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".ocibuild-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
	}
	file := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return "", err
	}
	if err := file("index.json", indexJSON); err != nil {
		return "", err
	}
	if err := dir("blobs/"); err != nil {
		return "", err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return "", err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// CreateTemp made it private; the image is no secret.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return digest, nil
}
