// Package bench is the benchmark harness of `tokenbroker bench`: the herd
// (refresh races across real replica processes, [RunHerd]), the hot path
// (token requests per second against a bare net/http ceiling,
// [RunHotpath]), the management of replica child processes
// ([StartReplica]) and the two broken refresh strategies the herd
// measures next to the coordinator ([Baseline]).
//
// cmd/tokenbroker only wires it: its bench commands parse flags and call
// this package, and its hidden `bench replica` command runs serve's wiring
// with a [Baseline] in place of the coordinator. `serve` has no switch
// that selects a baseline, so no deployment can become one. The
// multi-replica tests of cmd/tokenbroker use the same replica management.
package bench
