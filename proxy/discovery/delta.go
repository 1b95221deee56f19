package discovery

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftmesh/weft/proxy/api"
)

// errVersionMismatch says a delta, applied to the last snapshot, did not produce the
// configuration the server named: the proxy's base was not the server's.
var errVersionMismatch = errors.New("endpoint delta does not produce its version")

// applyDelta returns the configuration that results from applying d to base. base is
// never modified: it may already be in the hands of the data path. Everything the
// delta does not touch is shared between the two (it is immutable once returned), so
// the cost is one backend's endpoint list, plus the version check.
//
// The result's version is checked by recomputing it the way the control plane does
// (internal/compiler: SHA-256 of the deterministic encoding without the version, the
// first 8 bytes in hex). A mismatch means the delta was made against another base —
// the proxy missed a message — and the caller resubscribes for a fresh snapshot. A
// control plane built from another protobuf runtime could encode differently; the
// cost of that is a resubscription per delta, never a wrong configuration.
func applyDelta(base *api.DestinationConfig, d *api.EndpointDelta) (*api.DestinationConfig, error) {
	if base == nil {
		return nil, errors.New("endpoint delta without a snapshot")
	}
	i := slices.IndexFunc(base.Backends, func(b *api.Backend) bool { return b.GetKey() == d.GetBackend() })
	if i < 0 {
		return nil, fmt.Errorf("endpoint delta for unknown backend %q", d.GetBackend())
	}
	old := base.Backends[i]

	type id struct {
		addr string
		port uint32
	}
	drop := make(map[id]bool, len(d.GetRemove())+len(d.GetAdd()))
	for _, r := range d.GetRemove() {
		drop[id{r.GetAddress(), r.GetPort()}] = true
	}
	// An added endpoint with the address and port of an existing one replaces it.
	for _, e := range d.GetAdd() {
		drop[id{e.GetAddress(), e.GetPort()}] = true
	}
	eps := make([]*api.Endpoint, 0, len(old.Endpoints)+len(d.GetAdd()))
	for _, e := range old.Endpoints {
		if !drop[id{e.GetAddress(), e.GetPort()}] {
			eps = append(eps, e)
		}
	}
	eps = append(eps, d.GetAdd()...)
	sortEndpoints(eps)

	nb := shallowCopy(old)
	nb.Endpoints = eps
	next := shallowCopy(base)
	next.Backends = slices.Clone(base.Backends)
	next.Backends[i] = nb
	next.Version = ""
	v, err := version(next)
	if err != nil {
		return nil, err
	}
	if v != d.GetVersion() {
		return nil, fmt.Errorf("%w: got %s, delta says %s", errVersionMismatch, v, d.GetVersion())
	}
	next.Version = d.GetVersion()
	return next, nil
}

// shallowCopy returns a new message whose fields are those of m: nested messages and
// lists are shared, not copied. Reflection, rather than naming the fields, keeps it
// right when destination.proto gains a field.
func shallowCopy[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	return dst.Interface().(M)
}

// version computes a configuration's version as internal/compiler does; c.Version
// must be empty.
func version(c *api.DestinationConfig) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding the configuration: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// sortEndpoints orders endpoints as snapshots do: by address (numerically, IPv4
// before IPv6), then port.
func sortEndpoints(eps []*api.Endpoint) {
	slices.SortFunc(eps, func(a, b *api.Endpoint) int {
		aa, errA := netip.ParseAddr(a.GetAddress())
		ba, errB := netip.ParseAddr(b.GetAddress())
		if errA == nil && errB == nil {
			if c := aa.Compare(ba); c != 0 {
				return c
			}
		} else if c := strings.Compare(a.GetAddress(), b.GetAddress()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetPort(), b.GetPort())
	})
}
