package vfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

func readAll(t *testing.T, fs FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMemCrashKeepsSynced: synced data and synced names always survive.
func TestMemCrashKeepsSynced(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		fs := NewMem()
		fs.MkdirAll("/d", 0o755)
		fs.SyncDir("/")
		f, _ := fs.Create("/d/a")
		f.Write([]byte("hello"))
		f.Sync()
		fs.SyncDir("/d")
		f.Write([]byte(" world")) // unsynced
		fs.Crash(rand.New(rand.NewPCG(seed, 0)))
		got := readAll(t, fs, "/d/a")
		if !bytes.HasPrefix(got, []byte("hello")) || len(got) > len("hello world") {
			t.Fatalf("seed %d: after crash %q", seed, got)
		}
		if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
			t.Fatalf("write on a pre-crash handle = %v, want ErrCrashed", err)
		}
	}
}

// TestMemCrashOutcomes: across seeds, an unsynced write is sometimes kept,
// sometimes dropped, sometimes torn; an unsynced creation sometimes lost;
// a later write kept over a dropped one leaves a hole of zeros.
func TestMemCrashOutcomes(t *testing.T) {
	seen := map[string]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		fs := NewMem()
		f, _ := fs.Create("/a")
		fs.SyncDir("/")
		f.Write([]byte("AAAA"))
		f.Write([]byte("BBBB"))
		g, _ := fs.Create("/unsynced-name")
		g.Write([]byte("x"))
		g.Sync()
		fs.Crash(rand.New(rand.NewPCG(seed, 1)))
		got := string(readAll(t, fs, "/a"))
		switch {
		case got == "AAAABBBB":
			seen["kept"] = true
		case got == "":
			seen["dropped"] = true
		case got == "\x00\x00\x00\x00BBBB":
			seen["hole"] = true
		case len(got) > 0 && len(got) < 8 && got[0] == 'A':
			seen["torn"] = true
		}
		if _, err := fs.Stat("/unsynced-name"); err != nil {
			seen["name lost"] = true
		}
	}
	for _, k := range []string{"kept", "dropped", "hole", "torn", "name lost"} {
		if !seen[k] {
			t.Errorf("outcome %q never happened in 200 seeds", k)
		}
	}
}

// TestMemRenameDurability: a rename made durable by SyncDir survives; the
// old name is gone.
func TestMemRenameDurability(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		fs := NewMem()
		f, _ := fs.Create("/tmp1")
		f.Write([]byte("data"))
		f.Sync()
		f.Close()
		if err := fs.Rename("/tmp1", "/final"); err != nil {
			t.Fatal(err)
		}
		fs.SyncDir("/")
		fs.Crash(rand.New(rand.NewPCG(seed, 2)))
		if got := readAll(t, fs, "/final"); string(got) != "data" {
			t.Fatalf("seed %d: /final = %q", seed, got)
		}
		if _, err := fs.Stat("/tmp1"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("seed %d: old name still there: %v", seed, err)
		}
	}
}

func TestMemLock(t *testing.T) {
	fs := NewMem()
	l, err := fs.Lock("/LOCK")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Lock("/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	l.Close()
	if _, err = fs.Lock("/LOCK"); err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	fs.Crash(rand.New(rand.NewPCG(1, 1))) // the holder died
	if _, err := fs.Lock("/LOCK"); err != nil {
		t.Fatalf("Lock after crash: %v", err)
	}
}

func TestOSLock(t *testing.T) {
	name := t.TempDir() + "/LOCK"
	l, err := Default.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Default.Lock(name); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	l.Close()
	l, err = Default.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestInjector: the Nth operation of a kind fails, once or from then on; a
// failed write is short; counts keep running.
func TestInjector(t *testing.T) {
	in := NewInjector(NewMem())
	in.FailNth(OpWrite, 2, nil)
	in.FailFrom(OpSync, 2, errors.New("EIO"))
	f, err := in.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("1111")); err != nil {
		t.Fatal(err)
	}
	n, err := f.Write([]byte("2222"))
	var ie *InjectedError
	if !errors.As(err, &ie) || ie.Op != OpWrite || ie.N != 2 || n != 2 || !errors.Is(err, ErrInjected) {
		t.Fatalf("second write = %d, %v", n, err)
	}
	if _, err := f.Write([]byte("3333")); err != nil {
		t.Fatalf("third write (one-shot rule) = %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := f.Sync(); !errors.Is(err, ErrInjected) {
			t.Fatalf("sync %d = %v, want sticky failure", i+2, err)
		}
	}
	if in.Count(OpWrite) != 3 || in.Count(OpSync) != 4 {
		t.Fatalf("counts: write %d sync %d", in.Count(OpWrite), in.Count(OpSync))
	}
	if got := readAll(t, in, "/f"); string(got) != "1111223333" {
		t.Fatalf("content %q", got)
	}
	in.FailAllFrom(in.Total()+1, nil)
	if _, err := in.Stat("/f"); !errors.Is(err, ErrInjected) {
		t.Fatalf("Stat after FailAllFrom = %v", err)
	}
}
