/* sweep.c — `tilec sweep`: a kernel compiled and timed at every point of
 * its tune{} space, and the results store `tilec run/compile --tuned` read.
 *
 * The store is a text file, one timed point per line, six fields separated
 * by tabs:
 *     kernel  target  threads  fixed  point  median_ms
 * `fixed` is the sweep's --set values and `point` the tune values it chose,
 * each as NAME=VALUE pairs joined by commas, sorted by name ("-" when
 * empty); lines starting with '#' are comments.  A lookup takes, among the
 * lines of the kernel and target whose every fixed value the caller sets
 * alike, the fastest.  Records are only ever added: the store is rewritten
 * whole into a temporary file renamed over it, and a store that does not
 * parse is refused before anything is written. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_POINTS = 512, MAX_AXES = 16, MAX_VALUES = 64, LINE_MAX_LEN = 4096 };

/* One tune parameter of the sweep and the values it takes. */
typedef struct Axis {
    const char *name;
    const char *values[MAX_VALUES];
    int n;
} Axis;

static bool is_set(const Opts *o, const char *name)
{
    for (int i = 0; i < o->nsets; i++)
        if (!strcmp(o->sets[i].name, name))
            return true;
    return false;
}

/* A tune{} parameter (a size is a KP_TUNE without candidates: not one). */
static const KParam *tune_param(const Kernel *k, const char *name)
{
    for (int i = 0; i < k->nkparams; i++)
        if (k->kparams[i].kind == KP_TUNE && k->kparams[i].ncands && !strcmp(k->kparams[i].name, name))
            return &k->kparams[i];
    return NULL;
}

static bool is_candidate(const KParam *kp, const char *v)
{
    for (int i = 0; i < kp->ncands; i++)
        if (!strcmp(kp->cands[i], v))
            return true;
    return false;
}

static bool not_candidate(const KParam *kp, const char *v, SrcLoc loc, Diag *d)
{
    char list[1024];
    size_t used = 0;
    for (int i = 0; i < kp->ncands && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", kp->cands[i]);
    return diag_error(d, loc, "--over %s=%s: not one of its tune{} values {%s}", kp->name, v, list);
}

/* The axes: every tune parameter of k that o does not --set, over its
 * candidates or its --over list (split in place in `lists`, which must
 * outlive the axes). */
static bool make_axes(const Kernel *k, const Opts *o, char **lists, Axis *axes, int *naxes, Diag *d)
{
    SrcLoc none = {o->spec, 0};
    for (int i = 0; i < o->novers; i++) {
        const char *name = o->overs[i].name;
        if (!tune_param(k, name))
            return diag_error(d, none, "--over %s: kernel %s has no tune parameter %s", name, k->name, name);
        if (is_set(o, name))
            return diag_error(d, none, "--over %s: %s is also fixed with --set", name, name);
    }
    *naxes = 0;
    for (int i = 0; i < k->nkparams; i++) {
        const KParam *kp = &k->kparams[i];
        if (!tune_param(k, kp->name) || is_set(o, kp->name))
            continue;
        if (*naxes == MAX_AXES)
            return diag_error(d, none, "kernel %s has more than %d tune parameters to sweep", k->name, MAX_AXES);
        Axis *a = &axes[(*naxes)++];
        a->name = kp->name;
        a->n = 0;
        for (int j = 0; j < o->novers; j++)
            if (!strcmp(o->overs[j].name, kp->name)) {
                lists[j] = strdup(o->overs[j].value);
                for (char *v = strtok(lists[j], ","); v; v = strtok(NULL, ","))
                    if (!is_candidate(kp, v))
                        return not_candidate(kp, v, none, d);
                    else if (a->n < MAX_VALUES)
                        a->values[a->n++] = v;
            }
        bool over = a->n > 0;
        for (int j = 0; !over && j < kp->ncands && j < MAX_VALUES; j++)
            a->values[a->n++] = kp->cands[j];
        if (!a->n)
            return diag_error(d, none, "--over %s: no values", kp->name);
    }
    return true;
}

/* ------------------------------------------------------------ running */

/* A point loaded and run: its kernel (for the outputs' dtypes) and
 * arguments after the runs. */
typedef struct Ran {
    Kernel *k;
    Bindings *bd;
} Ran;

static void ran_free(Ran *r)
{
    if (r->bd) {
        bindings_free(r->bd, r->k->nargs);
        free(r->bd);
    }
    ir_kernel_free(r->k);
    *r = (Ran){0};
}

static bool load_point(const Opts *o, const FeSet *sets, int nsets, Ran *r, Diag *d)
{
    r->k = fe_load(o->spec, sets, nsets, d);
    if (!r->k)
        return false;
    if (r->k->nargs > 64 || r->k->nparams > 64)
        return diag_error(d, (SrcLoc){o->spec, 0}, "kernel %s is too large for tilec (64 arguments at most)",
                          r->k->name);
    r->bd = calloc(1, sizeof *r->bd);
    return setup_args(r->k, o, r->bd, d);
}

/* Whether every output of `got` lies within the check's tolerance of
 * `ref`'s; the first that does not is described in `why`. */
static bool same_outputs(const Ran *ref, const Ran *got, char *why, size_t n)
{
    for (int i = 0; i < got->k->nargs; i++) {
        const Buffer *b = got->k->bufs[i];
        if (b->dir == ARG_IN)
            continue;
        if (i >= ref->k->nargs || ref->k->bufs[i]->dtype != b->dtype ||
            rt_tensor_numel(ref->bd->t[i]) != rt_tensor_numel(got->bd->t[i])) {
            snprintf(why, n, "output %s is not the first point's shape", b->name);
            return false;
        }
        OutputDiff od = output_diff(b->dtype, ref->bd->t[i], got->bd->t[i]);
        if (!(od.maxabs <= od.tol)) {
            snprintf(why, n, "output %s differs from the first point's by %.3g (tolerance %.3g)", b->name,
                     od.maxabs, od.tol);
            return false;
        }
    }
    return true;
}

/* --check: the point's compiled code once against the interpreter on the
 * Tile IR, each on fresh inputs, as `tilec run --check` does. */
static bool check_point(const Opts *o, const TargetInfo *t, const FeSet *sets, int nsets, Diag *d)
{
    Opts once = *o;
    once.repeat = 1;
    Ran ref = {0}, got = {0};
    double sec;
    bool ok = load_point(&once, sets, nsets, &ref, d) && execute(ref.k, true, t, &once, ref.bd, &sec, d) &&
              load_point(&once, sets, nsets, &got, d) && execute(got.k, false, t, &once, got.bd, &sec, d);
    char why[256];
    if (ok && !same_outputs(&ref, &got, why, sizeof why)) {
        printf("(--check: %s, against the interpreter) ", why);
        ok = false;
    }
    ran_free(&ref);
    ran_free(&got);
    return ok;
}

/* ------------------------------------------------------------ the store */

/* "NAME=VALUE,..." of sets, sorted by name; "-" when there are none. */
static void join_sets(const FeSet *sets, int n, char *out, size_t cap)
{
    int order[MAX_OPTS + MAX_AXES];
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && strcmp(sets[order[j - 1]].name, sets[i].name) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s=%s", i ? "," : "", sets[order[i]].name,
                                 sets[order[i]].value);
    if (!n)
        snprintf(out, cap, "-");
}

