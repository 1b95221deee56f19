package inject

import "strings"

// templatePaths says where each workload kind keeps its pod template, and in which API
// groups that kind is the Kubernetes one (a CRD may reuse a kind name).
var templatePaths = map[string]struct {
	groups []string
	path   []string
}{
	"Pod":                   {[]string{""}, nil},
	"ReplicationController": {[]string{""}, []string{"spec", "template"}},
	"Deployment":            {[]string{"apps", "extensions"}, []string{"spec", "template"}},
	"ReplicaSet":            {[]string{"apps", "extensions"}, []string{"spec", "template"}},
	"StatefulSet":           {[]string{"apps"}, []string{"spec", "template"}},
	"DaemonSet":             {[]string{"apps", "extensions"}, []string{"spec", "template"}},
	"Job":                   {[]string{"batch"}, []string{"spec", "template"}},
	"CronJob":               {[]string{"batch"}, []string{"spec", "jobTemplate", "spec", "template"}},
}

// TemplatePath returns the path of the pod template in an object of the given
// apiVersion and kind: nil with ok for a Pod (the object is its own template), ok false
// for kinds that carry no pod template.
func TemplatePath(apiVersion, kind string) (path []string, ok bool) {
	group, _, hasGroup := strings.Cut(apiVersion, "/")
	if !hasGroup {
		group = ""
	}
	tp, known := templatePaths[kind]
	if !known {
		return nil, false
	}
	for _, g := range tp.groups {
		if g == group {
			return tp.path, true
		}
	}
	return nil, false
}
