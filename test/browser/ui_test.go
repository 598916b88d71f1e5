package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/raftkv/raftkv/internal/proctest"
)

func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("browser test skipped: no Chromium found (apt-get install chromium)")
	return ""
}

// TestPageFollowsFailover loads the page from a follower, kills the leader,
// and waits for the page to show a new leader and the old one down.
func TestPageFollowsFailover(t *testing.T) {
	if os.Getenv("RAFTKV_BROWSER") != "1" {
		t.Skip("browser test is off: set RAFTKV_BROWSER=1 to run it (needs Chromium; .ci/run sets it)")
	}
	chromium := findChromium(t)
	if testing.Short() {
		t.Skip("browser test skipped in -short mode (it starts a cluster and a browser)")
	}
	c := proctest.NewCluster(t, 3, t.TempDir(), 1)
	t.Cleanup(c.Stop)
	c.StartAll()
	bg := context.Background()
	var leader int
	if !proctest.WaitFor(bg, 30*time.Second, func() bool { leader = c.Leader(); return leader != 0 }) {
		t.Fatal("no leader within 30s")
	}
	var viewer *proctest.Member
	for _, m := range c.Members {
		if m.ID != leader {
			viewer = m
			break
		}
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(bg, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	shown := func(js string, within time.Duration) error {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(100*time.Millisecond)))
		return err
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+viewer.HTTPAddr+"/ui")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	threeAndLeader := fmt.Sprintf(`document.querySelectorAll('.member[data-reachable="true"]').length === 3 &&
		document.querySelector('.member[data-role="leader"]')?.dataset.memberId === "%d"`, leader)
	if err := shown(threeAndLeader, 15*time.Second); err != nil {
		t.Fatalf("the page never showed 3 reachable members with member %d leading: %v", leader, err)
	}

	c.Kill(c.Member(leader))
	newLeaderOldDown := fmt.Sprintf(`(() => {
		const old = document.querySelector('.member[data-member-id="%d"]');
		const lead = document.querySelector('.member[data-role="leader"]');
		return old && old.dataset.reachable === "false" && lead && lead.dataset.memberId !== "%d";
	})()`, leader, leader)
	if err := shown(newLeaderOldDown, 15*time.Second); err != nil {
		t.Fatalf("after killing leader %d the page did not show a new leader and the old one down: %v", leader, err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-ui-%d.png", time.Now().UnixNano()))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if dst := os.Getenv("RAFTKV_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
