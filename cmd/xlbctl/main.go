// Command xlbctl is xlb's operator CLI: it talks to xlbd's admin API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const defaultAdmin = "http://127.0.0.1:9100"

// options are the flags; the global ones may also follow the command
// ("xlbctl status -o json").
type options struct {
	admin     string
	output    string
	tokenFile string
	// configPath is xlbd's config, for its admin.listen and token_file.
	configPath string
	timeout    time.Duration
	// per command
	interval time.Duration
	count    int
	pinPath  string
	// withdrawWait is how long detach waits after withdrawing the VIPs.
	withdrawWait time.Duration
}

func defaultOptions() options {
	return options{
		// Empty: resolved by resolveAdmin, once -config is known.
		admin:      os.Getenv("XLB_ADMIN"),
		configPath: os.Getenv("XLB_CONFIG"),
		output:     "table",
		tokenFile:  os.Getenv("XLB_TOKEN_FILE"),
		timeout:    5 * time.Second,
		interval:   time.Second,
		// Routers act on a withdrawal within milliseconds; the wait covers
		// packets already on their way.
		withdrawWait: time.Second,
	}
}

func (o *options) registerGlobal(fs *flag.FlagSet) {
	fs.StringVar(&o.admin, "admin", o.admin, "admin API `URL` (env XLB_ADMIN; default: the admin.listen of -config or of the xlbd running here, else "+defaultAdmin+")")
	fs.StringVar(&o.configPath, "config", o.configPath, "xlbd's config `PATH` (env XLB_CONFIG), for its admin.listen and admin.token_file; by default those of the xlbd running here, or "+defaultConfig)
	fs.StringVar(&o.output, "o", o.output, "output `format`: table or json (json: the API's raw answer)")
	fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "read the bearer token for changes from `PATH` (env XLB_TOKEN_FILE; else the token is env XLB_TOKEN)")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "timeout of each API call")
}

// usageError is a command line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run is xlbctl without the process around it: it returns the exit status
// (0 ok, 1 the call failed, 2 usage).
func run(args []string, stdout, stderr io.Writer) int {
	o := defaultOptions()
	global := flag.NewFlagSet("xlbctl", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() {}
	o.registerGlobal(global)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout)
			return 0
		}
		fmt.Fprint(stderr, shortUsage)
		return 2
	}
	if global.NArg() == 0 {
		fmt.Fprint(stderr, shortUsage)
		return 2
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "help" {
		return help(rest, o, stdout, stderr)
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "xlbctl: unknown command %q\n%s", name, shortUsage)
		return 2
	}
	fs := cmd.flagSet(&o, stderr)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(stdout, cmd, fs)
			return 0
		}
		fmt.Fprintf(stderr, "usage: xlbctl %s\n", cmd.synopsis())
		return 2
	}
	c := &cli{opts: o, stdout: stdout, stderr: stderr}
	if err := c.resolveAdmin(); err != nil {
		return c.exit(cmd, err)
	}
	if err := c.setup(cmd, pos); err != nil {
		return c.exit(cmd, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.exit(cmd, cmd.run(ctx, c, pos))
}

// parseInterspersed parses flags anywhere among the arguments, as in
// "xlbctl watch api -interval 2s"; "--" ends the flags. An argument like
// "-1" is a (negative) number, not a flag: "weight api b -1" gets the range
// error, not "flag provided but not defined". So each flag, with its value
// if it takes one, is parsed on its own.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			return append(pos, args[1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' || (a[1] >= '0' && a[1] <= '9') {
			pos = append(pos, a)
			args = args[1:]
			continue
		}
		n := 1
		if takesValue(fs, a) && len(args) > 1 {
			n = 2
		}
		if err := fs.Parse(args[:n]); err != nil {
			return nil, err
		}
		args = args[n:]
	}
	return pos, nil
}

// takesValue says whether the flag a ("-name" or "--name") is one whose
// value is the next argument. An unknown one is left to fs.Parse to report.
func takesValue(fs *flag.FlagSet, a string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

const shortUsage = `usage: xlbctl [-admin URL] [-config PATH] [-o table|json] [-token-file PATH] [-timeout D] COMMAND [ARGS]
run 'xlbctl help' for the commands
`

func printHelp(w io.Writer) {
	fmt.Fprint(w, `xlbctl is the operator CLI of xlb, the XDP load balancer: it talks to xlbd's admin API.

usage: xlbctl [flags] COMMAND [ARGS] [flags]

commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.synopsis(), c.help)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\tthis help, or a command's flags\n")
	tw.Flush()
	fmt.Fprint(w, "\nflags:\n")
	o := defaultOptions()
	fs := flag.NewFlagSet("xlbctl", flag.ContinueOnError)
	o.registerGlobal(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, `
exit status: 0 ok, 1 the call failed (the error is printed), 2 usage.
`)
}

func printCommandHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: xlbctl %s\n\n%s\n\nflags:\n", cmd.synopsis(), cmd.help)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func help(args []string, o options, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printHelp(stdout)
		return 0
	}
	cmd := lookup(args[0])
	if cmd == nil || len(args) > 1 {
		fmt.Fprintf(stderr, "xlbctl: help: unknown command %q\n%s", strings.Join(args, " "), shortUsage)
		return 2
	}
	printCommandHelp(stdout, cmd, cmd.flagSet(&o, stderr))
	return 0
}
