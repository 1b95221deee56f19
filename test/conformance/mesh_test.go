// Package conformance runs the mesh tests of the Gateway API conformance suite (the
// upstream module sigs.k8s.io/gateway-api/conformance, pinned in go.mod) against Weft on
// a cluster, and writes the upstream ConformanceReport. hack/conformance.sh brings the
// cluster up, installs Weft and the suite's echo image, and runs this test; without
// WEFT_CONFORMANCE_REPORT it skips, so a stray `go test ./...` here does nothing.
package conformance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/inject"
)

// claimedFeatures is what Weft tells the suite it supports. The suite runs a test only
// when every feature the test names is here, and the report lists the MESH-HTTP and
// MESH-GRPC extended features of this set as supported; so a feature belongs here only
// while its tests pass (conformance/README.md). The non-mesh names are HTTPRoute
// features that mesh tests also require. The set is the same for both CRD channels:
// v1.6.3 has no mesh test needing an experimental feature, and its HTTPRouteCORS and
// HTTPRouteRetry tests need a Gateway, so claiming those would only name features no
// mesh test checked; weft.go tests CORS on mesh routes instead.
var claimedFeatures = []features.FeatureName{
	// Core of the MESH-HTTP and MESH-GRPC profiles.
	features.SupportMesh,
	features.SupportHTTPRoute,
	features.SupportGRPCRoute,

	// Extended mesh features (all of features.MeshExtendedFeatures).
	features.SupportMeshClusterIPMatching,
	features.SupportMeshConsumerRoute,
	features.SupportMeshHTTPRouteRewritePath,
	features.SupportMeshHTTPRouteSchemeRedirect,
	features.SupportMeshHTTPRouteRedirectPort,
	features.SupportMeshHTTPRouteRedirectPath,
	features.SupportMeshHTTPRouteBackendRequestHeaderModification,
	features.SupportMeshHTTPRouteQueryParamMatching,
	features.SupportMeshHTTPRouteNamedRouteRule,

	// HTTPRoute features that mesh tests name besides the mesh ones.
	features.SupportHTTPRoute303RedirectStatusCode,
	features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRouteParentRefPort,
}

// tally counts the outcome of each mesh test as the suite's hook sees it.
type tally struct {
	mu                      sync.Mutex
	passed, failed, skipped []string
}

func (c *tally) record(t *testing.T, test suite.ConformanceTest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case t.Failed():
		c.failed = append(c.failed, test.ShortName)
	case t.Skipped():
		c.skipped = append(c.skipped, test.ShortName)
	default:
		c.passed = append(c.passed, test.ShortName)
	}
}

// meshTests is every test of the suite that needs the Mesh feature: the tests that the
// MESH-HTTP and MESH-GRPC profiles are made of.
func meshTests() []suite.ConformanceTest {
	var out []suite.ConformanceTest
	for _, ct := range tests.ConformanceTests {
		if slices.Contains(ct.Features, features.SupportMesh) {
			out = append(out, ct)
		}
	}
	return out
}

