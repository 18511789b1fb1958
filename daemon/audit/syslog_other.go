//go:build windows || plan9

package audit

import "os"

// openSyslog: no syslog here (the Windows event log comes with the Windows
// port).
func openSyslog() (syslogWriter, error) { return nil, nil }

// stateHome is %LOCALAPPDATA% on Windows.
func stateHome() (string, error) { return os.UserCacheDir() }
