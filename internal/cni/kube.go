package cni

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Why a kubeconfig of the plugin's own, and not CNI_ARGS or the node's credentials:
// the runtime passes only the pod's namespace, name and UID in CNI_ARGS, never its spec
// or annotations, so the plugin must read the pod from the API server. The kubelet's
// credentials would work (the Node authorizer lets a node read its own pods) but their
// path differs between distributions and they carry the whole node's power; the
// weft-cni DaemonSet's ServiceAccount may only get pods, and the installer writes its
// token into a root-only kubeconfig beside the conflist, refreshing it as it rotates.

// clientGetter reads pods with client-go.
type clientGetter struct{ c kubernetes.Interface }

func (g clientGetter) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return g.c.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// NewPodGetter builds the pod reader from the conflist entry's kubeconfig.
func NewPodGetter(conf *NetConf) (PodGetter, error) {
	if conf.Kubeconfig == "" {
		return nil, fmt.Errorf("the weft-cni conflist entry has no kubeconfig (the installer writes it)")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", conf.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", conf.Kubeconfig, err)
	}
	// One pod read per sandbox: a short per-request timeout, and the plugin's own
	// user agent so the API server's audit log says who asked.
	rc.Timeout = 10 * time.Second
	rc.UserAgent = PluginType
	rc.QPS, rc.Burst = 5, 10
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return clientGetter{c}, nil
}
