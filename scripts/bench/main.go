//go:build linux

// Command bench compares smimed's S/MIME engine with openssl cms, NSS's
// cmsutil (Thunderbird's libraries) and gpgsm on the same messages and keys,
// each as a separate process, and writes the tables to docs/benchmarks.md.
//
//	go run ./scripts/bench -out docs/benchmarks.md     (what `make bench` runs)
//
// Every output of every tool is read back once by another tool, so a row can
// never time a failure; a row whose tool failed says FAILED and why.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bench is one run of the whole comparison.
type bench struct {
	dir     string
	pki     *pki
	tools   []tool
	setup   map[string]string // tool name -> setup error
	verbose bool
	keep    bool
	runs    int // 0: 5 below 16 MiB, 3 from there on
	start   time.Time
	sizes   []*sizeResult

	floorKiB int64 // peak RSS the spawner reports for /bin/true

	loadStart, loadEnd string // /proc/loadavg's 1-minute figure
}

// defaultTmp is /dev/shm when it is a usable tmpfs with room for the 25 MiB
// outputs (about 2 GiB at once), else the system's temporary directory.
func defaultTmp() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Bavail*uint64(st.Bsize) > 4<<30 {
		if f, err := os.CreateTemp("/dev/shm", "smimed-bench-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}

func main() {
	if os.Getenv(spawnEnv) == "1" {
		spawnMain()
	}
	if err := run(); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write")
	sizesFlag := flag.String("sizes", "4KiB,1MiB,25MiB", "comma-separated message sizes (B, KiB, MiB)")
	runs := flag.Int("runs", 0, "runs per row, best one reported (0: 5 below 16 MiB, 3 above)")
	keep := flag.Bool("keep", false, "keep the temporary directory with keys, inputs and outputs")
	verbose := flag.Bool("v", false, "log every process run")
	daemonTime := flag.String("daemon-benchtime", "200x", "-benchtime for the daemon benchmarks in tests/e2e (\"\" skips them)")
	tmp := flag.String("tmp", defaultTmp(), "where the temporary directory goes (tmpfs keeps disk writeback out of the timings)")
	flag.Parse()

	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(*tmp, "smimed-bench-")
	if err != nil {
		return err
	}
	b := &bench{loadStart: loadAvg(), dir: dir, setup: map[string]string{}, verbose: *verbose, keep: *keep, runs: *runs, start: time.Now()}
	gpg := &gpgsmTool{}
	b.tools = []tool{&engineTool{}, opensslTool{}, &nssTool{}, gpg}
	defer func() {
		gpg.Close()
		if *keep {
			logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	ctx := context.Background()
	logf("keys, certificates and messages in %s", dir)
	if b.pki, err = newPKI(dir); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for _, t := range b.tools {
		if err := t.Setup(ctx, b); err != nil {
			b.setup[t.Name()] = err.Error()
			logf("%s: setup FAILED: %v", t.Name(), err)
		}
	}
	if _, _, rss, err := b.measure(ctx, spec{Args: []string{"true"}}, ""); err == nil {
		b.floorKiB = rss
	}
	for _, size := range sizes {
		sr, err := b.runSize(ctx, size)
		if err != nil {
			return fmt.Errorf("%s: %w", sizeLabel(size), err)
		}
		b.sizes = append(b.sizes, sr)
	}
	var daemonSection string
	if *daemonTime != "" {
		logf("daemon benchmarks (tests/e2e, -benchtime %s)", *daemonTime)
		rows, out, err := daemonBench(ctx, *daemonTime)
		if err != nil {
			logf("daemon benchmarks FAILED: %v\n%s", err, out)
		}
		daemonSection = daemonReport(rows, err, *daemonTime)
	}
	b.loadEnd = loadAvg()
	report := b.report(time.Since(b.start)) + "\n" + daemonSection
	if err := writeFileAtomic(*out, []byte(report)); err != nil {
		return err
	}
	logf("wrote %s in %s", *out, time.Since(b.start).Round(time.Second))
	fmt.Print(b.summary())
	return nil
}

func parseSizes(s string) ([]int64, error) {
	var sizes []int64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := int64(1)
		switch {
		case strings.HasSuffix(f, "MiB"):
			mult, f = 1<<20, strings.TrimSuffix(f, "MiB")
		case strings.HasSuffix(f, "KiB"):
			mult, f = 1<<10, strings.TrimSuffix(f, "KiB")
		case strings.HasSuffix(f, "B"):
			f = strings.TrimSuffix(f, "B")
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		sizes = append(sizes, n*mult)
	}
	return sizes, nil
}

func sizeLabel(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
