package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// defaultConfig is xlbd's default -config.
const defaultConfig = "/etc/xlb/xlb.yaml"

// adminSection is the part of xlbd's config xlbctl reads: where the admin
// API listens and the token its changes need. Read leniently (the rest of
// the file is xlbd's to validate), so a file mid-edit still yields it.
type adminSection struct {
	Listen    string
	TokenFile string
	// Implicit: the file names no listen (Listen is xlbd's default), as
	// one emptied mid-edit does.
	Implicit bool
}

// adminDoc is what is decoded of the file, or of its admin block alone.
type adminDoc struct {
	Admin struct {
		Listen    string `yaml:"listen"`
		TokenFile string `yaml:"token_file"`
	} `yaml:"admin"`
}

func readAdminSection(path string) (adminSection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return adminSection{}, err
	}
	var doc adminDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		// A syntax error elsewhere (the very errors `xlbctl reload` is run
		// to see) must not lose the token: decode the admin block alone.
		doc = adminDoc{}
		if err := yaml.Unmarshal(adminBlock(b), &doc); err != nil {
			return adminSection{}, fmt.Errorf("%s: admin: %w", path, err)
		}
	}
	a := adminSection{Listen: doc.Admin.Listen, TokenFile: doc.Admin.TokenFile}
	if a.Listen == "" {
		a.Listen, a.Implicit = strings.TrimPrefix(defaultAdmin, "http://"), true
	}
	// xlbd resolves a relative token_file against the config's folder.
	if a.TokenFile != "" && !filepath.IsAbs(a.TokenFile) {
		a.TokenFile = filepath.Join(filepath.Dir(path), a.TokenFile)
	}
	return a, nil
}

// adminBlock cuts the top-level admin block out of a config: the line
// "admin:" at column 0 (or "admin: {...}" on one line) and the lines up to
// the next one at column 0 that is not blank or a comment. nil when there
// is none: the file then names no admin settings, and xlbd's defaults hold.
func adminBlock(b []byte) []byte {
	var out []byte
	in := false
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		text := bytes.TrimRight(line, "\r\n")
		top := len(text) > 0 && text[0] != ' ' && text[0] != '\t' && text[0] != '#'
		if in && top {
			break
		}
		if !in && top && bytes.HasPrefix(text, []byte("admin:")) {
			rest := text[len("admin:"):]
			in = len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t'
		}
		if in {
			out = append(out, line...)
		}
	}
	return out
}

// dialAddress is where a client on this host reaches a server listening on
// listen: a listener on every address is reached on loopback.
func dialAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		if a.Is4() {
			return net.JoinHostPort("127.0.0.1", port)
		}
		return net.JoinHostPort("::1", port)
	}
	return listen
}

// procRoot is where runningConfigs looks for the running xlbd; tests
// point it at a fake.
var procRoot = "/proc"

// localConfigs are the configs that may be this host's xlbd's, in the
// order they are tried: configPath if given, else those of the running
// xlbd daemons, then the default.
func localConfigs(configPath, procRoot string) []string {
	if configPath != "" {
		return []string{configPath}
	}
	return append(runningConfigs(procRoot), defaultConfig)
}

// defaultPinPath is xlbd's default xdp.pin_path.
const defaultPinPath = "/sys/fs/bpf/xlb"

