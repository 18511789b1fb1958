package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// FileVault keeps entries as files in one directory: the embedded default
// where no OS key store is available (headless sessions, CI, minimal
// desktops). Each entry is one file named "<id>.key" or "<id>.cert", mode
// 0600, in a directory of mode 0700; every write goes to a temporary file
// that is synced and then renamed over the old one, so a crash leaves either
// the old or the new entry, never a torn one.
//
// The key entries hold the Store's encrypted blobs (scrypt + AES-256-GCM), so
// the files are safe at rest as long as the passphrases are.
type FileVault struct {
	dir     string
	backend string
	// seal and unseal wrap the file contents (DPAPI on Windows); nil for
	// plain files.
	seal, unseal func([]byte) ([]byte, error)

	mu sync.Mutex // serialises writers within the process
	// beforeRename, when set (tests only), runs between writing the
	// temporary file and renaming it into place; an error aborts the write.
	beforeRename func(tmp string) error
}

// File-vault record: JSON, one per file.
const (
	fileFormat     = "smimed-vault-entry"
	fileVersion    = 1
	fileTempPrefix = ".tmp-"
)

type fileRecord struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Label   string `json:"label,omitempty"`
	Data    []byte `json:"data"`
}

// NewFileVault opens (creating it if needed) the vault directory dir, usually
// [DefaultFileVaultDir]. The directory is made mode 0700 (tightened if it
// was wider) and temporary files a crash left behind are removed.
func NewFileVault(dir string) (*FileVault, error) {
	return newFileVault(dir, "file", nil, nil)
}

func newFileVault(dir, backend string, seal, unseal func([]byte) ([]byte, error)) (*FileVault, error) {
	if dir == "" {
		return nil, errors.New("keystore: file vault: no directory given")
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: file vault: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: file vault: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("keystore: file vault: %s is not a directory", dir)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("keystore: file vault: %w", err)
		}
	}
	v := &FileVault{dir: dir, backend: backend, seal: seal, unseal: unseal}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: file vault: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fileTempPrefix) && e.Type().IsRegular() {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return v, nil
}

// Backend returns "file" ("dpapi" for the Windows DPAPI vault).
func (v *FileVault) Backend() string { return v.backend }

// Dir returns the vault's directory.
func (v *FileVault) Dir() string { return v.dir }

// Close does nothing; a FileVault holds no resources between calls.
func (v *FileVault) Close() error { return nil }

func (v *FileVault) path(id string, kind itemKind) string {
	return filepath.Join(v.dir, id+"."+string(kind))
}

// parseFileName splits "<id>.<kind>"; ok is false for names that are not
// vault entries (temporary files, files someone else put there).
func parseFileName(name string) (id string, kind itemKind, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", "", false
	}
	id, kind = name[:i], itemKind(name[i+1:])
	if checkName(id, kind) != nil {
		return "", "", false
	}
	return id, kind, true
}

