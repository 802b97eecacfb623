package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// logFile is the access log's file. SIGUSR1 opens its path again (NGINX's
// reopen signal), so that logrotate can move the file away and xlbd then
// writes a new one, instead of writing on into the moved or deleted one.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

// Write writes one record (slog's handler writes each in one call).
func (l *logFile) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(b)
}

// reopen opens the path again and writes there from now on. When it
// cannot, the old file stays in use: records are not lost.
func (l *logFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f.Close()
}

// accessLog is the L7 access log (nil: none), and how to reopen its file.
type accessLog struct {
	log  *slog.Logger
	file *logFile // nil: stderr or none
}

// openAccessLog opens the L7 access log: JSON lines, one per request.
func openAccessLog(path string, stderr io.Writer) (*accessLog, error) {
	switch path {
	case "":
		return &accessLog{}, nil
	case "-":
		return &accessLog{log: slog.New(slog.NewJSONHandler(stderr, nil))}, nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, fmt.Errorf("-access-log: %w", err)
	}
	return &accessLog{log: slog.New(slog.NewJSONHandler(f, nil)), file: f}, nil
}

func (a *accessLog) reopen(log *slog.Logger) {
	if a.file == nil {
		return
	}
	if err := a.file.reopen(); err != nil {
		log.Error("reopening the access log; writing on to the old file", "path", a.file.path, "err", err)
		return
	}
	log.Info("access log reopened", "path", a.file.path)
}

func (a *accessLog) close() {
	if a.file != nil {
		a.file.close()
	}
}
