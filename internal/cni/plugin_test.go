package cni

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// countingGetter records lookups; pure unit tests only (the netns tests use a real API
// server).
type countingGetter struct {
	pod   *corev1.Pod
	calls int
}

func (g *countingGetter) GetPod(context.Context, string, string) (*corev1.Pod, error) {
	g.calls++
	return g.pod, nil
}

const conf = `{"cniVersion":"1.0.0","name":"n","type":"weft-cni","kubeconfig":"/k","excludeNamespaces":["kube-system"],` +
	`"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24","interface":0}],"dns":{}}}`

func TestAddPassesThroughWithoutLookup(t *testing.T) {
	for _, tc := range []struct{ name, args string }{
		{"not a Kubernetes pod", ""},
		{"excluded namespace", "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &countingGetter{}
			p := Plugin{Pods: func(*NetConf) (PodGetter, error) { return g, nil }, Log: logr.Discard()}
			var out bytes.Buffer
			// A netns that does not exist: the plugin must not even look.
			if err := p.Add(&skel.CmdArgs{Netns: "/nonexistent", Args: tc.args, StdinData: []byte(conf)}, &out); err != nil {
				t.Fatal(err)
			}
			if g.calls != 0 {
				t.Errorf("looked the pod up %d times", g.calls)
			}
			want := `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24","interface":0}],"dns":{}}` + "\n"
			if out.String() != want {
				t.Errorf("result %q, want prevResult untouched %q", out.String(), want)
			}
		})
	}
}

func TestAddWithoutPrevResultFails(t *testing.T) {
	p := Plugin{Log: logr.Discard()}
	err := p.Add(&skel.CmdArgs{StdinData: []byte(`{"cniVersion":"1.0.0","name":"n","type":"weft-cni"}`)}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "chained after") {
		t.Errorf("Add() = %v, want an error saying to chain it", err)
	}
}

func TestRulesFor(t *testing.T) {
	injected := map[string]string{meshdefaults.AnnotationInjected: "{}"}
	validator := func(args ...string) corev1.Container {
		return corev1.Container{Name: meshdefaults.ValidatorContainerName, Args: args}
	}
	tests := []struct {
		name    string
		pod     corev1.Pod
		want    *iptables.Config
		wantErr string
	}{
		{name: "unmeshed", pod: corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{validator("--validate")}}}},
		{name: "meshed with weft-init", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: injected},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "weft-init", Args: []string{"--proxy-uid=2102"}}}}}},
		{name: "meshed in CNI mode", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: injected},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{validator("--proxy-uid=3000", "--outbound-port=15001",
				"--skip-outbound-ports=5432", "--validate")}}},
			want: func() *iptables.Config {
				c := iptables.DefaultConfig()
				c.ProxyUID, c.OutboundPort = 3000, 15001
				c.SkipOutboundPorts = []iptables.PortRange{{From: 5432, To: 5432}}
				return &c
			}()},
		{name: "unknown flag from a newer injector", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: injected},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{validator("--redirect-udp", "--validate")}}},
			wantErr: "not weft-init's rule flags"},
		{name: "bad port", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: injected},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{validator("--inbound-port=70000")}}},
			wantErr: "65535"},
		{name: "same ports", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: injected},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{validator("--inbound-port=4140")}}},
			wantErr: "both 4140"},
		{name: "too many arguments", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: injected},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{validator(make([]string, iptables.MaxArgs+1)...)}}},
			wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RulesFor(&tt.pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if got != nil && (got.ProxyUID != tt.want.ProxyUID || got.OutboundPort != tt.want.OutboundPort ||
				len(got.SkipOutboundPorts) != 1 || got.SkipOutboundPorts[0] != tt.want.SkipOutboundPorts[0]) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
