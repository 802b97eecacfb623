package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/internal/maintenance"
)

// command is one subcommand.
type command struct {
	name     string
	args     string // positional arguments, for the usage line
	help     string // one line
	min, max int    // positional arguments accepted
	local    bool   // needs no admin API
	flags    func(fs *flag.FlagSet, o *options)
	run      func(ctx context.Context, c *cli, args []string) error
}

// commands, in the order of the help.
var commands = []*command{
	{name: "status", args: "[SERVICE]", max: 1, run: cmdStatus,
		help: "services and backends, like ipvsadm -Ln: weight, health, drain, active, traffic"},
	{name: "drain", args: "SERVICE BACKEND", min: 2, max: 2, run: cmdDrain(true),
		help: "no new flows or requests to a backend; established ones continue"},
	{name: "undrain", args: "SERVICE BACKEND", min: 2, max: 2, run: cmdDrain(false),
		help: "give a drained backend new flows again"},
	{name: "weight", args: "SERVICE BACKEND N", min: 3, max: 3, run: cmdWeight,
		help: "set a backend's weight (0 drains it)"},
	{name: "add", args: "SERVICE BACKEND [WEIGHT]", min: 2, max: 3, run: cmdAdd,
		help: "add a backend (weight 1 unless given)"},
	{name: "remove", args: "SERVICE BACKEND", min: 2, max: 2, run: cmdRemove,
		help: "drain, then remove a backend"},
	{name: "reload", run: cmdReload,
		help: "re-read the config file, like SIGHUP; print ok or every error"},
	{name: "stats", run: cmdStats,
		help: "the XDP program's verdict and event counters"},
	{name: "which", args: "SERVICE CLIENT_IP:PORT", min: 2, max: 2, run: cmdWhich,
		help: "the backend this client's flow gets now: from the flow table if it is there, else from the Maglev table"},
	{name: "watch", args: "[SERVICE] [-interval D]", max: 1, run: cmdWatch, flags: watchFlags,
		help: "status, refreshed every -interval until Ctrl-C (or -count); exit status 1 if the last refresh failed"},
	{name: "maps", args: "[-pin-path DIR]", local: true, run: cmdMaps, flags: pinFlags,
		help: "dump the pinned kernel maps in readable form (needs root)"},
	{name: "detach", args: "[-pin-path DIR]", local: true, run: cmdDetach, flags: detachFlags,
		help: "withdraw the VIPs from the BGP peers (if xlbd runs), then remove the XDP programs and every pin: L4 forwarding stops (needs root)"},
	{name: "bgp", run: cmdBGP,
		help: "the BGP sessions, the prefixes announced and why each service is or is not"},
	{name: "announce", args: "off|on", min: 1, max: 1, run: cmdAnnounce,
		help: "off: withdraw every VIP from the BGP peers (maintenance; forwarding goes on); on: announce again"},
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (c *command) synopsis() string {
	return strings.TrimSpace(c.name + " " + c.args)
}

func (c *command) flagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("xlbctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	o.registerGlobal(fs)
	if c.flags != nil {
		c.flags(fs, o)
	}
	return fs
}

func watchFlags(fs *flag.FlagSet, o *options) {
	fs.DurationVar(&o.interval, "interval", o.interval, "time between refreshes")
	fs.IntVar(&o.count, "count", o.count, "stop after `N` refreshes (0: until interrupted)")
}

func pinFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.pinPath, "pin-path", o.pinPath, "bpffs `folder` of xlb's pinned maps and links (default: xdp.pin_path of -config, else of the running xlbd's config, else /sys/fs/bpf/xlb)")
}

// cli is one invocation's state.
type cli struct {
	opts           options
	stdout, stderr io.Writer
	api            *client
}

func (c *cli) json() bool { return c.opts.output == "json" }

// setup checks the arguments and flags and builds the API client.
func (c *cli) setup(cmd *command, args []string) error {
	if len(args) < cmd.min || len(args) > cmd.max {
		return usagef("%s: wrong number of arguments", cmd.name)
	}
	if c.opts.output != "table" && c.opts.output != "json" {
		return usagef("-o %q: want table or json", c.opts.output)
	}
	if c.opts.timeout <= 0 {
		return usagef("-timeout %s: want a positive duration", c.opts.timeout)
	}
	if cmd.local {
		return nil
	}
	base, err := parseAdminURL(c.opts.admin)
	if err != nil {
		return usageError{err.Error()}
	}
	token, note, err := c.token(base)
	if err != nil {
		return err
	}
	c.api = newClient(base, token, c.opts.timeout)
	c.api.noToken = note
	return nil
}

// resolveAdmin settles the admin address: -admin (or XLB_ADMIN), else
// -config's admin.listen, else that of the xlbd running here (found as its
// token is), else the default.
func (c *cli) resolveAdmin() error {
	if c.opts.configPath != "" {
		a, err := readAdminSection(c.opts.configPath)
		if err != nil {
			return fmt.Errorf("-config: %w", err)
		}
		if c.opts.admin == "" {
			c.opts.admin = dialAddress(a.Listen)
		}
	}
	if c.opts.admin == "" {
		a, err := localAdmin(procRoot)
		if err != nil {
			return err
		}
		c.opts.admin = a
	}
	if c.opts.admin == "" {
		c.opts.admin = defaultAdmin
	}
	return nil
}

