package meshdefaults

import (
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list` with args from the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestControlPlaneDoesNotImportInjector: the compiler and the destination store read
// the injector's annotations from this package, not from internal/inject or the
// webhooks; an import of either would tie the pure compiler to admission code again.
func TestControlPlaneDoesNotImportInjector(t *testing.T) {
	for _, pkg := range []string{"./internal/compiler", "./internal/destination"} {
		for _, dep := range goList(t, "-deps", pkg) {
			if strings.HasSuffix(dep, "/weft/internal/inject") || strings.Contains(dep, "/weft/webhooks") {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}

// TestContractsImportOnlyTheStandardLibrary: the shared contract packages are imported
// by both planes and by the proxy's protocol packages, so they may depend on nothing
// outside the standard library.
func TestContractsImportOnlyTheStandardLibrary(t *testing.T) {
	pkgs := []string{"./internal/meshdefaults", "./internal/grpcwire", "./internal/svcname", "./internal/promtext", "./internal/peertls"}
	for _, pkg := range pkgs {
		for _, line := range goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg) {
			if line != "" && !strings.HasSuffix(line, strings.TrimPrefix(pkg, ".")) {
				t.Errorf("%s depends on %s", pkg, line)
			}
		}
	}
}
