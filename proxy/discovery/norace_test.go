//go:build !race

package discovery

// raceSlack: see race_test.go.
const raceSlack = 0