// token is the bearer token for changes to the API at base: -token-file,
// else XLB_TOKEN, else the token_file of the local xlbd serving base. note
// says why a local token could not be found, for when xlbd wants one.
func (c *cli) token(base *url.URL) (token, note string, err error) {
	token, err = c.givenToken()
	if err != nil || token != "" {
		return token, "", err
	}
	token, note = localToken(base, c.opts.configPath, procRoot)
	return token, note, nil
}

func (c *cli) givenToken() (string, error) {
	token := strings.TrimSpace(os.Getenv("XLB_TOKEN"))
	if c.opts.tokenFile != "" {
		b, err := os.ReadFile(c.opts.tokenFile)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", fmt.Errorf("token file %s is empty", c.opts.tokenFile)
		}
	}
	return token, nil
}

// exit prints err, if any, and returns the exit status.
func (c *cli) exit(cmd *command, err error) int {
	if err == nil {
		return 0
	}
	if errors.As(err, new(shownError)) {
		return 1
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(c.stderr, "xlbctl: %s\nusage: xlbctl %s\n", ue.msg, cmd.synopsis())
		return 2
	}
	var ae *apiError
	if errors.As(err, &ae) && c.json() && len(ae.raw) > 0 && json.Valid(ae.raw) {
		c.writeRaw(ae.raw)
	}
	c.printError(err)
	return 1
}

func (c *cli) printError(err error) {
	msg := err.Error()
	fmt.Fprintf(c.stderr, "xlbctl: %s\n", msg)
	var ae *apiError
	if errors.As(err, &ae) {
		// xlbd's message for a failed reload already lists every error.
		for _, d := range ae.answer.Details {
			if !strings.Contains(msg, d) {
				fmt.Fprintln(c.stderr, d)
			}
		}
	}
}

func (c *cli) writeRaw(raw []byte) {
	c.stdout.Write(raw)
	if !bytes.HasSuffix(raw, []byte("\n")) {
		io.WriteString(c.stdout, "\n")
	}
}

// show prints the raw answer with -o json, else renders it.
func (c *cli) show(raw []byte, render func(io.Writer) error) error {
	if c.json() {
		c.writeRaw(raw)
		return nil
	}
	return render(c.stdout)
}

func cmdStatus(ctx context.Context, c *cli, args []string) error {
	svcs, raw, err := fetchStatus(ctx, c, args)
	if err != nil {
		return err
	}
	return c.show(raw, func(w io.Writer) error {
		// What /healthz tells an upstream balancer belongs above the
		// table: the XDP program gone from an interface makes every L4
		// row below stale.
		if why := c.api.notServing(ctx); why != "" {
			if _, err := fmt.Fprintf(w, "WARNING: xlbd is not serving: %s\n\n", why); err != nil {
				return err
			}
		}
		return renderStatus(w, svcs)
	})
}

// fetchStatus gets every service, or the one named.
func fetchStatus(ctx context.Context, c *cli, args []string) ([]api.Service, []byte, error) {
	if len(args) == 1 {
		svc, raw, err := c.api.service(ctx, args[0])
		return []api.Service{svc}, raw, err
	}
	all, raw, err := c.api.services(ctx)
	return all.Services, raw, err
}

func cmdDrain(drain bool) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		ch, raw, err := c.api.patchBackend(ctx, args[0], args[1], api.PatchBackend{Drain: &drain})
		return c.change(ch, raw, err)
	}
}

func cmdWeight(ctx context.Context, c *cli, args []string) error {
	w, err := parseWeight(args[2])
	if err != nil {
		return err
	}
	ch, raw, err := c.api.patchBackend(ctx, args[0], args[1], api.PatchBackend{Weight: &w})
	return c.change(ch, raw, err)
}

func cmdAdd(ctx context.Context, c *cli, args []string) error {
	b := api.AddBackend{Address: args[1]}
	if len(args) == 3 {
		w, err := parseWeight(args[2])
		if err != nil {
			return err
		}
		b.Weight = &w
	}
	ch, raw, err := c.api.addBackend(ctx, args[0], b)
	return c.change(ch, raw, err)
}

func cmdRemove(ctx context.Context, c *cli, args []string) error {
	ch, raw, err := c.api.removeBackend(ctx, args[0], args[1])
	return c.change(ch, raw, err)
}

func parseWeight(s string) (int, error) {
	w, err := strconv.Atoi(s)
	if err != nil || w < 0 {
		return 0, usagef("weight %q: want a whole number, 0 or more", s)
	}
	return w, nil
}

func (c *cli) change(ch api.Change, raw []byte, err error) error {
	if err != nil {
		return err
	}
	return c.show(raw, func(w io.Writer) error { return renderChange(w, ch) })
}

