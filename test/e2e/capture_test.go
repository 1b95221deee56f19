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

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// packet is one TCP segment as tcpdump printed it.
type packet struct {
	src, srcPort, dst, dstPort string
	length                     int    // TCP payload bytes
	payload                    string // the payload as tcpdump -A prints it (non-printables as '.')
}

type capture struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *bytes.Buffer
}

// startCapture runs tcpdump on every interface of this machine (the veths of the
// cluster's pods included) with a filter, and returns once it is listening.
func startCapture(ctx context.Context, filter string) (*capture, error) {
	c := &capture{stderr: &bytes.Buffer{}}
	// --immediate-mode: without it libpcap hands packets over in blocks, a block once
	// it is full or a second old, and the packets of a short exchange that ends just
	// before stop are still in an unfinished block when tcpdump exits: the capture would
	// miss the very traffic it was started for.
	c.cmd = exec.CommandContext(ctx, "tcpdump", "-i", "any", "--immediate-mode", "-nn", "-l", "-U", "-A", "-s", "0", filter)
	c.cmd.Stdout = &c.stdout
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.cmd.Stderr = pw
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting tcpdump (apt-get install tcpdump): %w", err)
	}
	pw.Close()
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			c.stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(listening)
			}
		}
	}()
	select {
	case <-listening:
		return c, nil
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		return nil, fmt.Errorf("tcpdump did not start listening: %s", c.stderr.String())
	}
}

var tcpdumpHeader = regexp.MustCompile(`\bIP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): .*\blength (\d+)`)

// stop ends the capture and parses what it printed.
func (c *capture) stop(t *testing.T) []packet {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	_ = c.cmd.Wait()
	var out []packet
	var cur *packet
	for _, line := range strings.Split(c.stdout.String(), "\n") {
		if m := tcpdumpHeader.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[5])
			out = append(out, packet{src: m[1], srcPort: m[2], dst: m[3], dstPort: m[4], length: n})
			cur = &out[len(out)-1]
			continue
		}
		if cur != nil {
			cur.payload += line + "\n"
		}
	}
	if len(out) == 0 {
		t.Errorf("tcpdump captured nothing: %s", c.stderr.String())
	}
	return out
}
