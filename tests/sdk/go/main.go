// Drives github.com/segmentio/analytics-go/v3 against the collector, for
// tests/integration/test_server_sdks.py.
//
//	sdk-go < spec.json
//
// spec.json is the SDK-neutral call list of tests/sdk/node/send.mjs; the SDK's own
// delivery report (its Callback) is printed as one JSON document on stdout:
// {"sdk": "go", "results": [{"messageId", "ok", "error"}], "errors": [...]}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"
)

type call struct {
	Type         string                 `json:"type"`
	MessageID    string                 `json:"messageId"`
	UserID       string                 `json:"userId"`
	AnonymousID  string                 `json:"anonymousId"`
	Timestamp    string                 `json:"timestamp"`
	Context      map[string]interface{} `json:"context"`
	Integrations map[string]interface{} `json:"integrations"`
	Traits       map[string]interface{} `json:"traits"`
	Event        string                 `json:"event"`
	Properties   map[string]interface{} `json:"properties"`
	Name         string                 `json:"name"`
	GroupID      string                 `json:"groupId"`
	PreviousID   string                 `json:"previousId"`
}

type spec struct {
	Host     string `json:"host"`
	WriteKey string `json:"writeKey"`
	Calls    []call `json:"calls"`
	// How long to wait for the SDK's verdicts before Close (which ends retries);
	// default 60 s. analytics-go retries even a 401, so an error test passes 0.
	WaitSeconds *float64 `json:"waitSeconds"`
}

type result struct {
	MessageID string  `json:"messageId"`
	OK        bool    `json:"ok"`
	Error     *string `json:"error"`
}

type report struct {
	SDK     string   `json:"sdk"`
	Results []result `json:"results"`
	Errors  []string `json:"errors"`
}

// callback records the SDK's per-message verdict.
type callback struct {
	mu      sync.Mutex
	results map[string]result
}

func (c *callback) set(m analytics.Message, err error) {
	id := messageID(m)
	r := result{MessageID: id, OK: err == nil}
	if err != nil {
		s := err.Error()
		r.Error = &s
	}
	c.mu.Lock()
	c.results[id] = r
	c.mu.Unlock()
}

func (c *callback) Success(m analytics.Message)            { c.set(m, nil) }
func (c *callback) Failure(m analytics.Message, err error) { c.set(m, err) }

func messageID(m analytics.Message) string {
	switch v := m.(type) {
	case analytics.Identify:
		return v.MessageId
	case analytics.Track:
		return v.MessageId
	case analytics.Page:
		return v.MessageId
	case analytics.Screen:
		return v.MessageId
	case analytics.Group:
		return v.MessageId
	case analytics.Alias:
		return v.MessageId
	}
	return ""
}

// logger keeps the SDK's log lines as reported errors.
type logger struct {
	mu     sync.Mutex
	errors []string
}

func (l *logger) Logf(format string, args ...interface{}) {}
func (l *logger) Errorf(format string, args ...interface{}) {
	l.mu.Lock()
	l.errors = append(l.errors, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// context maps the SDK-neutral context onto analytics.Context: the spec's typed
// fields where the SDK has them, everything else inlined through Extra.
func context(raw map[string]interface{}) *analytics.Context {
	if raw == nil {
		return nil
	}
	ctx := &analytics.Context{Extra: map[string]interface{}{}}
	for k, v := range raw {
		switch k {
		case "app":
			app, _ := v.(map[string]interface{})
			name, _ := app["name"].(string)
			version, _ := app["version"].(string)
			ctx.App = analytics.AppInfo{Name: name, Version: version}
		case "locale":
			ctx.Locale, _ = v.(string)
		case "traits":
			ctx.Traits, _ = v.(map[string]interface{})
		default:
			ctx.Extra[k] = v
		}
	}
	return ctx
}

func message(c call) (analytics.Message, error) {
	var ts time.Time
	if c.Timestamp != "" {
		var err error
		if ts, err = time.Parse(time.RFC3339Nano, c.Timestamp); err != nil {
			return nil, err
		}
	}
	ctx, integrations := context(c.Context), analytics.Integrations(c.Integrations)
	switch c.Type {
	case "identify":
		return analytics.Identify{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID,
			Timestamp: ts, Context: ctx, Integrations: integrations, Traits: c.Traits}, nil
	case "track":
		return analytics.Track{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID,
			Timestamp: ts, Context: ctx, Integrations: integrations, Event: c.Event,
			Properties: c.Properties}, nil
	case "page":
		return analytics.Page{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID,
			Timestamp: ts, Context: ctx, Integrations: integrations, Name: c.Name,
			Properties: c.Properties}, nil
	case "screen":
		return analytics.Screen{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID,
			Timestamp: ts, Context: ctx, Integrations: integrations, Name: c.Name,
			Properties: c.Properties}, nil
	case "group":
		return analytics.Group{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID,
			Timestamp: ts, Context: ctx, Integrations: integrations, GroupId: c.GroupID,
			Traits: c.Traits}, nil
	case "alias":
		return analytics.Alias{MessageId: c.MessageID, UserId: c.UserID, PreviousId: c.PreviousID,
			Timestamp: ts, Context: ctx, Integrations: integrations}, nil
	}
	return nil, fmt.Errorf("unknown call type %q", c.Type)
}

func main() {
	var s spec
	if err := json.NewDecoder(os.Stdin).Decode(&s); err != nil {
		fmt.Fprintln(os.Stderr, "reading spec:", err)
		os.Exit(2)
	}
	cb := &callback{results: map[string]result{}}
	log := &logger{}
	client, err := analytics.NewWithConfig(s.WriteKey, analytics.Config{
		Endpoint: s.Host,
		Interval: 200 * time.Millisecond,
		Callback: cb,
		Logger:   log,
		// Linear backoff: its 10 attempts span ~25 s, enough to ride out a collector's 503.
		RetryAfter: func(attempt int) time.Duration {
			return time.Duration(attempt+1) * 450 * time.Millisecond
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	out := report{SDK: "go", Results: []result{}, Errors: []string{}}
	for _, c := range s.Calls {
		m, err := message(c)
		if err == nil {
			err = client.Enqueue(m)
		}
		if err != nil {
			msg := err.Error()
			cb.mu.Lock()
			cb.results[c.MessageID] = result{MessageID: c.MessageID, OK: false, Error: &msg}
			cb.mu.Unlock()
		}
	}
	// Close abandons retries in flight, so first wait for the SDK's verdict on every
	// message (its Callback), as a server would before shutting down.
	wait := 60.0
	if s.WaitSeconds != nil {
		wait = *s.WaitSeconds
	}
	deadline := time.Now().Add(time.Duration(wait * float64(time.Second)))
	for time.Now().Before(deadline) {
		cb.mu.Lock()
		n := len(cb.results)
		cb.mu.Unlock()
		if n >= len(s.Calls) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := client.Close(); err != nil {
		log.Errorf("close: %s", err)
	}
	for _, c := range s.Calls {
		r, found := cb.results[c.MessageID]
		if !found {
			msg := "no callback from the SDK"
			r = result{MessageID: c.MessageID, OK: false, Error: &msg}
		}
		out.Results = append(out.Results, r)
	}
	out.Errors = append(out.Errors, log.errors...)
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
