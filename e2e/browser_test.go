package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/metadata"
)

// TestStatusPageInBrowser opens `paddock up`'s status page in headless
// Chromium (Debian's chromium package) after real actions ran: the queue,
// worker and operation rows are there, an action's page shows its command
// and stdout (escaped: the action prints a <script> that must not run), and
// the page logs no console errors. Then it drains the worker with the
// Drain button of its row, sees it draining, undrains it with the Undrain
// button, sees it back, and the farm runs an action again. It does so on
// the loopback page of a plain `paddock up`, and with an auth policy,
// where the browser is sent to the login page first and signs in with an
// admin's token. A screenshot of each page is kept in a temporary
// directory named in the test's log.
func TestStatusPageInBrowser(t *testing.T) {
	needPaddock(t)
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no chromium to drive (Debian: apt-get install chromium; make test installs it when run as root)")
	}
	t.Run("loopback", func(t *testing.T) { statusPageInBrowser(t, browser, nil) })
	t.Run("policy", func(t *testing.T) { statusPageInBrowser(t, browser, newBrowserPolicy(t)) })
}

// browserPolicy is an auth policy for the browser test: one tenant owning
// every instance name, with a client token (to run actions) and an admin
// token (to sign in to the page).
type browserPolicy struct {
	file, client, admin string
}

