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

package dashboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Port is where weft-dashboard listens inside its pod (config/dashboard).
const Port = 8084

// Selector selects the dashboard's pods.
const Selector = "app.kubernetes.io/name=weft-dashboard"

// Forward port-forwards localPort (0: any free one) on loopback to a running dashboard
// pod in namespace, as `kubectl port-forward` does: the API server checks the caller's
// RBAC (create on pods/portforward). It returns the local URL; the forward lasts until
// ctx ends, and done is closed when it has stopped.
func Forward(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, namespace string, localPort int) (u string, done <-chan error, err error) {
	pods, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: Selector})
	if err != nil {
		return "", nil, fmt.Errorf("finding the dashboard's pod in %s: %w", namespace, err)
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			pod = p
			break
		}
	}
	if pod == nil {
		return "", nil, fmt.Errorf("no running weft-dashboard pod in %s: is Weft installed with its dashboard? (kubectl -n %s get deploy weft-dashboard)", namespace, namespace)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", nil, err
	}
	pfURL := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, pfURL)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{strconv.Itoa(localPort) + ":" + strconv.Itoa(Port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	go func() {
		<-ctx.Done()
		close(stop)
	}()
	select {
	case <-ready:
	case err := <-errc:
		return "", nil, fmt.Errorf("port-forwarding to %s/%s: %w", pod.Namespace, pod.Name, err)
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		return "", nil, fmt.Errorf("port-forwarding to %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if len(ports) == 0 {
		return "", nil, fmt.Errorf("port-forwarding to %s/%s: no local port", pod.Namespace, pod.Name)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local), errc, nil
}
