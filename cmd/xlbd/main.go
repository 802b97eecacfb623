//go:build linux

// Command xlbd is the xlb daemon: it loads and attaches the XDP load balancer,
// fills its maps from the config and from health checks, and serves the admin
// API and metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // only served with -pprof
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/daemon"
	"github.com/xlbproject/xlb/internal/maintenance"
	"github.com/xlbproject/xlb/internal/sdnotify"
	"github.com/xlbproject/xlb/internal/upgrade"
	"github.com/xlbproject/xlb/loader"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "decap" {
		return runDecap(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("xlbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath = fs.String("config", "/etc/xlb/xlb.yaml", "config file")
		check      = fs.Bool("check", false, "validate the config, print ok or every error, and exit 0/1")
		showVer    = fs.Bool("version", false, "print the version and exit")
		detach     = fs.Bool("detach", false, "ask the running xlbd to withdraw its VIPs from the BGP peers, remove the XDP program and the pinned maps, and exit (same as xlbctl detach)")
		wdWait     = fs.Duration("withdraw-wait", time.Second, "with -detach: after the VIPs are withdrawn, wait this long before detaching")
		logFormat  = fs.String("log-format", "text", "log format: text or json")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn, error")
		accessLog  = fs.String("access-log", "", "L7 access log (JSON lines): a file path, - for stderr, empty for none")
		pprofAddr  = fs.String("pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; off by default")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xlbd [flags]\n       xlbd decap -interface IFACE -allow CIDR[,CIDR...]|any [-mode auto|native|generic] [-detach] [-stats]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		// A word after the flags is a path meant for -config or a mangled
		// flag: `xlbd -check new.yaml` would check the default file and
		// say ok.
		fmt.Fprintf(stderr, "xlbd: unexpected argument %q: flags only (the config file is -config PATH)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVer {
		fmt.Fprintf(stdout, "xlbd %s\n", version)
		return 0
	}
	if *check {
		return runCheck(*configPath, stdout, stderr)
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd: %v\n", err)
		return 2
	}
	if *detach {
		pinPath, admin := loader.DefaultPinPath, config.Admin{}
		// Parse, not Load: an interface gone since the start must not stop
		// the detach, and Load refuses a file that names it.
		data, err := os.ReadFile(*configPath)
		var cfg *config.Config
		if err == nil {
			cfg, err = config.Parse(*configPath, data)
		}
		switch {
		case err == nil:
			admin = cfg.Admin
			if cfg.XDP.PinPath != "" {
				pinPath = cfg.XDP.PinPath
			}
		case !errors.Is(err, os.ErrNotExist):
			// Guessing the default pin path and admin address would detach
			// another node's program, or none, and skip the withdraw.
			fmt.Fprintf(stderr, "xlbd: detach: %v\nxlbd: detach needs the config's xdp.pin_path and admin section; fix the file, or use xlbctl -admin URL detach -pin-path PATH\n", err)
			return 1
		}
		err = maintenance.AroundDetach(pinPath, func() error {
			if err := withdrawBeforeDetach(context.Background(), admin, *wdWait, stderr); err != nil {
				return fmt.Errorf("detach: %w", err)
			}
			return loader.Unpin(pinPath)
		})
		if err != nil {
			fmt.Fprintf(stderr, "xlbd: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "detached: removed the XDP links and maps under %s\n", pinPath)
		return 0
	}
	if *pprofAddr != "" {
		go func() {
			if err := http.ListenAndServe(*pprofAddr, nil); err != nil {
				log.Error("pprof", "err", err)
			}
		}()
	}
	access, err := openAccessLog(*accessLog, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd: %v\n", err)
		return 2
	}
	defer access.close()
	inherited, err := upgrade.FromEnv()
	if err != nil {
		log.Warn("upgrade: not every inherited listener could be taken", "err", err)
	}
	if addrs := inherited.Addrs(); len(addrs) > 0 {
		log.Info("upgrade: serving on the listening sockets the previous binary handed on", "addrs", addrs)
	}
	for {
		next, err := serve(*configPath, log, access, inherited)
		if err != nil {
			log.Error("xlbd stopped", "err", err)
			var list config.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(stderr, e.Error())
				}
			}
			return 1
		}
		if next == nil {
			return 0
		}
		// Only returns when the new binary could not be run: this one
		// serves on, with the same listeners.
		err = next.exec()
		log.Error("upgrade: the new binary did not start; serving on with this one", "binary", next.binary, "err", err)
		if inherited, err = upgrade.FromFiles(next.files); err != nil {
			log.Error("upgrade: taking the listeners back", "err", err)
		}
	}
}

// runCheck prints "ok" or every error on stdout (as SPEC has it), and
// warnings on stderr, so that a valid config's stdout is "ok" alone.
func runCheck(path string, stdout, stderr io.Writer) int {
	cfg, err := config.LoadForCheck(path)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(stdout, e.Error())
			}
		} else {
			fmt.Fprintln(stdout, err)
		}
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// serve runs the daemon until SIGTERM/SIGINT; SIGHUP reloads, SIGUSR1
// reopens the access log, SIGUSR2 upgrades: serve drains as for SIGTERM
// and returns the upgrade, with the listening sockets, for run to exec.
// inherited holds listeners a previous image handed on.
func serve(configPath string, log *slog.Logger, access *accessLog, inherited *upgrade.Set) (*binaryUpgrade, error) {
	// Caught from the start: a SIGHUP's default action ends the process,
	// and a `systemctl reload` may come the moment READY=1 is out (or,
	// from a script, earlier). What comes during the start is handled
	// once it is done.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	// The admin socket first: a port in use must stop the start before
	// the data plane is attached and left with no daemon to tend it.
	pre, err := config.Load(configPath)
	if err != nil {
		return nil, err
	}
	ln, err := inherited.Listen(pre.Admin.Listen)
	if err != nil {
		if len(pre.XDP.Interfaces) > 0 {
			if lerr := daemon.PinPathFree(pre.XDP.PinPath); lerr != nil {
				return nil, lerr // the likelier cause, and it names the other xlbd
			}
		}
		return nil, fmt.Errorf("admin: listen on %s: %w", pre.Admin.Listen, err)
	}
	defer ln.Close() // served and closed by srv once it starts
	reg := prometheus.NewRegistry()
	d, err := daemon.New(daemon.Options{ConfigPath: configPath, Logger: log, Registry: reg, Version: version, AccessLog: access.log, Listen: inherited.Listen})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	cfg := d.Config()
	if cfg.Admin.Listen != pre.Admin.Listen {
		return nil, fmt.Errorf("admin.listen changed while xlbd started (%s, then %s): start again", pre.Admin.Listen, cfg.Admin.Listen)
	}
	srv, err := admin.New(d.Controller(), admin.Options{
		Listen: cfg.Admin.Listen, Listener: ln, TokenFile: cfg.Admin.TokenFile, Gatherer: reg, Families: daemon.MetricFamilies(), Logger: log, Ready: d.Ready,
	})
	if err != nil {
		return nil, err
	}
	d.OnTokenFile(srv.SetTokenFile)
	if err := srv.Start(); err != nil {
		return nil, err
	}
	log.Info("xlbd serving", "version", version, "admin", srv.Addr().String(), "config", configPath)
	notify := func(err error) {
		if err != nil {
			log.Warn("telling systemd", "err", err)
		}
	}
	notify(sdnotify.Ready("serving; admin API on " + srv.Addr().String()))
	// Every reload, SIGHUP's or the API's (xlbctl reload), shows in
	// systemctl status: a rejected one says so there.
	d.OnReload(func() { notify(sdnotify.Reloading()) }, func(err error) {
		status := "serving; reloaded " + time.Now().UTC().Format(time.RFC3339)
		if err != nil {
			status = "serving the previous config; the reload was rejected: " + firstLine(err.Error())
		}
		notify(sdnotify.Ready(status))
	})
	for _, addr := range inherited.CloseRest() {
		log.Info("upgrade: closed an inherited listener the config no longer has", "addr", addr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	var next *binaryUpgrade
	for sig := range sigs {
		if sig == syscall.SIGUSR2 {
			up, err := prepareUpgrade(configPath, d, pre.Admin.Listen, ln)
			if err != nil {
				log.Error("upgrade refused; serving on", "err", err)
				notify(sdnotify.Ready("serving; an upgrade was refused: " + firstLine(err.Error())))
				continue
			}
			next = up
			log.Info("upgrading: draining, then running the new binary in this process; the listeners stay open", "binary", up.binary, "version", up.version)
			notify(sdnotify.Reloading())
			break
		}
		if sig == syscall.SIGUSR1 {
			access.reopen(log)
			continue
		}
		if sig == syscall.SIGHUP {
			d.ReloadConfig() // logs its own rejection, and tells systemd
			continue
		}
		log.Info("shutting down; the XDP program and its maps stay in place", "signal", sig.String())
		notify(sdnotify.Stopping())
		break
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), d.Config().L7.DrainTimeout+5*time.Second)
	defer stop()
	// In-flight L7 requests finish first; the admin API (and /healthz,
	// which now answers 503) stays up while they drain.
	if err := d.Shutdown(shutdownCtx); err != nil {
		log.Warn("l7 drain", "err", err)
	}
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("admin API shutdown", "err", err)
	}
	cancel()
	<-done
	return next, nil
}

func runDecap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlbd decap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ifname := fs.String("interface", "", "the backend's interface that receives IPIP/IP6IP6 from xlb")
	// Repeated -allow flags add up: keeping only the last one would
	// silently leave out a balancer.
	var allows []string
	fs.Func("allow", "outer sources to decapsulate (the balancers' addresses, or their xdp.ipip_source_prefix): CIDR[,CIDR...], or any; may be repeated; required", func(v string) error {
		allows = append(allows, v)
		return nil
	})
	mode := fs.String("mode", "auto", "auto (native, else generic), native or generic")
	detach := fs.Bool("detach", false, "remove the decap program instead")
	stats := fs.Bool("stats", false, "print the decap program's counters and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xlbd decap: unexpected argument %q: -allow takes one comma-separated list (CIDR[,CIDR...]) or is repeated\n", fs.Arg(0))
		return 2
	}
	allowFlag := strings.Join(allows, ",")
	if *ifname == "" {
		fmt.Fprintln(stderr, "xlbd decap: -interface is required")
		return 2
	}
	if *stats {
		st, err := loader.DecapStats(*ifname)
		if err != nil {
			fmt.Fprintf(stderr, "xlbd decap: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%-26s %14s %16s\n", "counter", "packets", "bytes")
		for _, s := range st {
			fmt.Fprintf(stdout, "%-26s %14d %16d\n", s.Name, s.Packets, s.Bytes)
		}
		return 0
	}
	if *detach {
		err := loader.DetachDecap(*ifname)
		switch {
		case errors.Is(err, loader.ErrNoXDP):
			// What the command is for already holds: not a failure for a
			// script that detaches before it attaches again.
			fmt.Fprintf(stdout, "no XDP program on %s: nothing to remove\n", *ifname)
			return 0
		case err != nil:
			fmt.Fprintf(stderr, "xlbd decap: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "decap program removed from %s\n", *ifname)
		return 0
	}
	if strings.TrimSpace(strings.ReplaceAll(allowFlag, ",", "")) == "" {
		fmt.Fprintln(stderr, "xlbd decap: -allow is required: the balancers' outer source addresses (CIDR[,CIDR...]), or -allow any to decapsulate from every source")
		return 2
	}
	allow, any, err := loader.ParseAllow(allowFlag)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd decap: %v\n", err)
		return 2
	}
	m, err := loader.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd decap: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if any {
		log.Warn("-allow any: decapsulating IPIP/IP6IP6 from every outer source; anyone who reaches this interface can inject packets with any inner source address", "interface", *ifname)
	}
	if err := loader.AttachDecap(*ifname, m, allow, log); err != nil {
		fmt.Fprintf(stderr, "xlbd decap: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "decap program attached to %s; it stays attached after this command exits\n", *ifname)
	return 0
}

// firstLine is s up to its first newline (a validation error lists one
// problem a line).
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
