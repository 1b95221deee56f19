package discovery

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
)

// frame is one gRPC length-prefixed message.
func frame(msg []byte) []byte {
	return grpcwire.AppendFrame(nil, msg)
}

// streamOf is a getStream reading body, whose trailers carry status and message.
func streamOf(body []byte, status, message string) *getStream {
	resp := &http.Response{Body: io.NopCloser(bytes.NewReader(body)), Trailer: http.Header{}}
	if status != "" {
		resp.Trailer.Set("Grpc-Status", status)
		resp.Trailer.Set("Grpc-Message", message)
	}
	return newGetStream(resp)
}

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzRecv reads a fuzzed answer stream from the destination service: nothing may
// panic, every call ends with an update, io.EOF or a *StatusError, and memory stays
// proportional to the bytes received (a length prefix alone must not cost its size).
func FuzzRecv(f *testing.F) {
	snap, _ := proto.Marshal(&api.DestinationUpdate{Kind: &api.DestinationUpdate_Snapshot{Snapshot: &api.DestinationConfig{Version: "v1",
		Backends: []*api.Backend{{Key: "b", Endpoints: []*api.Endpoint{{Address: "10.0.0.1", Port: 8080}}}}}}})
	del, _ := proto.Marshal(&api.DestinationUpdate{Kind: &api.DestinationUpdate_Endpoints{Endpoints: &api.EndpointDelta{Backend: "b", Version: "v2"}}})
	f.Add(append(frame(snap), frame(del)...), "0", "")
	f.Add(frame(snap)[:9], "14", "shutting%20down")
	f.Add([]byte{0, 0x04, 0, 0, 0, 1, 2, 3}, "", "")
	f.Add([]byte{1, 0, 0, 0, 0}, "x", "%zz")
	f.Add([]byte{}, strings.Repeat("\xff", 29<<10), strings.Repeat("%41", 1<<10))
	f.Fuzz(func(t *testing.T, body []byte, status, message string) {
		var n int
		used := allocated(func() {
			s := streamOf(body, status, message)
			for ; n < 1000; n++ {
				u, err := s.Recv()
				if err == nil {
					if u == nil {
						t.Fatal("Recv returned neither an update nor an error")
					}
					continue
				}
				var se *StatusError
				if err != io.EOF && !errors.As(err, &se) {
					t.Fatalf("Recv ended with %T %v, want io.EOF or *StatusError", err, err)
				}
				return
			}
		})
		// The buffered reader and a first 64 KiB step, the decoded messages (a few times their encoding)
		// and the growth of one message's buffer (at most twice what arrived); the trailers
		// are set and decoded once each (a few copies of what arrived).
		trailers := uint64(len(status) + len(message))
		if limit := uint64(128<<10) + 16*uint64(len(body)) + uint64(n)*4096 + 4*trailers + raceSlack; used > limit {
			t.Fatalf("reading %d bytes allocated %d bytes (limit %d)", len(body), used, limit)
		}
	})
}

// TestRecvAllocatesAsDataArrives: a length prefix claiming 64 MiB, with 3 bytes behind
// it, allocated 64 MiB before the fix (found by FuzzRecv).
func TestRecvAllocatesAsDataArrives(t *testing.T) {
	body := []byte{0, 0x04, 0, 0, 0, 1, 2, 3}
	var err error
	used := allocated(func() { _, err = streamOf(body, "0", "").Recv() })
	var se *StatusError
	if !errors.As(err, &se) || se.Code != grpcwire.Internal {
		t.Fatalf("Recv: %v, want an Internal status (stream ended inside a message)", err)
	}
	if used > 1<<20 {
		t.Fatalf("a 64 MiB length prefix with 3 bytes behind it allocated %d bytes", used)
	}
}

// FuzzApplyDelta applies a fuzzed endpoint delta to a fuzzed snapshot (both seeded
// with the control plane's real encoding): nothing may panic, the base is never
// modified, and a delta that applies produces exactly the version it names and
// changes nothing but its backend's endpoints.
func FuzzApplyDelta(f *testing.F) {
	v1 := compiled(f, "10.0.0.1", "10.0.0.2")
	v2 := compiled(f, "10.0.0.2", "10.0.0.3")
	base, _ := proto.Marshal(v1)
	d, _ := proto.Marshal(delta(f, v1, v2))
	f.Add(base, d)
	f.Add(base, []byte{})
	f.Add([]byte{}, d)
	f.Fuzz(func(t *testing.T, baseB, deltaB []byte) {
		base := &api.DestinationConfig{}
		d := &api.EndpointDelta{}
		if proto.Unmarshal(baseB, base) != nil || proto.Unmarshal(deltaB, d) != nil {
			return
		}
		// The base's encoding, not a clone: proto.Clone drops a proto3 float of
		// -0 (not "present"), which proto.Equal then tells from the original's -0
		// (a fuzzed retry_ratio of -0 failed this check with the base untouched).
		enc := proto.MarshalOptions{Deterministic: true}
		before, _ := enc.Marshal(base)
		next, err := applyDelta(base, d)
		if after, _ := enc.Marshal(base); !bytes.Equal(before, after) {
			t.Fatal("applyDelta modified its base")
		}
		if err != nil {
			return
		}
		if next.GetVersion() != d.GetVersion() {
			t.Fatalf("version %q, delta says %q", next.GetVersion(), d.GetVersion())
		}
		check := proto.Clone(next).(*api.DestinationConfig)
		check.Version = ""
		if v, _ := version(check); v != d.GetVersion() {
			t.Fatalf("the result's version is %q, it says %q", v, d.GetVersion())
		}
		// Everything but the delta's backend's endpoints is the base's.
		i := slices.IndexFunc(base.Backends, func(b *api.Backend) bool { return b.GetKey() == d.GetBackend() })
		a, b := proto.Clone(base).(*api.DestinationConfig), proto.Clone(next).(*api.DestinationConfig)
		a.Version, b.Version = "", ""
		a.Backends[i].Endpoints, b.Backends[i].Endpoints = nil, nil
		if !proto.Equal(a, b) {
			t.Fatal("the delta changed more than its backend's endpoints")
		}
		if n := len(next.Backends[i].Endpoints); n > len(base.Backends[i].Endpoints)+len(d.GetAdd()) {
			t.Fatalf("%d endpoints from %d and %d added", n, len(base.Backends[i].Endpoints), len(d.GetAdd()))
		}
	})
}
