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
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestAffectedEntries is the table of recompile's decision stage: which subscribed
// destinations a change can affect, and whether any of them may gain backends (which
// makes the snapshot carry the endpoints of every Service it names).
func TestAffectedEntries(t *testing.T) {
	compiled := &result{}
	// The subscribed destinations, named by their target key.
	entries := []*entry{
		// web's root is shop/web, its backends shop/web-v1 and shop/web-v2.
		{key: entryKey{target: "web"}, target: target{Namespace: "shop", Name: "web", Port: 80}, root: "shop/web",
			deps: []string{"shop/web-v1", "shop/web-v2"}, cur: compiled},
		// books has one backend, itself.
		{key: entryKey{target: "books"}, target: target{Namespace: "shop", Name: "books", Port: 80}, root: "shop/books",
			deps: []string{"shop/books"}, cur: compiled},
		// ip was subscribed by address and resolved to no Service.
		{key: entryKey{target: "ip"}, target: target{Addr: netip.MustParseAddrPort("10.0.0.9:80")}, cur: compiled},
	}
	fresh := &entry{key: entryKey{target: "new"}, target: target{Namespace: "shop", Name: "new", Port: 80}}
	set := func(keys ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, k := range keys {
			m[k] = struct{}{}
		}
		return m
	}

	cases := []struct {
		name      string
		ch        changes
		withFresh bool
		want      []string
		mayGain   bool
	}{
		{"nothing changed", changes{}, false, nil, false},
		{"the Mesh changed: all, and backends may change", changes{full: true}, false, []string{"books", "ip", "web"}, true},
		{"a new subscription compiles alone", changes{}, true, []string{"new"}, true},
		{"endpoints of a backend: only its users, from the endpoints they use",
			changes{dirty: set("shop/web-v2")}, false, []string{"web"}, false},
		{"endpoints of a Service nobody uses as a backend", changes{dirty: set("shop/other")}, false, nil, false},
		{"a route resource of a root", changes{roots: set("shop/books")}, false, []string{"books"}, true},
		{"a changed backend Service may change the backends",
			changes{changed: set("shop/web-v1"), roots: set("shop/web-v1")}, false, []string{"ip", "web"}, true},
		{"any changed Service retries the unresolved address", changes{changed: set("shop/unrelated"), roots: set("shop/unrelated")},
			false, []string{"ip"}, true},
		{"endpoints for one, a route for another", changes{dirty: set("shop/books"), roots: set("shop/web")},
			false, []string{"books", "web"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(ServerOptions{})
			for _, e := range entries {
				s.entries[e.key] = e
			}
			if tc.withFresh {
				s.entries[fresh.key] = fresh
			}
			b := s.affectedEntries(tc.ch)
			var got []string
			for _, e := range b.entries {
				got = append(got, e.key.target)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) || b.backendsMayChange != tc.mayGain {
				t.Errorf("affected %v (backends may change: %v), want %v (%v)", got, b.backendsMayChange, tc.want, tc.mayGain)
			}
		})
	}
}

// TestTakeChanges checks that the stage hands over the store's change record once and
// that a changed Service counts as a changed root.
func TestTakeChanges(t *testing.T) {
	s := NewServer(ServerOptions{})
	since := time.Now()
	s.st.full, s.st.since = true, since
	s.st.dirty["shop/a"] = struct{}{}
	s.st.changed["shop/b"] = struct{}{}
	ch := s.takeChanges()
	if !ch.full || !ch.since.Equal(since) {
		t.Errorf("full %v since %v, want true %v", ch.full, ch.since, since)
	}
	if _, ok := ch.dirty["shop/a"]; !ok {
		t.Errorf("dirty = %v, want shop/a", ch.dirty)
	}
	if _, ok := ch.roots["shop/b"]; !ok {
		t.Errorf("roots = %v, want the changed Service shop/b among them", ch.roots)
	}
	again := s.takeChanges()
	if again.full || !again.since.IsZero() || len(again.dirty)+len(again.roots)+len(again.changed) != 0 {
		t.Errorf("second take = %+v, want nothing: the record is reset", again)
	}
}
