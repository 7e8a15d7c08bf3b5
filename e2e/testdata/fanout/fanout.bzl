"""Macros that generate the genrules of the fan-out benchmark (see BUILD).

The e2e test (e2e/bazel_fanout_test.go) computes every output again from
the sources, so a change here must be made there too.
"""

def fan_out(name, srcs, count):
    """Declares count genrules NAME_0 … NAME_<count-1>, each reading one source.

    Leaf i reads srcs[i % len(srcs)] and writes NAME/i.txt, one line:
    "leaf I HASH WORDS", where HASH is the first 16 hex digits of the SHA-256
    of the upper-cased source followed by the line "I", and WORDS is the
    source's word count.

    Returns:
      The leaves' labels.
    """
    leaves = []
    for i in range(count):
        native.genrule(
            name = "%s_%d" % (name, i),
            srcs = [srcs[i % len(srcs)]],
            outs = ["%s/%d.txt" % (name, i)],
            cmd = "echo \"leaf %d $$({ cat $<; echo %d; } | tr a-z A-Z | sha256sum | cut -c1-16) $$(wc -w < $<)\" > $@" % (i, i),
        )
        leaves.append(":%s_%d" % (name, i))
    return leaves

def fan_in(name, srcs, groups):
    """Declares groups genrules NAME_0 … that aggregate srcs in equal slices.

    Group j aggregates srcs[j*k:(j+1)*k], k = len(srcs) / groups, into
    NAME/j.txt: the lines of its inputs sorted (bytewise), then one line
    "NAME J LINES HASH", where LINES is how many lines its inputs have and
    HASH the first 16 hex digits of the SHA-256 of the sorted lines.

    Returns:
      The aggregates' labels.
    """
    if len(srcs) % groups != 0:
        fail("%d sources do not split into %d equal groups" % (len(srcs), groups))
    k = len(srcs) // groups
    out = []
    for j in range(groups):
        native.genrule(
            name = "%s_%d" % (name, j),
            srcs = srcs[j * k:(j + 1) * k],
            outs = ["%s/%d.txt" % (name, j)],
            cmd = "{ LC_ALL=C sort $(SRCS); echo \"%s %d $$(cat $(SRCS) | wc -l) $$(LC_ALL=C sort $(SRCS) | sha256sum | cut -c1-16)\"; } > $@" % (name, j),
        )
        out.append(":%s_%d" % (name, j))
    return out
