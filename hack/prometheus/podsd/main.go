// Command podsd lets Debian's prometheus run config/prometheus/scrape-config.yaml
// against the local cluster from the host. Debian builds Prometheus without its
// Kubernetes service discovery, so podsd stands in for it: it serves Prometheus' HTTP
// service discovery (http_sd_configs) with the targets and __meta_kubernetes_pod_*
// labels that kubernetes_sd_configs role pod would give, and renders the scrape
// configuration with each kubernetes_sd_configs entry replaced by an http_sd_configs
// entry that asks it for the same namespaces. The relabelings of scrape-config.yaml
// then run unchanged, so hack/prometheus.sh tests the file users apply.
//
// It implements the pod role's labels that matter for relabeling (see Prometheus'
// discovery/kubernetes/pod.go for the full set): one target per container port, init
// containers included, at the pod's IP; pods without an IP are left out.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "the cluster's kubeconfig")
	in := flag.String("scrape-config", "config/prometheus/scrape-config.yaml", "the scrape configuration to render")
	out := flag.String("out", "", "where to write the rendered prometheus.yml")
	token := flag.String("token-file", "", "replaces the in-cluster ServiceAccount token path of credentials_file")
	listen := flag.String("listen", "127.0.0.1:9096", "where to serve the HTTP service discovery")
	interval := flag.Duration("interval", 5*time.Second, "scrape, evaluation and discovery refresh interval")
	flag.Parse()
	if err := run(*kubeconfig, *in, *out, *token, *listen, *interval); err != nil {
		log.Fatal(err)
	}
}

func run(kubeconfig, in, out, token, listen string, interval time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	rendered, err := render(raw, "http://"+listen+"/pods", token, interval)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if out == "" {
		return errors.New("-out is required")
	}
	if err := os.WriteFile(out, rendered, 0o600); err != nil {
		return err
	}
	http.HandleFunc("/pods", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var groups []targetGroup
		for _, ns := range namespacesOf(r.URL.Query()) {
			pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			for i := range pods.Items {
				groups = append(groups, podGroups(&pods.Items[i])...)
			}
		}
		if groups == nil {
			groups = []targetGroup{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(groups)
	})
	srv := &http.Server{Addr: listen, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

// namespacesOf reads ?namespace=a&namespace=b; none means all ("").
func namespacesOf(q url.Values) []string {
	if ns := q["namespace"]; len(ns) > 0 {
		return ns
	}
	return []string{metav1.NamespaceAll}
}

// render turns the scrape configuration into a whole prometheus.yml for the host.
func render(raw []byte, sdURL, token string, interval time.Duration) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	jobs, _ := doc["scrape_configs"].([]any)
	if len(jobs) == 0 {
		return nil, errors.New("no scrape_configs")
	}
	for _, j := range jobs {
		job, ok := j.(map[string]any)
		if !ok {
			return nil, errors.New("a scrape_configs entry is not a mapping")
		}
		sds, _ := job["kubernetes_sd_configs"].([]any)
		if len(sds) == 0 {
			continue
		}
		var https []any
		for _, s := range sds {
			sd, _ := s.(map[string]any)
			if sd["role"] != "pod" {
				return nil, fmt.Errorf("job %v: only the pod role is emulated, not %v", job["job_name"], sd["role"])
			}
			q := url.Values{}
			if nss, ok := sd["namespaces"].(map[string]any); ok {
				names, _ := nss["names"].([]any)
				for _, n := range names {
					q.Add("namespace", fmt.Sprint(n))
				}
			}
			u := sdURL
			if len(q) > 0 {
				u += "?" + q.Encode()
			}
			https = append(https, map[string]any{"url": u, "refresh_interval": interval.String()})
		}
		delete(job, "kubernetes_sd_configs")
		job["http_sd_configs"] = https
		if token != "" {
			if auth, ok := job["authorization"].(map[string]any); ok && auth["credentials_file"] != nil {
				auth["credentials_file"] = token
			}
		}
	}
	iv := interval.String()
	doc["global"] = map[string]any{"scrape_interval": iv, "scrape_timeout": iv, "evaluation_interval": iv}
	return yaml.Marshal(doc)
}

// targetGroup is one entry of Prometheus' HTTP service discovery response.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

var invalidLabelChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func sanitize(s string) string { return invalidLabelChars.ReplaceAllString(s, "_") }

// podGroups are the pod role's targets of one pod: one per container port, each with
// the pod's labels and the port's.
func podGroups(p *corev1.Pod) []targetGroup {
	if p.Status.PodIP == "" {
		return nil
	}
	base := map[string]string{
		"__meta_kubernetes_namespace":     p.Namespace,
		"__meta_kubernetes_pod_name":      p.Name,
		"__meta_kubernetes_pod_ip":        p.Status.PodIP,
		"__meta_kubernetes_pod_node_name": p.Spec.NodeName,
		"__meta_kubernetes_pod_host_ip":   p.Status.HostIP,
		"__meta_kubernetes_pod_uid":       string(p.UID),
		"__meta_kubernetes_pod_phase":     string(p.Status.Phase),
		"__meta_kubernetes_pod_ready":     strconv.FormatBool(podReady(p)),
	}
	for k, v := range p.Labels {
		base["__meta_kubernetes_pod_label_"+sanitize(k)] = v
		base["__meta_kubernetes_pod_labelpresent_"+sanitize(k)] = "true"
	}
	for k, v := range p.Annotations {
		base["__meta_kubernetes_pod_annotation_"+sanitize(k)] = v
		base["__meta_kubernetes_pod_annotationpresent_"+sanitize(k)] = "true"
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		base["__meta_kubernetes_pod_controller_kind"] = ref.Kind
		base["__meta_kubernetes_pod_controller_name"] = ref.Name
	}
	var out []targetGroup
	add := func(cs []corev1.Container, init bool) {
		for _, c := range cs {
			for _, port := range c.Ports {
				if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
					continue
				}
				l := make(map[string]string, len(base)+6)
				for k, v := range base {
					l[k] = v
				}
				l["__meta_kubernetes_pod_container_name"] = c.Name
				l["__meta_kubernetes_pod_container_image"] = c.Image
				l["__meta_kubernetes_pod_container_init"] = strconv.FormatBool(init)
				l["__meta_kubernetes_pod_container_port_name"] = port.Name
				l["__meta_kubernetes_pod_container_port_number"] = strconv.Itoa(int(port.ContainerPort))
				l["__meta_kubernetes_pod_container_port_protocol"] = "TCP"
				out = append(out, targetGroup{Targets: []string{net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port.ContainerPort)))}, Labels: l})
			}
		}
	}
	add(p.Spec.Containers, false)
	add(p.Spec.InitContainers, true)
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
