package pipeline

import (
	"net/http"
	"testing"
	"time"
)

func TestGRPCDeadlinePassed(t *testing.T) {
	start := time.Now().Add(-time.Second)
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"", false},
		{"500m", true},
		{"2S", false},
		{"999999u", true},
		{"1500000u", false},
		{"1M", false},
		{"5n", true},
		{"10x", false},
		{"m", false},
		{"-1S", false},
		{"1234567890S", false}, // over 8 digits: malformed
	} {
		t.Run(tc.v, func(t *testing.T) {
			h := http.Header{}
			if tc.v != "" {
				h.Set("Grpc-Timeout", tc.v)
			}
			if got := grpcDeadlinePassed(h, start); got != tc.want {
				t.Fatalf("grpcDeadlinePassed(%q) = %v, want %v", tc.v, got, tc.want)
			}
		})
	}
}
