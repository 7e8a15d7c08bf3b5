package scheduler

import "unicode/utf8"

// maxPauseReasonBytes bounds a pause reason as the scheduler keeps it
// (the other bounds on a Register are workerpb.CheckRegister's).
const maxPauseReasonBytes = 512

// pauseReason is a worker's pause reason as the scheduler keeps it: at
// most maxPauseReasonBytes (cut at a character boundary).
func pauseReason(why string) string {
	if len(why) <= maxPauseReasonBytes {
		return why
	}
	cut := maxPauseReasonBytes
	for cut > 0 && !utf8.RuneStart(why[cut]) {
		cut--
	}
	return why[:cut] + "…"
}
