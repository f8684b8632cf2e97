//go:build race

package trace

// raceEnabled is set under -race, where encoding/json (the tests'
// reference) runs ~10x slower.
const raceEnabled = true
