//go:build !windows && !plan9

package audit

import (
	"errors"
	"io/fs"
	"log/syslog"
	"os"
	"path/filepath"
)

// openSyslog connects to the local syslog socket (journald's on systemd
// systems), facility authpriv; nil, nil when /dev/log does not exist.
func openSyslog() (syslogWriter, error) {
	if _, err := os.Stat("/dev/log"); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	w, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "smimed")
	if err != nil {
		return nil, err
	}
	return w, nil
}

// stateHome is $XDG_STATE_HOME, or ~/.local/state.
func stateHome() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "state"), nil
}
