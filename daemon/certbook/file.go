package certbook

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, renamed over path, then the directory synced. Mode
// 0600.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("certbook: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("certbook: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("certbook: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("certbook: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certbook: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("certbook: %w", err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename or removal in dir durable (best effort: not every
// system can sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errors.New("not a dotted OID")
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, errors.New("not a dotted OID")
		}
		oid[i] = n
	}
	return oid, nil
}
