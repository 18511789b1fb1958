package keystore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestFileVaultCRUDAndPermissions(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "smimed", "keys")
	v, err := NewFileVault(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.Backend() != "file" {
		t.Fatalf("backend %q", v.Backend())
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("vault dir mode %v, want 0700", fi.Mode().Perm())
	}

	for _, it := range []item{
		{id: "aaaa", kind: kindKey, label: "smimed key A", data: []byte("blob-a")},
		{id: "aaaa", kind: kindCert, label: "smimed certificate A", data: []byte("cert-a")},
		{id: "bbbb", kind: kindKey, data: []byte("blob-b")},
	} {
		if err := v.put(ctx, it); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, it.id+"."+string(it.kind)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s.%s mode %v, want 0600", it.id, it.kind, fi.Mode().Perm())
		}
	}
	got, err := v.get(ctx, "aaaa", kindCert)
	if err != nil || string(got.data) != "cert-a" || got.label != "smimed certificate A" {
		t.Fatalf("get: %+v %v", got, err)
	}
	// replace
	if err := v.put(ctx, item{id: "aaaa", kind: kindCert, data: []byte("cert-a2")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.get(ctx, "aaaa", kindCert); string(got.data) != "cert-a2" {
		t.Fatalf("after replace: %q", got.data)
	}
	items, err := v.list(ctx)
	if err != nil || len(items) != 3 {
		t.Fatalf("list: %d items, %v", len(items), err)
	}
	if err := v.remove(ctx, "bbbb", kindKey); err != nil {
		t.Fatal(err)
	}
	if _, err := v.get(ctx, "bbbb", kindKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after remove: %v", err)
	}
	if err := v.remove(ctx, "bbbb", kindKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}

	// Names that could escape the directory are refused.
	for _, id := range []string{"../x", "a/b", "", "A", "x.y", strings.Repeat("a", 200)} {
		if err := v.put(ctx, item{id: id, kind: kindKey, data: []byte("x")}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("put id %q: %v", id, err)
		}
	}

	// A wider directory mode is tightened on open.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileVault(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode not tightened: %v", fi.Mode().Perm())
	}
}

func TestFileVaultAtomicWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v, err := NewFileVault(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.put(ctx, item{id: "abc", kind: kindKey, data: []byte("old")}); err != nil {
		t.Fatal(err)
	}

	// A write that fails after the data is written but before the rename
	// (a crash, a full disk) leaves the old entry intact and no debris.
	v.beforeRename = func(tmp string) error {
		fi, err := os.Stat(tmp)
		if err != nil {
			t.Errorf("temporary file: %v", err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("temporary file mode %v", fi.Mode().Perm())
		}
		if filepath.Dir(tmp) != dir {
			t.Errorf("temporary file %s outside the vault dir", tmp)
		}
		return errors.New("simulated crash")
	}
	if err := v.put(ctx, item{id: "abc", kind: kindKey, data: []byte("new")}); err == nil {
		t.Fatal("put succeeded despite the failure")
	}
	v.beforeRename = nil
	if got, err := v.get(ctx, "abc", kindKey); err != nil || string(got.data) != "old" {
		t.Fatalf("after failed write: %q %v", got.data, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("debris left: %v", entries)
	}

	// A temporary file left by a real crash is ignored by list and removed
	// at the next open.
	junk := filepath.Join(dir, fileTempPrefix+"123")
	if err := os.WriteFile(junk, []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if items, err := v.list(ctx); err != nil || len(items) != 1 {
		t.Fatalf("list with debris: %v %v", items, err)
	}
	if _, err := NewFileVault(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(junk); !os.IsNotExist(err) {
		t.Fatalf("crash debris not removed: %v", err)
	}

	// Concurrent writers and readers: a reader sees one complete version or
	// the other, never a torn file.
	big := func(c byte) []byte { return bytes.Repeat([]byte{c}, 256<<10) }
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := v.put(ctx, item{id: "abc", kind: kindKey, data: big(byte('a' + w))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				got, err := v.get(ctx, "abc", kindKey)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got.data) == 3 {
					continue // "old"
				}
				if len(got.data) != 256<<10 || bytes.Count(got.data, got.data[:1]) != len(got.data) {
					t.Error("torn read")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestFileVaultCorruptEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v, err := NewFileVault(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"good1", "good2"} {
		if err := v.put(ctx, item{id: id, kind: kindKey, data: []byte("blob " + id)}); err != nil {
			t.Fatal(err)
		}
	}
	good, err := os.ReadFile(filepath.Join(dir, "good1.key"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		content []byte
		dir     bool
	}{
		{"not JSON", "bad1.key", []byte("\x00\x01garbage"), false},
		{"truncated JSON", "bad2.cert", good[:len(good)/2], false},
		{"other format", "bad3.key", []byte(`{"format":"something-else","version":1}`), false},
		{"future version", "bad4.key", []byte(`{"format":"smimed-vault-entry","version":7,"id":"bad4","kind":"key","data":"eA=="}`), false},
		{"renamed file", "bad5.key", good, false},
		{"no data", "bad6.key", []byte(`{"format":"smimed-vault-entry","version":1,"id":"bad6","kind":"key"}`), false},
		{"a directory", "bad7.key", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			var err error
			if tc.dir {
				err = os.Mkdir(path, 0o700)
			} else {
				err = os.WriteFile(path, tc.content, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(path)

			items, err := v.list(ctx)
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("list error %v, want a CorruptError", err)
			}
			if ce.Where != path || !strings.Contains(err.Error(), path) {
				t.Fatalf("error names %q, want %q (%v)", ce.Where, path, err)
			}
			if len(items) != 2 {
				t.Fatalf("good entries listed: %d, want 2", len(items))
			}
			id, kind, _ := parseFileName(tc.file)
			if _, err := v.get(ctx, id, kind); !errors.As(err, &ce) || ce.Where != path {
				t.Fatalf("get: %v", err)
			}
		})
	}
	// Files that are not entries are ignored.
	for _, name := range []string{"README", "x.txt", "UPPER.key"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if items, err := v.list(ctx); err != nil || len(items) != 2 {
		t.Fatalf("list with foreign files: %d %v", len(items), err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestDefaultFileVaultDir(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/xdg/data")
	if d, err := DefaultFileVaultDir(); err != nil || d != "/xdg/data/smimed/keys" {
		t.Fatalf("%q %v", d, err)
	}
	t.Setenv("XDG_DATA_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/u")
	if d, err := DefaultFileVaultDir(); err != nil || d != "/home/u/.local/share/smimed/keys" {
		t.Fatalf("%q %v", d, err)
	}
}

func TestFileVaultContextCancelled(t *testing.T) {
	v, err := NewFileVault(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := canceled()
	if err := v.put(ctx, item{id: "a", kind: kindKey, data: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("put: %v", err)
	}
	if _, err := v.list(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("list: %v", err)
	}
}