/* A value the store can hold: no separator of its own format in it. */
static bool storable(const FeSet *sets, int n)
{
    for (int i = 0; i < n; i++)
        if (strpbrk(sets[i].name, "\t\n,=") || strpbrk(sets[i].value, "\t\n,=") || !*sets[i].value)
            return false;
    return true;
}

typedef struct Record {
    char *kernel, *target, *fixed, *point;
    int threads;
    double ms;
} Record;

/* Splits one line of the store in place; false if it is not a record. */
static bool parse_record(char *line, Record *r)
{
    char *f[6];
    int n = 0;
    for (char *p = line; n < 6; n++) {
        f[n] = p;
        p = strchr(p, '\t');
        if (!p) {
            n++;
            break;
        }
        *p++ = 0;
    }
    if (n != 6 || strchr(f[5], '\t'))
        return false;
    char *end;
    long threads = strtol(f[2], &end, 10);
    if (*end || end == f[2] || threads < 0)
        return false;
    double ms = strtod(f[5], &end);
    if (*end || end == f[5] || !isfinite(ms) || ms < 0 || !*f[0] || !*f[1] || !*f[3] || !*f[4])
        return false;
    *r = (Record){f[0], f[1], f[3], f[4], (int)threads, ms};
    return true;
}

/* Calls fn on each record of the store at path (a missing file has none);
 * false with d set at the first line that is not a record. */
static bool read_store(const char *path, bool missing_ok, bool (*fn)(const Record *, void *), void *ctx, Diag *d)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && missing_ok)
            return true;
        return diag_error(d, (SrcLoc){path, 0}, "cannot read the results store: %s", strerror(errno));
    }
    char line[LINE_MAX_LEN];
    bool ok = true;
    for (int no = 1; ok && fgets(line, sizeof line, f); no++) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        else if (!feof(f)) {
            ok = diag_error(d, (SrcLoc){path, no}, "line longer than %d bytes in the results store", LINE_MAX_LEN);
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
            ok = fn(&r, ctx);
    }
    fclose(f);
    return ok;
}

/* The store at path with `add` appended, written to a temporary file and
 * renamed over it: a failure leaves the old store as it was. */