func newBrowserPolicy(t *testing.T) *browserPolicy {
	t.Helper()
	p := &browserPolicy{file: filepath.Join(t.TempDir(), "auth.yaml"), client: rand.Text(), admin: rand.Text()}
	h := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	policy := fmt.Sprintf(`tenants:
  - name: everyone
    instance_prefixes: [""]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
      - {name: on-call, token_sha256: %s, permissions: [admin]}
`, h(p.client), h(p.admin))
	if err := os.WriteFile(p.file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func statusPageInBrowser(t *testing.T, browser string, policy *browserPolicy) {
	var extra []string
	ctx := t.Context()
	if policy != nil {
		extra = append(extra, "--auth", policy.file)
		// The client's token, over plaintext on loopback (the client
		// helper dials without TLS, which a policy on loopback allows).
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+policy.client)
	}
	f, httpAddr := startUpHTTP(t, extra...)
	c := newClient(t, f.addr)
	script := `echo "hello from the browser test"; echo "<script>document.title='pwned'</script>"`
	root := tree{files: map[string]inputFile{"inputs/greeting.txt": {data: []byte("hi\n")}}}
	d := c.prepare(ctx, action{cmd: shell(script), root: root, doNotCache: true})
	if resp, err := c.execute(ctx, d, true); err != nil || resp.Result.GetExitCode() != 0 {
		t.Fatalf("Execute: %v %v", resp, err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Flag("headless", true))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	// Subscribe before the first page loads, so that no message is lost.
	messages := chromedp.Console(bctx)
	var mu sync.Mutex
	var consoleErrors []string
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				consoleErrors = append(consoleErrors, m.String())
				mu.Unlock()
			}
		}
	}()

	shots, err := os.MkdirTemp("", "paddock-status-page-")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpAddr
	run := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, a); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(a chromedp.Action[[]byte]) []byte {
		t.Helper()
		b, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		return b
	}

	run("open the overview", chromedp.Navigate(base+"/"))
	shots1 := map[string][]byte{}
	if policy != nil {
		// Not signed in: the login page, which then returns to /.
		run("wait for the login form", chromedp.WaitVisible(`#token`))
		shots1["login.png"] = shot(chromedp.FullScreenshot(100))
		run("type the admin's token", chromedp.SendKeys(`#token`, policy.admin))
		run("sign in", chromedp.Click(`#sign-in`))
		run("wait for the signed-in overview", chromedp.WaitVisible(`#user`))
		if u := text(`#user`); u != "everyone/on-call" {
			t.Errorf("signed in as %q, want everyone/on-call", u)
		}
	}
	for _, sel := range []string{`#queues`, `#workers tr.worker`, `#operations tr.operation`} {
		run("wait for "+sel, chromedp.WaitVisible(sel))
	}
	// The one action has completed, and a queue lives only while it holds
	// live actions: the table says so.
	if q := text(`#queues`); !strings.Contains(q, "no actions queued or running") {
		t.Errorf("the queues table, with nothing queued or running:\n%s", q)
	}
	rows := text(`#operations`)
	if !strings.Contains(rows, "hello from the browser test") || !strings.Contains(rows, "local") {
		t.Errorf("the operation row does not show the action's arguments and worker:\n%s", rows)
	}
	if w := text(`#workers`); !strings.Contains(w, "local") {
		t.Errorf("the worker row does not name the worker:\n%s", w)
	}
	href, err := chromedp.Run(bctx, chromedp.AttributeValue(`#operations tr.operation a`, "href"))
	if err != nil || !href.Exists {
		t.Fatalf("no link to the action page: %v", err)
	}
	shots1["overview.png"] = shot(chromedp.FullScreenshot(100))
	shots1["queues.png"] = shot(chromedp.Screenshot(`#queues`))
	shots1["workers.png"] = shot(chromedp.Screenshot(`#workers`))
	shots1["operations.png"] = shot(chromedp.Screenshot(`#operations`))

	run("open the action page", chromedp.Navigate(base+href.Value))
	run("wait for stdout", chromedp.WaitVisible(`#stdout pre`))
	args, stdout := text(`#arguments`), text(`#stdout pre`)
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(args, "hello from the browser test") {
		t.Errorf("the action page's command is %q, want the action's script", args)
	}
	if !strings.Contains(stdout, "hello from the browser test") || !strings.Contains(stdout, "<script>document.title='pwned'</script>") {
		t.Errorf("the action page's stdout is %q, want what the action printed, as text", stdout)
	}
	if title == "pwned" {
		t.Errorf("the <script> the action printed ran in the page")
	}
	shots1["action.png"] = shot(chromedp.FullScreenshot(100))

	// The input tree, one click away.
	run("open the input root", chromedp.Click(`#input-root`))
	run("wait for the tree", chromedp.WaitVisible(`#tree`))
	if got := text(`#tree`); !strings.Contains(got, "inputs/") {
		t.Errorf("the input root lists %q, want the directory inputs/", got)
	}
	run("open inputs/", chromedp.Click(`#tree a`))
	waitFor(t, "inputs/ listing greeting.txt", faultLimit, func() bool {
		got, err := chromedp.Run(bctx, chromedp.Text(`#tree`))
		return err == nil && strings.Contains(got, "greeting.txt")
	})
	shots1["tree.png"] = shot(chromedp.FullScreenshot(100))

	// Drain the worker from its row, see it draining, undrain it, see it
	// back; the farm then runs actions again.
	state := func() string {
		s, err := chromedp.Run(bctx, chromedp.Text(`#workers tr.worker td.state`))
		if err != nil {
			return ""
		}
		return s
	}
	run("back to the overview", chromedp.Navigate(base+"/"))
	run("click Drain", chromedp.Click(`#workers tr.worker button.drain`))
	waitFor(t, "the worker row to say draining", faultLimit, func() bool { return state() == "draining" })
	run("wait for the Undrain button", chromedp.WaitVisible(`#workers tr.worker button.undrain`))
	shots1["drained.png"] = shot(chromedp.Screenshot(`#workers`))
	run("click Undrain", chromedp.Click(`#workers tr.worker button.undrain`))
	waitFor(t, "the worker row to say idle", faultLimit, func() bool { return state() == "idle" })
	run("wait for the Drain button", chromedp.WaitVisible(`#workers tr.worker button.drain`))
	shots1["undrained.png"] = shot(chromedp.Screenshot(`#workers`))
	again := c.prepare(ctx, action{cmd: shell("echo after the undrain"), doNotCache: true})
	if resp, err := c.execute(ctx, again, true); err != nil || resp.Result.GetExitCode() != 0 {
		t.Fatalf("Execute after the undrain: %v %v", resp, err)
	}
	for name, b := range shots1 {
		if err := os.WriteFile(filepath.Join(shots, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots of the status page in %s", shots)
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Errorf("the status page logged errors in the browser:\n%s", strings.Join(consoleErrors, "\n"))
	}
	f.shutdown()
}
