package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "smimed")
	path := filepath.Join(dir, "audit.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := Entry{Time: when, CallerPID: 42, CallerExe: "/usr/bin/smimectl", CallerUID: 1000, Operation: OpSign,
		Identity: Identity{ID: strings.Repeat("ab", 32), Subject: "CN=Alice"}, MessageDigest: strings.Repeat("0f", 32),
		MessageBytes: 12, Outcome: OutcomeOK}
	if err := l.Record(e); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A second Log over the same file appends.
	l2, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	e.Outcome = "error:BadMessage"
	if err := l2.Record(e); err != nil {
		t.Fatal(err)
	}
	l2.Close()

	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	want := map[string]any{
		"time": "2026-01-02T03:04:05Z", "caller_pid": 42.0, "caller_exe": "/usr/bin/smimectl", "caller_uid": 1000.0,
		"operation": "sign", "message_digest": strings.Repeat("0f", 32), "outcome": "ok", "message_bytes": 12.0,
	}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %v, want %v", k, lines[0][k], v)
		}
	}
	id := lines[0]["identity"].(map[string]any)
	if id["id"] != strings.Repeat("ab", 32) || id["subject"] != "CN=Alice" {
		t.Errorf("identity = %v", id)
	}
	if lines[1]["outcome"] != "error:BadMessage" {
		t.Errorf("second line outcome = %v", lines[1]["outcome"])
	}

	for p, mode := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), mode)
		}
	}
}

func TestTightensModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "smimed")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p, mode := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		st, _ := os.Stat(p)
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), mode)
		}
	}
}

func TestConcurrentRecordsStayWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	sys := &fakeSyslog{}
	l.sys = sys
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(Entry{CallerPID: uint32(i), Operation: OpDecrypt, Outcome: OutcomeCancelled}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.Close()
	if n := len(readLines(t, path)); n != 40 {
		t.Errorf("%d lines, want 40", n)
	}
	if len(sys.lines) != 40 || !sys.closed {
		t.Errorf("syslog got %d lines (closed %v), want 40", len(sys.lines), sys.closed)
	}
	for _, line := range sys.lines {
		var e Entry
		js, ok := strings.CutPrefix(line, "smimed-audit ")
		if !ok || json.Unmarshal([]byte(js), &e) != nil || e.Operation != OpDecrypt {
			t.Errorf("syslog line %q", line)
		}
	}
	if err := l.Record(Entry{}); err == nil {
		t.Error("Record after Close succeeded")
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	p, err := DefaultPath()
	if err != nil || p != "/state/smimed/audit.log" {
		t.Errorf("DefaultPath = %q, %v", p, err)
	}
}

// fakeSyslog records what would go to syslog.
type fakeSyslog struct {
	mu     sync.Mutex
	lines  []string
	closed bool
}

func (f *fakeSyslog) Info(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, s)
	return nil
}

func (f *fakeSyslog) Close() error {
	f.closed = true
	return nil
}

// TestSyslogBestEffort: asking for syslog never fails Open, whether or not
// this machine has /dev/log.
func TestSyslogBestEffort(t *testing.T) {
	l, err := Open(Options{Path: filepath.Join(t.TempDir(), "audit.log"), Syslog: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
