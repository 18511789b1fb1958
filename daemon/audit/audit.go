// Package audit writes smimed's audit trail: one JSON line per private-key
// operation (sign, decrypt, import), appended to
// $XDG_STATE_HOME/smimed/audit.log and, when the system has a syslog socket,
// sent to syslog/the journal too.
//
// A line says when, who called (pid, executable, uid), what was done, with
// which identity, over which message (its SHA-256 digest) and how it ended.
// It never holds message content, a PIN or a passphrase: the Entry type has
// no field that could carry them.
//
// The file is opened with O_APPEND, mode 0600, in a directory of mode 0700,
// and every line is synced to disk before Record returns. Syslog is best
// effort: a missing or failing syslog never fails an operation.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Outcomes that are not errors. An error outcome is "error:<Name>" with the
// ipc error name, e.g. "error:KeystoreLocked".
const (
	OutcomeOK              = "ok"
	OutcomeCancelled       = "cancelled"
	OutcomeWrongPassphrase = "wrong-passphrase"
)

// Operations recorded.
const (
	OpSign        = "sign"
	OpSignEncrypt = "sign-encrypt"
	OpDecrypt     = "decrypt"
	OpImport      = "import"
)

// Entry is one audit line.
type Entry struct {
	// Time is when the operation ended.
	Time time.Time `json:"time"`
	// CallerPID is the process id of the caller, as the transport
	// established it (0 when unknown).
	CallerPID uint32 `json:"caller_pid"`
	// CallerExe is the caller's executable path, when known.
	CallerExe string `json:"caller_exe"`
	// CallerUID is the caller's user id.
	CallerUID uint32 `json:"caller_uid"`
	// CallerName is the caller's transport address (D-Bus unique name).
	CallerName string `json:"caller_name,omitempty"`
	// Operation is one of the Op constants.
	Operation string `json:"operation"`
	// Identity is the identity whose key was used (empty for an import
	// that failed before the identity was known).
	Identity Identity `json:"identity"`
	// MessageDigest is the hex SHA-256 of the input message (for decrypt,
	// of the encrypted message; for import, of the PKCS #12 file).
	MessageDigest string `json:"message_digest"`
	// MessageBytes is how many input bytes the digest covers.
	MessageBytes int64 `json:"message_bytes"`
	// Partial is set when the operation stopped before the whole input was
	// read (cancelled by the caller, over the size limit), so the digest
	// covers only MessageBytes bytes.
	Partial bool `json:"partial,omitempty"`
	// Outcome is "ok", "cancelled", "wrong-passphrase" or "error:<Name>".
	Outcome string `json:"outcome"`
}

// Identity names an identity in an audit line.
type Identity struct {
	// ID is the identity's ID (SHA-256 of its certificate).
	ID string `json:"id"`
	// Subject is the certificate's subject (RFC 2253 form).
	Subject string `json:"subject"`
}

// Options configure Open.
type Options struct {
	// Path is the audit file; DefaultPath when empty.
	Path string
	// Syslog also sends every line to syslog (the journal) when /dev/log
	// exists; best effort.
	Syslog bool
	// Logger receives problems with syslog (never the lines' secrets: they
	// have none); none when nil.
	Logger *slog.Logger
}

// Log is the audit trail. It is safe for concurrent use.
type Log struct {
	path   string
	logger *slog.Logger

	mu     sync.Mutex
	f      *os.File
	sys    syslogWriter // nil when syslog is off or unavailable
	sysErr bool         // a syslog failure was already logged
}

// syslogWriter is the part of *syslog.Writer the log uses.
type syslogWriter interface {
	Info(string) error
	Close() error
}

// DefaultPath returns $XDG_STATE_HOME/smimed/audit.log
// (~/.local/state/smimed/audit.log when XDG_STATE_HOME is unset or not
// absolute; %LOCALAPPDATA%\smimed\audit.log on Windows).
func DefaultPath() (string, error) {
	dir, err := stateHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "smimed", "audit.log"), nil
}

// Open opens (creating it if needed) the audit file for appending. The
// directory is made mode 0700 and the file 0600, tightened if they were
// wider.
func Open(opts Options) (*Log, error) {
	path := opts.Path
	if path == "" {
		var err error
		if path, err = DefaultPath(); err != nil {
			return nil, err
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create %s: %w", dir, err)
	}
	if err := tighten(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	if err := tighten(path, 0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{path: path, logger: logger, f: f}
	if opts.Syslog {
		w, err := openSyslog()
		switch {
		case err == nil && w != nil:
			l.sys = w
		case err != nil:
			logger.Warn("audit: syslog not available; the audit file is still written", "err", err)
		}
	}
	return l, nil
}

// tighten removes group and other permissions from path when it has any.
func tighten(path string, mode fs.FileMode) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&^mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			return fmt.Errorf("restrict %s to %v: %w", path, mode, err)
		}
	}
	return nil
}

// Path returns the audit file's path.
func (l *Log) Path() string { return l.path }

// Record appends e as one JSON line and syncs it to disk; it also sends the
// line to syslog when enabled. A zero e.Time is set to now. The error is
// about the file only.
func (l *Log) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("audit: log closed")
	}
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit: write %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", l.path, err)
	}
	if l.sys != nil {
		if err := l.sys.Info("smimed-audit " + string(line)); err != nil && !l.sysErr {
			l.sysErr = true
			l.logger.Warn("audit: syslog write failed; the audit file is still written", "err", err)
		}
	}
	return nil
}

// Close closes the file and the syslog connection.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.f != nil {
		errs = append(errs, l.f.Close())
		l.f = nil
	}
	if l.sys != nil {
		errs = append(errs, l.sys.Close())
		l.sys = nil
	}
	return errors.Join(errs...)
}
