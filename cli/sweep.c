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
 * `ref`'s (`whose`: "the first point's", say); the first that does not is
 * described in `why`. */
static bool same_outputs(const Ran *ref, const Ran *got, const char *whose, char *why, size_t n)
{
    for (int i = 0; i < got->k->nargs; i++) {
        const Buffer *b = got->k->bufs[i];
        if (b->dir == ARG_IN)
            continue;
        if (i >= ref->k->nargs || ref->k->bufs[i]->dtype != b->dtype ||
            rt_tensor_numel(ref->bd->t[i]) != rt_tensor_numel(got->bd->t[i])) {
            snprintf(why, n, "output %s is not the shape of %s", b->name, whose);
            return false;
        }
        OutputDiff od = output_diff(b->dtype, ref->bd->t[i], got->bd->t[i]);
        if (!(od.maxabs <= od.tol)) {
            snprintf(why, n, "output %s differs from %s by %.3g (tolerance %.3g)", b->name, whose, od.maxabs,
                     od.tol);
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
    if (ok && !same_outputs(&ref, &got, "the interpreter's", why, sizeof why))
        ok = diag_error(d, (SrcLoc){o->spec, 0}, "%s", why);
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

typedef struct Sweep {
    const Opts *o;
    Opts run;                /* o with the sweep's repeat count */
    const TargetInfo *t;
    Kernel *k0;              /* the kernel at its defaults: the tune space */
    Axis axes[MAX_AXES];
    int naxes, width[MAX_AXES], threads;
    char *lists[MAX_OPTS];   /* the --over lists the axes point into */
    long npoints;
    char fixed[LINE_MAX_LEN]; /* o's --set values, as the store keys them */
    Ran first;               /* the first point that ran: the outputs all others must give */
    int timed, wrong;
    double best_ms;
    char best[LINE_MAX_LEN];
    char *records;           /* store lines of the points timed */
    size_t nrecords;
} Sweep;

static bool sweep_setup(Sweep *s, Diag *d)
{
    const Opts *o = s->o;
    if (!s->t->gpu_sm && !ir_target_runs_here(s->t))
        return diag_error(d, (SrcLoc){0}, "this CPU cannot run target %s", s->t->name);
    if (o->store && !storable(o->sets, o->nsets))
        return diag_error(d, (SrcLoc){o->spec, 0}, "--store: a --set value holds a tab, comma or '='");
    if (!(s->k0 = fe_load(o->spec, o->sets, o->nsets, d)) || !make_axes(s->k0, o, s->lists, s->axes, &s->naxes, d))
        return false;
    s->npoints = 1;
    for (int i = 0; i < s->naxes; i++) {
        s->npoints = s->npoints * s->axes[i].n > MAX_POINTS ? MAX_POINTS + 1 : s->npoints * s->axes[i].n;
        s->width[i] = (int)strlen(s->axes[i].name);
        for (int j = 0; j < s->axes[i].n; j++)
            if ((int)strlen(s->axes[i].values[j]) > s->width[i])
                s->width[i] = (int)strlen(s->axes[i].values[j]);
    }
    if (s->npoints > MAX_POINTS) {
        diag_error(d, (SrcLoc){o->spec, 0}, "kernel %s's tune space has more than %d points", s->k0->name,
                   MAX_POINTS);
        diag_hint(d, "fix some parameters with --set NAME=VALUE, or narrow them with --over NAME=V1,V2");
        return false;
    }
    s->run = *o;
    s->run.repeat = o->repeat_given ? o->repeat : 5;
    s->threads = o->threads ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    s->best_ms = INFINITY;
    join_sets(o->sets, o->nsets, s->fixed, sizeof s->fixed);
    return true;
}

/* A point timed and matching the first: the best so far?, and its store line. */
static void keep_point(Sweep *s, const FeSet *point, int n, double ms)
{
    char joined[LINE_MAX_LEN], line[3 * LINE_MAX_LEN];
    join_sets(point, n, joined, sizeof joined);
    if (ms < s->best_ms) {
        s->best_ms = ms;
        snprintf(s->best, sizeof s->best, "%s", joined);
    }
    if (!storable(point, n))
        return;
    int len = snprintf(line, sizeof line, "%s\t%s\t%d\t%s\t%s\t%.6g\n", s->k0->name, s->t->name, s->threads, s->fixed,
                       joined, ms);
    s->records = realloc(s->records, s->nrecords + (size_t)len + 1);
    memcpy(s->records + s->nrecords, line, (size_t)len + 1);
    s->nrecords += (size_t)len;
}

/* Point idx (one value index per axis): compiled, run, compared, one row. */
static void sweep_point(Sweep *s, const int *idx)
{
    const Opts *o = s->o;
    FeSet sets[MAX_OPTS + MAX_AXES];
    int nsets = o->nsets;
    memcpy(sets, o->sets, sizeof(FeSet) * (size_t)o->nsets);
    for (int i = 0; i < s->naxes; i++) {
        sets[nsets++] = (FeSet){s->axes[i].name, s->axes[i].values[idx[i]]};
        printf("%*s ", s->width[i], s->axes[i].values[idx[i]]);
    }
    fflush(stdout);
    Diag d = {0};
    Ran r = {0};
    double sec = 0;
    char why[256];
    bool checked = !o->check || s->timed || check_point(o, s->t, sets, nsets, &d);
    if (!checked || !load_point(&s->run, sets, nsets, &r, &d) || !execute(r.k, false, s->t, &s->run, r.bd, &sec, &d)) {
        printf("%12s  (%s%s)\n", "-", checked ? "" : "--check failed: ", d.set ? d.msg : "");
        s->wrong += !checked;
    } else if (s->timed && !same_outputs(&s->first, &r, "the first point's", why, sizeof why)) {
        printf("%12.3f  WRONG: %s\n", sec * 1e3, why);
        s->wrong++;
    } else {
        printf("%12.3f\n", sec * 1e3);
        keep_point(s, sets + o->nsets, nsets - o->nsets, sec * 1e3);
        if (!s->timed++)
            s->first = r, r = (Ran){0};
    }
    fflush(stdout);
    ran_free(&r);
}

static void print_best(const Sweep *s)
{
    if (!strcmp(s->best, "-")) {
        printf("best: (no tune parameter left to choose) (%.3f ms)\n", s->best_ms);
        return;
    }
    printf("best:");
    for (const char *p = s->best; p;) {
        const char *comma = strchr(p, ',');
        printf(" --set %.*s", comma ? (int)(comma - p) : (int)strlen(p), p);
        p = comma ? comma + 1 : NULL;
    }
    printf(" (%.3f ms)\n", s->best_ms);
}

int cmd_sweep(const Opts *o)
{
    Diag d = {0};
    Sweep *s = calloc(1, sizeof *s);
    s->o = o;
    int rc = 1;
    if (!(s->t = target_of(o, &d)) || !sweep_setup(s, &d))
        goto out;
    printf("sweep %s on %s, %d thread(s): %ld point(s), median of %d runs each; outputs compared with the "
           "first point's%s\n",
           s->k0->name, s->t->name, s->threads, s->npoints, s->run.repeat,
           o->check ? ", the first's with the interpreter's" : "");
    for (int i = 0; i < s->naxes; i++)
        printf("%*s ", s->width[i], s->axes[i].name);
    printf("%12s\n", "median_ms");
    int idx[MAX_AXES] = {0};
    for (long p = 0; p < s->npoints; p++) {
        sweep_point(s, idx);
        for (int i = s->naxes - 1; i >= 0 && ++idx[i] == s->axes[i].n; i--)
            idx[i] = 0;
    }
    if (s->timed)
        print_best(s);
    SrcLoc spec = {o->spec, 0};
    if (!s->timed)
        diag_error(&d, spec, "no point of kernel %s's sweep compiled and ran", s->k0->name);
    else if (s->wrong)
        diag_error(&d, spec, "%d point(s) of kernel %s gave other outputs than the first", s->wrong, s->k0->name);
    else if (!o->store || !s->records)
        rc = 0;
    else if (append_store(o->store, s->records, &d)) {
        printf("stored %d point(s) in %s\n", s->timed, o->store);
        rc = 0;
    }
out:
    if (d.set)
        fail(&d);
    for (int i = 0; i < MAX_OPTS; i++)
        free(s->lists[i]);
    free(s->records);
    ran_free(&s->first);
    ir_kernel_free(s->k0);
    free(s);
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
