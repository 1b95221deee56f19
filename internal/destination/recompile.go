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
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/proxy/api"
)

// recompile compiles every destination a change since the last call may affect, plus
// the new ones, and offers the results that differ to their subscribers. Its stages run
// in this order:
//
//  1. takeChanges: what changed in the store since the last call (store locked).
//  2. affectedEntries: which subscribed destinations those changes can affect.
//  3. resolveTargets: the Service port each destination names, or why none.
//  4. snapshotState: the slice of the store the compilations can read; the store is
//     unlocked after it, so informer events are not held up by compiling.
//  5. compileBatch: one compilation per distinct target (no lock).
//  6. publish: offer the results that changed to the subscribers' latest-wins slots.
//  7. observeRecompile: metrics and a debug line.
func (s *Server) recompile() {
	if !s.synced.Load() {
		return
	}
	start := time.Now()

	s.storeMu.Lock()
	ch := s.takeChanges()
	b := s.affectedEntries(ch)
	if len(b.entries) == 0 {
		s.storeMu.Unlock()
		return
	}
	s.resolveTargets(b)
	state := s.snapshotState(b)
	s.storeMu.Unlock()

	s.compileBatch(state, b)
	sent := s.publish(b)
	s.observeRecompile(start, ch, b, sent)
}

// changes is what the store recorded since the last recompile (see the store's fields
// of the same names).
type changes struct {
	full                              bool
	dirty, roots, changed, podTargets map[string]struct{}
	since                             time.Time
}

// batch is one recompile's work: the entries to compile and, index for index, what
// each stage computes for them.
type batch struct {
	entries []*entry
	// backendsMayChange says whether any entry may gain backends, so that the snapshot
	// must carry the endpoints of every Service it names, not only of known backends.
	backendsMayChange bool
	targets           []compiler.Target
	// reasons says why an entry names no Service ("" when it does).
	reasons []string
	// podDeps are, for a pod target, the Services whose EndpointSlices target the
	// pod (they give its ports' protocol hints).
	podDeps [][]string
	// results is nil where a compilation failed: subscribers keep what they have.
	results []*result
	deps    [][]string
}

// takeChanges takes and resets the store's record of changes. A changed Service also
// counts as a changed root, and so do the roots of every route resource that names it
// as a backend. The store must be locked.
func (s *Server) takeChanges() changes {
	st := s.st
	ch := changes{full: st.full, dirty: st.dirty, roots: st.roots, changed: st.changed, podTargets: st.podTargets, since: st.since}
	st.full, st.dirty, st.roots, st.changed, st.since = false, map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}, time.Time{}
	st.podTargets = map[string]struct{}{}
	if len(ch.changed) > 0 {
		st.rootsNaming(ch.changed, ch.roots)
		for k := range ch.changed {
			ch.roots[k] = struct{}{}
		}
	}
	return ch
}

// affectedEntries returns the subscribed destinations the changes can affect: all when
// the Mesh changed; else the new ones; those whose root Service or route resources
// changed; address targets that resolved to no Service when a Service changed; those
// with a changed backend Service; pod targets whose pod changed; and those whose
// backends' endpoints changed. Only the last can be compiled from the endpoints they
// already use: the others may gain backends.
func (s *Server) affectedEntries(ch changes) *batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &batch{backendsMayChange: ch.full}
	if !ch.full && len(ch.changed) == 0 && len(ch.podTargets) == 0 {
		// Only endpoints and route resources changed: of the conditions the scan
		// checks only e.cur == nil, a changed root and the dirty deps can hold, and
		// the indexes give exactly those entries.
		seen := make(map[*entry]bool, len(s.uncompiled))
		mayGain := func(e *entry) {
			if !seen[e] {
				seen[e] = true
				b.entries = append(b.entries, e)
			}
			b.backendsMayChange = true
		}
		for e := range s.uncompiled {
			mayGain(e)
		}
		for r := range ch.roots {
			for e := range s.byRoot[r] {
				mayGain(e)
			}
		}
		for d := range ch.dirty {
			for e := range s.byDep[d] {
				if !seen[e] {
					seen[e] = true
					b.entries = append(b.entries, e)
				}
			}
		}
		return b
	}
	return s.scanAffected(ch)
}

// scanAffected is affectedEntries by a scan of every entry. s.mu must be held.
func (s *Server) scanAffected(ch changes) *batch {
	b := &batch{backendsMayChange: ch.full}
	for _, e := range s.entries {
		_, rootChanged := ch.roots[e.root]
		unresolved := len(ch.changed) > 0 && e.target.Addr.IsValid() && e.root == ""
		podChanged := false
		if len(ch.podTargets) > 0 {
			_, podChanged = ch.podTargets[e.target.podIndexKey()]
		}
		mayGain := ch.full || e.cur == nil || rootChanged || unresolved || podChanged || dependsOn(e.deps, ch.changed)
		if mayGain || dependsOn(e.deps, ch.dirty) {
			b.entries = append(b.entries, e)
			b.backendsMayChange = b.backendsMayChange || mayGain
		}
	}
	return b
}

