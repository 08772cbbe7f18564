package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker/client"
)

// A platform asks the broker for a user's access token.
func ExampleClient_Token() {
	ctx := context.Background()
	broker := client.New(brokerURL(), apiKey())

	tok, err := broker.Token(ctx, "alice", "demo", 0)
	if err != nil {
		var e *client.Error
		if errors.As(err, &e) && e.Code == client.CodeReauthRequired {
			fmt.Println("send the user to", e.ConnectURL)
			return
		}
		fmt.Println("error:", err)
		return
	}
	fmt.Println(tok.TokenType, strings.HasPrefix(tok.AccessToken, "fakeidp_at_"))
	// Output: Bearer true
}

// A Go program calls the provider's API as the user: the broker's
// TokenSource plugs into golang.org/x/oauth2, and the program never sees a
// refresh token.
func ExampleClient_TokenSource() {
	ctx := context.Background()
	broker := client.New(brokerURL(), apiKey())

	httpClient := oauth2.NewClient(ctx, broker.TokenSource(ctx, "alice", "demo"))
	resp, err := httpClient.Get(userinfoURL())
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.Contains(string(body), `"alice"`))
	// Output: 200 true
}

// A platform without a link for its user creates a connect session and
// sends the user's browser to its URL.
func ExampleClient_CreateConnectSession() {
	ctx := context.Background()
	broker := client.New(brokerURL(), apiKey())

	sess, err := broker.CreateConnectSession(ctx, client.ConnectSessionRequest{
		UserID:    "bob",
		Providers: []string{"demo"},
		ReturnURL: "https://app.example.com/settings",
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(strings.HasPrefix(sess.URL, brokerURL()+"/connect/"))
	// Output: true
}

// Errors carry the problem document's stable code.
func ExampleError() {
	ctx := context.Background()
	broker := client.New(brokerURL(), apiKey())

	_, err := broker.Token(ctx, "nobody", "demo", 0)
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Code)
	}
	fmt.Println(client.IsCode(err, client.CodeNotFound))
	// Output:
	// 404 not_found
	// true
}

// The link's status never carries a token.
func ExampleClient_Links() {
	ctx := context.Background()
	broker := client.New(brokerURL(), apiKey())

	links, err := broker.Links(ctx, "alice")
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	for _, l := range links {
		fmt.Println(l.ProviderID, l.State, l.HasRefreshToken)
	}
	// Output: demo active true
}

func userinfoURL() string { return broker.IDP.Endpoints().Userinfo }

// A headless user (a CLI on a remote machine) connects with the device
// flow: show the code, then poll until the user approved it.
func ExampleClient_StartDevice() {
	ctx := context.Background()
	broker := client.New(brokerURL(), apiKey())

	da, err := broker.StartDevice(ctx, "carol", "demo")
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("open", strings.HasPrefix(da.VerificationURI, "http"), "and enter the code", len(da.UserCode) > 0)

	userApproves(da.UserCode) // in real life: the user, in a browser
	for {
		st, err := broker.PollDevice(ctx, "carol", "demo", da.ID)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		if st.Status == client.DevicePending || st.Status == client.DeviceSlowDown {
			waitInterval(da.Interval)
			continue
		}
		fmt.Println(st.Status, st.Link.AccountLogin)
		return
	}
	// Output:
	// open true and enter the code true
	// complete carol
}

// userApproves approves the code at the fake identity provider as carol.
func userApproves(userCode string) { _ = broker.IDP.ApproveDevice(userCode, "carol") }

// waitInterval stands for time.Sleep(interval): the example's provider
// runs on a test clock, which it advances instead.
func waitInterval(d time.Duration) { broker.Clock.Advance(d) }
