package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
)

// cniEnv is a real API server holding the test's pods, the weft-cni binary, and a
// kubeconfig for it: the plugin runs exactly as the container runtime runs it (a
// process, CNI_* variables, the conflist entry on stdin, the result on stdout).
type cniEnv struct {
	kube       kubernetes.Interface
	plugin     string
	kubeconfig string
}

func startCNIEnv(t *testing.T) *cniEnv {
	t.Helper()
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "weft-cni.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	plugin, err := bins.Get("./cmd/weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	return &cniEnv{kube: kubernetes.NewForConfigOrDie(rest.CopyConfig(cfg)), plugin: plugin, kubeconfig: path}
}

// pod creates a pod in namespace "cni" from tpl, injected in the given mode first
// (mode "" leaves it unmeshed), and returns what the API server stored.
func (e *cniEnv) pod(t *testing.T, name string, annotations map[string]string, mode meshv1alpha1.RedirectMode) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if _, err := e.kube.CoreV1().Namespaces().Get(ctx, "cni", metav1.GetOptions{}); err != nil {
		if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cni"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tpl := podTemplate(annotations)
	if mode != "" {
		mesh := inject.DefaultMeshSpec()
		mesh.Proxy.RedirectMode = mode
		if errs := inject.Inject(&tpl, inject.Namespace{Name: "cni"}, mesh, inject.Env{}); len(errs) > 0 {
			t.Fatalf("inject: %v", errs.ToAggregate())
		}
	}
	p := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	p.Name, p.Namespace = name, "cni"
	got, err := e.kube.CoreV1().Pods("cni").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func podTemplate(annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: maps.Clone(annotations)},
		Spec: corev1.PodSpec{
			ServiceAccountName: "default",
			Containers:         []corev1.Container{{Name: "app", Image: "app:dev"}},
		},
	}
}

// prevResult is what the bridge plugin hands on in the local cluster's chain.
const prevResult = `{"cniVersion":"%s","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"%s"}],` +
	`"ips":[{%s"address":"10.244.0.5/24","gateway":"10.244.0.1"%s}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`

func prevResultFor(version, netnsPath string) string {
	if version == "0.4.0" {
		return fmt.Sprintf(prevResult, version, netnsPath, `"version":"4",`, `,"interface":0`)
	}
	return fmt.Sprintf(prevResult, version, netnsPath, "", `,"interface":0`)
}

type cniCall struct {
	command, version string
	pod              *corev1.Pod
	// podName/podUID override the pod's, for pods that do not exist.
	podName, podUID string
	netns           string
}

// run invokes the plugin as a runtime does and returns its stdout and exit error.
func (e *cniEnv) run(t *testing.T, c cniCall) (string, string, error) {
	t.Helper()
	if c.version == "" {
		c.version = "1.0.0"
	}
	name, uid := c.podName, c.podUID
	if c.pod != nil {
		name, uid = c.pod.Name, string(c.pod.UID)
	}
	conf := fmt.Sprintf(`{"cniVersion":"%s","name":"weft-local","type":"weft-cni","kubeconfig":%q,"prevResult":%s}`,
		c.version, e.kubeconfig, prevResultFor(c.version, c.netns))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.plugin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"CNI_COMMAND=" + c.command,
		"CNI_CONTAINERID=0123456789abcdef",
		"CNI_NETNS=" + c.netns,
		"CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin",
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=cni;K8S_POD_NAME=" + name + ";K8S_POD_INFRA_CONTAINER_ID=0123;K8S_POD_UID=" + uid,
	}
	cmd.Stdin = strings.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func nsPath(ns *NS) string { return filepath.Join(runDir, ns.Name) }

// sameJSON says whether the plugin printed want, byte for byte but for a final newline:
// the previous result passes through untouched, including fields (an empty "dns")
// that a decode and re-encode would drop.
func sameJSON(t *testing.T, got, want string) bool {
	t.Helper()
	if !json.Valid([]byte(got)) {
		t.Fatalf("plugin output is not JSON: %q", got)
	}
	return strings.TrimSuffix(got, "\n") == want
}

// emptyNAT is iptables-save of a namespace nobody touched.
func emptyNAT(t *testing.T) string {
	t.Helper()
	return save(t, New(t, "cni-empty"))
}

