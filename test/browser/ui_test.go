package browser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

	// Some writes, through every member, so the charts and edges have
	// something to show; they go on through the failover.
	loadCtx, stopLoad := context.WithCancel(bg)
	defer stopLoad()
	go writeLoad(loadCtx, c)
	if dst := os.Getenv("RAFTKV_SCREENSHOT_HEALTHY"); dst != "" {
		time.Sleep(6 * time.Second) // a few seconds of history in the charts
		if err := shown(threeAndLeader, 5*time.Second); err != nil {
			t.Fatalf("the healthy cluster page changed under load: %v", err)
		}
		saveScreenshot(t, ctx, dst)
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

	time.Sleep(time.Second) // let the timeline and charts show the change
	saveScreenshot(t, ctx, filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-ui-%d.png", time.Now().UnixNano())))
	if dst := os.Getenv("RAFTKV_SCREENSHOT"); dst != "" {
		saveScreenshot(t, ctx, dst)
	}
}

// saveScreenshot writes a PNG of the whole page to path.
func saveScreenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG (below it, JPEG)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// writeLoad PUTs keys round-robin through the running members' HTTP API
// until ctx ends, a few hundred writes a second at most.
func writeLoad(ctx context.Context, c *proctest.Cluster) {
	hc := &http.Client{Timeout: 2 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		m := c.Members[i%len(c.Members)]
		if !c.Running(m) {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut,
			fmt.Sprintf("http://%s/v1/kv/key-%d", m.HTTPAddr, i%100), strings.NewReader(fmt.Sprint(i)))
		if err != nil {
			return
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
		time.Sleep(5 * time.Millisecond)
	}
}
