package natlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NAT is one NAT router of the lab and the client behind it.
type NAT struct {
	// Kind is the NAT's kind in scripts/natlab.sh: fullcone,
	// restricted, portrestricted, symmetric, symmetric2.
	Kind string
	// Router and Client are the namespaces of the NAT and its client.
	Router, Client string
	// Public is the NAT's public address; ClientIP the client's address.
	Public, ClientIP netip.Addr
	// Mapping, Filtering and Hairpinning are the behaviours the NAT is
	// built to have, named as `ferry probe` names them.
	Mapping, Filtering, Hairpinning string
}

// Lab is a running NAT lab.
type Lab struct {
	// Name is the lab's name; its namespaces are flab-NAME-*.
	Name string
	// FerryNS is ferry's namespace, with addresses FerryIP and FerryAltIP.
	FerryNS           string
	FerryIP, FerryAlt netip.Addr
	// NATs are the lab's NATs by kind.
	NATs map[string]NAT

	script string
}

// InCI reports whether CI=true, where missing lab prerequisites fail tests
// instead of skipping them.
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips t outside CI and fails it with CI=true.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("natlab: "+format+" (CI=true: the NAT lab must run; run as root with scripts/install-test-deps.sh)", args...)
	}
	t.Skipf("natlab: "+format+" (skipped outside CI)", args...)
}

// RequireTool returns the path of the executable name, skipping t when it
// is missing outside CI and failing it with CI=true.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s not found: %v", name, err)
	}
	return path
}

// ModuleRoot returns the directory of ferry's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(mod), nil
}

// Up builds a lab for t and tears it down at cleanup.
func Up(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "network namespaces need root")
	}
	for _, tool := range []string{"ip", "iptables", "ipset", "bash"} {
		RequireTool(t, tool)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{Name: uniqueName(), script: filepath.Join(root, "scripts", "natlab.sh")}
	sweepStale(t, l.script)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", l.script, "up", l.Name)
	cmd.Stderr = &stderr
	t.Cleanup(func() { l.down(t) }) // also after a partial up
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		skipOrFail(t, "natlab.sh up %s: %v\n%s", l.Name, err, stderr.String())
	}
	if err := l.parse(out); err != nil {
		t.Fatalf("natlab.sh up %s: %v\n%s", l.Name, err, out)
	}
	t.Logf("natlab: lab %s up in %v", l.Name, time.Since(start).Round(time.Millisecond))
	return l
}

func (l *Lab) down(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "bash", l.script, "down", l.Name).CombinedOutput(); err != nil {
		t.Errorf("natlab.sh down %s: %v\n%s", l.Name, err, out)
	}
}

// uniqueName is "t<pid>r<random>": unique per process and per Up.
func uniqueName() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return "t" + strconv.Itoa(os.Getpid()) + "r" + hex.EncodeToString(b)
}

// sweepStale removes labs of test processes that no longer run (killed
// before their cleanup).
func sweepStale(t testing.TB, script string) {
	staleName := regexp.MustCompile(`^flab-(t([0-9]+)r[0-9a-f]{4})-inet$`)
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		m := staleName.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[2]); err == nil {
			continue // its process still runs
		}
		t.Logf("natlab: removing stale lab %s of process %s", m[1], m[2])
		_ = exec.Command("bash", script, "down", m[1]).Run()
	}
}

// parse reads natlab.sh's description.
func (l *Lab) parse(out []byte) error {
	l.NATs = map[string]NAT{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		kv := map[string]string{}
		for _, p := range f[1:] {
			k, v, _ := strings.Cut(p, "=")
			kv[k] = v
		}
		var err error
		switch f[0] {
		case "ferry":
			l.FerryNS = kv["ns"]
			if l.FerryIP, err = netip.ParseAddr(kv["ip"]); err != nil {
				return fmt.Errorf("ferry ip: %w", err)
			}
			if l.FerryAlt, err = netip.ParseAddr(kv["alt_ip"]); err != nil {
				return fmt.Errorf("ferry alt_ip: %w", err)
			}
		case "nat":
			n := NAT{Kind: kv["kind"], Router: kv["router"], Client: kv["client"],
				Mapping: kv["mapping"], Filtering: kv["filtering"], Hairpinning: kv["hairpinning"]}
			if n.Public, err = netip.ParseAddr(kv["public"]); err != nil {
				return fmt.Errorf("nat %s public: %w", n.Kind, err)
			}
			if n.ClientIP, err = netip.ParseAddr(kv["client_ip"]); err != nil {
				return fmt.Errorf("nat %s client_ip: %w", n.Kind, err)
			}
			l.NATs[n.Kind] = n
		}
	}
	if l.FerryNS == "" || len(l.NATs) == 0 {
		return errors.New("no ferry or NAT in the description")
	}
	return nil
}

// NAT returns the NAT of kind, failing t if the lab has none.
func (l *Lab) NAT(t testing.TB, kind string) NAT {
	t.Helper()
	n, ok := l.NATs[kind]
	if !ok {
		t.Fatalf("natlab: no NAT of kind %q", kind)
	}
	return n
}

// Command returns name args run inside namespace ns.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}
