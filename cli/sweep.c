/* sweep.c — `tilec sweep`: a kernel compiled and timed at every point of
 * its tune{} space, each point's outputs compared with the first's; the
 * timings go to the results store (runtime/tuned.h), from which `tilec
 * run/compile --tuned` take the fastest point. */
#include "cli/cli.h"
#include "runtime/timing.h"
#include "runtime/tuned.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_POINTS = 512, MAX_AXES = 16, MAX_VALUES = 64, MAX_JOBS = 256 };

/* One tune parameter of the sweep and the values it takes. */
typedef struct Axis {
    const char *name;
    const char *values[MAX_VALUES];
    int n;
} Axis;

static const char *set_value(const Opts *o, const char *name)
{
    for (int i = o->nsets - 1; i >= 0; i--)
        if (!strcmp(o->sets[i].name, name))
            return o->sets[i].value;
    return NULL;
}

static bool is_set(const Opts *o, const char *name) { return set_value(o, name) != NULL; }

/* A tune{} parameter (a size is a KP_TUNE without candidates, a variant{}
 * one that says what the kernel computes: neither is). */
static const KParam *tune_param(const Kernel *k, const char *name)
{
    const KParam *p = ir_kparam_find(k, name);
    return p && p->kind == KP_TUNE && p->ncands && !p->variant ? p : NULL;
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
        const KParam *kp = ir_kparam_find(k, name);
        if (kp && kp->variant) {
            /* its values compute different things: no point is "the best" */
            diag_error(d, none, "--over %s: %s is a variant{} of kernel %s (what it computes), not a tune parameter",
                       name, name, k->name);
            diag_hint(d, "sweep each with --set %s=VALUE", name);
            return false;
        }
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

static void free_inputs(const Kernel *k, Bindings *bd)
{
    bindings_free(bd, k->nargs);
    free(bd);
}

static void ran_free(Ran *r)
{
    if (r->bd)
        free_inputs(r->k, r->bd);
    ir_kernel_free(r->k);
    *r = (Ran){0};
}

/* A point's kernel and its arguments: a copy of `inputs` (the sweep's,
 * made once) where they fit its arguments, else its own (setup_args). */
static bool load_point(const Opts *o, const TargetInfo *t, const FeSet *sets, int nsets, const Ran *inputs, Ran *r,
                       Diag *d)
{
    r->k = fe_load_for(o->spec, sets, nsets, t, d);
    if (!r->k)
        return false;
    if (r->k->nargs > 64 || r->k->nparams > 64)
        return diag_error(d, (SrcLoc){o->spec, 0}, "kernel %s is too large for tilec (64 arguments at most)",
                          r->k->name);
    if (inputs && inputs->bd && bindings_fit(r->k, inputs->k, inputs->bd)) {
        r->bd = bindings_clone(r->k, inputs->bd);
        return true;
    }
    r->bd = calloc(1, sizeof *r->bd);
    return setup_args(r->k, o, r->bd, d);
}

/* Whether every output of `got` lies within the check's tolerance of
 * `ref`'s (`whose`: "the first point's", say); the first that does not is
 * described in `why`. */
static bool same_outputs(const Ran *ref, const Ran *got, const char *whose, bool on_gpu, char *why, size_t n)
{
    bool fp8_mma = on_gpu && fp8_tensor_cores(got->k);
    for (int i = 0; i < got->k->nargs; i++) {
        const Buffer *b = got->k->bufs[i];
        if (b->dir == ARG_IN)
            continue;
        if (i >= ref->k->nargs || ref->k->bufs[i]->dtype != b->dtype ||
            rt_tensor_numel(ref->bd->t[i]) != rt_tensor_numel(got->bd->t[i])) {
            snprintf(why, n, "output %s is not the shape of %s", b->name, whose);
            return false;
        }
        OutputDiff od = output_diff(b->dtype, fp8_mma, ref->bd->t[i], got->bd->t[i]);
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
static bool check_point(const Opts *o, const TargetInfo *t, const FeSet *sets, int nsets, const Ran *inputs,
                        Diag *d)
{
    Opts once = *o;
    once.repeat = 1;
    Ran ref = {0}, got = {0};
    double sec;
    bool ok = load_point(&once, t, sets, nsets, inputs, &ref, d) && execute(ref.k, true, t, &once, ref.bd, &sec, d) &&
              load_point(&once, t, sets, nsets, inputs, &got, d) && execute(got.k, false, t, &once, got.bd, &sec, d);
    char why[256];
    if (ok && !same_outputs(&ref, &got, "the interpreter's", t->gpu_sm && !o->simt, why, sizeof why))
        ok = diag_error(d, (SrcLoc){o->spec, 0}, "%s", why);
    ran_free(&ref);
    ran_free(&got);
    return ok;
}

/* FeSets as the store's settings. */
static int settings_of(const FeSet *f, int n, RtSetting *out)
{
    for (int i = 0; i < n; i++)
        out[i] = (RtSetting){f[i].name, f[i].value};
    return n;
}


/* What the store keys a kernel's timings by, besides its name and target:
 * every parameter of k with the value it has (sizes and fixed values as
 * the spec resolved them, tune values as set or defaulted, dyn sizes as
 * --set gives them; one bound from an input file is not known here),
 * except the axes being swept. */
static int key_of(const Kernel *k, const Opts *o, const Axis *axes, int naxes, RtSetting *out)
{
    int n = 0;
    for (int i = 0; i < k->nkparams && n < MAX_OPTS; i++) {
        const KParam *kp = &k->kparams[i];
        bool swept = false;
        for (int a = 0; a < naxes; a++)
            swept |= !strcmp(axes[a].name, kp->name);
        const char *v = kp->kind == KP_DYN ? set_value(o, kp->name) : kp->value;
        if (!swept && v)
            out[n++] = (RtSetting){kp->name, v};
    }
    return n;
}

/* ------------------------------------------------------------ the sweep */

typedef struct Sweep {
    const Opts *o;
    Opts run;                /* o with the sweep's repeat count */
    const TargetInfo *t;
    Kernel *k0;              /* the kernel at its defaults: the tune space */
    Axis axes[MAX_AXES];
    int naxes, width[MAX_AXES], threads;
    int jobs;                /* points compiled at once (--jobs) */
    double build_s, time_s;  /* wall time building the points (inputs, passes, JIT) and running them */
    char *lists[MAX_OPTS];   /* the --over lists the axes point into */
    long npoints;
    char fixed[RT_TUNED_LINE]; /* the parameters not swept, as the store keys them (key_of) */
    Ran inputs;              /* k0 and the inputs every point copies (bd NULL where they could
                              * not be made: each point makes its own); k0 is freed as k0 */
    Ran first;               /* the first point that ran: the outputs all others must give */
    int timed, wrong;
    double best_ms;
    char best[RT_TUNED_LINE];
    double default_ms;        /* the point the spec takes unswept (choose's picks, else first candidates) */
    bool default_picked;      /* some of its values came from the spec's choose */
    char *records;           /* store lines of the points timed */
    size_t nrecords;
} Sweep;

static bool sweep_setup(Sweep *s, Diag *d)
{
    const Opts *o = s->o;
    if (!s->t->gpu_sm && !ir_target_runs_here(s->t))
        return diag_error(d, (SrcLoc){0}, "this CPU cannot run target %s", s->t->name);
    s->k0 = fe_load_for(o->spec, o->sets, o->nsets, s->t, d);
    if (!s->k0 || !make_axes(s->k0, o, s->lists, s->axes, &s->naxes, d))
        return false;
    if (o->store && !rt_tuned_check(o->store, d))
        return false;
    RtSetting key[MAX_OPTS];
    if (!rt_tuned_join(key, key_of(s->k0, o, s->axes, s->naxes, key), s->fixed, sizeof s->fixed) && o->store)
        return diag_error(d, (SrcLoc){o->spec, 0}, "--store: a parameter's value holds a tab, comma or '='");
    for (int i = 0; o->store && i < s->k0->nkparams; i++)
        if (s->k0->kparams[i].kind == KP_DYN && !set_value(o, s->k0->kparams[i].name)) {
            /* bound from an input's shape, it would not be in the record's
             * key, which would then answer for every value of it */
            diag_error(d, (SrcLoc){o->spec, 0}, "--store: dyn size %s is not --set, so the store could not key it",
                       s->k0->kparams[i].name);
            diag_hint(d, "give it with --set %s=VALUE", s->k0->kparams[i].name);
            return false;
        }
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
    s->jobs = o->jobs ? o->jobs : (int)sysconf(_SC_NPROCESSORS_ONLN);
    s->jobs = s->jobs < 1 ? 1 : s->jobs > MAX_JOBS ? MAX_JOBS : s->jobs;
    s->best_ms = INFINITY;
    s->default_ms = INFINITY;
    /* the inputs, made once for k0 (an MoE GEMM's random fp4 weights took
     * 0.6 s a point); a failure here is left for each point to report */
    Diag quiet = {0};
    Bindings *bd = s->k0->nargs <= 64 && s->k0->nparams <= 64 ? calloc(1, sizeof *bd) : NULL;
    if (bd && setup_args(s->k0, &s->run, bd, &quiet))
        s->inputs = (Ran){s->k0, bd};
    else if (bd)
        free_inputs(s->k0, bd);
    for (int i = 0; i < s->naxes; i++)
        s->default_picked |= tune_param(s->k0, s->axes[i].name)->picked;
    return true;
}

/* Whether the n values of point are the kernel's own for them: what
 * `tilec run` takes with none of them set. */
static bool is_default(const Kernel *k, const FeSet *point, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(tune_param(k, point[i].name)->value, point[i].value))
            return false;
    return true;
}

/* A point timed and matching the first: the best so far?, and its store line. */
static void keep_point(Sweep *s, const FeSet *point, int n, double ms)
{
    RtSetting set[MAX_AXES];
    char joined[RT_TUNED_LINE], line[RT_TUNED_LINE];
    bool storable = rt_tuned_join(set, settings_of(point, n, set), joined, sizeof joined);
    if (ms < s->best_ms) {
        s->best_ms = ms;
        snprintf(s->best, sizeof s->best, "%s", joined);
    }
    if (is_default(s->k0, point, n))
        s->default_ms = ms;
    if (!storable || !rt_tuned_line(s->k0->name, s->t->name, s->threads, s->fixed, joined, ms, line, sizeof line))
        return;
    size_t len = strlen(line);
    s->records = realloc(s->records, s->nrecords + len + 1);
    memcpy(s->records + s->nrecords, line, len + 1);
    s->nrecords += len;
}

/* A point made ready off the timing: its values, its kernel loaded with
 * its inputs, lowered and compiled (jit NULL on a GPU, whose points
 * compile as they run, in the device's context), or why it could not be. */
typedef struct Built {
    FeSet sets[MAX_OPTS + MAX_AXES];
    int nsets;
    Ran r;
    CgJit *jit;
    bool ok;
    Diag d;
} Built;

/* The points being built and the next one a thread takes. */
typedef struct Batch {
    Sweep *s;
    Built *b;
    int n;
    atomic_int next;
} Batch;

static void *build_points(void *arg)
{
    Batch *w = arg;
    Sweep *s = w->s;
    for (int i; (i = atomic_fetch_add(&w->next, 1)) < w->n;) {
        Built *b = &w->b[i];
        b->ok = load_point(&s->run, s->t, b->sets, b->nsets, &s->inputs, &b->r, &b->d) &&
                (s->t->gpu_sm || (b->jit = compile_jit(b->r.k, s->t, &s->run, &b->d)) != NULL);
    }
    return NULL;
}

/* Builds n points on up to s->jobs threads, this one among them: the
 * compiles of a sweep are independent, and each is single-threaded LLVM
 * (a GEMM point 0.2 s on the AVX2 host, an MoE GEMM's 1.3). */
static void build_batch(Sweep *s, Built *b, int n)
{
    Batch w = {.s = s, .b = b, .n = n};
    atomic_init(&w.next, 0);
    pthread_t th[MAX_JOBS];
    int extra = (s->jobs < n ? s->jobs : n) - 1, started = 0;
    while (started < extra && !pthread_create(&th[started], NULL, build_points, &w))
        started++;
    build_points(&w);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

/* A built point run (timed with no compile beside it), compared, one row. */
static void time_point(Sweep *s, Built *b)
{
    const Opts *o = s->o;
    for (int i = 0; i < s->naxes; i++)
        printf("%*s ", s->width[i], b->sets[o->nsets + i].value);
    fflush(stdout);
    Diag d = {0};
    double sec = 0;
    char why[256];
    bool checked = !o->check || s->timed || check_point(o, s->t, b->sets, b->nsets, &s->inputs, &d);
    if (checked && !b->ok)
        d = b->d;
    /* on a CPU one run untimed first: its pages and code are then warm,
     * as the first point's were not (at --repeat 1 a 0.2 ms first run
     * stood against 0.001 for the same work at the next point) */
    bool ran = checked && b->ok &&
               (s->t->gpu_sm ? execute(b->r.k, false, s->t, &s->run, b->r.bd, &sec, &d)
                             : run_cpu(b->r.k, b->jit, &s->run, b->r.bd, 1, &sec, &d));
    cg_jit_free(b->jit);
    b->jit = NULL;
    if (!ran) {
        char line[1200] = "";
        if (d.set)
            diag_format(&d, line, sizeof line);
        printf("%12s  (%s%s)\n", "-", checked ? "" : "--check failed: ", line);
        s->wrong += !checked;
    } else if (s->timed && !same_outputs(&s->first, &b->r, "the first point's", s->t->gpu_sm && !o->simt, why,
                                         sizeof why)) {
        printf("%12.3f  WRONG: %s\n", sec * 1e3, why);
        s->wrong++;
    } else {
        printf("%12.3f\n", sec * 1e3);
        keep_point(s, b->sets + o->nsets, b->nsets - o->nsets, rt_tuned_ms(sec * 1e3));
        if (!s->timed++)
            s->first = b->r, b->r = (Ran){0};
    }
    fflush(stdout);
    ran_free(&b->r);
}

/* Every point, in batches of s->jobs: built together, then timed in turn. */
static void sweep_points(Sweep *s)
{
    const Opts *o = s->o;
    Built *b = calloc((size_t)s->jobs, sizeof *b);
    int idx[MAX_AXES] = {0};
    for (long p = 0; p < s->npoints;) {
        int n = 0;
        for (; n < s->jobs && p < s->npoints; n++, p++) {
            b[n] = (Built){.nsets = o->nsets};
            memcpy(b[n].sets, o->sets, sizeof(FeSet) * (size_t)o->nsets);
            for (int i = 0; i < s->naxes; i++)
                b[n].sets[b[n].nsets++] = (FeSet){s->axes[i].name, s->axes[i].values[idx[i]]};
            for (int i = s->naxes - 1; i >= 0 && ++idx[i] == s->axes[i].n; i--)
                idx[i] = 0;
        }
        double t0 = rt_now();
        build_batch(s, b, n);
        double t1 = rt_now();
        for (int i = 0; i < n; i++)
            time_point(s, &b[i]);
        s->build_s += t1 - t0;
        s->time_s += rt_now() - t1;
    }
    free(b);
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
    if (isfinite(s->default_ms))
        printf("default (%s): %.3f ms, %.2fx the best\n",
               s->default_picked ? "the spec's choose" : "the first candidates", s->default_ms,
               s->default_ms / s->best_ms);
}

int cmd_sweep(const Opts *o)
{
    Diag d = {0};
    Sweep *s = calloc(1, sizeof *s);
    s->o = o;
    int rc = 1;
    if (!(s->t = target_of(o, &d)) || !sweep_setup(s, &d))
        goto out;
    printf("sweep %s on %s, %d thread(s): %ld point(s) compiled %d at a time, median of %d runs each; outputs "
           "compared with the first point's%s\n",
           s->k0->name, s->t->name, s->threads, s->npoints, s->t->gpu_sm ? 1 : s->jobs, s->run.repeat,
           o->check ? ", the first's with the interpreter's" : "");
    for (int i = 0; i < s->naxes; i++)
        printf("%*s ", s->width[i], s->axes[i].name);
    printf("%12s\n", "median_ms");
    sweep_points(s);
    if (s->timed)
        print_best(s);
    if (s->t->gpu_sm) /* compiled as they run, in the device's context */
        printf("%ld point(s) loaded in %.2f s, compiled, run and compared in %.2f s\n", s->npoints, s->build_s,
               s->time_s);
    else
        printf("%ld point(s) compiled in %.2f s (%d at a time), run and compared in %.2f s\n", s->npoints,
               s->build_s, s->jobs, s->time_s);
    SrcLoc spec = {o->spec, 0};
    if (!s->timed)
        diag_error(&d, spec, "no point of kernel %s's sweep compiled and ran", s->k0->name);
    else if (s->wrong)
        diag_error(&d, spec, "%d point(s) of kernel %s gave other outputs than the first", s->wrong, s->k0->name);
    else if (!o->store || !s->records)
        rc = 0;
    else if (rt_tuned_append(o->store, s->records, &d)) {
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
    if (s->inputs.bd)
        free_inputs(s->k0, s->inputs.bd);
    ir_kernel_free(s->k0);
    free(s);
    return rc;
}

/* ------------------------------------------------------------ --tuned */

const Opts *with_tuned(const Opts *o, const TargetInfo *t, Opts *buf, Diag *d)
{
    /* the chosen values live here until the process ends: one lookup per command */
    static char point[RT_TUNED_LINE];
    if (!o->tuned)
        return o;
    Kernel *k = fe_load_for(o->spec, o->sets, o->nsets, t, d);
    if (!k)
        return NULL;
    RtSetting key[MAX_OPTS];
    double ms;
    if (!rt_tuned_best(o->tuned, k->name, t->name, key, key_of(k, o, NULL, 0, key), point, sizeof point, &ms, d)) {
        ir_kernel_free(k);
        return NULL;
    }
    *buf = *o;
    if (isinf(ms))
        fprintf(stderr, "tilec: %s: no record of %s on %s with these parameters; the spec's defaults stand\n",
                o->tuned, k->name, t->name);
    else
        fprintf(stderr, "tilec: %s: %s on %s tuned to %s (%.3f ms when swept)\n", o->tuned, k->name, t->name, point,
                ms);
    RtSetting best[MAX_OPTS];
    int n = isinf(ms) ? 0 : rt_tuned_split(point, best, MAX_OPTS);
    /* a parameter the spec no longer tunes, or one the caller set, is left alone */
    for (int i = 0; i < n; i++)
        if (tune_param(k, best[i].name) && !is_set(o, best[i].name) && buf->nsets < MAX_OPTS)
            buf->sets[buf->nsets++] = (FeSet){best[i].name, best[i].value};
    ir_kernel_free(k);
    return buf;
}
