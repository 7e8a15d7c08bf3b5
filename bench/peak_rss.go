package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// peakRSS returns pid's peak resident memory in bytes (VmHWM in
// /proc/PID/status), or 0 if it cannot be read.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseVmHWM(string(data))
}

// parseVmHWM reads the "VmHWM:   123 kB" line of a /proc/PID/status text.
func parseVmHWM(status string) int64 {
	for line := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
