package pinentrytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuildIsCached(t *testing.T) {
	first := Build(t)
	fi, err := os.Stat(first)
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("Build returned %s: %v %v", first, fi, err)
	}
	start := time.Now()
	second := Build(t)
	if second != first {
		t.Errorf("second Build = %s, want the cached %s", second, first)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cached Build took %v", d)
	}
	fi2, _ := os.Stat(second)
	if !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("second Build rebuilt the binary")
	}
}

// Drives the testpinentry by hand, as a pinentry client would, and reads
// the log back.
func TestTestpinentrySession(t *testing.T) {
	bin := Build(t)
	logPath := filepath.Join(t.TempDir(), "log")
	tests := []struct {
		name     string
		cfg      Config
		input    string
		wantOut  []string
		outcomes []string
	}{
		{"PIN", Config{PIN: "12%\n3"}, "SETDESC a%25b%0Ac%0Dd\nGETPIN\nBYE\n",
			[]string{"OK Pleased to meet you", "OK", "D 12%25%0A3", "OK", "OK closing connection"}, []string{"pin"}},
		{"cancel", Config{PIN: "pin-9x8y7z", Cancel: true}, "GETPIN\nCONFIRM\nBYE\n",
			[]string{"OK Pleased to meet you", "ERR 83886179 Operation cancelled <testpinentry>", "ERR 83886179 Operation cancelled <testpinentry>", "OK closing connection"}, []string{"cancelled"}},
		{"unknown command", Config{}, "FROB x\nMESSAGE\n",
			[]string{"OK Pleased to meet you", "ERR 536871187 Unknown IPC command <testpinentry>", "OK"}, []string{"messaged"}},
		{"PINs file", Config{PINs: []string{"1", "2"}}, "GETPIN\nGETPIN\n",
			[]string{"OK Pleased to meet you", "D 1", "OK", "D 2", "OK"}, []string{"pin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(logPath)
			tt.cfg.Log = logPath
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), tt.cfg.Env(t)...)
			cmd.Stdin = strings.NewReader(tt.input)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !slices.Equal(got, tt.wantOut) {
				t.Errorf("output %q, want %q", got, tt.wantOut)
			}
			sessions := ReadLog(t, logPath)
			if len(sessions) != 1 || sessions[0].PID == 0 || sessions[0].End.Before(sessions[0].Start) {
				t.Fatalf("sessions %+v", sessions)
			}
			if sessions[0].Outcome != tt.outcomes[0] {
				t.Errorf("outcome %q, want %q", sessions[0].Outcome, tt.outcomes[0])
			}
			// Compare decoded text: in the JSON file, the PIN's escaped
			// characters would never match.
			if logged := fmt.Sprint(sessions[0].Commands, sessions[0].Outcome); tt.cfg.PIN != "" && strings.Contains(logged, tt.cfg.PIN) {
				t.Errorf("log contains the PIN: %s", logged)
			}
		})
	}
	// The decoded argument is logged.
	os.Remove(logPath)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), Config{Log: logPath}.Env(t)...)
	cmd.Stdin = strings.NewReader("SETDESC a%25b%0Ac%0Dd\nBYE\n")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	s := ReadLog(t, logPath)[0]
	if d := s.Description(); d != "a%b\nc\rd" {
		t.Errorf("logged description %q", d)
	}
	if s.Count("BYE") != 1 || s.Count("GETPIN") != 0 {
		t.Errorf("counts wrong: %+v", s.Commands)
	}
	if _, ok := s.Arg("SETERROR"); ok {
		t.Error("Arg found a command never sent")
	}
}

func TestReadLogMissingFile(t *testing.T) {
	if s := ReadLog(t, filepath.Join(t.TempDir(), "none")); s != nil {
		t.Errorf("ReadLog of a missing file = %v", s)
	}
}
