package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/internal/withdraw"
)

func cmdBGP(ctx context.Context, c *cli, _ []string) error {
	b, raw, err := c.api.bgp(ctx)
	if err != nil {
		return err
	}
	return c.show(raw, func(w io.Writer) error { return renderBGP(w, b) })
}

func cmdAnnounce(ctx context.Context, c *cli, args []string) error {
	var on bool
	switch args[0] {
	case "on":
		on = true
	case "off":
	default:
		return usagef("announce %q: want off or on", args[0])
	}
	b, raw, err := c.api.announce(ctx, on)
	if err != nil {
		return err
	}
	return c.show(raw, func(w io.Writer) error {
		var err error
		if on {
			_, err = fmt.Fprintf(w, "announcing on: %d prefixes announced\n", len(b.Announced))
		} else {
			_, err = fmt.Fprintln(w, "announcing off: every VIP is withdrawn from the BGP peers; this node keeps forwarding what still arrives")
		}
		return err
	})
}

func detachFlags(fs *flag.FlagSet, o *options) {
	pinFlags(fs, o)
	fs.DurationVar(&o.withdrawWait, "withdraw-wait", o.withdrawWait, "after withdrawing the VIPs from the BGP peers, wait this long before detaching")
}

// withdrawBeforeDetach asks a running xlbd to withdraw every VIP and waits
// -withdraw-wait, as xlbd -detach does (package withdraw).
func withdrawBeforeDetach(ctx context.Context, c *cli) error {
	base, err := parseAdminURL(c.opts.admin)
	if err != nil {
		return usageError{err.Error()}
	}
	token, note, err := c.token(base)
	if err != nil {
		return err
	}
	cl := newClient(base, token, c.opts.timeout)
	cl.noToken = note
	call := func(ctx context.Context) (int, error) {
		_, _, err := cl.announce(ctx, false)
		var ae *apiError
		if errors.As(err, &ae) {
			return ae.status, err
		}
		return 0, err
	}
	if err := withdraw.BeforeDetach(ctx, call, c.opts.admin, c.opts.withdrawWait, c.stderr); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	return nil
}

// renderBGP prints the speaker's state.
func renderBGP(w io.Writer, b api.BGP) error {
	if !b.Configured {
		_, err := fmt.Fprintln(w, "bgp is not configured (no bgp section)")
		return err
	}
	var out strings.Builder
	on := "on"
	if !b.Announcing {
		on = "OFF (maintenance: every VIP withdrawn)"
	}
	gr := "off"
	if b.GracefulRestart {
		gr = "restart time " + b.RestartTime
	}
	fmt.Fprintf(&out, "AS %d, router id %s, announcing %s, graceful restart %s\n\n", b.ASN, b.RouterID, on, gr)
	rows := [][]string{{"Peer", "ASN", "State", "Uptime", "Last error"}}
	for _, p := range b.Peers {
		// The daemon says "0s" for a session that is not up; in a table a
		// dash reads as "no session" at a glance.
		uptime := "-"
		if p.State == "established" {
			uptime = orDash(p.Uptime)
		}
		rows = append(rows, []string{p.Address, strconv.FormatUint(uint64(p.ASN), 10), p.State, uptime, p.LastError})
	}
	out.WriteString(strings.Join(grid(rows), "\n") + "\n\n")
	if len(b.Announced) == 0 {
		out.WriteString("no prefixes announced\n")
	} else {
		rows = [][]string{{"Prefix", "Next hop", "Services"}}
		for _, p := range b.Announced {
			rows = append(rows, []string{p.Prefix, p.NextHop, strings.Join(p.Services, ",")})
		}
		out.WriteString(strings.Join(grid(rows), "\n") + "\n")
	}
	if len(b.Services) > 0 {
		rows = [][]string{{"Service", "VIP", "Wanted", "Announced", "Why"}}
		for _, s := range b.Services {
			rows = append(rows, []string{s.Name, s.VIP, yesNo(s.Wanted), yesNo(s.Announced), s.Reason})
		}
		out.WriteString("\n" + strings.Join(grid(rows), "\n") + "\n")
	}
	_, err := io.WriteString(w, out.String())
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