// resolveTargets fills in the compiler target of every entry, or why it names no
// Service. Address targets resolve to a Service port through the cluster IPs, which can
// appear and go with their Services, so they are resolved on every compilation. The
// store must be locked.
func (s *Server) resolveTargets(b *batch) {
	b.targets = make([]compiler.Target, len(b.entries))
	b.reasons = make([]string, len(b.entries))
	b.podDeps = make([][]string, len(b.entries))
	consumers := s.st.routeNamespaces()
	for i, e := range b.entries {
		b.targets[i], b.reasons[i] = s.resolve(e, consumers)
		if p := b.targets[i].Pod; p != "" {
			b.podDeps[i] = s.podServices(p)
		}
	}
}

// podServices are the Services whose EndpointSlices target a pod. The store must be
// locked.
func (s *Server) podServices(pod string) []string {
	seen := map[string]bool{}
	var out []string
	for _, sk := range s.st.podSlices[pod] {
		if es := s.st.endpointSlices[sk]; es != nil {
			if name := es.Labels[discoveryv1.LabelServiceName]; name != "" && !seen[objKey(es.Namespace, name)] {
				seen[objKey(es.Namespace, name)] = true
				out = append(out, objKey(es.Namespace, name))
			}
		}
	}
	slices.Sort(out)
	return out
}

// snapshotState copies what the compilations can read: the Services that are roots,
// backends, or named by a route resource (few); the endpoints of the backends the
// destinations have, and when those may change, of all those Services. Copying the rest
// of a large cluster is what a compilation would otherwise spend most of its time on.
// The store must be locked.
func (s *Server) snapshotState(b *batch) *compiler.State {
	endpoints := map[string]struct{}{}
	services := map[string]struct{}{}
	pods := map[string]struct{}{}
	for i, e := range b.entries {
		for _, d := range e.deps {
			endpoints[d] = struct{}{}
			services[d] = struct{}{}
		}
		if b.targets[i].Name != "" {
			services[objKey(b.targets[i].Namespace, b.targets[i].Name)] = struct{}{}
		}
		if p := b.targets[i].Pod; p != "" {
			pods[p] = struct{}{}
			for _, d := range b.podDeps[i] {
				endpoints[d] = struct{}{}
				services[d] = struct{}{}
			}
		}
	}
	s.st.referenced(services)
	if b.backendsMayChange {
		endpoints = services
	}
	return s.st.state(s.opts.ClusterDomain, services, endpoints, pods)
}

// compileBatch compiles the batch's targets against the snapshot. A Service port named
// by authority and by address compiles once.
func (s *Server) compileBatch(state *compiler.State, b *batch) {
	c := compiler.New(state)
	b.results = make([]*result, len(b.entries))
	b.deps = make([][]string, len(b.entries))
	byTarget := map[compiler.Target]int{}
	for i, e := range b.entries {
		if b.reasons[i] != "" {
			b.results[i] = &result{notFound: b.reasons[i]}
			continue
		}
		if j, ok := byTarget[b.targets[i]]; ok {
			b.results[i], b.deps[i] = b.results[j], b.deps[j]
			continue
		}
		byTarget[b.targets[i]] = i
		cfg, err := c.Compile(b.targets[i])
		switch {
		case errors.Is(err, compiler.ErrNotFound):
			b.results[i] = &result{notFound: err.Error()}
		case err != nil:
			// Keep what subscribers have: a configuration that cannot be marshalled is
			// a bug, not a reason to take routes away.
			s.log.Error(err, "Compiling a destination failed", "target", e.target.String())
		case b.targets[i].Pod != "":
			b.results[i] = &result{cfg: cfg}
			b.deps[i] = b.podDeps[i]
		default:
			b.results[i] = &result{cfg: cfg}
			b.deps[i] = backendServices(cfg)
		}
	}
}

// publish records each result on its entry and offers those that differ from the
// entry's current one to its subscribers. An entry unsubscribed (or replaced) while it
// compiled is skipped. It returns the number of offers.
func (s *Server) publish(b *batch) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := 0
	for i, e := range b.entries {
		r := b.results[i]
		if r == nil || s.entries[e.key] != e {
			continue
		}
		s.setDeps(e, b.deps[i])
		root := ""
		if b.targets[i].Name != "" {
			root = objKey(b.targets[i].Namespace, b.targets[i].Name)
		}
		s.setRoot(e, root)
		if e.cur != nil && e.cur.sameAs(r) {
			continue
		}
		e.cur = r
		delete(s.uncompiled, e)
		for sub := range e.subs {
			sub.Offer(r)
			sent++
		}
	}
	return sent
}

