package sim

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

var flagBugSeed = flag.Uint64("bugseed", 0, "TestInjectedBugsAreCaught: replay only this seed")

// bugsByName are the injectable runtime bugs, by their -bug flag value.
var bugsByName = map[string]Bugs{
	"ack-before-sync":   {AckBeforeSync: true},
	"forget-vote":       {ForgetVote: true},
	"serve-reads-early": {ServeReadsEarly: true},
}

// TestInjectedBugsAreCaught proves the checker bites: with a runtime bug
// injected, some seed among the first few hundred must end in a safety
// violation. (Liveness is not checked here: a bug may also stall the group.)
//
// Each bug is run twice: with the send-time persistence checks, which flag
// the broken promise itself, and without them ("deep"), where only the
// consequences (a lost committed entry, two leaders in a term, diverging
// state machines) can give the bug away.
func TestInjectedBugsAreCaught(t *testing.T) {
	const maxSeeds = 400
	for _, name := range []string{"ack-before-sync", "forget-vote", "deep-ack-before-sync", "deep-forget-vote", "serve-reads-early"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bug, deep := strings.CutPrefix(name, "deep-")
			first, last := uint64(1), uint64(maxSeeds)
			if *flagBugSeed != 0 {
				first, last = *flagBugSeed, *flagBugSeed
			}
			for seed := first; seed <= last; seed++ {
				cfg, w := RandomSchedule(seed)
				cfg.Bugs = bugsByName[bug]
				cfg.skipDurabilityChecks = deep
				// Crash-heavy, so that what the bug failed to persist matters.
				w.Crash, w.Restart = max(w.Crash, 20), max(w.Restart, 40)
				if deep {
					// Three voters, crashes before syncs, competing
					// candidates and a lossy, slow network: the conditions
					// under which a lost ack or a forgotten vote matters.
					cfg.Voters, cfg.DisablePreVote = 3, true
					cfg.Net = NetConfig{DropPerMille: 150, MaxDelay: 3}
					w.Crash, w.Restart, w.Campaign = 60, 120, 40
					w.Partition, w.Heal, w.ConfChange, w.Compact = 30, 40, 0, 0
					w.earlyCrashes = true
				}
				if *flagBugSeed != 0 && testing.Verbose() {
					cfg.Logf = t.Logf
				}
				s, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				err = s.RunRandom(w, steps(), false)
				if errors.Is(err, ErrSafety) {
					if *flagBugSeed != 0 {
						t.Logf("%s", s.Report())
					}
					t.Logf("caught at seed %d: %v\nreplay: go test ./internal/sim -run '^TestInjectedBugsAreCaught/%s$' -bugseed=%d -v", seed, err, name, seed)
					return
				}
				if err != nil {
					t.Fatalf("seed %d: unexpected non-safety error: %v", seed, err)
				}
			}
			t.Fatalf("bug %s was not caught in %d seeds: the checker does not bite", name, maxSeeds)
		})
	}
}
