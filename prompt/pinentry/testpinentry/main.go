// Command testpinentry is a pinentry for tests: it speaks the Assuan pinentry
// protocol on stdin/stdout and answers from its environment, with no UI.
//
//	TESTPINENTRY_PIN=1234        the PIN to answer GETPIN with (default: empty)
//	TESTPINENTRY_PINS_FILE=path  answer each session with the next line of the
//	                             file, removing it (sessions may run in
//	                             parallel); when it is empty, cancel
//	TESTPINENTRY_CANCEL=1        answer GETPIN and CONFIRM with "ERR 83886179"
//	TESTPINENTRY_HANG=1          never answer GETPIN, CONFIRM or MESSAGE
//	TESTPINENTRY_DELAY=200ms     wait this long before answering them
//	TESTPINENTRY_LOG=path        append one JSON line per session: pid, start
//	                             and end times, every command with its
//	                             decoded argument, and the outcome; never
//	                             the PIN it answered
//
// The log line is written when the session ends (BYE or end of input), or
// before hanging. Build it with pinentrytest.Build.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

type command struct {
	Cmd string `json:"cmd"`
	Arg string `json:"arg,omitempty"`
}

type session struct {
	PID      int       `json:"pid"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Commands []command `json:"commands"`
	Outcome  string    `json:"outcome"`
}

func main() {
	s := session{PID: os.Getpid(), Start: time.Now()}
	out := bufio.NewWriter(os.Stdout)
	reply := func(lines ...string) {
		for _, l := range lines {
			fmt.Fprintln(out, l)
		}
		out.Flush()
	}
	wait := func() {
		if os.Getenv("TESTPINENTRY_HANG") == "1" {
			s.Outcome = "hung"
			writeLog(&s)
			for {
				time.Sleep(time.Hour) // until killed
			}
		}
		if d, err := time.ParseDuration(os.Getenv("TESTPINENTRY_DELAY")); err == nil {
			time.Sleep(d)
		}
	}
	const cancel = "ERR 83886179 Operation cancelled <testpinentry>"
	reply("OK Pleased to meet you")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		verb, arg, _ := strings.Cut(in.Text(), " ")
		decoded, err := url.PathUnescape(arg) // Assuan's %XX; '+' stays '+'

		if err != nil {
			decoded = "!bad escape: " + arg
		}
		s.Commands = append(s.Commands, command{Cmd: verb, Arg: decoded})
		switch verb {
		case "OPTION", "SETDESC", "SETPROMPT", "SETTITLE", "SETERROR", "SETREPEAT",
			"SETKEYINFO", "SETOK", "SETCANCEL", "SETNOTOK", "SETTIMEOUT":
			reply("OK")
		case "GETPIN":
			wait()
			pin, ok := nextPIN()
			switch {
			case os.Getenv("TESTPINENTRY_CANCEL") == "1" || !ok:
				s.Outcome = "cancelled"
				reply(cancel)
			case pin == "":
				s.Outcome = "pin"
				reply("OK")
			default:
				s.Outcome = "pin"
				reply("D "+escape(pin), "OK")
			}
		case "CONFIRM", "MESSAGE":
			wait()
			if verb == "CONFIRM" && os.Getenv("TESTPINENTRY_CANCEL") == "1" {
				s.Outcome = "cancelled"
				reply(cancel)
				break
			}
			s.Outcome = map[string]string{"CONFIRM": "confirmed", "MESSAGE": "messaged"}[verb]
			reply("OK")
		case "BYE":
			reply("OK closing connection")
			writeLog(&s)
			return
		default:
			reply("ERR 536871187 Unknown IPC command <testpinentry>")
		}
	}
	writeLog(&s)
}

// escape percent-escapes %, CR and LF as Assuan data lines require.
func escape(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// nextPIN returns the PIN for this session; ok is false when the PINs file
// is used up.
func nextPIN() (pin string, ok bool) {
	path := os.Getenv("TESTPINENTRY_PINS_FILE")
	if path == "" {
		return os.Getenv("TESTPINENTRY_PIN"), true
	}
	// A lock directory makes taking a line atomic across parallel sessions.
	lock := path + ".lock"
	for os.Mkdir(lock, 0o700) != nil {
		time.Sleep(5 * time.Millisecond)
	}
	defer os.Remove(lock)
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return "", false
	}
	first, rest, _ := strings.Cut(string(data), "\n")
	if err := os.WriteFile(path, []byte(rest), 0o600); err != nil {
		return "", false
	}
	return strings.TrimSuffix(first, "\r"), true
}

func writeLog(s *session) {
	path := os.Getenv("TESTPINENTRY_LOG")
	if path == "" {
		return
	}
	s.End = time.Now()
	if s.Outcome == "" {
		s.Outcome = "none"
	}
	line, _ := json.Marshal(s)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testpinentry:", err)
		return
	}
	defer f.Close()
	f.Write(append(line, '\n'))
}