static bool append_store(const char *path, const char *add, Diag *d)
{
    if (!read_store(path, true, NULL, NULL, d))
        return false;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
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
        fputs("# tilec sweep results: kernel, target, threads, fixed, point, median_ms (tab-separated)\n", out);
    }
    ok &= fputs(add, out) >= 0;
    ok &= fclose(out) == 0;
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        return diag_error(d, (SrcLoc){path, 0}, "cannot write the results store: %s", strerror(errno));
    }
    return true;
}

/* ------------------------------------------------------------ the sweep */

static void print_header(const Axis *axes, int naxes, const int *width)
{
    for (int i = 0; i < naxes; i++)
        printf("%*s ", width[i], axes[i].name);
    printf("%12s\n", "median_ms");
}

int cmd_sweep(const Opts *o)
{
    Diag d = {0};
    const TargetInfo *t = target_of(o, &d);
    if (!t)
        return fail(&d);
    if (!t->gpu_sm && !ir_target_runs_here(t)) {
        diag_error(&d, (SrcLoc){0}, "this CPU cannot run target %s", t->name);
        return fail(&d);
    }
    if (!storable(o->sets, o->nsets) && o->store) {
        diag_error(&d, (SrcLoc){o->spec, 0}, "--store: a --set value holds a tab, comma or '='");
        return fail(&d);
    }
    Kernel *k0 = fe_load(o->spec, o->sets, o->nsets, &d);
    if (!k0)
        return fail(&d);
    Axis axes[MAX_AXES];
    char *lists[MAX_OPTS] = {0};
    int naxes = 0, rc = 1;
    long npoints = 1;
    Ran first = {0};
    char *records = NULL;
    size_t rlen = 0;
    if (!make_axes(k0, o, lists, axes, &naxes, &d))
        goto out;
    for (int i = 0; i < naxes; i++)
        npoints = npoints * axes[i].n > MAX_POINTS ? MAX_POINTS + 1 : npoints * axes[i].n;
    if (npoints > MAX_POINTS) {
        diag_error(&d, (SrcLoc){o->spec, 0}, "kernel %s's tune space has more than %d points", k0->name, MAX_POINTS);
        diag_hint(&d, "fix some parameters with --set NAME=VALUE, or narrow them with --over NAME=V1,V2");
        goto out;
    }
    Opts run = *o;
    if (run.repeat == 1)
        run.repeat = 5;
    int width[MAX_AXES];
    for (int i = 0; i < naxes; i++) {
        width[i] = (int)strlen(axes[i].name);
        for (int j = 0; j < axes[i].n; j++)
            width[i] = width[i] > (int)strlen(axes[i].values[j]) ? width[i] : (int)strlen(axes[i].values[j]);
    }
    printf("sweep %s on %s, %d thread(s): %ld point(s), median of %d runs each; outputs compared with the "
           "first point's%s\n",
           k0->name, t->name, o->threads ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN), npoints, run.repeat,
           o->check ? ", the first's with the interpreter's" : "");
    print_header(axes, naxes, width);
    fflush(stdout);

    int idx[MAX_AXES] = {0}, best = -1, timed = 0, wrong = 0;
    double best_ms = INFINITY;
    char best_point[LINE_MAX_LEN] = "", fixed[LINE_MAX_LEN];
    join_sets(o->sets, o->nsets, fixed, sizeof fixed);
    for (long p = 0; p < npoints; p++) {
        FeSet sets[MAX_OPTS + MAX_AXES];
        int nsets = o->nsets;
        memcpy(sets, o->sets, sizeof(FeSet) * (size_t)o->nsets);
        for (int i = 0; i < naxes; i++) {
            sets[nsets++] = (FeSet){axes[i].name, axes[i].values[idx[i]]};
            printf("%*s ", width[i], axes[i].values[idx[i]]);
        }
        fflush(stdout);
        Diag pd = {0};
        Ran r = {0};
        double sec = 0;
        bool checked = !o->check || timed || check_point(o, t, sets, nsets, &pd);
        bool ok = checked && load_point(&run, sets, nsets, &r, &pd) && execute(r.k, false, t, &run, r.bd, &sec, &pd);
        char why[256];
        if (!ok) {
            printf("%12s  (%s%s)\n", "-", checked ? "" : "--check failed", pd.set ? pd.msg : "");
            wrong += !checked;
        } else if (timed && !same_outputs(&first, &r, why, sizeof why)) {
            printf("%12.3f  WRONG: %s\n", sec * 1e3, why);
            wrong++;
        } else {
            printf("%12.3f\n", sec * 1e3);
            char point[LINE_MAX_LEN], line[3 * LINE_MAX_LEN];
            join_sets(sets + o->nsets, nsets - o->nsets, point, sizeof point);
            if (sec * 1e3 < best_ms) {
                best_ms = sec * 1e3;
                best = (int)p;
                snprintf(best_point, sizeof best_point, "%s", point);
            }
            int n = snprintf(line, sizeof line, "%s\t%s\t%d\t%s\t%s\t%.6g\n", k0->name, t->name, o->threads, fixed,
                             point, sec * 1e3);
            if (storable(sets, nsets)) {
                records = realloc(records, rlen + (size_t)n + 1);
                memcpy(records + rlen, line, (size_t)n + 1);
                rlen += (size_t)n;
            }
            if (!timed++)
                first = r, r = (Ran){0};
        }
        fflush(stdout);
        ran_free(&r);
        for (int i = naxes - 1; i >= 0 && ++idx[i] == axes[i].n; i--)
            idx[i] = 0;
    }
    if (best >= 0) {
        printf("best: %s", best_point[0] == '-' ? "(no tune parameter left to choose)" : "");
        for (char *s = best_point[0] == '-' ? NULL : best_point; s && *s;) {
            char *comma = strchr(s, ',');
            printf("--set %.*s ", comma ? (int)(comma - s) : (int)strlen(s), s);
            s = comma ? comma + 1 : NULL;
        }
        printf("(%.3f ms)\n", best_ms);
    }
    if (!timed) {
        diag_error(&d, (SrcLoc){o->spec, 0}, "no point of kernel %s's sweep compiled and ran", k0->name);
        goto out;
    }
    if (wrong) {
        diag_error(&d, (SrcLoc){o->spec, 0}, "%d point(s) of kernel %s gave other outputs than the first", wrong,
                   k0->name);
        goto out;
    }
    if (o->store && records && !append_store(o->store, records, &d))
        goto out;
    if (o->store)
        printf("stored %d point(s) in %s\n", timed, o->store);
    rc = 0;
