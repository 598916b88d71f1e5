// Package browser checks the live cluster page (package ui) the way an
// operator sees it: headless Chromium, driven by chromedp, loads the page of
// a running three-member cluster of real processes, the test kills the
// leader, and the page must show the new leader and the old one as down.
//
// It skips with a clear message when no Chromium is installed (Debian:
// apt-get install chromium), and in -short mode. RAFTKV_SCREENSHOT=path
// saves the final screenshot (after the failover) there as well;
// RAFTKV_SCREENSHOT_HEALTHY=path saves one of the healthy cluster under a
// light write load first (README's docs/ui.png is made this way).
package browser
