package kv

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
)

// TestScanCoversEveryKey: a full SCAN returns every key exactly once when
// nothing changes, and every key that exists throughout at least once when
// other keys come and go between calls (Redis's SCAN guarantee).
func TestScanCoversEveryKey(t *testing.T) {
	h := newHarness(t)
	for i := range 1000 {
		h.do(fmt.Sprintf("SET stable%d x", i))
	}
	for _, count := range []int{1, 3, 10, 999, 1000, 5000} {
		seen := map[string]int{}
		cursor, calls := uint64(0), 0
		for {
			next, keys := h.s.Scan(cursor, nil, count, h.now)
			calls++
			if len(keys) > count {
				t.Fatalf("count %d: %d keys in one call", count, len(keys))
			}
			for _, k := range keys {
				seen[k]++
			}
			if next == 0 {
				break
			}
			if next <= cursor {
				t.Fatalf("cursor went from %d to %d", cursor, next)
			}
			cursor = next
		}
		if len(seen) != 1000 {
			t.Fatalf("count %d: saw %d keys", count, len(seen))
		}
		for k, n := range seen {
			if n != 1 {
				t.Fatalf("count %d: %s returned %d times", count, k, n)
			}
		}
		// One extra call may be needed to learn that nothing follows.
		if want := (1000 + count - 1) / count; calls > want+1 {
			t.Errorf("count %d: %d calls, want at most %d", count, calls, want+1)
		}
	}

	// Churn between calls.
	seen := map[string]bool{}
	cursor, step := uint64(0), 0
	for {
		next, keys := h.s.Scan(cursor, nil, 7, h.now)
		for _, k := range keys {
			seen[k] = true
		}
		step++
		h.do(fmt.Sprintf("SET churn%d x", step))
		h.do(fmt.Sprintf("DEL churn%d", step-1))
		if next == 0 {
			break
		}
		cursor = next
	}
	for i := range 1000 {
		if !seen["stable"+strconv.Itoa(i)] {
			t.Fatalf("stable%d never returned while other keys churned", i)
		}
	}
}

func TestScanMatchAndExpiry(t *testing.T) {
	h := newHarness(t)
	h.run([]string{
		"MSET user:1 a user:2 b order:1 c -> OK",
		"SET user:3 d PX 10 -> OK",
		"ADVANCE 10",
	})
	next, keys := h.s.Scan(0, []byte("user:*"), 100, h.now)
	if next != 0 || len(keys) != 2 {
		t.Errorf("SCAN 0 MATCH user:* = %d %v; want 0 [user:1 user:2] (user:3 expired)", next, keys)
	}
	// MATCH filters after picking: small counts may return nothing yet
	// continue, and the union is still complete.
	var all []string
	cursor := uint64(0)
	for {
		next, keys := h.s.Scan(cursor, []byte("order:*"), 1, h.now)
		all = append(all, keys...)
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(all) != 1 || all[0] != "order:1" {
		t.Errorf("MATCH order:* with COUNT 1: %v", all)
	}
	if next, keys := newHarness(t).s.Scan(0, nil, 10, t0); next != 0 || len(keys) != 0 {
		t.Errorf("empty store: %d %v", next, keys)
	}
}

// TestReadsDuringApply hammers every read while Apply writes (run with
// -race), and checks that reads never see a torn value.
func TestReadsDuringApply(t *testing.T) {
	h := newHarness(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, v := range h.s.MGet(keys, t0) {
					// Every value written is "x" repeated; a torn read would mix.
					for _, ch := range v {
						if ch != 'x' {
							select {
							case errs <- fmt.Sprintf("reader %d saw %q", r, v):
							default:
							}
						}
					}
				}
				h.s.Exists(keys, t0)
				h.s.Strlen(keys[0], t0)
				h.s.PTTL(keys[1], t0)
				h.s.Type(keys[2], t0)
				h.s.DBSize()
				if i%50 == 0 {
					h.s.Keys([]byte("*"), t0)
					h.s.Scan(0, []byte("?"), 2, t0)
					h.s.ExpiredKeys(t0+1000, 5)
				}
			}
		}()
	}
	for i := range 3000 {
		switch i % 4 {
		case 0:
			h.do("APPEND a x")
		case 1:
			h.do("SET b xxxx PX 500")
		case 2:
			h.do("GETSET c xx")
		case 3:
			h.do("DEL c")
		}
		if i%1000 == 0 {
			fn, _ := h.s.Snapshot()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(discard{}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestScanIndexCollisions uses made-up hashes: keys with equal hashes are
// returned together (a cursor cannot split them), extreme hashes work, and
// growth keeps the order.
func TestScanIndexCollisions(t *testing.T) {
	x := newScanIndex()
	hashes := []uint64{0, 0, 5, 5, 5, 1 << 63, ^uint64(0), ^uint64(0)}
	for i, h := range hashes {
		x.insert(h, "k"+strconv.Itoa(i))
	}
	all := func(string) bool { return true }
	var got []uint64
	cursor := uint64(0)
	for calls := 0; ; calls++ {
		if calls > 10 {
			t.Fatal("scan does not terminate")
		}
		next, keys := x.scan(cursor, 1, all)
		for i, k := range keys {
			got = append(got, k.h)
			if i > 0 && k.h != keys[0].h {
				t.Errorf("count 1 returned different hashes %v", keys)
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if fmt.Sprint(got) != fmt.Sprint(hashes) {
		t.Errorf("got hashes %v, want %v", got, hashes)
	}
	for i := range 1000 {
		x.insert(uint64(i)*0x9E3779B97F4A7C15, "g"+strconv.Itoa(i))
	}
	if x.bits <= scanMinBits {
		t.Errorf("index did not grow: %d bits for %d keys", x.bits, x.n)
	}
	next, keys := x.scan(0, 10_000, all)
	if next != 0 || len(keys) != 1008 {
		t.Errorf("full scan: next %d, %d keys", next, len(keys))
	}
	for i := 1; i < len(keys); i++ {
		if keys[i].h < keys[i-1].h {
			t.Fatalf("out of order at %d", i)
		}
	}
	x.delete(5, "k3")
	x.delete(^uint64(0), "k7")
	if x.n != 1006 {
		t.Errorf("n = %d after two deletes", x.n)
	}
}
