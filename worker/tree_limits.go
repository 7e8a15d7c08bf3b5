package worker

// treeLimits is what InputLimits and OutputLimits both are: bounds on a
// tree of files' depth, entries and bytes. They convert to it (same
// fields), so the rule they share, that a zero or negative bound takes its
// default, is written once here and cannot drift between the two.
type treeLimits struct {
	MaxDepth int
	MaxFiles int64
	MaxBytes int64
}

// withDefaults fills each bound of l that is not positive from def.
func (l treeLimits) withDefaults(def treeLimits) treeLimits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = def.MaxDepth
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = def.MaxFiles
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = def.MaxBytes
	}
	return l
}
