//go:build race

package discovery

// raceSlack is added to allocation bounds under the race detector, whose
// instrumentation allocates a few KiB of its own per call (measured: FuzzRecv's
// seed 2 allocates 135,600 bytes under -race against a 131,200-byte bound, before and
// after the move to grpcwire). A prefix that cost its claimed size would still exceed
// the bound by megabytes.
const raceSlack = 16 << 10
