// Package kafkastore is a pinterest.TokenStore shared by every replica of
// pinsync through the control topic (package control): the OAuth token is
// the latest record with key "token", encrypted with AES-256-GCM under a
// key only the replicas hold. Replicas take turns to refresh: a replica
// claims "token-refresh" in the same log before it refreshes and releases
// it after saving, so the refresh token Pinterest rotates away is never
// used by another replica.
//
// The key is 32 random bytes, base64-encoded (standard encoding) in the
// environment variable named by pinterest.token_store.key_env (default
// PINSYNC_PINTEREST_TOKEN_KEY); generate one with `openssl rand -base64 32`.
// Every replica needs the same key. The store does not obtain the first
// token: `pinsync auth` (or a test) saves it.
package kafkastore

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
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/control"
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

// KeySize is the length of the encryption key in bytes.
const KeySize = 32

// Config configures a Store.
type Config struct {
	// Kafka holds the connection options.
	Kafka []kgo.Opt
	// Topic is the control topic (kafka.control_topic).
	Topic string
	// Key is the AES-256 key: KeySize bytes (see KeyFromEnv).
	Key []byte
	// RefreshTimeout is how long a refresh claim holds; default
	// DefaultRefreshTimeout.
	RefreshTimeout time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("kafkastore: Topic is required (kafka.control_topic)"))
	}
	if len(c.Key) != KeySize {
		errs = append(errs, fmt.Errorf("kafkastore: key must be %d bytes, got %d", KeySize, len(c.Key)))
	}
	if c.RefreshTimeout < 0 {
		errs = append(errs, errors.New("kafkastore: RefreshTimeout must not be negative"))
	}
	return errors.Join(errs...)
}

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
var ErrWrongKey = errors.New("kafkastore: the token in the control topic was encrypted with a different key; give every replica the same pinterest.token_store.key_env value")

// ErrTampered is returned by Load when the stored token fails
// authentication: it was altered or corrupted.
var ErrTampered = errors.New("kafkastore: the token in the control topic failed authentication (altered or corrupted); re-authorise with `pinsync auth`")

// Store is a pinterest.TokenStore in the control topic. It is safe for
// concurrent use. Close it when done.
type Store struct {
	cfg   Config
	log   *control.Log
	aead  cipher.AEAD
	keyID [8]byte
	owner string

	mu      sync.Mutex
	token   []byte // latest sealed token record; nil: none
	holder  string // refresh claim holder; "" none
	heldAt  time.Time
	heldOff int64
}

// New opens the control topic, creating it when missing.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RefreshTimeout == 0 {
		cfg.RefreshTimeout = DefaultRefreshTimeout
	}
	block, err := aes.NewCipher(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("kafkastore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kafkastore: %w", err)
	}
	var owner [8]byte
	_, _ = rand.Read(owner[:])
	s := &Store{cfg: cfg, aead: aead, keyID: keyID(cfg.Key), owner: hex.EncodeToString(owner[:])}
	s.log, err = control.Open(ctx, control.Config{Kafka: cfg.Kafka, Topic: cfg.Topic, Apply: s.apply, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return s, nil
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

func (s *Store) apply(r control.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Key {
	case tokenKey:
		s.token = r.Value
	case refreshKey:
		var c claim
		if r.Value == nil || json.Unmarshal(r.Value, &c) != nil || c.Owner == "" {
			s.holder = ""
			return
		}
		switch {
		case c.Release:
			if s.holder == c.Owner {
				s.holder = ""
			}
		case s.holder == "" || !r.Time.Before(s.heldAt.Add(s.cfg.RefreshTimeout)):
			s.holder, s.heldAt, s.heldOff = c.Owner, r.Time, r.Offset
		}
	}
}

// sealed record: version 1 | key id (8) | nonce | ciphertext+tag.
const version = 1

func (s *Store) seal(tok *oauth2.Token) ([]byte, error) {
	plain, err := json.Marshal(tok)
	if err != nil {
		return nil, fmt.Errorf("kafkastore: encode token: %w", err)
	}
	out := make([]byte, 1+8+s.aead.NonceSize(), 1+8+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = version
	copy(out[1:9], s.keyID[:])
	if _, err := rand.Read(out[9:]); err != nil {
		return nil, fmt.Errorf("kafkastore: nonce: %w", err)
	}
	return s.aead.Seal(out, out[9:], plain, out[:9]), nil
}

func (s *Store) open(b []byte) (*oauth2.Token, error) {
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
		return nil, fmt.Errorf("kafkastore: stored token is not valid JSON: %w", err)
	}
	return tok, nil
}

// Load reads the newest token in the control topic. It returns
// pinterest.ErrNoToken when none was saved, ErrWrongKey or ErrTampered when
// the record cannot be decrypted.
func (s *Store) Load(ctx context.Context) (*oauth2.Token, error) {
	if err := s.log.CatchUp(ctx); err != nil {
		return nil, fmt.Errorf("kafkastore: load: %w", err)
	}
	s.mu.Lock()
	b := s.token
	s.mu.Unlock()
	if b == nil {
		return nil, fmt.Errorf("%w in control topic %s", pinterest.ErrNoToken, s.cfg.Topic)
	}
	return s.open(b)
}

// Save appends the token and returns once it is durable and applied, so
// that a Load after Save returns it.
func (s *Store) Save(ctx context.Context, tok *oauth2.Token) error {
	if tok == nil {
		return errors.New("kafkastore: save nil token")
	}
	b, err := s.seal(tok)
	if err != nil {
		return err
	}
	off, err := s.log.Append(ctx, tokenKey, b)
	if err != nil {
		return fmt.Errorf("kafkastore: save: %w", err)
	}
	return s.log.WaitApplied(ctx, off)
}

// LockRefresh claims the right to refresh the token, waiting while another
// replica holds it (at most its RefreshTimeout). The returned func
// releases it. See pinterest.RefreshLocker.
func (s *Store) LockRefresh(ctx context.Context) (func(), error) {
	for {
		free := func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.holder == "" || s.holder == s.owner || !time.Now().Before(s.heldAt.Add(s.cfg.RefreshTimeout))
		}
		if err := s.log.WaitFor(ctx, 250*time.Millisecond, free); err != nil {
			return nil, fmt.Errorf("kafkastore: waiting for another replica's token refresh: %w", err)
		}
		b, _ := json.Marshal(claim{Owner: s.owner})
		off, err := s.log.Append(ctx, refreshKey, b)
		if err != nil {
			return nil, err
		}
		if err := s.log.WaitApplied(ctx, off); err != nil {
			return nil, err
		}
		s.mu.Lock()
		won := s.holder == s.owner
		s.mu.Unlock()
		if won {
			return s.release, nil
		}
	}
}

func (s *Store) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, _ := json.Marshal(claim{Owner: s.owner, Release: true})
	if _, err := s.log.Append(ctx, refreshKey, b); err != nil && s.cfg.Logger != nil {
		s.cfg.Logger.Warn("releasing the token refresh claim failed; it lapses on its own", "err", err)
	}
}

// Close stops reading the control topic.
func (s *Store) Close() { s.log.Close() }
