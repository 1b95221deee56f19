package replay

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReplayBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		// declared is the Content-Length (-1: unknown, chunked).
		declared int64
		// read is how much the first attempt reads before failing; -1: all.
		read       int
		wantReplay bool
	}{
		{"small body read to EOF", 1000, -1, -1, true},
		{"exactly 64 KiB", MaxBody, -1, -1, true},
		{"64 KiB + 1 of unknown length", MaxBody + 1, -1, -1, false},
		{"declared over 64 KiB", MaxBody + 1, MaxBody + 1, -1, false},
		{"declared length read without EOF", 100, 100, 100, true},
		{"first attempt read nothing", 100, -1, 0, true},
		{"first attempt read part", 100, -1, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := bytes.Repeat([]byte("x"), tc.size)
			rb := New(io.NopCloser(bytes.NewReader(src)), tc.declared)
			first, ok := rb.Next()
			if !ok {
				t.Fatal("first attempt refused")
			}
			var got []byte
			if tc.read < 0 {
				got, _ = io.ReadAll(first)
			} else if tc.read > 0 {
				got = make([]byte, tc.read)
				io.ReadFull(first, got)
			}
			if tc.read < 0 && len(got) != tc.size {
				t.Fatalf("first attempt read %d bytes, want %d", len(got), tc.size)
			}
			second, ok := rb.Next()
			if ok != tc.wantReplay {
				t.Fatalf("replayable = %v, want %v", ok, tc.wantReplay)
			}
			if !ok {
				return
			}
			if _, err := first.Read(make([]byte, 1)); !errors.Is(err, ErrAttemptReplaced) {
				t.Fatalf("old attempt read: %v, want ErrAttemptReplaced", err)
			}
			again, err := io.ReadAll(second)
			if err != nil || !bytes.Equal(again, src) {
				t.Fatalf("replay read %d bytes (%v), want the whole %d", len(again), err, len(src))
			}
		})
	}
}

func TestReplayBodySourceError(t *testing.T) {
	rb := New(io.NopCloser(io.MultiReader(strings.NewReader("abc"), errReader{})), -1)
	first, _ := rb.Next()
	if _, err := io.ReadAll(first); err == nil {
		t.Fatal("no error from a failing source")
	}
	if _, ok := rb.Next(); ok {
		t.Fatal("a body whose source failed was offered for replay")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client reset") }
