package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/probe"
)

func TestProbeCommand(t *testing.T) {
	addr, _ := testutil.PionServer(t, "ferry.test", testutil.StaticAuth("u", "ferry.test", "p"))
	tests := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout
		err  string // substring of stderr
	}{
		{name: "stun text", args: []string{"probe", "stun://" + addr}, out: "mapping              unknown"},
		{name: "stun json", args: []string{"probe", "stun://" + addr, "--json"}, out: `"mapped": "127.0.0.1:`},
		{name: "bad url", args: []string{"probe", "http://x"}, code: 2, err: "not stun or turn"},
		{name: "no url", args: []string{"probe"}, code: 1, err: "accepts 1 arg"},
		{name: "turn without credentials", args: []string{"probe", "turn://" + addr}, code: 2, err: "--user and --password, or --secret"},
		{name: "stun with credentials", args: []string{"probe", "stun://" + addr, "--user", "u"}, code: 2, err: "for turn://"},
		{name: "bad timeout", args: []string{"probe", "stun://" + addr, "--timeout", "0s"}, code: 2, err: "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			code := run(context.Background(), e, tt.args)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) || !strings.Contains(stderr.String(), tt.err) {
				t.Errorf("stdout:\n%s\nstderr:\n%s\nwant %q / %q", stdout.String(), stderr.String(), tt.out, tt.err)
			}
			if strings.HasSuffix(tt.name, "json") {
				var rep probe.STUNReport
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Mapped == "" {
					t.Errorf("JSON report %+v: %v", rep, err)
				}
			}
		})
	}
}
