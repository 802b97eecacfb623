package main

import (
	"bytes"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
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
}

func readAdminSection(path string) (adminSection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return adminSection{}, err
	}
	var doc struct {
		Admin struct {
			Listen    string `yaml:"listen"`
			TokenFile string `yaml:"token_file"`
		} `yaml:"admin"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return adminSection{}, err
	}
	a := adminSection{Listen: doc.Admin.Listen, TokenFile: doc.Admin.TokenFile}
	if a.Listen == "" {
		a.Listen = strings.TrimPrefix(defaultAdmin, "http://")
	}
	// xlbd resolves a relative token_file against the config's folder.
	if a.TokenFile != "" && !filepath.IsAbs(a.TokenFile) {
		a.TokenFile = filepath.Join(filepath.Dir(path), a.TokenFile)
	}
	return a, nil
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
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
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
// "" when there is none.
func localToken(base *url.URL, configPath, procRoot string) string {
	paths := []string{configPath}
	if configPath == "" {
		paths = append(runningConfigs(procRoot), defaultConfig)
	}
	for _, p := range paths {
		a, err := readAdminSection(p)
		if err != nil || a.TokenFile == "" || !sameListener(a.Listen, base.Host) {
			continue
		}
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			continue
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t
		}
	}
	return ""
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
