// Package e2e holds the end-to-end tests of smimed: the real smimed and
// smimectl binaries (built by the test), a private dbus-daemon, the test
// pinentry (prompt/pinentry/testpinentry), a file keystore in throw-away
// XDG directories or a real gnome-keyring on the private bus, and OpenSSL
// as an independent reader of what the daemon writes.
//
// Every test starts its own bus and daemon, so tests run in parallel and
// share nothing. A missing peer (dbus-daemon, openssl, gnome-keyring-daemon)
// fails the test; none is skipped. Run them with
//
//	go test ./tests/e2e
//
// and the benchmarks (D-Bus round trips against the in-process engine,
// smimectl against openssl per message, idle daemon memory) with
//
//	go test ./tests/e2e -run '^$' -bench .
//
// There is no non-test code here.
package e2e
