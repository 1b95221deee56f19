package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// newManifestsCommand is `weft inject` and `weft uninject`: read manifests from files
// or stdin, write them with their pod templates changed. Output is written only when
// every document was processed, so a failure never leaves half a manifest on stdout.
func newManifestsCommand(c *cli, verb string) *cobra.Command {
	var (
		meshFile, controlPlane, clusterDomain string
		quiet                                 bool
	)
	cmd := &cobra.Command{
		Use:   verb + " [FILE|-]...",
		Short: map[string]string{"inject": "add the Weft proxy to the workloads in Kubernetes manifests", "uninject": "remove the Weft proxy from the workloads in Kubernetes manifests"}[verb],
		Long: "Reads Kubernetes YAML (multi-document streams and Lists) from the files, or from stdin\n" +
			"when there are none or for '-', and writes it to stdout with the pod templates of\n" +
			"Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,\n" +
			"Jobs and CronJobs " + verb + "ed. Other documents pass through unchanged.",
		Example: "  kubectl get deploy web -o yaml | weft " + verb + " - | kubectl apply -f -",
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"yaml", "yml", "json"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(_ *cobra.Command, args []string) error {
			return manifests(c, verb, args, meshFile, inject.Env{ControlPlaneNamespace: controlPlane, ClusterDomain: clusterDomain}, quiet)
		},
	}
	f := cmd.Flags()
	f.StringVar(&meshFile, "mesh", "", "inject: a file with the cluster's Mesh, whose spec.proxy gives the proxy defaults (default: the built-in defaults, which equal an empty Mesh's)")
	f.StringVar(&controlPlane, "control-plane-namespace", meshdefaults.ControlPlaneNamespace, "inject: the control-plane namespace; its workloads are never injected")
	f.StringVar(&clusterDomain, "cluster-domain", meshdefaults.ClusterDomain, "inject: the cluster's DNS suffix, for the control-plane addresses")
	f.BoolVarP(&quiet, "quiet", "q", false, "do not report each workload on stderr")
	return cmd
}

func manifests(c *cli, verb string, inputs []string, meshFile string, env inject.Env, quiet bool) error {
	t := transformer{verb: verb, env: env, mesh: inject.DefaultMeshSpec()}
	if meshFile != "" {
		spec, err := readMesh(meshFile)
		if err != nil {
			return err
		}
		t.mesh = spec
	}
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var out bytes.Buffer
	var report []string
	for _, name := range inputs {
		var data []byte
		var err error
		if name == "-" {
			data, err = io.ReadAll(c.in)
			name = "<stdin>"
		} else {
			data, err = os.ReadFile(name)
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		res, err := t.stream(data)
		if err != nil {
			return fmt.Errorf("%s: %w\nnothing was written", name, err)
		}
		if out.Len() > 0 && res.out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(res.out.Bytes())
		report = append(report, res.report...)
	}
	if _, err := c.out.Write(out.Bytes()); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	if !quiet {
		for _, r := range report {
			fmt.Fprintln(c.errOut, r)
		}
	}
	return nil
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