func TestCNIPlugin(t *testing.T) {
	RequireRoot(t)
	e := startCNIEnv(t)
	annotations := map[string]string{
		inject.AnnotationSkipOutboundPorts: "5432,9000-9100",
		inject.AnnotationSkipSubnets:       "10.96.0.0/12,fd00:96::/64",
	}
	meshed := e.pod(t, "meshed", annotations, meshv1alpha1.RedirectCNI)
	viaInit := e.pod(t, "via-init", annotations, meshv1alpha1.RedirectInitContainer)
	plain := e.pod(t, "plain", nil, "")
	empty := emptyNAT(t)

	t.Run("ADD on a meshed pod installs weft-init's rules", func(t *testing.T) {
		for _, v := range []string{"1.0.0", "0.4.0"} {
			ns := New(t, "cni-add-"+strings.ReplaceAll(v, ".", ""))
			out, stderr, err := e.run(t, cniCall{command: "ADD", version: v, pod: meshed, netns: nsPath(ns)})
			if err != nil {
				t.Fatalf("CNI %s ADD: %v\nstdout: %s\nstderr: %s", v, err, out, stderr)
			}
			if !sameJSON(t, out, prevResultFor(v, nsPath(ns))) {
				t.Errorf("CNI %s ADD changed the previous result:\ngot  %s\nwant %s", v, out, prevResultFor(v, nsPath(ns)))
			}
			// The same pod meshed with weft-init: its container's arguments, run by
			// weft-init, must leave the very same tables.
			ref := New(t, "cni-ref-"+strings.ReplaceAll(v, ".", ""))
			runInit(t, ref, viaInit.Spec.InitContainers[0].Args...)
			got, want := save(t, ns), save(t, ref)
			if got != want {
				t.Errorf("weft-cni's rules differ from weft-init's for the same pod:\nweft-cni:\n%s\nweft-init:\n%s", got, want)
			}
			if !strings.Contains(got, "--dport 9000:9100") || !strings.Contains(got, "-d 10.96.0.0/12") {
				t.Errorf("the pod's skip annotations are not in the rules:\n%s", got)
			}
			// ADD again (a runtime retry) converges to the same tables.
			if out, stderr, err := e.run(t, cniCall{command: "ADD", version: v, pod: meshed, netns: nsPath(ns)}); err != nil {
				t.Fatalf("second ADD: %v: %s %s", err, out, stderr)
			}
			if again := save(t, ns); again != got {
				t.Errorf("a second ADD changed the tables:\n%s\nthen:\n%s", got, again)
			}
		}
	})

	t.Run("pods the plugin must leave alone pass through untouched", func(t *testing.T) {
		for i, tc := range []struct {
			name string
			call cniCall
		}{
			{"unmeshed pod", cniCall{pod: plain}},
			{"pod meshed with weft-init", cniCall{pod: viaInit}},
		} {
			ns := New(t, fmt.Sprintf("cni-pass%d", i))
			tc.call.command, tc.call.netns = "ADD", nsPath(ns)
			out, stderr, err := e.run(t, tc.call)
			if err != nil {
				t.Fatalf("%s: ADD: %v: %s", tc.name, err, stderr)
			}
			if !sameJSON(t, out, prevResultFor("1.0.0", nsPath(ns))) {
				t.Errorf("%s: result changed: %s", tc.name, out)
			}
			if got := save(t, ns); got != empty {
				t.Errorf("%s: the plugin wrote rules:\n%s", tc.name, got)
			}
		}
	})

	t.Run("a pod that cannot be read fails the sandbox", func(t *testing.T) {
		ns := New(t, "cni-missing")
		for _, tc := range []struct {
			name, want string
			call       cniCall
		}{
			{"missing pod", "cannot read pod cni/gone", cniCall{podName: "gone"}},
			{"replaced pod", "was replaced", cniCall{podName: meshed.Name, podUID: "00000000-0000-0000-0000-000000000000"}},
		} {
			tc.call.command, tc.call.netns = "ADD", nsPath(ns)
			out, _, err := e.run(t, tc.call)
			if err == nil {
				t.Fatalf("%s: ADD succeeded: %s", tc.name, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("%s: the error says %s, want it to say %q", tc.name, out, tc.want)
			}
			if got := save(t, ns); got != empty {
				t.Errorf("%s: rules written anyway:\n%s", tc.name, got)
			}
		}
	})

	t.Run("CHECK passes with the rules and fails without them", func(t *testing.T) {
		ns := New(t, "cni-check")
		if out, _, err := e.run(t, cniCall{command: "CHECK", pod: meshed, netns: nsPath(ns)}); err == nil ||
			!strings.Contains(out, "lacks its") {
			t.Fatalf("CHECK on a namespace without rules: err=%v out=%s", err, out)
		}
		if _, stderr, err := e.run(t, cniCall{command: "ADD", pod: meshed, netns: nsPath(ns)}); err != nil {
			t.Fatalf("ADD: %v: %s", err, stderr)
		}
		if out, stderr, err := e.run(t, cniCall{command: "CHECK", pod: meshed, netns: nsPath(ns)}); err != nil {
			t.Fatalf("CHECK after ADD: %v: %s %s", err, out, stderr)
		}
		if _, _, err := e.run(t, cniCall{command: "CHECK", pod: plain, netns: nsPath(ns)}); err != nil {
			t.Fatalf("CHECK on an unmeshed pod: %v", err)
		}
	})

	t.Run("DEL succeeds, even for a namespace that is gone", func(t *testing.T) {
		if out, stderr, err := e.run(t, cniCall{command: "DEL", pod: meshed, netns: "/run/netns/weft-test-gone"}); err != nil {
			t.Fatalf("DEL: %v: %s %s", err, out, stderr)
		}
	})

	t.Run("the validator fails without the rules and passes with them", func(t *testing.T) {
		a, _ := twoPods(t)
		validator := meshed.Spec.InitContainers[0]
		if validator.Name != inject.ValidatorContainerName {
			t.Fatalf("first init container is %q", validator.Name)
		}
		uid := uint32(*validator.SecurityContext.RunAsUser)
		start := time.Now()
		out, err := runValidator(t, a, uid, validator.Args)
		if err == nil {
			t.Fatalf("the validator passed in a namespace without rules: %s", out)
		}
		if !strings.Contains(out, "Traffic redirection is not in place") || !strings.Contains(out, "weft-cni") {
			t.Errorf("the validator's message does not say what is wrong and what to do: %s", out)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("the validator took %v to fail, want it bounded by its 5s probe deadline", d)
		}
		if _, stderr, err := e.run(t, cniCall{command: "ADD", pod: meshed, netns: nsPath(a)}); err != nil {
			t.Fatalf("ADD: %v: %s", err, stderr)
		}
		if out, err := runValidator(t, a, uid, validator.Args); err != nil {
			t.Fatalf("the validator failed with the plugin's rules in place: %v: %s", err, out)
		}
	})
}

// runValidator runs weft-init with the validator container's arguments in ns as uid,
// with no capability (an unprivileged process), and returns its output.
func runValidator(t *testing.T, ns *NS, uid uint32, args []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, weftInit(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	return out.String(), err
}
