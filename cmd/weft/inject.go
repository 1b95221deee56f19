package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// runManifests is `weft inject` and `weft uninject`: read manifests from files or stdin,
// write them with their pod templates changed. Output is written only when every
// document was processed, so a failure never leaves half a manifest on stdout.
func runManifests(verb string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		meshFile      = fs.String("mesh", "", "inject: a file with the cluster's Mesh, whose spec.proxy gives the proxy defaults (default: the built-in defaults, which equal an empty Mesh's)")
		controlPlane  = fs.String("control-plane-namespace", meshdefaults.ControlPlaneNamespace, "inject: the control-plane namespace; its workloads are never injected")
		clusterDomain = fs.String("cluster-domain", meshdefaults.ClusterDomain, "inject: the cluster's DNS suffix, for the control-plane addresses")
		quiet         = fs.Bool("q", false, "do not report each workload on stderr")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: weft %s [flags] [FILE|-]...\n\n", verb)
		fmt.Fprintf(stderr, "Reads Kubernetes YAML (multi-document streams and Lists) from the files, or from stdin\n")
		fmt.Fprintf(stderr, "when there are none or for '-', and writes it to stdout with the pod templates of\n")
		fmt.Fprintf(stderr, "Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,\n")
		fmt.Fprintf(stderr, "Jobs and CronJobs %sed. Other documents pass through unchanged.\n\nFlags:\n", verb)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}

	t := transformer{verb: verb, env: inject.Env{ControlPlaneNamespace: *controlPlane, ClusterDomain: *clusterDomain},
		mesh: inject.DefaultMeshSpec()}
	if *meshFile != "" {
		spec, err := readMesh(*meshFile)
		if err != nil {
			fmt.Fprintf(stderr, "weft %s: %v\n", verb, err)
			return 1
		}
		t.mesh = spec
	}

	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var out bytes.Buffer
	var report []string
	for _, name := range inputs {
		var data []byte
		var err error
		if name == "-" {
			data, err = io.ReadAll(stdin)
			name = "<stdin>"
		} else {
			data, err = os.ReadFile(name)
		}
		if err != nil {
			fmt.Fprintf(stderr, "weft %s: reading %s: %v\n", verb, name, err)
			return 1
		}
		res, err := t.stream(data)
		if err != nil {
			fmt.Fprintf(stderr, "weft %s: %s: %v\n", verb, name, err)
			fmt.Fprintf(stderr, "weft %s: nothing was written\n", verb)
			return 1
		}
		if out.Len() > 0 && res.out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(res.out.Bytes())
		report = append(report, res.report...)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintf(stderr, "weft %s: writing the output: %v\n", verb, err)
		return 1
	}
	if !*quiet {
		for _, r := range report {
			fmt.Fprintln(stderr, r)
		}
	}
	return 0
}

// readMesh reads a Mesh manifest (as `kubectl get mesh default -o yaml` prints it, or
// as written in Git) and fills what the API server would have defaulted.
func readMesh(path string) (meshv1alpha1.MeshSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return meshv1alpha1.MeshSpec{}, fmt.Errorf("reading the Mesh: %w", err)
	}
	var m meshv1alpha1.Mesh
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return meshv1alpha1.MeshSpec{}, fmt.Errorf("%s: not a Mesh: %w", path, err)
	}
	if m.Kind != "Mesh" {
		return meshv1alpha1.MeshSpec{}, fmt.Errorf("%s: kind is %q, want Mesh", path, m.Kind)
	}
	return inject.WithMeshDefaults(m.Spec), nil
}
