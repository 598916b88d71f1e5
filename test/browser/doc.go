// Package browser checks the live cluster page (package ui) the way an
// operator sees it: headless Chromium, driven by chromedp, loads the page of
// a running three-member cluster of real processes, the test kills the
// leader, and the page must show the new leader and the old one as down.
//
// It skips with a clear message when no Chromium is installed (Debian:
// apt-get install chromium). RAFTKV_SCREENSHOT=path saves the final
// screenshot there as well (README's picture is made this way).
package browser
