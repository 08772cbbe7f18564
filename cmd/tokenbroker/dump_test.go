package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/internal/testenv"
)

// TestDumpHoldsNoIssuedToken runs a real `tokenbroker serve` on SQLite and
// on PostgreSQL through imports, refreshes and a device-flow connect, then
// dumps the database with the engine's own tool (sqlite3 .dump, pg_dump)
// and searches the dump for every access and refresh token fakeidp issued
// in the run: none may appear (a dump alone is useless).
func TestDumpHoldsNoIssuedToken(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			var dbURL, sqlite3 string
			switch kind {
			case "sqlite":
				bin, err := exec.LookPath("sqlite3")
				if err != nil {
					testenv.Missing(t, "sqlite3 not installed (apt-get install -y sqlite3)")
				}
				sqlite3 = bin
			case "postgres":
				dbURL = pgtest.NewDatabase(t)
			}
			// Every line a replica can write is searched for secrets.
			cl := newCluster(t, fakeidp.Config{RecordIssued: true}, dbURL, []string{"TOKENBROKER_LOG_LEVEL=debug"})
			idp := cl.idp
			dump := func() string { return pgDump(t, dbURL) }
			if kind == "sqlite" {
				dump = func() string {
					out, err := exec.Command(sqlite3, "-readonly", filepath.Join(cl.dir, "data", "tokenbroker.db"), ".dump").Output()
					if err != nil {
						t.Fatalf("sqlite3 .dump: %v", err)
					}
					return string(out)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r := cl.startReplica(t, "dump-"+kind)
			c := client.New(r.URL, cl.apiKey)

			// Imports of expired tokens, each followed by a refresh.
			past := time.Now().Add(-time.Minute)
			for _, user := range []string{"dump-alice", "dump-bob"} {
				for range 2 {
					tok, err := idp.IssueToken(user)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := c.ImportLink(ctx, user, "bench", client.ImportRequest{AccessToken: tok.AccessToken,
						RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &past}); err != nil {
						t.Fatal(err)
					}
					got, err := c.Token(ctx, user, "bench", 0)
					if err != nil {
						t.Fatal(err)
					}
					if got.AccessToken == tok.AccessToken {
						t.Fatal("the expired imported token was not refreshed")
					}
				}
			}
			// A device-flow connect.
			da, err := c.StartDevice(ctx, "dump-carol", "bench")
			if err != nil {
				t.Fatal(err)
			}
			if err := idp.ApproveDevice(da.UserCode, "carol"); err != nil {
				t.Fatal(err)
			}
			st, err := c.PollDevice(ctx, "dump-carol", "bench", da.ID)
			if err != nil || st.Status != client.DeviceComplete {
				t.Fatalf("device flow: %+v %v", st, err)
			}
			if _, err := c.Token(ctx, "dump-carol", "bench", 0); err != nil {
				t.Fatal(err)
			}

			if err := r.Stop(); err != nil {
				t.Fatal(err)
			}
			d := dump()
			if !strings.Contains(d, "dump-alice") || !strings.Contains(d, "dump-carol") {
				t.Fatal("the dump does not hold the run's users: is it the right database?")
			}
			issued := idp.IssuedTokens()
			if len(issued) < 2*(4+1) {
				t.Fatalf("fakeidp issued only %d tokens", len(issued))
			}
			for _, tok := range issued {
				if strings.Contains(d, tok) {
					t.Errorf("the %s dump contains a token fakeidp issued (%s...)", kind, tok[:14])
				}
			}
			if strings.Contains(d, "fakeidp_") {
				t.Error("the dump contains a fakeidp token prefix")
			}
		})
	}
}

// pgDump dumps the database at url with pg_dump, preferring the server's
// own version.
func pgDump(t *testing.T, url string) string {
	t.Helper()
	bin := "pg_dump"
	if dir, err := pgtest.FindBinaries(); err == nil {
		if p := filepath.Join(dir, "pg_dump"); fileExists(p) {
			bin = p
		}
	}
	out, err := exec.Command(bin, "--dbname="+url).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return string(out)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
