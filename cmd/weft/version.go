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
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/meshdefaults"
)

// buildVersion is the CLI's release, set when building one:
// go build -ldflags "-X main.buildVersion=v0.3.0" ./cmd/weft. Without it the version comes
// from the Go build information (the module version, or the commit a source build saw).
var buildVersion string

// clientVersion is what 'weft version' says about this binary.
func clientVersion(bi *debug.BuildInfo, ok bool) string {
	if buildVersion != "" {
		return buildVersion
	}
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "dev+" + rev + dirty
}

// versionInfo is weft version's output (-o json|yaml).
type versionInfo struct {
	Client       string               `json:"clientVersion"`
	ControlPlane *controlPlaneVersion `json:"controlPlane,omitempty"`
}

// controlPlaneVersion is the installed control plane's version: the weft-controller
// Deployment's image tag (what 'weft install' and the Helm chart set, and what the
// injector stamps on proxies as weft.dev/proxy-version).
type controlPlaneVersion struct {
	Version   string `json:"version"`
	Image     string `json:"image"`
	Namespace string `json:"namespace"`
	Ready     int32  `json:"readyReplicas"`
	Replicas  int32  `json:"replicas"`
}

func newVersionCommand(c *cli) *cobra.Command {
	var (
		clientOnly   bool
		controlPlane string
		output       string
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "the versions of this CLI and of the installed control plane",
		Long: "Prints this CLI's version and the control plane's: the image tag of the weft-controller\n" +
			"Deployment in --control-plane-namespace. --client prints only the CLI's and needs no cluster.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			bi, ok := debug.ReadBuildInfo()
			v := versionInfo{Client: clientVersion(bi, ok)}
			var cpErr error
			if !clientOnly {
				kc, err := c.clients()
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				v.ControlPlane, cpErr = readControlPlaneVersion(ctx, kc.kube, controlPlane)
			}
			if err := printVersion(c.out, output, v, clientOnly); err != nil {
				return err
			}
			return cpErr
		},
	}
	f := cmd.Flags()
	f.BoolVar(&clientOnly, "client", false, "print only the client's version (no cluster needed)")
	f.StringVar(&controlPlane, "control-plane-namespace", meshdefaults.ControlPlaneNamespace, "the control plane's namespace")
	addOutputFlag(cmd, &output, "table", "json", "yaml")
	return cmd
}

// readControlPlaneVersion reads the weft-controller Deployment of ns.
func readControlPlaneVersion(ctx context.Context, kube kubernetes.Interface, ns string) (*controlPlaneVersion, error) {
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, controllerDeployment, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no control plane: Deployment %s/%s not found (install Weft with 'weft install', or pass --control-plane-namespace)", ns, controllerDeployment)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Deployment %s/%s: %w", ns, controllerDeployment, err)
	}
	cs := d.Spec.Template.Spec.Containers
	if len(cs) == 0 {
		return nil, fmt.Errorf("the Deployment %s/%s has no containers", ns, controllerDeployment)
	}
	img := cs[0].Image
	for _, c := range cs {
		if c.Name == "controller" {
			img = c.Image
		}
	}
	v := &controlPlaneVersion{Version: imageTag(img), Image: img, Namespace: ns, Ready: d.Status.ReadyReplicas, Replicas: 1}
	if d.Spec.Replicas != nil {
		v.Replicas = *d.Spec.Replicas
	}
	return v, nil
}

// imageTag is an image reference's tag ("v0.3.0" of registry:5000/weft-controller:v0.3.0),
// its digest when it has no tag, or "latest" when it names neither, as a runtime would
// pull it.
func imageTag(ref string) string {
	name, digest, hasDigest := strings.Cut(ref, "@")
	slash := strings.LastIndex(name, "/")
	if colon := strings.LastIndex(name, ":"); colon > slash {
		return name[colon+1:]
	}
	if hasDigest {
		return digest
	}
	return "latest"
}

func printVersion(w io.Writer, format string, v versionInfo, clientOnly bool) error {
	if format != "table" {
		return printStructured(w, format, v)
	}
	fmt.Fprintf(w, "Client version: %s\n", v.Client)
	if clientOnly {
		return nil
	}
	if v.ControlPlane == nil {
		_, err := fmt.Fprintln(w, "Control plane version: unavailable")
		return err
	}
	cp := v.ControlPlane
	_, err := fmt.Fprintf(w, "Control plane version: %s (%s/%s, image %s, %d/%d ready)\n", cp.Version, cp.Namespace, controllerDeployment, cp.Image, cp.Ready, cp.Replicas)
	return err
}