func TestMeshConformance(t *testing.T) {
	reportPath := os.Getenv("WEFT_CONFORMANCE_REPORT")
	if reportPath == "" {
		t.Skip("WEFT_CONFORMANCE_REPORT is not set: run make conformance (hack/conformance.sh)")
	}
	version := os.Getenv("WEFT_CONFORMANCE_VERSION")
	if version == "" {
		t.Fatal("WEFT_CONFORMANCE_VERSION (the Weft version under test) is not set")
	}
	all := meshTests()
	if len(all) == 0 {
		t.Fatal("the pinned suite has no mesh tests: the module or its filter changed")
	}

	// DefaultOptions reads KUBECONFIG and the suite's own flags, as upstream's
	// RunConformance does; what Weft's run needs is set over it.
	opts := conformance.DefaultOptions(t)
	// Weft's own manifests (weft.go) next to upstream's.
	opts.ManifestFS = append(opts.ManifestFS, weftManifests)
	opts.SupportedFeatures = claimedFeatures
	opts.EnableAllSupportedFeatures = false
	opts.ConformanceProfiles = []suite.ConformanceProfileName{
		suite.MeshHTTPConformanceProfileName,
		suite.MeshGRPCConformanceProfileName,
	}
	// Injection is switched on the way a user does it: on the suite's namespaces (the
	// webhook's selector sees the label; the annotation is what a pod inherits).
	opts.NamespaceLabels = map[string]string{inject.AnnotationInject: inject.InjectEnabled}
	opts.NamespaceAnnotations = map[string]string{inject.AnnotationInject: inject.InjectEnabled}
	opts.CleanupBaseResources = true
	opts.Implementation = confv1.Implementation{
		Organization: "weftmesh",
		Project:      "weft",
		URL:          "https://github.com/weftmesh/weft",
		Version:      version,
		Contact:      []string{"https://github.com/weftmesh/weft/issues"},
	}
	if err := opts.Implementation.Validate(); err != nil {
		t.Fatalf("implementation details: %v", err)
	}
	var results tally
	opts.Hook = func(st *testing.T, test suite.ConformanceTest, _ *suite.ConformanceTestSuite) {
		results.record(st, test)
	}

	cs, err := suite.NewConformanceTestSuite(opts)
	if err != nil {
		t.Fatalf("creating the conformance suite: %v", err)
	}
	// Registered before Setup so that a run that dies in Setup still says so; cleanups
	// run after the subtests, when every hook has recorded.
	t.Cleanup(func() {
		writeReport(t, cs, reportPath)
		results.mu.Lock()
		defer results.mu.Unlock()
		for _, name := range results.failed {
			t.Logf("FAILED mesh test: %s", name)
		}
		for _, name := range results.skipped {
			t.Logf("skipped mesh test: %s", name)
		}
		// A test the run never reached (Setup or the injection check stopped it) counts
		// as failed: the result line must not read as a clean run of fewer tests.
		failed := len(results.failed)
		if n := len(results.passed) + len(results.failed) + len(results.skipped); n != len(all) {
			t.Errorf("%d of the suite's %d mesh tests did not run", len(all)-n, len(all))
			failed += len(all) - n
		}
		// The result line CI shows (hack/conformance.sh repeats it after tearing down).
		fmt.Printf("conformance: %d passed, %d failed, %d skipped\n",
			len(results.passed), failed, len(results.skipped))
	})
	cs.Setup(t, all)
	requireMeshed(t, cs)
	if err := cs.Run(t, all); err != nil {
		t.Fatalf("running the suite: %v", err)
	}
	runWeftTests(t, cs)
}

// runWeftTests runs Weft's own mesh tests (weft.go) after the suite's, on the same
// base resources, and prints their own result line: they are not upstream's tests, so
// they stay out of the report.
func runWeftTests(t *testing.T, cs *suite.ConformanceTestSuite) {
	var passed, failed []string
	for _, test := range weftTests {
		if t.Run(test.ShortName, func(st *testing.T) { test.Run(st, cs) }) {
			passed = append(passed, test.ShortName)
		} else {
			failed = append(failed, test.ShortName)
		}
	}
	for _, name := range failed {
		t.Logf("FAILED Weft mesh test: %s", name)
	}
	// hack/conformance.sh repeats this line after tearing down.
	fmt.Printf("conformance (Weft mesh tests): %d passed, %d failed\n", len(passed), len(failed))
}

// requireMeshed stops the run unless every pod of the suite's namespaces carries Weft's
// proxy. Several mesh tests (MeshBasic, MeshTrafficSplit without routes) pass on a bare
// cluster through kube-proxy alone; without this check a run whose injection silently
// failed would credit Weft with them.
func requireMeshed(t *testing.T, cs *suite.ConformanceTestSuite) {
	t.Helper()
	for _, ns := range []string{suite.MeshNamespace, suite.MeshConsumerNamespace} {
		var pods corev1.PodList
		if err := cs.Client.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
			t.Fatalf("listing the pods of %s: %v", ns, err)
		}
		if len(pods.Items) == 0 {
			t.Fatalf("namespace %s has no pods", ns)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if !inject.IsInjected(&corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}) {
				t.Fatalf("pod %s/%s has no %s: Weft did not inject it (namespace labels %v)",
					ns, p.Name, inject.ProxyContainerName, cs.Applier.NamespaceLabels)
			}
		}
		t.Logf("all %d pods of %s carry %s", len(pods.Items), ns, inject.ProxyContainerName)
	}
}

// writeReport writes the suite's ConformanceReport as upstream's RunConformance does
// (YAML of confv1.ConformanceReport), so the file reads like the reports upstream keeps.
func writeReport(t *testing.T, cs *suite.ConformanceTestSuite, path string) {
	report, err := cs.Report()
	if err != nil {
		t.Errorf("building the report: %v", err)
		return
	}
	raw, err := yaml.Marshal(report)
	if err != nil {
		t.Errorf("encoding the report: %v", err)
		return
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Errorf("writing the report: %v", err)
		return
	}
	t.Logf("report written to %s:\n%s", path, raw)
}
