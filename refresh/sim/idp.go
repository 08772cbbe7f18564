package sim

import (
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// idp is the simulated strict provider: every grant is a family of
// single-use refresh tokens that rotate on each refresh; a refresh token
// sent again after it was spent revokes the whole family (reuse
// detection), as fakeidp, Hydra and most providers with rotation do.
type idp struct {
	families []*family
	byRT     map[string]*family
	lifetime time.Duration
	revoked  map[string]bool // user -> the user revoked the grant (scenario)
}

type family struct {
	id      int
	user    string
	rts     []string      // rts[i] is the i-th refresh token; the last is current
	spentBy []*processing // spentBy[i] is the refresh that spent rts[i]
	index   map[string]int
	// revoked: "", "user" (the user revoked the grant) or "reuse" (a spent
	// token came back).
	revoked string
	// reuse is the processing that found a spent token, when revoked by
	// reuse.
	reuse *processing
	// inflight: requests with one of its tokens sent and not yet arrived.
	inflight map[*op]bool
}

// processing is one refresh request the provider processed.
type processing struct {
	rt    string
	fam   *family
	at    time.Time
	from  *incarnation
	op    *op
	spent bool // it rotated rt (else it was rejected)
	newRT string
	newAT string

	// What became of the answer: delivered to a live holder, or lost
	// (with the loss window it opens).
	delivered   bool
	deliveredAt time.Time
	committed   bool
	lost        string // "", "answer_lost", "holder_died", "abandoned"
	lostWhy     string
}

func newIDP(lifetime time.Duration) *idp {
	return &idp{byRT: map[string]*family{}, lifetime: lifetime, revoked: map[string]bool{}}
}

// grant starts a new family for user and returns its first token set.
func (p *idp) grant(user string, now time.Time) (*family, tokenbroker.Token) {
	f := &family{id: len(p.families) + 1, user: user, index: map[string]int{}, inflight: map[*op]bool{}}
	p.families = append(p.families, f)
	rt := fmt.Sprintf("rt-%s-f%d-0", user, f.id)
	f.rts = append(f.rts, rt)
	f.spentBy = append(f.spentBy, nil)
	f.index[rt] = 0
	p.byRT[rt] = f
	return f, tokenbroker.Token{
		AccessToken: fmt.Sprintf("at-%s-f%d-0", user, f.id), RefreshToken: rt, TokenType: "Bearer",
		Expiry: now.Add(p.lifetime), IssuedAt: now, Scopes: []string{"read"},
	}
}

func (f *family) current() string { return f.rts[len(f.rts)-1] }

// honours reports whether the provider would accept rt now.
func (p *idp) honours(rt string) bool {
	f := p.byRT[rt]
	return f != nil && f.revoked == "" && f.current() == rt
}

// parentOf returns the refresh token whose refresh issued rt ("" for a
// family's first token or an unknown one).
func (p *idp) parentOf(rt string) string {
	f := p.byRT[rt]
	if f == nil {
		return ""
	}
	i := f.index[rt]
	if i == 0 {
		return ""
	}
	return f.rts[i-1]
}

// refresh processes a refresh request for rt at now. It returns the
// processing record; its spent field says whether it rotated.
func (p *idp) refresh(rt string, now time.Time, from *incarnation, o *op) (*processing, *tokenbroker.Token, *tokenbroker.ProviderError) {
	pr := &processing{rt: rt, at: now, from: from, op: o}
	reject := func(desc string) (*processing, *tokenbroker.Token, *tokenbroker.ProviderError) {
		return pr, nil, &tokenbroker.ProviderError{ProviderID: providerID, StatusCode: 400, Code: "invalid_grant",
			Description: desc, Class: tokenbroker.FailureRejected}
	}
	f := p.byRT[rt]
	if f == nil {
		return reject("unknown refresh token")
	}
	pr.fam = f
	i := f.index[rt]
	if i < len(f.rts)-1 {
		// A spent token: reuse detection revokes the family.
		if f.revoked == "" {
			f.revoked, f.reuse = "reuse", pr
		}
		return reject("refresh token reused")
	}
	if f.revoked != "" {
		return reject("grant revoked")
	}
	n := len(f.rts)
	newRT := fmt.Sprintf("rt-%s-f%d-%d", f.user, f.id, n)
	f.rts = append(f.rts, newRT)
	f.spentBy[i] = pr
	f.spentBy = append(f.spentBy, nil)
	f.index[newRT] = n
	p.byRT[newRT] = f
	pr.spent, pr.newRT = true, newRT
	pr.newAT = fmt.Sprintf("at-%s-f%d-%d", f.user, f.id, n)
	return pr, &tokenbroker.Token{
		AccessToken: pr.newAT, RefreshToken: newRT, TokenType: "Bearer",
		Expiry: now.Add(p.lifetime), IssuedAt: now, Scopes: []string{"read"},
	}, nil
}
