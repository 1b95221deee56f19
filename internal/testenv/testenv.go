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

// Package testenv starts a real kube-apiserver and etcd (built by hack/kube-binaries.sh)
// with every CRD Weft uses installed: Weft's own, the Gateway API standard channel and
// cert-manager's. Every envtest suite of the project starts its API server through it.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	weftscheme "github.com/weftmesh/weft/internal/scheme"
)

// Scheme knows every kind Weft uses; it is internal/scheme's.
var Scheme = weftscheme.Scheme

// RepoRoot returns the repository root: the nearest parent of the working directory
// that holds go.mod. Tests run in their package's directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// New returns an envtest environment with every CRD directory installed. It finds the
// API server binaries through KUBEBUILDER_ASSETS, or else by running
// hack/kube-binaries.sh (which builds them once into the user's cache).
func New() (*envtest.Environment, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		out, err := exec.Command(filepath.Join(root, "hack", "kube-binaries.sh")).Output()
		if err != nil {
			return nil, fmt.Errorf("building the test API server with hack/kube-binaries.sh: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		assets = lines[len(lines)-1]
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths: []string{
			filepath.Join(root, "config", "crd", "bases"),
			filepath.Join(root, "config", "crd", "gateway-api"),
			filepath.Join(root, "config", "cert-manager", "crds"),
		},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme,
	}, nil
}

// Kustomize builds a kustomization of config/ (e.g. "config/default") with the
// repository's pinned kustomize, installing it with make when it is missing, and returns
// the objects it renders.
func Kustomize(dir string) ([]*unstructured.Unstructured, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	kustomize := filepath.Join(root, "bin", "kustomize")
	if _, err := os.Stat(kustomize); err != nil {
		mk := exec.Command("make", "kustomize")
		mk.Dir = root
		if out, err := mk.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("make kustomize: %w: %s", err, out)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kustomize, "build", filepath.Join(root, dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w: %s", dir, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding kustomize build %s: %w", dir, err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}
