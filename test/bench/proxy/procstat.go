package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds returns utime+stime of a process (all its threads) in seconds.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat times", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// peakRSSMB returns VmHWM (peak resident set size) in MiB.
func peakRSSMB(pid int) (float64, error) { return statusMB(pid, "VmHWM") }

// anonRSSMB returns RssAnon in MiB: the resident memory that is the process's own
// (heap, stacks), without the file pages of its binary and libraries, which every
// process started from the same files shares.
func anonRSSMB(pid int) (float64, error) { return statusMB(pid, "RssAnon") }

// statusMB returns a kB field of /proc/<pid>/status in MiB.
func statusMB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected %s line %q", field, line)
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s: %w", field, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeakRSS sets the process's VmHWM back to its current RSS (proc(5),
// clear_refs value 5), so each measured phase reports its own peak.
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of %d: %w", pid, err)
	}
	return nil
}

// parentPID returns field 4 (ppid) of /proc/<pid>/stat.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.Atoi(f[1])
}

// processTree returns pid and its live descendants. nginx does its work in worker
// processes forked by a master; a proxy's cost is the whole tree's.
func processTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A process may exit between the listing and the read: skip it.
		if pp, err := parentPID(p); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// treeCPUSeconds is cpuSeconds summed over pid's process tree.
func treeCPUSeconds(pid int) (float64, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, p := range tree {
		c, err := cpuSeconds(p)
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

// treePeakRSSMB is peakRSSMB summed over pid's process tree: an upper bound of the
// tree's peak, since each process may peak at a different moment.
func treePeakRSSMB(pid int) (float64, error) { return treeSumMB(pid, peakRSSMB) }

// treeAnonRSSMB is anonRSSMB summed over pid's process tree.
func treeAnonRSSMB(pid int) (float64, error) { return treeSumMB(pid, anonRSSMB) }

// treeSumMB sums one figure over pid's process tree.
func treeSumMB(pid int, figure func(int) (float64, error)) (float64, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, p := range tree {
		m, err := figure(p)
		if err != nil {
			return 0, err
		}
		sum += m
	}
	return sum, nil
}

// treeResetPeakRSS is resetPeakRSS over pid's process tree.
func treeResetPeakRSS(pid int) error {
	tree, err := processTree(pid)
	if err != nil {
		return err
	}
	for _, p := range tree {
		if err := resetPeakRSS(p); err != nil {
			return err
		}
	}
	return nil
}
