package bench

import "testing"

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tpaddock\nVmPeak:\t  900000 kB\nVmHWM:\t   25544 kB\nVmRSS:\t   20000 kB\n"
	if got := parseVmHWM(status); got != 25544<<10 {
		t.Fatalf("parseVmHWM = %d, want %d", got, 25544<<10)
	}
	if got := parseVmHWM("Name:\tx\n"); got != 0 {
		t.Fatalf("without VmHWM: %d, want 0", got)
	}
}
