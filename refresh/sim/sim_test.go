package sim_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/tokenbroker/tokenbroker/refresh/sim"
)

// defaultSeeds is how many seeds `go test` simulates without
// TOKENBROKER_SIM_SEEDS: enough to catch a broken mechanism (see
// TestSimulationFindsBrokenStore), small enough for the suite under -race.
const defaultSeeds = 300

// run simulates one seed in its own bubble.
func run(t *testing.T, o sim.Options) *sim.Result {
	var res *sim.Result
	synctest.Test(t, func(t *testing.T) { res = sim.Run(o) })
	return res
}

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// report prints a failing seed: its violation, the end of its schedule,
// the file that holds all of it, and how to replay it.
func report(t *testing.T, res *sim.Result) {
	t.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tokenbroker-sim-%d.log", res.Seed))
	_ = os.WriteFile(path, []byte(strings.Join(res.Schedule, "\n")+"\n"), 0o644)
	tail := res.Schedule
	if len(tail) > 120 {
		tail = tail[len(tail)-120:]
	}
	broken := ""
	if b := os.Getenv("TOKENBROKER_SIM_BROKEN"); b != "" {
		broken = "TOKENBROKER_SIM_BROKEN=" + b + " "
	}
	t.Errorf("seed %d (%s): %s\n\nschedule (last %d of %d lines; all of it in %s):\n%s\n\nreplay: %sTOKENBROKER_SIM_SEED=%d go test -run 'Simulation$' -v ./refresh/sim/",
		res.Seed, res.Profile, res.Violation, len(tail), len(res.Schedule), path, strings.Join(tail, "\n"), broken, res.Seed)
}

// brokenFromEnv is the Breakage TOKENBROKER_SIM_BROKEN names: fields of
// sim.Breakage separated by commas (NoCommitFence,NoCommitCAS), so that a
// seed TestSimulationFindsBrokenStore reports replays with its removal.
func brokenFromEnv(t *testing.T) sim.Breakage {
	var b sim.Breakage
	v := os.Getenv("TOKENBROKER_SIM_BROKEN")
	if v == "" {
		return b
	}
	for name := range strings.SplitSeq(v, ",") {
		f := reflect.ValueOf(&b).Elem().FieldByName(strings.TrimSpace(name))
		if !f.IsValid() || f.Kind() != reflect.Bool {
			t.Fatalf("TOKENBROKER_SIM_BROKEN=%q: sim.Breakage has no field %q", v, name)
		}
		f.SetBool(true)
	}
	return b
}

// TestSimulation runs the coordinators of several replicas under the
// seeded scheduler, seed after seed, and fails on the first broken
// invariant with the seed's schedule. TOKENBROKER_SIM_SEEDS=N runs N
// seeds (from TOKENBROKER_SIM_FIRST, default 1); TOKENBROKER_SIM_SEED=S
// replays seed S and prints its whole schedule. TOKENBROKER_SIM_BROKEN
// removes mechanisms of the simulated store (see brokenFromEnv).
func TestSimulation(t *testing.T) {
	broken := brokenFromEnv(t)
	if s := os.Getenv("TOKENBROKER_SIM_SEED"); s != "" {
		seed := envInt(t, "TOKENBROKER_SIM_SEED", 0)
		res := run(t, sim.Options{Seed: seed, Broken: broken, Log: os.Stdout})
		t.Logf("seed %d (%s): %d steps, figures %+v", seed, res.Profile, res.Figures.Steps, res.Figures)
		if res.Violation != "" {
			report(t, res)
		}
		t.Logf("simulated 1 seeds")
		return
	}
	n := envInt(t, "TOKENBROKER_SIM_SEEDS", defaultSeeds)
	first := envInt(t, "TOKENBROKER_SIM_FIRST", 1)
	sum, ran := simulate(t, first, n, sim.Options{Broken: broken})
	t.Logf("%d steps; %d calls (%d tokens, errors %v); %d provider sends, %d processed; %d crashes, %d pauses, %d takeovers; losses %v",
		sum.Steps, sum.Calls, sum.Tokens, sum.Errors, sum.ProviderSends, sum.Processed, sum.Crashes, sum.Pauses, sum.Takeovers, sum.Losses)
	t.Logf("simulated %d seeds", ran)
}

// replaying reports (and skips the test) when one seed is replayed.
func replaying(t *testing.T) {
	if os.Getenv("TOKENBROKER_SIM_SEED") != "" {
		t.Skip("TOKENBROKER_SIM_SEED replays one seed in TestSimulation")
	}
}

// simulate runs seeds [first, first+n) on as many workers as there are
// processors and reports each failing seed (stopping after three). It
// returns the sum of the figures and how many seeds ran.
func simulate(t *testing.T, first, n int64, o sim.Options) (sim.Figures, int64) {
	var (
		mu      sync.Mutex
		sum     = sim.Figures{Errors: map[string]int{}, Losses: map[string]int{}}
		next    atomic.Int64
		failed  atomic.Int64
		ran     atomic.Int64
		workers = runtime.GOMAXPROCS(0)
	)
	next.Store(first)
	t.Run("seeds", func(t *testing.T) {
		for k := range workers {
			t.Run(fmt.Sprintf("worker%d", k), func(t *testing.T) {
				t.Parallel()
				for {
					seed := next.Add(1) - 1
					if seed >= first+n || failed.Load() >= 3 {
						return
					}
					o := o
					o.Seed = seed
					res := run(t, o)
					ran.Add(1)
					mu.Lock()
					add(&sum, res.Figures)
					mu.Unlock()
					if res.Violation != "" {
						failed.Add(1)
						report(t, res)
					}
				}
			})
		}
	})
	return sum, ran.Load()
}

