//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Peak RSS comes from the child's rusage, but Linux starts a child's
// ru_maxrss at the high-water mark of the address space it was forked from:
// exec records the old mm's peak, and Go forks with CLONE_VM, so every child
// of the bench would report at least the bench's own peak (tens of MiB once
// it has read a 25 MiB output back). So the bench starts each tool through a
// small copy of itself, the spawner, which touches little memory, starts the
// tool, waits for it and reports wall time and rusage on fd 3.
//
// The spawner's own footprint is the floor below which no row can go; the
// bench measures it once (spawning /bin/true) and prints it in the report.

const spawnEnv = "SMIMED_BENCH_SPAWN"

// spawnMain runs when the bench binary is started as a spawner.
func spawnMain() {
	report := os.NewFile(3, "report")
	args := os.Args[1:]
	if len(args) == 0 || report == nil {
		os.Exit(125)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, spawnEnv+"=") {
			env = append(env, e)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	case err != nil:
		fmt.Fprintf(os.Stderr, "spawn %s: %v\n", args[0], err)
		os.Exit(126)
	}
	var rss, cpu int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss
		cpu = ru.Utime.Nano() + ru.Stime.Nano()
	}
	fmt.Fprintf(report, "%d %d %d %d\n", wall.Nanoseconds(), rss, cpu, code)
	report.Close()
	os.Exit(0)
}

// spawnResult is what the spawner reports about one child.
type spawnResult struct {
	wall time.Duration
	cpu  time.Duration
	rss  int64 // KiB
	code int
}

// spawned prepares cmd (already holding the tool's argv in cmd.Args and its
// environment) to run through the spawner; call the returned function after
// cmd.Wait to get the child's figures.
func spawned(cmd *exec.Cmd) (func() (spawnResult, error), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Args = append([]string{self}, cmd.Args...)
	cmd.Path = self
	cmd.Err = nil
	cmd.Env = append(cmd.Env, spawnEnv+"=1")
	cmd.ExtraFiles = []*os.File{w}
	return func() (spawnResult, error) {
		w.Close()
		defer r.Close()
		var res spawnResult
		var wall, cpu int64
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil {
			return res, fmt.Errorf("spawner reported nothing")
		}
		if _, err := fmt.Sscanf(line, "%d %d %d %d", &wall, &res.rss, &cpu, &res.code); err != nil {
			return res, fmt.Errorf("spawner report %q: %v", line, err)
		}
		res.wall, res.cpu = time.Duration(wall), time.Duration(cpu)
		return res, nil
	}, nil
}