func (v *FileVault) put(ctx context.Context, it item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkName(it.id, it.kind); err != nil {
		return err
	}
	data, err := json.Marshal(fileRecord{
		Format: fileFormat, Version: fileVersion,
		ID: it.id, Kind: string(it.kind), Label: it.label, Data: it.data,
	})
	if err != nil {
		return fmt.Errorf("keystore: file vault: %w", err)
	}
	if v.seal != nil {
		sealed, err := v.seal(data)
		if err != nil {
			return fmt.Errorf("keystore: %s vault: protect %s: %w", v.backend, v.path(it.id, it.kind), err)
		}
		data = sealed
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.writeAtomic(v.path(it.id, it.kind), data)
}

// writeAtomic writes data to a temporary file in the vault directory (mode
// 0600), syncs it, renames it to path and syncs the directory.
func (v *FileVault) writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(v.dir, fileTempPrefix+"*")
	if err != nil {
		return fmt.Errorf("keystore: file vault: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if runtime.GOOS != "windows" {
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return fmt.Errorf("keystore: file vault: %w", err)
		}
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("keystore: file vault: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("keystore: file vault: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keystore: file vault: close %s: %w", path, err)
	}
	if v.beforeRename != nil {
		if err := v.beforeRename(tmp); err != nil {
			return fmt.Errorf("keystore: file vault: write %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keystore: file vault: %w", err)
	}
	syncDir(v.dir)
	return nil
}

// syncDir makes a rename in dir durable. Best effort: directories cannot be
// synced on every platform (Windows).
func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

func (v *FileVault) get(ctx context.Context, id string, kind itemKind) (item, error) {
	if err := ctx.Err(); err != nil {
		return item{}, err
	}
	if err := checkName(id, kind); err != nil {
		return item{}, err
	}
	return v.read(v.path(id, kind), id, kind)
}

// read loads and checks one entry file.
func (v *FileVault) read(path, id string, kind itemKind) (item, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return item{}, fmt.Errorf("%w: %s entry %s", ErrNotFound, kind, id)
	}
	if err != nil {
		return item{}, fmt.Errorf("keystore: file vault: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return item{}, corrupt(path, "not a regular file")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return item{}, fmt.Errorf("keystore: file vault: %w", err)
	}
	if v.unseal != nil {
		plain, err := v.unseal(data)
		if err != nil {
			return item{}, &CorruptError{Where: path, Err: fmt.Errorf("cannot unprotect: %w", err)}
		}
		data = plain
	}
	var rec fileRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return item{}, &CorruptError{Where: path, Err: err}
	}
	switch {
	case rec.Format != fileFormat:
		return item{}, corrupt(path, "not a smimed vault entry")
	case rec.Version != fileVersion:
		return item{}, corrupt(path, "entry format version %d not supported", rec.Version)
	case rec.ID != id || rec.Kind != string(kind):
		return item{}, corrupt(path, "entry names %s/%s, file name says %s/%s", rec.ID, rec.Kind, id, kind)
	case len(rec.Data) == 0:
		return item{}, corrupt(path, "entry holds no data")
	}
	return item{id: id, kind: kind, label: rec.Label, data: rec.Data, where: path}, nil
}

func (v *FileVault) list(ctx context.Context) ([]item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: file vault: %w", err)
	}
	var items []item
	var errs []error
	for _, e := range entries {
		id, kind, ok := parseFileName(e.Name())
		if !ok {
			continue
		}
		it, err := v.read(filepath.Join(v.dir, e.Name()), id, kind)
		if err != nil {
			if errors.Is(err, ErrNotFound) { // removed while we listed
				continue
			}
			errs = append(errs, err)
			continue
		}
		items = append(items, it)
	}
	return items, errors.Join(errs...)
}

func (v *FileVault) remove(ctx context.Context, id string, kind itemKind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkName(id, kind); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	err := os.Remove(v.path(id, kind))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s entry %s", ErrNotFound, kind, id)
	}
	if err != nil {
		return fmt.Errorf("keystore: file vault: %w", err)
	}
	syncDir(v.dir)
	return nil
}

// DefaultFileVaultDir returns where the file vault lives by default:
// $XDG_DATA_HOME/smimed/keys (~/.local/share/smimed/keys when XDG_DATA_HOME is
// unset or not absolute); on Windows %LOCALAPPDATA%\smimed\keys; on macOS
// ~/Library/Application Support/smimed/keys.
func DefaultFileVaultDir() (string, error) {
	switch runtime.GOOS {
	case "windows":
		if d := os.Getenv("LOCALAPPDATA"); d != "" {
			return filepath.Join(d, "smimed", "keys"), nil
		}
		return "", errors.New("keystore: %LOCALAPPDATA% is not set")
	case "darwin", "ios":
		d, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("keystore: %w", err)
		}
		return filepath.Join(d, "smimed", "keys"), nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "smimed", "keys"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	return filepath.Join(home, ".local", "share", "smimed", "keys"), nil
}
