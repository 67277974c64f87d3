/* tuned.h — the results store of `tilec sweep`: timed points of kernels'
 * tune{} spaces, kept in a text file, and the fastest one for a kernel,
 * target and sizes (`tilec run/compile --tuned`, bench_gemm --tuned, and
 * later the inference-binary generator).
 *
 * One timed point per line, six fields separated by tabs:
 *     kernel  target  threads  fixed  point  median_ms
 * `fixed` is the values of the kernel's parameters the sweep did not vary
 * (sizes, say) and `point` the tune values it chose, each as NAME=VALUE pairs joined by
 * commas, sorted by name ("-" when empty); lines starting with '#' are
 * comments.  Records are only ever added: the file is rewritten whole into
 * a temporary one renamed over it, and a store that does not parse is
 * refused before anything is written. */
#ifndef TILEC_RUNTIME_TUNED_H
#define TILEC_RUNTIME_TUNED_H

#include "ir/ir.h"

enum { RT_TUNED_LINE = 4096 }; /* the longest line a store holds */

typedef struct RtSetting {
    const char *name, *value;
} RtSetting;

/* "NAME=VALUE,..." of the n settings sorted by name ("-" when n is 0), or
 * false when a name or value holds a tab, a comma, an '=' or a newline or
 * the result does not fit cap. */
bool rt_tuned_join(const RtSetting *s, int n, char *out, size_t cap);

/* The pairs of a joined list ("NAME=VALUE,...", or "-" for none), split
 * in place into at most cap settings; the count, or -1 when an item has
 * no '=' or there are more than cap. */
int rt_tuned_split(char *joined, RtSetting *out, int cap);

/* ms as a record holds it (6 significant digits): what a sweep compares
 * its points by, so that the best it reports is the one rt_tuned_best
 * finds (two points a nanosecond apart or less once tied in the store,
 * which kept the first, against the sweep's pick of the second). */
double rt_tuned_ms(double ms);

/* One record: the line "kernel target threads fixed point ms". */
bool rt_tuned_line(const char *kernel, const char *target, int threads, const char *fixed, const char *point,
                   double ms, char *out, size_t cap);

/* Whether rt_tuned_append could add to the store at path: it parses (or
 * is missing) and a file can be made beside it; false with d set.  A
 * sweep asks before its first point, not after its last. */
bool rt_tuned_check(const char *path, Diag *d);

/* Adds `lines` (whole records, each ending in '\n') to the store at path,
 * creating it; false with d set, the store as it was, when it does not
 * parse or cannot be written. */
bool rt_tuned_append(const char *path, const char *lines, Diag *d);

/* The fastest record of kernel on target whose every fixed value is among
 * the n settings: its point into out (cap bytes) and its time into *ms;
 * *ms is infinite when there is none.  False with d set when the store is
 * missing or a line of it does not parse (naming the file and line). */
bool rt_tuned_best(const char *path, const char *kernel, const char *target, const RtSetting *s, int n,
                   char *out, size_t cap, double *ms, Diag *d);

#endif
