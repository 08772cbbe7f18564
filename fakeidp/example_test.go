package fakeidp_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"golang.org/x/oauth2"
)

// A refresh token is single use: a second client that still holds it
// triggers reuse detection, and the whole token family is revoked.
func Example() {
	s, err := fakeidp.Start(fakeidp.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Seed a link without a browser, and let its access token expire.
	seed, err := s.IssueToken("alice", "read")
	if err != nil {
		log.Fatal(err)
	}
	stale := seed.OAuth2()
	stale.Expiry = time.Now().Add(-time.Minute)

	conf := s.OAuth2Config("http://127.0.0.1:9999/callback")
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader // send each request once
	ctx := context.Background()

	fresh, err := conf.TokenSource(ctx, stale).Token()
	fmt.Println("first refresh:", err == nil && fresh.RefreshToken != seed.RefreshToken)

	_, err = conf.TokenSource(ctx, stale).Token()
	var re *oauth2.RetrieveError
	fmt.Println("replay:", errors.As(err, &re) && re.ErrorCode == "invalid_grant")

	st := s.Stats()
	fmt.Println("refresh calls:", st.RefreshCalls, "reuse detections:", st.ReuseDetections,
		"revoked:", st.Families[seed.Family].Revoked)
	// Output:
	// first refresh: true
	// replay: true
	// refresh calls: 2 reuse detections: 1 revoked: true
}

// ConsumeThenFailNext makes the provider rotate the refresh token and then
// lose the answer: the client keeps a token that is already used.
func ExampleServer_SetFaults() {
	s, err := fakeidp.Start(fakeidp.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	seed, err := s.IssueToken("bob")
	if err != nil {
		log.Fatal(err)
	}
	s.SetFaults(fakeidp.Faults{ConsumeThenFailNext: 1})

	conf := s.OAuth2Config("")
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	stale := seed.OAuth2()
	stale.Expiry = time.Now().Add(-time.Minute)
	_, err = conf.TokenSource(context.Background(), stale).Token()
	fmt.Println("refresh failed:", err != nil)

	fam, _ := s.FamilyOf(seed.RefreshToken)
	fmt.Println("generation:", fam.Generation, "lost answers:", s.Stats().ConsumedThenFailed)
	// Output:
	// refresh failed: true
	// generation: 2 lost answers: 1
}
