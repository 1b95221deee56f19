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

package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Resource-name completion: the names come from the cluster the flags on the command
// line name, with a short deadline so that a slow or absent cluster never hangs the
// shell (it then completes nothing).

// completionTimeout bounds one completion's API calls.
const completionTimeout = 3 * time.Second

// names lists the objects of one kind in the command's namespace, as TYPE/NAME when
// prefix is set.
func (c *cli) names(kind, prefix string) []string {
	kc, err := c.clients()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	var out []string
	add := func(n string) { out = append(out, prefix+n) }
	ns := kc.namespace
	switch kind {
	case "deploy":
		if l, err := kc.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				add(o.Name)
			}
		}
	case "sts":
		if l, err := kc.kube.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				add(o.Name)
			}
		}
	case "ds":
		if l, err := kc.kube.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				add(o.Name)
			}
		}
	case "pod":
		if l, err := kc.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				add(o.Name)
			}
		}
	case "svc":
		if l, err := kc.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				add(o.Name)
			}
		}
	case "ns":
		if l, err := kc.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				add(o.Name)
			}
		}
	}
	return out
}

// completeTyped completes a TYPE/NAME argument among kinds: the kinds first, then,
// once a kind is typed, its objects' names.
func (c *cli) completeTyped(toComplete string, kinds ...string) ([]string, cobra.ShellCompDirective) {
	kind, _, found := strings.Cut(toComplete, "/")
	if !found {
		out := make([]string, len(kinds))
		for i, k := range kinds {
			out[i] = k + "/"
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
	if k, ok := statKinds[kind]; ok {
		kind = k
	}
	if k, ok := serviceKinds[kind]; ok {
		kind = k
	}
	return c.names(kind, kind+"/"), cobra.ShellCompDirectiveNoFileComp
}

// completeWorkloads completes weft authz's and weft diagnostics' one workload argument.
func (c *cli) completeWorkloads(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return c.completeTyped(toComplete, "deploy", "sts", "ds", "pod")
}

// completeStatArgs completes weft stat's [deploy|pod|ns] [NAME].
func (c *cli) completeStatArgs(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return []string{"deploy", "pod", "ns"}, cobra.ShellCompDirectiveNoFileComp
	case 1:
		if k, ok := statKinds[strings.ToLower(args[0])]; ok {
			return c.names(k, ""), cobra.ShellCompDirectiveNoFileComp
		}
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// serviceKinds maps what the user may type for a Service.
var serviceKinds = map[string]string{"svc": "svc", "service": "svc", "services": "svc"}
