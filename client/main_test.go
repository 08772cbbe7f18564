package client_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

// broker is a real tokenbroker API on loopback (SQLite, fakeidp, the
// refresh coordinator) shared by the Example functions, which cannot take
// a testing.TB. Its user "alice" has a link to the "demo" provider, and
// platformKey may read tokens and links and write links.
var (
	broker      *httpapitest.Env
	platformKey string
)

// brokerURL and apiKey stand for a real deployment's values in the
// examples.
func brokerURL() string { return broker.URL }
func apiKey() string    { return platformKey }

func TestMain(m *testing.M) {
	var err error
	broker, err = httpapitest.Start(httpapitest.Options{ReturnURLAllowList: []string{"https://app.example.com"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	func() {
		defer broker.Close()
		if _, err = broker.Link("alice", httpapitest.ProviderDemo, "alice"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		platformKey, err = broker.NewKey("platform", []string{tokenbroker.ScopeTokensRead, tokenbroker.ScopeLinksRead, tokenbroker.ScopeLinksWrite}, nil, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		code = m.Run()
	}()
	os.Exit(httpapitest.AfterRun(code, broker.Logs))
}
