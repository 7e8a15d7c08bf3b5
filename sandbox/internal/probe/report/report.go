// Package report holds what the sandbox tests' probe prints, as JSON, for
// the probe (which fills it in inside a sandbox) and the tests (which read
// it): one definition of that contract instead of a copy on each side.
package report

// Posture is what the sandbox looks like from inside.
type Posture struct {
	Status     map[string]string // selected /proc/self/status lines
	Namespaces map[string]string // name -> "type:[inode]"
	UIDMap     string
	GIDMap     string
	UID, GID   int
	Groups     []int
	FDs        []int
	Hostname   string
	Cwd        string
	Env        []string
	Pid        int
	Mounts     string
}

// Attempt is one escape attempt; Err is empty when it succeeded.
type Attempt struct {
	Name  string
	Err   string
	Errno int
}

// Net is what the network probe saw.
type Net struct {
	HostConnect string // error connecting to the host's listener ("" = connected)
	LoopbackOK  bool
	LoopbackErr string
	Interfaces  []string
}

// Flood is what the tcpflood probe queued on loopback connections it
// never read, and the host-wide TCP memory while they were held.
type Flood struct {
	Queued        int64 // bytes accepted by writes
	SockstatMem   int64 // /proc/net/sockstat "TCP: ... mem" (pages), sockets held
	Conns         int
	FirstWriteErr string
}
