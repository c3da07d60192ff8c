package control

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest"
)

// Record keys in the control topic.
const (
	tokenKey   = "token"
	refreshKey = "token-refresh"
)

// DefaultRefreshTimeout is how long a refresh claim holds before another
// replica may take it over (the holder died mid-refresh).
const DefaultRefreshTimeout = 45 * time.Second

// KeySize is the length of the token store's encryption key in bytes.
const KeySize = 32

// KeyError says the encryption key in the environment is missing or
// malformed. It never holds the value.
type KeyError struct {
	Env    string
	Reason string
}

// Error names the variable and what is wrong with it.
func (e *KeyError) Error() string {
	return fmt.Sprintf("pinterest.token_store.key_env: %s %s; it must hold %d random bytes in standard base64 (e.g. `openssl rand -base64 32`)", e.Env, e.Reason, KeySize)
}

// KeyFromEnv reads the key from the environment variable env.
func KeyFromEnv(getenv func(string) string, env string) ([]byte, error) {
	v := getenv(env)
	if v == "" {
		return nil, &KeyError{Env: env, Reason: "is not set"}
	}
	k, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, &KeyError{Env: env, Reason: "is not valid base64"}
	}
	if len(k) != KeySize {
		return nil, &KeyError{Env: env, Reason: fmt.Sprintf("decodes to %d bytes, not %d", len(k), KeySize)}
	}
	return k, nil
}

// ErrWrongKey is returned by Load when the stored token was encrypted
// under another key than the store's.
var ErrWrongKey = errors.New("control: the token in the control topic was encrypted with a different key; give every replica the same pinterest.token_store.key_env value")

// ErrTampered is returned by Load when the stored token fails
// authentication: it was altered or corrupted.
var ErrTampered = errors.New("control: the token in the control topic failed authentication (altered or corrupted); re-authorise with `pinsync auth`")

// TokenStore is a pinterest.TokenStore (and pinterest.RefreshLocker) in
// the control topic: the OAuth token is the latest record with key
// "token", encrypted with AES-256-GCM under a key only the replicas hold.
// Replicas take turns to refresh: a replica claims "token-refresh" in the
// same log before it refreshes and releases it after saving, so a refresh
// token Pinterest rotated away is never used by another replica.
//
// The key is 32 random bytes, base64-encoded (standard encoding) in the
// environment variable named by pinterest.token_store.key_env (default
// PINSYNC_PINTEREST_TOKEN_KEY); generate one with `openssl rand -base64 32`.
// Every replica needs the same key. The store does not obtain the first
// token: `pinsync auth` (or a test) saves it. It is safe for concurrent
// use.
type TokenStore struct {
	t       *Topic
	aead    cipher.AEAD
	keyID   [8]byte
	owner   string
	timeout time.Duration
}

// tokenState is what the control topic says of the token.
type tokenState struct {
	token  []byte // latest sealed token record; nil: none
	holder string // refresh claim holder; "" none
	heldAt time.Time
}