// observeRecompile records how long the recompile took and, when a change started it,
// how long since that change, and logs what it did at V(1).
func (s *Server) observeRecompile(start time.Time, ch changes, b *batch, sent int) {
	CompileSeconds.Observe(time.Since(start).Seconds())
	if !ch.since.IsZero() {
		ChangeLatencySeconds.Observe(time.Since(ch.since).Seconds())
	}
	if s.log.V(1).Enabled() {
		s.log.V(1).Info("Recompiled destinations", "full", ch.full, "backendsMayChange", b.backendsMayChange, "dirtyServices", sortedKeys(ch.dirty), "roots", sortedKeys(ch.roots),
			"compiled", len(b.entries), "offered", sent, "took", time.Since(start))
	}
}

// resolve returns the compiler target of an entry, or why it names no Service. The
// store must be locked.
//
// The client's namespace only matters to the compiler through the ServiceProfiles and
// routes in it (consumer routes and profiles): for a namespace without any, the
// target compiles as for no namespace, so that the clients of every such namespace
// share one compilation and one cached configuration.
func (s *Server) resolve(e *entry, consumers map[string]bool) (compiler.Target, string) {
	t := e.target
	ctxNS := e.key.contextNS
	if !consumers[ctxNS] {
		ctxNS = ""
	}
	switch {
	case t.External != "":
		return compiler.Target{}, s.externalReason(t)
	case t.Addr.IsValid():
		k, ok := s.st.byIP[t.Addr.Addr().String()]
		if !ok {
			pod, why := s.st.podByIndex(t.podIndexKey())
			if pod == nil {
				return compiler.Target{}, fmt.Sprintf("%s is not the cluster IP of a Service, nor a pod's IP (%s)", t.Addr.Addr(), why)
			}
			return compiler.Target{Pod: objKey(pod.Namespace, pod.Name), PodIP: t.Addr.Addr(), Port: int32(t.Addr.Port())}, ""
		}
		svc := s.st.services[k]
		return compiler.Target{Namespace: svc.Namespace, Name: svc.Name, Port: int32(t.Addr.Port()), ContextNamespace: ctxNS}, ""
	case t.Hostname != "":
		pod, why := s.st.podByIndex(t.podIndexKey())
		if pod == nil {
			return compiler.Target{}, fmt.Sprintf("%s.%s.%s.svc names no pod (%s)", t.Hostname, t.Subdomain, t.Namespace, why)
		}
		ips := compiler.PodIPs(pod)
		ip, err := netip.ParseAddr(firstOr(ips, ""))
		if err != nil || !compiler.OwnsIP(pod) {
			return compiler.Target{}, fmt.Sprintf("pod %s/%s has no address of its own yet", pod.Namespace, pod.Name)
		}
		return compiler.Target{Pod: objKey(pod.Namespace, pod.Name), PodIP: ip.Unmap(), Port: t.Port}, ""
	}
	return compiler.Target{Namespace: t.Namespace, Name: t.Name, Port: t.Port, ContextNamespace: ctxNS}, ""
}

// backendServices are the Services whose endpoints a configuration carries: a change
// to the endpoints of any other Service cannot change it.
func backendServices(cfg *api.DestinationConfig) []string {
	out := make([]string, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		if b.Service != nil {
			out = append(out, objKey(b.Service.GetNamespace(), b.Service.GetName()))
		}
	}
	return out
}

func firstOr(l []string, def string) string {
	if len(l) == 0 {
		return def
	}
	return l[0]
}

// setDeps replaces an entry's deps and their index (byDep). s.mu must be held.
func (s *Server) setDeps(e *entry, deps []string) {
	if slices.Equal(e.deps, deps) {
		return
	}
	for _, d := range e.deps {
		unindex(s.byDep, d, e)
	}
	e.deps = deps
	for _, d := range deps {
		index(s.byDep, d, e)
	}
}

// setRoot replaces an entry's root and its index (byRoot). s.mu must be held.
func (s *Server) setRoot(e *entry, root string) {
	if e.root == root {
		return
	}
	if e.root != "" {
		unindex(s.byRoot, e.root, e)
	}
	e.root = root
	if root != "" {
		index(s.byRoot, root, e)
	}
}

func index(m map[string]map[*entry]struct{}, k string, e *entry) {
	set := m[k]
	if set == nil {
		set = map[*entry]struct{}{}
		m[k] = set
	}
	set[e] = struct{}{}
}

func unindex(m map[string]map[*entry]struct{}, k string, e *entry) {
	if set := m[k]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

func dependsOn(deps []string, dirty map[string]struct{}) bool {
	for _, d := range deps {
		if _, ok := dirty[d]; ok {
			return true
		}
	}
	return false
}
