package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// printBanner writes what an operator needs once serve listens: the URLs
// that matter and, while no admin API key exists, the exact command that
// creates the first one. The database URL's password is never printed.
func printBanner(ctx context.Context, w io.Writer, a *app) {
	base := strings.TrimRight(a.cfg.BaseURL, "/")
	fmt.Fprintf(w, `
  Front door  %[1]s/
  Console     %[1]s/admin/
  API         %[1]s/api/v1/
  Metrics     %[1]s/metrics
  Readiness   %[1]s/readyz
`, base)
	keys, err := a.store.ListAPIKeys(ctx)
	if err != nil {
		a.log.Warn("cannot tell whether an admin key exists", "err", err)
		return
	}
	if slices.ContainsFunc(keys, func(k *tokenbroker.APIKey) bool {
		return !k.Revoked() && slices.Contains(k.Scopes, tokenbroker.ScopeAdmin)
	}) {
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "\nNo admin API key exists yet. Create the first one (its secret is shown once) with:\n  %s\n\n",
		firstKeyCommand(a.cfg.DatabaseURL, a.cfg.DataDir))
}

// firstKeyCommand is the `apikeys create` command line that reaches the
// same database as serve: SQLite by its data directory's absolute path,
// PostgreSQL by its URL with any password replaced by <password>.
func firstKeyCommand(databaseURL, dataDir string) string {
	const create = "tokenbroker apikeys create --name admin --scopes admin"
	if databaseURL == "" {
		if abs, err := filepath.Abs(dataDir); err == nil {
			dataDir = abs
		}
		return create + " --data-dir " + shellQuote(dataDir)
	}
	if databaseURL == os.Getenv("TOKENBROKER_DATABASE_URL") {
		return "TOKENBROKER_DATABASE_URL=\"$TOKENBROKER_DATABASE_URL\" " + create
	}
	return create + " --database-url " + shellQuote(redactPassword(databaseURL))
}

// redactPassword replaces the password of a postgres:// URL or keyword
// string with <password>.
func redactPassword(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "PASSWORD")
			s = strings.Replace(u.String(), ":PASSWORD@", ":<password>@", 1)
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "PASSWORD")
			u.RawQuery = q.Encode()
			s = strings.Replace(u.String(), "password=PASSWORD", "password=<password>", 1)
		}
		return s
	}
	f := strings.Fields(s)
	for i, kv := range f {
		if strings.HasPrefix(kv, "password=") {
			f[i] = "password=<password>"
		}
	}
	return strings.Join(f, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:@=+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
