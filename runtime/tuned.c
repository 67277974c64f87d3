/* tuned.c — see tuned.h. */
#include "runtime/tuned.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_SETTINGS = 128 };

static bool plain(const char *s) { return *s && !strpbrk(s, "\t\n,="); }

bool rt_tuned_join(const RtSetting *s, int n, char *out, size_t cap)
{
    int order[MAX_SETTINGS];
    if (n > MAX_SETTINGS)
        return false;
    for (int i = 0; i < n; i++) {
        if (!plain(s[i].name) || !plain(s[i].value))
            return false;
        int j = i;
        for (; j > 0 && strcmp(s[order[j - 1]].name, s[i].name) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    size_t used = (size_t)snprintf(out, cap, "%s", n ? "" : "-");
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s=%s", i ? "," : "", s[order[i]].name,
                                 s[order[i]].value);
    return used < cap;
}

int rt_tuned_split(char *joined, RtSetting *out, int cap)
{
    if (!strcmp(joined, "-"))
        return 0;
    int n = 0;
    for (char *p = joined; p; n++) {
        char *end = strchr(p, ','), *eq = strchr(p, '=');
        if (end)
            *end = 0;
        if (!eq || n == cap)
            return -1;
        *eq = 0;
        out[n] = (RtSetting){p, eq + 1};
        p = end ? end + 1 : NULL;
    }
    return n;
}

#define RECORD_MS "%.6g"

double rt_tuned_ms(double ms)
{
    char buf[64];
    snprintf(buf, sizeof buf, RECORD_MS, ms);
    return strtod(buf, NULL);
}

bool rt_tuned_line(const char *kernel, const char *target, int threads, const char *fixed, const char *point,
                   double ms, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s\t%s\t%d\t%s\t%s\t" RECORD_MS "\n", kernel, target, threads, fixed, point, ms);
    return n > 0 && (size_t)n < cap && !strpbrk(kernel, "\t\n") && !strpbrk(target, "\t\n");
}

typedef struct Record {
    char *kernel, *target, *fixed, *point;
    double ms;
} Record;

/* Splits one line of the store in place; false if it is not a record. */
static bool parse_record(char *line, Record *r)
{
    char *f[7];
    int n = 0;
    for (char *p = line; p && n < 7; n++) {
        f[n] = p;
        if ((p = strchr(p, '\t')))
            *p++ = 0;
    }
    if (n != 6)
        return false;
    char *end;
    long threads = strtol(f[2], &end, 10);
    if (*end || end == f[2] || threads < 0)
        return false;
    double ms = strtod(f[5], &end);
    if (*end || end == f[5] || !isfinite(ms) || ms < 0 || !*f[0] || !*f[1] || !*f[3] || !*f[4])
        return false;
    *r = (Record){f[0], f[1], f[3], f[4], ms};
    return true;
}

/* Calls fn (unless NULL) on each record of the store at path (a missing
 * file has none when missing_ok); false with d set at the first line that
 * is not a record. */
static bool read_store(const char *path, bool missing_ok, void (*fn)(const Record *, void *), void *ctx, Diag *d)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && missing_ok)
            return true;
        return diag_error(d, (SrcLoc){path, 0}, "cannot read the results store: %s", strerror(errno));
    }
    char line[RT_TUNED_LINE];
    bool ok = true;
    for (int no = 1; ok && fgets(line, sizeof line, f); no++) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        else if (!feof(f)) {
            ok = diag_error(d, (SrcLoc){path, no}, "line longer than %d bytes in the results store", RT_TUNED_LINE);
            break;
        }
        if (!len || line[0] == '#')
            continue;
        Record r;
        if (!parse_record(line, &r))
            ok = diag_error(d, (SrcLoc){path, no},
                            "not a results record (want kernel, target, threads, fixed, point, "
                            "median_ms, separated by tabs)");
        else if (fn)
            fn(&r, ctx);
    }
    fclose(f);
    return ok;
}

/* The temporary file rt_tuned_append writes before renaming it to path. */
static void temp_path(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s.tmp.%ld", path, (long)getpid());
}

bool rt_tuned_check(const char *path, Diag *d)
{
    if (!read_store(path, true, NULL, NULL, d))
        return false;
    char tmp[4096];
    temp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return diag_error(d, (SrcLoc){path, 0}, "cannot write the results store: %s", strerror(errno));
    fclose(f);
    remove(tmp);
    return true;
}

bool rt_tuned_append(const char *path, const char *lines, Diag *d)
{
    if (!read_store(path, true, NULL, NULL, d))
        return false;
    char tmp[4096];
    temp_path(path, tmp, sizeof tmp);
    FILE *in = fopen(path, "r"), *out = fopen(tmp, "w");
    if (!out) {
        if (in)
            fclose(in);
        return diag_error(d, (SrcLoc){path, 0}, "cannot write the results store: %s", strerror(errno));
    }
    bool ok = true;
    if (in) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            ok &= fwrite(buf, 1, n, out) == n;
        fclose(in);
    } else {
        ok &= fputs("# tilec sweep results: kernel, target, threads, fixed, point, median_ms (tab-separated)\n",
                    out) >= 0;
    }
    ok &= fputs(lines, out) >= 0;
    ok &= fclose(out) == 0;
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        return diag_error(d, (SrcLoc){path, 0}, "cannot write the results store: %s", strerror(errno));
    }
    return true;
}

typedef struct Lookup {
    const char *kernel, *target;
    const RtSetting *s;
    int n;
    char *out;
    size_t cap;
    double ms;
} Lookup;

/* Whether every NAME=VALUE of `fixed` is among the lookup's settings. */
static bool fixed_matches(const Lookup *l, const char *fixed)
{
    char buf[RT_TUNED_LINE];
    RtSetting want[MAX_SETTINGS];
    snprintf(buf, sizeof buf, "%s", fixed);
    int n = rt_tuned_split(buf, want, MAX_SETTINGS);
    if (n < 0)
        return false;
    for (int w = 0; w < n; w++) {
        bool found = false;
        for (int i = 0; i < l->n && !found; i++)
            found = !strcmp(l->s[i].name, want[w].name) && !strcmp(l->s[i].value, want[w].value);
        if (!found)
            return false;
    }
    return true;
}

static void consider(const Record *r, void *ctx)
{
    Lookup *l = ctx;
    if (!strcmp(r->kernel, l->kernel) && !strcmp(r->target, l->target) && r->ms < l->ms && fixed_matches(l, r->fixed) &&
        strlen(r->point) < l->cap) {
        l->ms = r->ms;
        strcpy(l->out, r->point);
    }
}

bool rt_tuned_best(const char *path, const char *kernel, const char *target, const RtSetting *s, int n,
                   char *out, size_t cap, double *ms, Diag *d)
{
    Lookup l = {kernel, target, s, n, out, cap, INFINITY};
    if (cap)
        out[0] = 0;
    bool ok = read_store(path, false, consider, &l, d);
    *ms = l.ms;
    return ok;
}
