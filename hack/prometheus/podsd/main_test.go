package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestRender: the shipped scrape configuration renders into a prometheus.yml whose
// Kubernetes discovery is replaced by podsd's, and Prometheus' own checker accepts it
// (when promtool, from Debian's prometheus package, is installed).
func TestRender(t *testing.T) {
	raw, err := os.ReadFile("../../../config/prometheus/scrape-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := render(raw, "http://127.0.0.1:9096/pods", token, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"url: http://127.0.0.1:9096/pods\n", "url: http://127.0.0.1:9096/pods?namespace=weft-system", "credentials_file: " + token, "scrape_interval: 5s"} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered configuration lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "kubernetes_sd_configs") {
		t.Errorf("kubernetes_sd_configs left in:\n%s", s)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (apt-get install prometheus): configuration not checked by Prometheus")
		return
	}
	f := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(promtool, "check", "config", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, b, s)
	}
}

func TestPodGroups(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-demo", Name: "web-1", Labels: map[string]string{"app.kubernetes.io/name": "web"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f7c9b4", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "weft-proxy", Ports: []corev1.ContainerPort{{Name: "weft-admin", ContainerPort: 4191}}}},
			Containers:     []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}}},
		},
		Status: corev1.PodStatus{PodIP: "10.244.0.7", Phase: corev1.PodRunning},
	}
	gs := podGroups(p)
	if len(gs) != 2 {
		t.Fatalf("%d groups, want one per TCP container port (2): %v", len(gs), gs)
	}
	admin := gs[1]
	if admin.Targets[0] != "10.244.0.7:4191" || admin.Labels["__meta_kubernetes_pod_container_port_name"] != "weft-admin" ||
		admin.Labels["__meta_kubernetes_pod_container_init"] != "true" || admin.Labels["__meta_kubernetes_pod_controller_name"] != "web-5d8f7c9b4" ||
		admin.Labels["__meta_kubernetes_pod_label_app_kubernetes_io_name"] != "web" {
		t.Fatalf("proxy admin target %v", admin)
	}
	p.Status.PodIP = ""
	if gs := podGroups(p); len(gs) != 0 {
		t.Fatalf("a pod without an address has targets: %v", gs)
	}
}