func cmdReload(ctx context.Context, c *cli, _ []string) error {
	r, raw, err := c.api.reload(ctx)
	if err != nil {
		return err
	}
	return c.show(raw, func(w io.Writer) error {
		if _, err := fmt.Fprintln(w, "ok"); err != nil {
			return err
		}
		for _, line := range r.RestartNeeded {
			if _, err := fmt.Fprintf(w, "not applied until xlbd restarts: %s\n", line); err != nil {
				return err
			}
		}
		return nil
	})
}

func cmdStats(ctx context.Context, c *cli, _ []string) error {
	st, raw, err := c.api.stats(ctx)
	if err != nil {
		return err
	}
	return c.show(raw, func(w io.Writer) error { return renderStats(w, st) })
}

func cmdWhich(ctx context.Context, c *cli, args []string) error {
	w, raw, err := c.api.which(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	return c.show(raw, func(out io.Writer) error {
		// An entry outlives its connection (the data plane sees packets,
		// not closes), and a SYN never follows it: "established" would
		// promise what nobody knows.
		how := "from the flow table (this flow's entry)"
		if w.Source == api.WhichMaglev {
			how = "from the Maglev table (no valid flow entry: a new flow)"
		} else if w.MaglevBackend != "" && w.MaglevBackend != w.Backend {
			how += "; a new connection from this port would go to " + w.MaglevBackend + " (Maglev)"
		}
		_, err := fmt.Fprintf(out, "%s %s -> %s, %s\n", w.Service, w.Client, w.Backend, how)
		return err
	})
}

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// cmdWatch repeats status until interrupted. An error (xlbd restarting) is
// shown in place of the table and the next refresh tries again. The exit
// status is that of the last refresh shown, as a script running
// "watch -count N" would expect of status: 1 if it failed (every one did,
// or xlbd went away), else 0.
func cmdWatch(ctx context.Context, c *cli, args []string) error {
	if c.opts.interval <= 0 {
		return usagef("-interval %s: want a positive duration", c.opts.interval)
	}
	if c.opts.count < 0 {
		return usagef("-count %d: want 0 or more", c.opts.count)
	}
	title := "xlbctl status"
	if len(args) == 1 {
		title += " " + args[0]
	}
	var last error // of the last refresh shown
	end := func() error {
		if last != nil {
			return shownError{last}
		}
		return nil
	}
	for n := 1; ; n++ {
		svcs, raw, err := fetchStatus(ctx, c, args)
		if ctx.Err() != nil {
			return end() // interrupted: the normal end
		}
		last = err
		var screen bytes.Buffer
		switch {
		case c.json() && err != nil:
			c.printError(err)
		case c.json():
			c.writeRaw(raw)
		default:
			fmt.Fprintf(&screen, "%sEvery %s: %s (%s)    %s\n\n", clearScreen, c.opts.interval, title,
				c.opts.admin, time.Now().Format(time.TimeOnly))
			if err != nil {
				fmt.Fprintf(&screen, "xlbctl: %s\n", err)
			} else {
				// As status says it: someone watching is who should see it.
				if why := c.api.notServing(ctx); why != "" {
					fmt.Fprintf(&screen, "WARNING: xlbd is not serving: %s\n\n", why)
				}
				if err := renderStatus(&screen, svcs); err != nil {
					return err
				}
			}
			if _, err := c.stdout.Write(screen.Bytes()); err != nil {
				return err
			}
		}
		if c.opts.count > 0 && n >= c.opts.count {
			return end()
		}
		t := time.NewTimer(c.opts.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return end()
		case <-t.C:
		}
	}
}

// shownError is a failure already printed (watch shows each on its
// screen): exit status 1 without printing it again.
type shownError struct{ err error }

func (e shownError) Error() string { return e.err.Error() }
func (e shownError) Unwrap() error { return e.err }

// resolvePinPath settles the pin path: -pin-path, else the config's.
func (c *cli) resolvePinPath() error {
	if c.opts.pinPath != "" {
		return nil
	}
	p, err := localPinPath(c.opts.configPath, procRoot)
	c.opts.pinPath = p
	return err
}

func cmdMaps(_ context.Context, c *cli, _ []string) error {
	if pinnedMaps == nil {
		return errors.New("maps: not available in this build")
	}
	if err := c.resolvePinPath(); err != nil {
		return err
	}
	if err := pinnedMaps(c.opts.pinPath, c.stdout, c.json()); err != nil {
		return fmt.Errorf("maps: %w", err)
	}
	return nil
}

func cmdDetach(ctx context.Context, c *cli, _ []string) error {
	if detachAll == nil {
		return errors.New("detach: not available in this build")
	}
	if err := c.resolvePinPath(); err != nil {
		return err
	}
	err := maintenance.AroundDetach(c.opts.pinPath, func() error {
		if err := withdrawBeforeDetach(ctx, c); err != nil {
			return err
		}
		if err := detachAll(c.opts.pinPath); err != nil {
			return fmt.Errorf("detach: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.json() {
		out, _ := json.Marshal(struct {
			Result  string `json:"result"`
			PinPath string `json:"pin_path"`
		}{"detached", c.opts.pinPath})
		c.writeRaw(out)
		return nil
	}
	_, err = fmt.Fprintf(c.stdout, "detached: removed the XDP programs and the pins under %s\n", c.opts.pinPath)
	return err
}