func add(sum *sim.Figures, f sim.Figures) {
	sum.Steps += f.Steps
	sum.Calls += f.Calls
	sum.Tokens += f.Tokens
	sum.ProviderSends += f.ProviderSends
	sum.Processed += f.Processed
	sum.Rotations += f.Rotations
	sum.Takeovers += f.Takeovers
	sum.Crashes += f.Crashes
	sum.Pauses += f.Pauses
	sum.Restarts += f.Restarts
	sum.LostMarks += f.LostMarks
	sum.RevokedMarks += f.RevokedMarks
	sum.UncertainAnswers += f.UncertainAnswers
	sum.Reconnects += f.Reconnects
	for k, v := range f.Errors {
		sum.Errors[k] += v
	}
	for k, v := range f.Losses {
		sum.Losses[k] += v
	}
}

// TestSimulationReplaysExactly: a seed replays the same schedule, whatever
// Go's scheduler does: every decision and its outcome (the hash), and
// every line of the schedule, coordinator logs included.
func TestSimulationReplaysExactly(t *testing.T) {
	replaying(t)
	const seeds = 40
	defer t.Logf("simulated %d seeds", 2*seeds)
	for seed := int64(1); seed <= seeds; seed++ {
		a := run(t, sim.Options{Seed: seed})
		b := run(t, sim.Options{Seed: seed})
		if a.Hash != b.Hash {
			t.Fatalf("seed %d: two runs made different decisions (hash %x, %x)", seed, a.Hash, b.Hash)
		}
		if len(a.Schedule) != len(b.Schedule) {
			t.Fatalf("seed %d: schedules of %d and %d lines", seed, len(a.Schedule), len(b.Schedule))
		}
		for i := range a.Schedule {
			if a.Schedule[i] != b.Schedule[i] {
				t.Fatalf("seed %d: schedules differ at line %d:\n%s\n%s", seed, i, a.Schedule[i], b.Schedule[i])
			}
		}
	}
}

// firstFailure simulates seeds 1, 2, ... up to budget on every processor
// and returns the first seed that breaks an invariant (nil if none does),
// and how many seeds ran.
func firstFailure(t *testing.T, o sim.Options, budget int64) (*sim.Result, int64) {
	var (
		mu    sync.Mutex
		first *sim.Result
		next  atomic.Int64
		ran   atomic.Int64
	)
	next.Store(1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				mu.Lock()
				found := first != nil
				mu.Unlock()
				seed := next.Add(1) - 1
				if found || seed > budget {
					return
				}
				o := o
				o.Seed = seed
				var res *sim.Result
				synctest.Test(t, func(*testing.T) { res = sim.Run(o) })
				ran.Add(1)
				if res.Violation != "" {
					mu.Lock()
					if first == nil || res.Seed < first.Seed {
						first = res
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first, ran.Load()
}

// ciBudget is the number of seeds within which the simulation must find
// each removed mechanism of the store (TestSimulationFindsBrokenStore).
const ciBudget = 2000

// TestSimulationFindsBrokenStore removes, one at a time, a mechanism of
// the store's statements that the protocol relies on, and requires the
// simulation to find a seed that breaks an invariant: the simulation
// itself is tested. A seed it reports replays with its removal:
// TOKENBROKER_SIM_BROKEN=NoMarkFence TOKENBROKER_SIM_SEED=S.
//
// The generation conditions of CommitRefresh and MarkReauthRequired
// (NoCommitCAS, NoMarkCAS) are not in the list: under the lease fence
// they cannot fail, since the lease is won only on the generation read
// and every statement that moves the generation (CommitRefresh, PutLink)
// ends the lease, so no run of the protocol tells them apart. The store
// conformance suite states the commit's with a lease the coordinator
// never forms; without the fence, the simulation finds it
// (NoCommitFence,NoCommitCAS commits over a newer generation).
func TestSimulationFindsBrokenStore(t *testing.T) {
	replaying(t)
	var ran atomic.Int64
	defer func() { t.Logf("simulated %d seeds", ran.Load()) }()
	for _, tc := range []struct {
		name   string
		broken sim.Breakage
	}{
		{"lease fence on commit", sim.Breakage{NoCommitFence: true}},
		{"generation compare-and-swap of the lease", sim.Breakage{NoAcquireCAS: true}},
		{"lease renewal", sim.Breakage{NoRenewal: true}},
		{"link backoff after an uncertain outcome", sim.Breakage{NoLinkBackoff: true}},
		{"attempt accounting (suspect)", sim.Breakage{NoSuspect: true}},
		{"liveness of a held lease", sim.Breakage{NoAcquireLiveness: true}},
		{"lease fence on the mark", sim.Breakage{NoMarkFence: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, n := firstFailure(t, sim.Options{Broken: tc.broken}, ciBudget)
			ran.Add(n)
			if res == nil {
				t.Fatalf("no seed of %d breaks an invariant without the %s", ciBudget, tc.name)
			}
			t.Logf("without the %s: seed %d (%s) breaks %s", tc.name, res.Seed, res.Profile, res.Violation)
		})
	}
}
