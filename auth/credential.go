package auth

// Credential is what a user name stands for in one Snapshot: the quota user
// it counts against and the long-term keys that may have signed a request
// under it.
type Credential struct {
	// User is the user quotas count: a static user's name, or the user part
	// of a REST username. A REST username without a user part counts as
	// the empty user, so minting many of them cannot spread one client over
	// many quota users.
	User string
	// Keys are the candidate long-term keys: one for a static user, one per
	// REST secret (the first secret's first) for a REST username.
	Keys [][]byte
	// Expiry is a REST credential's expiry in Unix seconds; 0 for a static
	// user, which never expires.
	Expiry int64
	// REST says the username is a TURN REST credential.
	REST bool
}

// Why a user name has no credential.
const (
	RefusedUnknownUser = "unknown user"
	RefusedBadUsername = "not a static user nor a REST username"
)

// Credential looks username up: a static user first, then a REST username
// "<expiry>[:<user>]" when the snapshot has secrets. It computes one key per
// secret (an HMAC and an MD5 each), so callers look a name up once per
// allocation, not per request. When ok is false, why says which refusal it
// is (RefusedUnknownUser, RefusedBadUsername).
func (s *Snapshot) Credential(username string) (c Credential, why string, ok bool) {
	if s == nil {
		return Credential{}, RefusedUnknownUser, false
	}
	if key, found := s.userKey(username); found {
		return Credential{User: username, Keys: [][]byte{key}}, "", true
	}
	if len(s.secrets) == 0 {
		return Credential{}, RefusedUnknownUser, false
	}
	expiry, user, err := parseRESTUsername(username)
	if err != nil {
		return Credential{}, RefusedBadUsername, false
	}
	if user == username { // no user part
		user = ""
	}
	c = Credential{User: user, Expiry: expiry, REST: true, Keys: make([][]byte, len(s.secrets))}
	for i, secret := range s.secrets {
		c.Keys[i] = restKey(secret, username, s.realm)
	}
	return c, "", true
}