out:
    if (d.set)
        fail(&d);
    for (int i = 0; i < MAX_OPTS; i++)
        free(lists[i]);
    free(records);
    ran_free(&first);
    ir_kernel_free(k0);
    return rc;
}

/* ------------------------------------------------------------ --tuned */

typedef struct Lookup {
    const Opts *o;
    const char *kernel, *target;
    char point[LINE_MAX_LEN];
    double ms;
} Lookup;

/* Whether every NAME=VALUE of `fixed` is among o's --set values. */
static bool fixed_matches(const Opts *o, const char *fixed)
{
    if (!strcmp(fixed, "-"))
        return true;
    char buf[LINE_MAX_LEN];
    snprintf(buf, sizeof buf, "%s", fixed);
    char *save = NULL;
    for (char *pair = strtok_r(buf, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq)
            return false;
        *eq = 0;
        bool found = false;
        for (int i = 0; i < o->nsets && !found; i++)
            found = !strcmp(o->sets[i].name, pair) && !strcmp(o->sets[i].value, eq + 1);
        if (!found)
            return false;
    }
    return true;
}

static bool consider(const Record *r, void *ctx)
{
    Lookup *l = ctx;
    if (!strcmp(r->kernel, l->kernel) && !strcmp(r->target, l->target) && r->ms < l->ms &&
        fixed_matches(l->o, r->fixed)) {
        l->ms = r->ms;
        snprintf(l->point, sizeof l->point, "%s", r->point);
    }
    return true;
}

const Opts *with_tuned(const Opts *o, const TargetInfo *t, Opts *buf, Diag *d)
{
    /* the chosen values live here until the process ends: one lookup per command */
    static char point[LINE_MAX_LEN];
    if (!o->tuned)
        return o;
    Kernel *k = fe_load(o->spec, o->sets, o->nsets, d);
    if (!k)
        return NULL;
    Lookup l = {o, k->name, t->name, "", INFINITY};
    if (!read_store(o->tuned, false, consider, &l, d)) {
        ir_kernel_free(k);
        return NULL;
    }
    *buf = *o;
    if (isinf(l.ms)) {
        fprintf(stderr, "tilec: %s: no record of %s on %s with these --set values; the spec's defaults stand\n",
                o->tuned, k->name, t->name);
        ir_kernel_free(k);
        return buf;
    }
    snprintf(point, sizeof point, "%s", l.point);
    char *save = NULL;
    for (char *pair = strtok_r(point, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq)
            continue;
        *eq = 0;
        /* a parameter the spec no longer tunes, or one the caller set, is left alone */
        if (tune_param(k, pair) && !is_set(o, pair) && buf->nsets < MAX_OPTS)
            buf->sets[buf->nsets++] = (FeSet){pair, eq + 1};
    }
    fprintf(stderr, "tilec: %s: %s on %s tuned to %s (%.3f ms when swept)\n", o->tuned, k->name, t->name, l.point,
            l.ms);
    ir_kernel_free(k);
    return buf;
}