// readPinPath is the xdp.pin_path a config names, or the default.
func readPinPath(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc struct {
		XDP struct {
			PinPath string `yaml:"pin_path"`
		} `yaml:"xdp"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if doc.XDP.PinPath == "" {
		return defaultPinPath, nil
	}
	return filepath.Clean(doc.XDP.PinPath), nil
}

// localPinPath is the pin path of the xlbd this xlbctl works with: that of
// -config, else of the xlbd running here, else of the default config, else
// the default. Several daemons with different pin paths are an error
// (fromRunning).
func localPinPath(configPath, procRoot string) (string, error) {
	if configPath != "" {
		p, err := readPinPath(configPath)
		if err != nil {
			return "", fmt.Errorf("-config: %w", err)
		}
		return p, nil
	}
	p, found, err := fromRunning(procRoot, readPinPath, "with pin paths %s: give -pin-path")
	if found || err != nil {
		return p, err
	}
	if p, err := readPinPath(defaultConfig); err == nil {
		return p, nil
	}
	return defaultPinPath, nil
}

// localAdmin is the admin address of the xlbd running in this network
// namespace, from its config, or else of the default config; "" when none
// reads. Several daemons that listen apart are an error (fromRunning).
func localAdmin(procRoot string) (string, error) {
	addr, found, err := fromRunning(procRoot, func(p string) (string, error) {
		a, err := readAdminSection(p)
		return dialAddress(a.Listen), err
	}, "with their admin API at %s: give -admin")
	if found || err != nil {
		return addr, err
	}
	if a, err := readAdminSection(defaultConfig); err == nil {
		return dialAddress(a.Listen), nil
	}
	return "", nil
}

// fromRunning is what read finds in the configs of the xlbd daemons
// running here, when they agree; found is false when none reads. Daemons
// that disagree are an error (several says how to choose): guessing would
// send a drain, a reload or a detach to the wrong one.
func fromRunning(procRoot string, read func(path string) (string, error), several string) (v string, found bool, err error) {
	var vals []string
	for _, p := range runningConfigs(procRoot) {
		if v, err := read(p); err == nil && !slices.Contains(vals, v) {
			vals = append(vals, v)
		}
	}
	switch {
	case len(vals) == 1:
		return vals[0], true, nil
	case len(vals) > 1:
		return "", true, usageError{"several xlbd run here, " + fmt.Sprintf(several, strings.Join(vals, ", "))}
	}
	return "", false, nil
}

// runningConfigs returns the config files of the xlbd daemons running on
// this host, from their command lines under procRoot (/proc): the -config
// they were given, else the default. `xlbd decap` and other subcommands
// are not daemons.
func runningConfigs(procRoot string) []string {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	// A daemon in another network namespace (ip netns exec) listens on
	// another loopback: it is not the one this xlbctl reaches.
	self, selfErr := os.Readlink(filepath.Join(procRoot, "self", "ns", "net"))
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		if ns, err := os.Readlink(filepath.Join(dir, "ns", "net")); selfErr == nil && err == nil && ns != self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		if filepath.Base(argv[0]) != "xlbd" || (len(argv) > 1 && !strings.HasPrefix(argv[1], "-")) {
			continue
		}
		path := defaultConfig
		for i, a := range argv[1:] {
			name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if name != "config" || !strings.HasPrefix(a, "-") {
				continue
			}
			if !hasVal {
				if i+2 >= len(argv) {
					break
				}
				val = argv[i+2]
			}
			path = val
		}
		if !filepath.IsAbs(path) {
			cwd, err := os.Readlink(filepath.Join(dir, "cwd"))
			if err != nil {
				continue
			}
			path = filepath.Join(cwd, path)
		}
		out = append(out, path)
	}
	return out
}

// localToken is the bearer token of the xlbd on this host that serves the
// admin API at base: the admin.token_file of the config given (-config),
// else of a running xlbd's config whose admin.listen is base's address, if
// this user can read it. So an operator on the balancer (root) needs no
// -token-file; the token only ever goes to the daemon its config names.
// "" when there is none; note then says why, when a config of this host
// could not give it (shown if the daemon asks for a token).
func localToken(base *url.URL, configPath, procRoot string) (token, note string) {
	paths := localConfigs(configPath, procRoot)
	for i, p := range paths {
		a, err := readAdminSection(p)
		// The default config, when no daemon runs with it, is only a guess:
		// its absence is no news.
		guess := configPath == "" && i == len(paths)-1
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			if !guess && note == "" {
				note = fmt.Sprintf("xlbd's config %s is missing, so its token could not be read", p)
			}
			continue
		case err != nil:
			if note == "" {
				note = fmt.Sprintf("the token could not be read from xlbd's config: %v", err)
			}
			continue
		case a.TokenFile == "":
			// A file that names no listen either may be base's daemon's,
			// emptied since it started.
			if note == "" && (a.Implicit || sameListener(a.Listen, base.Host)) {
				note = fmt.Sprintf("xlbd's config %s names no admin.token_file", p)
			}
			continue
		case !sameListener(a.Listen, base.Host):
			continue
		}
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			if note == "" {
				note = fmt.Sprintf("the token could not be read: %v", err)
			}
			continue
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, ""
		}
		if note == "" {
			note = fmt.Sprintf("token file %s is empty", a.TokenFile)
		}
	}
	return "", note
}

// sameListener says whether a client dialling target (host:port) reaches a
// server listening on listen: same port, and the same host, or a listener
// on every address, or both on loopback.
func sameListener(listen, target string) bool {
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	th, tp, err := net.SplitHostPort(target)
	if err != nil {
		th, tp = target, "80"
	}
	if lp != tp {
		return false
	}
	if lh == th || lh == "" {
		return true
	}
	la, lerr := netip.ParseAddr(lh)
	if lerr == nil && la.IsUnspecified() {
		return true
	}
	ta, terr := netip.ParseAddr(th)
	loop := func(a netip.Addr, err error, host string) bool {
		return host == "localhost" || (err == nil && a.IsLoopback())
	}
	return loop(la, lerr, lh) && loop(ta, terr, th)
}
