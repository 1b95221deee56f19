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

package destination

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informers' transforms (slimPod, slimEndpointSlice) share what the pods of one
// workload have in common, because the decoder gives every object its own copy: the
// labels and annotations maps, the kept containers, the controller reference, and
// strings such as the namespace and ServiceAccount. The cache's objects are never
// modified (its readers get deep copies, the store and the compiler only read), so
// pods can share them. At 10 pods per workload this saves about 1 KB a pod (a
// one-entry map is about 340 bytes, a container 416).

// internSize bounds each table: when the current generation holds this many, it
// becomes the previous one and the one before is dropped, so that the table forgets
// what no new pod has used for two generations and never holds more than twice this
// many entries, however many workloads come and go. The values it dropped stay
// shared by the pods that have them.
const internSize = 8192

// internTable shares equal values by a key that encodes them.
type internTable[V any] struct {
	mu        sync.Mutex
	cur, prev map[string]V
}

// get returns the value shared under key, or v (which becomes it) when none is.
func (t *internTable[V]) get(key string, v V) V {
	t.mu.Lock()
	defer t.mu.Unlock()
	if x, ok := t.cur[key]; ok {
		return x
	}
	if x, ok := t.prev[key]; ok {
		t.cur[key] = x
		return x
	}
	if t.cur == nil || len(t.cur) >= internSize {
		t.prev, t.cur = t.cur, make(map[string]V, 64)
	}
	t.cur[key] = v
	return v
}

var (
	internedMaps       internTable[map[string]string]
	internedContainers internTable[[]corev1.Container]
	internedOwners     internTable[[]metav1.OwnerReference]
	internedZones      internTable[*string]
)

// internString returns the canonical copy of s: one per distinct string, shared by
// every object that has it, and collected once none does (unique.Make).
func internString(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// internMap returns a map equal to m shared by every object with such a map. m must
// not be modified afterwards.
func internMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	n := 0
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 8
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		// Length-prefixed, so no key or value can forge another map's encoding.
		b.WriteString(strconv.Itoa(len(k)))
		b.WriteByte(':')
		b.WriteString(k)
		v := m[k]
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	return internedMaps.get(b.String(), m)
}

// internContainers returns slim containers equal to cs shared by every pod with such
// containers (init says which list they are, as their encodings could be equal).
func internContainers(cs []corev1.Container, init bool) []corev1.Container {
	if len(cs) == 0 {
		return cs
	}
	spec := corev1.PodSpec{Containers: cs}
	if init {
		spec = corev1.PodSpec{InitContainers: cs}
	}
	key, err := spec.Marshal()
	if err != nil {
		return cs
	}
	return internedContainers.get(string(key), cs)
}

// internOwners returns a controller reference equal to refs (as slimOwner keeps it:
// one, with its API version, kind, name and controller flag) shared by every pod with
// it.
func internOwners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if len(refs) != 1 {
		return refs
	}
	r := refs[0]
	ctl := "-"
	if r.Controller != nil {
		ctl = strconv.FormatBool(*r.Controller)
	}
	key := strconv.Itoa(len(r.APIVersion)) + ":" + r.APIVersion + strconv.Itoa(len(r.Kind)) + ":" + r.Kind + ctl + ":" + r.Name
	return internedOwners.get(key, refs)
}

// internZone returns a pointer to the zone z shared by every endpoint in it.
func internZone(z *string) *string {
	if z == nil {
		return nil
	}
	return internedZones.get(*z, z)
}

var (
	sharedTrue  = new(true)
	sharedFalse = new(false)
)

// internBool returns a shared pointer to *b (EndpointConditions are three of them an
// endpoint).
func internBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return sharedTrue
	default:
		return sharedFalse
	}
}