// TokenStore returns the token store of the topic, sealing under key
// (KeySize bytes, see KeyFromEnv).
func (t *Topic) TokenStore(key []byte) (*TokenStore, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("control: the token key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	var owner [8]byte
	_, _ = rand.Read(owner[:])
	return &TokenStore{t: t, aead: aead, keyID: keyID(key), owner: hex.EncodeToString(owner[:]), timeout: t.cfg.RefreshTimeout}, nil
}

// keyID identifies a key without revealing it, so that a wrong key is told
// apart from a tampered record.
func keyID(key []byte) [8]byte {
	h := sha256.Sum256(append([]byte("pinsync token key id\x00"), key...))
	var id [8]byte
	copy(id[:], h[:8])
	return id
}

type claim struct {
	Owner   string `json:"owner"`
	Release bool   `json:"release,omitempty"`
}

// applyToken folds a token or refresh-claim record into st; it reports
// whether the key was one of them.
func (st *tokenState) apply(r Record, timeout time.Duration) bool {
	switch r.Key {
	case tokenKey:
		st.token = r.Value
	case refreshKey:
		var c claim
		if r.Value == nil || json.Unmarshal(r.Value, &c) != nil || c.Owner == "" {
			st.holder = ""
			return true
		}
		switch {
		case c.Release:
			if st.holder == c.Owner {
				st.holder = ""
			}
		case st.holder == "" || !r.Time.Before(st.heldAt.Add(timeout)):
			st.holder, st.heldAt = c.Owner, r.Time
		}
	default:
		return false
	}
	return true
}

// sealed record: version 1 | key id (8) | nonce | ciphertext+tag.
const version = 1

func (s *TokenStore) seal(tok *oauth2.Token) ([]byte, error) {
	plain, err := json.Marshal(tok)
	if err != nil {
		return nil, fmt.Errorf("control: encode token: %w", err)
	}
	out := make([]byte, 1+8+s.aead.NonceSize(), 1+8+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = version
	copy(out[1:9], s.keyID[:])
	if _, err := rand.Read(out[9:]); err != nil {
		return nil, fmt.Errorf("control: nonce: %w", err)
	}
	return s.aead.Seal(out, out[9:], plain, out[:9]), nil
}

func (s *TokenStore) open(b []byte) (*oauth2.Token, error) {
	ns := s.aead.NonceSize()
	if len(b) < 1+8+ns+s.aead.Overhead() || b[0] != version {
		return nil, ErrTampered
	}
	if [8]byte(b[1:9]) != s.keyID {
		return nil, ErrWrongKey
	}
	plain, err := s.aead.Open(nil, b[9:9+ns], b[9+ns:], b[:9])
	if err != nil {
		return nil, ErrTampered
	}
	tok := new(oauth2.Token)
	if err := json.Unmarshal(plain, tok); err != nil {
		return nil, fmt.Errorf("control: stored token is not valid JSON: %w", err)
	}
	return tok, nil
}

// Load reads the newest token in the control topic. It returns
// pinterest.ErrNoToken when none was saved, ErrWrongKey or ErrTampered when
// the record cannot be decrypted.
func (s *TokenStore) Load(ctx context.Context) (*oauth2.Token, error) {
	if err := s.t.log.CatchUp(ctx); err != nil {
		return nil, fmt.Errorf("control: load token: %w", err)
	}
	s.t.mu.Lock()
	b := s.t.tokens.token
	s.t.mu.Unlock()
	if b == nil {
		return nil, fmt.Errorf("%w in control topic %s", pinterest.ErrNoToken, s.t.cfg.Topic)
	}
	return s.open(b)
}

// Save appends the token and returns once it is durable and applied, so
// that a Load after Save returns it.
func (s *TokenStore) Save(ctx context.Context, tok *oauth2.Token) error {
	if tok == nil {
		return errors.New("control: save nil token")
	}
	b, err := s.seal(tok)
	if err != nil {
		return err
	}
	off, err := s.t.log.Append(ctx, tokenKey, b)
	if err != nil {
		return fmt.Errorf("control: save token: %w", err)
	}
	return s.t.log.WaitApplied(ctx, off)
}

// LockRefresh claims the right to refresh the token, waiting while another
// replica holds it (at most its refresh timeout). The returned func
// releases it. See pinterest.RefreshLocker.
func (s *TokenStore) LockRefresh(ctx context.Context) (func(), error) {
	for {
		free := func() bool {
			s.t.mu.Lock()
			defer s.t.mu.Unlock()
			st := &s.t.tokens
			return st.holder == "" || st.holder == s.owner || !time.Now().Before(st.heldAt.Add(s.timeout))
		}
		if err := s.t.log.WaitFor(ctx, 250*time.Millisecond, free); err != nil {
			return nil, fmt.Errorf("control: waiting for another replica's token refresh: %w", err)
		}
		b, _ := json.Marshal(claim{Owner: s.owner})
		off, err := s.t.log.Append(ctx, refreshKey, b)
		if err != nil {
			return nil, err
		}
		if err := s.t.log.WaitApplied(ctx, off); err != nil {
			return nil, err
		}
		s.t.mu.Lock()
		won := s.t.tokens.holder == s.owner
		s.t.mu.Unlock()
		if won {
			return s.release, nil
		}
	}
}

func (s *TokenStore) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, _ := json.Marshal(claim{Owner: s.owner, Release: true})
	if _, err := s.t.log.Append(ctx, refreshKey, b); err != nil {
		s.t.logger.Warn("releasing the token refresh claim failed; it lapses on its own", "err", err)
	}
}
