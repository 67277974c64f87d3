/* main.c — the tilec command line: compile, run, ir, targets.
 *
 * Every error is one line on stderr and a non-zero exit: 1 for a failure in
 * the user's spec, data or check, 2 for a malformed command line. */
#include "cli/cli.h"
#include "cli/report.h"
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/npy.h"
#include "runtime/timing.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_main[] =
    "tilec — compile tile kernels written in Lua to AVX-512 machine code and to PTX\n"
    "\n"
    "usage: tilec COMMAND SPEC.lua [options]\n"
    "\n"
    "SPEC.lua is a kernel written in the Lua DSL. run, compile and ir also take a\n"
    "KERNEL.tir, the printed IR of 'tilec ir' or 'compile --emit ir' (edited, say):\n"
    "Tile IR goes through the passes, Loop IR (already lowered) straight to code.\n"
    "\n"
    "commands:\n"
    "  run      run a kernel on .npy inputs (JIT-compiled, or --interp), optionally --check it\n"
    "  compile  compile a kernel to LLVM IR, assembly, an object file or printed Loop IR\n"
    "  sweep    time a kernel over its tune{} parameters' values and keep the results\n"
    "  ir       print a kernel's Tile IR as the frontend built it\n"
    "  targets  list the targets and whether this CPU can run them\n"
    "\n"
    "'tilec COMMAND --help' explains a command. First steps:\n"
    "  tilec run examples/gemm.lua --check          # random inputs, JIT vs interpreter\n"
    "  tilec ir examples/softmax.lua                # look at the IR\n"
    "  tilec compile examples/gemm.lua --emit asm -o gemm.s\n"
    "  tilec sweep examples/gemm.lua --over BM=96,192 --over BK=128,512 --set BN=64 \\\n"
    "      --set dtype=f32 --set stages=2 --store tuned.tsv   # time tile sizes, keep the best\n";

static const char usage_run[] =
    "usage: tilec run SPEC.lua [--set NAME=VALUE]... [--in ARG=FILE.npy]... [--out ARG=FILE.npy]...\n"
    "                 [--interp] [--simt] [--check] [--raw] [--target T] [--threads N] [--seed N]\n"
    "                 [--repeat N] [--rotate N] [--stream-bytes N] [--tuned FILE] [--time-passes]\n"
    "\n"
    "Runs the kernel once. Inputs not given with --in take the values the spec's\n"
    "`inputs` gives them, else deterministic random numbers in [-1, 1) (integers\n"
    "0-15; --seed changes them). Input files are converted to\n"
    "the argument's dtype (bf16/fp8 with round-to-nearest-even); a `dyn` dimension\n"
    "takes its value from the input whose shape uses it, or from --set.\n"
    "\n"
    "  --set NAME=VALUE   choose a parameter (a tune{} candidate, a size, or a dyn dim;\n"
    "                     of a KERNEL.tir only its dyn dims)\n"
    "  --in ARG=FILE      read input argument ARG from a NumPy .npy file\n"
    "  --out ARG=FILE     write output argument ARG to FILE (f32 unless --raw)\n"
    "  --raw              write outputs in their own dtype (bf16 as u2 bits, fp8 as u1 bits)\n"
    "  --interp           run the reference interpreter instead of compiled code\n"
    "  --simt             GPU targets: run the GPU-lowered kernel in the interpreter's SIMT\n"
    "                     mode (threads, shared memory, barriers, race checks) instead of a GPU\n"
    "  --check            run both, report the largest difference, fail if it is too big\n"
    "  --target T         x86-avx512 or x86-avx2 (default: the best this CPU runs, planned\n"
    "                     for its own caches and cores: 'tilec targets'), or\n"
    "                     sm_90a / sm_80 to run on the CUDA device (needs libcuda.so.1)\n"
    "  --threads N        worker threads for the block grid (default: all cores)\n"
    "  --repeat N         run N times and print the median time\n"
    "  --time-passes      print each pass's time to stderr, then LLVM's (its IR, O3, the JIT's\n"
    "                     machine code): the compile, as 'tilec compile --time-passes'\n"
    "  --rotate N         CPU: hold the read-only inputs in N copies, each run reading the\n"
    "                     next, so that weights larger than the cache come from memory as\n"
    "                     in a model (the default 1 times them cache-warm)\n"
    "  --stream-bytes N   CPU: outputs the kernel only writes go to memory past the cache\n"
    "                     (non-temporal stores) from N bytes on (default 16 MiB; 0: all)\n"
    "  --tuned FILE       tune parameters not --set take the values of the fastest point\n"
    "                     'tilec sweep --store FILE' recorded for this kernel and target with\n"
    "                     the same values of the other parameters (sizes, say); the spec's\n"
    "                     defaults where it has none\n";

static const char usage_compile[] =
    "usage: tilec compile SPEC.lua [--set NAME=VALUE]... [--target T] [--emit ir|llvm|asm|obj|ptx]\n"
    "                     [--dump-after PASS|all] [--time-passes] [--report] [--stream-bytes N]\n"
    "                     [--tuned FILE] -o OUT\n"
    "\n"
    "Lowers the kernel through the pass pipeline and writes the result.\n"
    "  --emit ir     the Loop IR after all passes (text)\n"
    "  --emit llvm   LLVM IR (.ll)      --emit asm  assembly (.s)      --emit obj  object (.o, default)\n"
    "  --emit ptx    PTX for --target sm_90a or sm_80 (the default for those targets)\n"
    "  --target T    x86-avx512, x86-avx2, sm_90a or sm_80; without it this CPU's best, planned\n"
    "                for its own caches (an object for other machines: name the target)\n"
    "  --report      GPU targets: registers, shared memory, spills (ptxas -v) and the\n"
    "                instruction mix (cuobjdump -sass) of the kernel, on stdout\n"
    "  --dump-after  print the IR after the named pass (or every pass) to stderr\n"
    "  --time-passes print each pass's time to stderr, then LLVM's: its IR built, its O3\n"
    "                pipeline, the machine code\n"
    "  --stream-bytes N  CPU: write outputs of N bytes and more that the kernel only\n"
    "                writes with non-temporal stores (default 16 MiB; 0: all of them)\n"
    "  --tuned FILE  tune parameters not --set as 'tilec sweep --store FILE' found fastest\n"
    "  -o OUT        output path ('-' for stdout, text formats only)\n"
    "The object exports one function named after the kernel:\n"
    "  void NAME(void *const *args, const int64_t *params, int64_t block_begin, int64_t block_end);\n"
    "(arguments must not overlap where one is written: an update in place is an inout argument)\n"
    "The PTX has one .entry named after the kernel: NAME(args..., params...), one global\n"
    "pointer per argument then one .u64 per runtime scalar, launched as a 1-D grid of all blocks.\n";

static const char usage_sweep[] =
    "usage: tilec sweep SPEC.lua [--set NAME=VALUE]... [--over NAME=V1,V2,...]... [--store FILE]\n"
    "                   [--in ARG=FILE.npy]... [--check] [--target T] [--threads N] [--seed N]\n"
    "                   [--repeat N] [--rotate N] [--stream-bytes N] [--jobs N]\n"
    "\n"
    "Compiles and times the kernel at every point of its tune{} space: each tune\n"
    "parameter not fixed with --set takes each of its candidates in turn, or the\n"
    "values --over lists (512 points at most). Every point runs on the same inputs\n"
    "(as 'tilec run' makes them) and its outputs are compared with the first\n"
    "point's: one that differs fails the sweep (exit 1), however fast. A point the\n"
    "compiler refuses (a tile too large for the target, say) is reported and skipped.\n"
    "The fastest point is printed, and against it the point 'tilec run' takes when\n"
    "none of them is set (the spec's choose, else the first candidates) if it was swept.\n"
    "\n"
    "  --over NAME=V,...  the values of tune parameter NAME to try (its candidates by default)\n"
    "  --check            also check the first point against the interpreter\n"
    "  --repeat N         timed runs per point, after one untimed; the median is reported\n"
    "                     (default 5)\n"
    "  --jobs N           compile up to N points at once, on as many threads (default: one\n"
    "                     per core); each batch is then timed a point at a time, with\n"
    "                     nothing else running (a GPU target's points compile as they run)\n"
    "  --store FILE       add every timed point to the results store FILE (created if\n"
    "                     missing), keyed by kernel, target and the values of the parameters\n"
    "                     not swept (sizes, say: as set or as the spec has them; a dyn\n"
    "                     size must be --set); then\n"
    "                     'tilec run/compile --tuned FILE' at the same values takes the\n"
    "                     fastest point's values for the tune parameters it leaves unset\n"
    "The other options are 'tilec run's.\n";

static const char usage_ir[] =
    "usage: tilec ir SPEC.lua [--set NAME=VALUE]... [--target T]\n"
    "\n"
    "Prints the Tile IR the frontend builds from SPEC.lua, before any pass: for the\n"
    "target T (default: this CPU), whose figures a spec's choose may size its tiles by.\n"
    "Saved as NAME.tir, it is input to run and compile too (and 'tilec ir NAME.tir'\n"
    "checks and prints it back).\n"
    "'tilec compile SPEC.lua --dump-after all -o /dev/null' shows what each pass makes of it.\n";

int usage_error(const char *fmt, const char *arg)
{
    fputs("tilec: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see 'tilec --help')\n", stderr);
    return 2;
}

int fail(const Diag *d)
{
    fputs("tilec: ", stderr);
    diag_print(d, stderr);
    return 1;
}

/* "NAME=VALUE" split in place into two strings. */
static bool split_eq(char *s, const char **name, const char **value)
{
    char *eq = strchr(s, '=');
    if (!eq || eq == s)
        return false;
    *eq = 0;
    *name = s;
    *value = eq + 1;
    return true;
}

static bool is_value_option(const char *a)
{
    static const char *const with_value[] = {"--set", "--in", "--out", "--target", "--emit",
                                             "--dump-after", "-o", "--threads", "--seed", "--repeat", "--rotate",
                                             "--stream-bytes", "--over", "--store", "--tuned", "--jobs"};
    for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; i++)
        if (!strcmp(a, with_value[i]))
            return true;
    return false;
}

static int parse_opts(int argc, char **argv, Opts *o)
{
    memset(o, 0, sizeof *o);
    o->cmd = argv[1];
    o->repeat = 1;
    o->rotate = 1;
    o->seed = 1;
    o->stream_bytes = -1;
    for (int i = 2; i < argc; i++) {
        char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--interp")) {
            o->interp = true;
        } else if (!strcmp(a, "--check")) {
            o->check = true;
        } else if (!strcmp(a, "--simt")) {
            o->simt = true;
        } else if (!strcmp(a, "--report")) {
            o->report = true;
        } else if (!strcmp(a, "--raw")) {
            o->raw = true;
        } else if (!strcmp(a, "--time-passes")) {
            o->time_passes = true;
        } else if (is_value_option(a) && !has_value) {
            return usage_error("option %s needs a value", a);
        } else if (!strcmp(a, "--set") || !strcmp(a, "--in") || !strcmp(a, "--out")) {
            if (o->nsets == MAX_OPTS || o->nins == MAX_OPTS || o->nouts == MAX_OPTS)
                return usage_error("too many %s options", a);
            const char *name, *value;
            if (!split_eq(argv[++i], &name, &value))
                return usage_error("expected NAME=VALUE after %s", a);
            if (a[2] == 's')
                o->sets[o->nsets++] = (FeSet){name, value};
            else if (a[2] == 'i')
                o->ins[o->nins++] = (NamedFile){name, value};
            else
                o->outs[o->nouts++] = (NamedFile){name, value};
        } else if (!strcmp(a, "--over")) {
            const char *name, *values;
            if (o->novers == MAX_OPTS)
                return usage_error("too many %s options", a);
            if (!split_eq(argv[++i], &name, &values) || !*values)
                return usage_error("expected NAME=V1,V2,... after %s", a);
            o->overs[o->novers++] = (FeSet){name, values};
        } else if (!strcmp(a, "--store")) {
            o->store = argv[++i];
        } else if (!strcmp(a, "--tuned")) {
            o->tuned = argv[++i];
        } else if (!strcmp(a, "--target")) {
            o->target = argv[++i];
        } else if (!strcmp(a, "--emit")) {
            o->emit = argv[++i];
        } else if (!strcmp(a, "--dump-after")) {
            o->dump_after = argv[++i];
        } else if (!strcmp(a, "-o")) {
            o->out_path = argv[++i];
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--seed") || !strcmp(a, "--repeat") ||
                   !strcmp(a, "--rotate") || !strcmp(a, "--jobs")) {
            bool counts = !strcmp(a, "--repeat") || !strcmp(a, "--rotate") || !strcmp(a, "--jobs"); /* at least 1 */
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < (counts ? 1 : 0) || v > INT_MAX)
                return usage_error(counts ? "%s needs a positive integer" : "%s needs a non-negative integer", a);
            if (!strcmp(a, "--rotate") && v > 64)
                return usage_error("%s takes at most 64 copies", a);
            if (!strcmp(a, "--threads"))
                o->threads = (int)v;
            else if (!strcmp(a, "--seed"))
                o->seed = (unsigned)v;
            else if (!strcmp(a, "--repeat"))
                o->repeat = (int)v, o->repeat_given = true;
            else if (!strcmp(a, "--jobs"))
                o->jobs = (int)v;
            else
                o->rotate = (int)v;
        } else if (!strcmp(a, "--stream-bytes")) {
            char *end;
            o->stream_bytes = strtoll(argv[++i], &end, 10);
            if (*end || !*argv[i] || o->stream_bytes < 0)
                return usage_error("%s needs a non-negative integer", a);
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option %s", a);
        } else if (!o->spec) {
            o->spec = a;
        } else {
            return usage_error("unexpected argument %s (one SPEC.lua per command)", a);
        }
    }
    return 0;
}

static const TargetInfo *pick_target(const char *name, Diag *d);

/* The target of --target, with --stream-bytes where given (CPU only). */
const TargetInfo *target_of(const Opts *o, Diag *d)
{
    static TargetInfo changed;
    const TargetInfo *t = pick_target(o->target, d);
    if (!t || o->stream_bytes < 0)
        return t;
    if (t->gpu_sm) {
        SrcLoc none = {0};
        diag_error(d, none, "--stream-bytes is for CPU targets (%s has no non-temporal stores to choose)", t->name);
        return NULL;
    }
    changed = *t;
    changed.stream_bytes = o->stream_bytes;
    return &changed;
}

static const TargetInfo *pick_target(const char *name, Diag *d)
{
    SrcLoc none = {0};
    if (!name) {
        const TargetInfo *t = ir_host_target();
        if (!t)
            diag_error(d, none, "this CPU has neither AVX-512 nor AVX2 (FMA)");
        return t;
    }
    const TargetInfo *t = ir_target(name);
    if (!t)
        diag_error(d, none, "unknown target '%s' (known: %s)", name, ir_target_names());
    return t;
}

/* ------------------------------------------------------------ arguments */

void bindings_free(Bindings *b, int n)
{
    for (int i = 0; i < n; i++)
        rt_tensor_free(b->t[i]);
}

static const char *find_named(const NamedFile *v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return v[i].path;
    return NULL;
}

/* Is path printed IR (what `tilec ir` and `compile --emit ir` write)? */
static bool is_printed_ir(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && !strcmp(path + n - 4, ".tir");
}

/* The value of --set NAME for a dyn size: a count. */
static bool dyn_value(const char *text, int64_t *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    *v = x;
    return end != text && !*end && !errno && x >= 0;
}

/* The kernel o->spec names, for target t: a Lua spec built with --set and
 * the spec's choose, or printed IR (.tir) read back as it stands.  A
 * printed kernel's parameters were fixed when it was built, so --set names
 * only its dyn sizes (bound at run time, setup_args); Loop IR has been
 * through the passes for one kind of target, which t must be. */
static Kernel *load_kernel(const Opts *o, const TargetInfo *t, Diag *d)
{
    if (!is_printed_ir(o->spec))
        return fe_load_for(o->spec, o->sets, o->nsets, t, d);
    Kernel *k = ir_parse_file(o->spec, d);
    if (!k)
        return NULL;
    for (int i = 0; i < o->nsets; i++) {
        const KParam *p = ir_kparam_find(k, o->sets[i].name);
        int64_t v;
        if (!p || p->kind != KP_DYN) {
            diag_error(d, k->loc, "--set %s: kernel %s %s", o->sets[i].name, k->name,
                       p ? "was printed with this parameter fixed (only dyn sizes take --set)"
                         : "has no such parameter");
            diag_hint(d, "print it again from its spec with the value set (tilec ir SPEC.lua --set ...)");
            goto bad;
        }
        if (!dyn_value(o->sets[i].value, &v)) {
            diag_error(d, k->loc, "--set %s=%s: a dyn size takes a count", o->sets[i].name, o->sets[i].value);
            goto bad;
        }
    }
    if (t && k->level == LEVEL_LOOP && (k->nthreads > 0) != (t->gpu_sm > 0)) {
        diag_error(d, k->loc, "kernel %s is Loop IR lowered for a %s, not for target %s", k->name,
                   k->nthreads ? "GPU (it has threads)" : "CPU (it has no threads)", t->name);
        diag_hint(d, "give the --target it was printed for");
        goto bad;
    }
    return k;
bad:
    ir_kernel_free(k);
    return NULL;
}

static void describe_shape(const Buffer *b, char *out, size_t n)
{
    size_t used = (size_t)snprintf(out, n, "%s[", dt_name(b->dtype));
    for (int d = 0; d < b->rank && used < n; d++) {
        FILE *mem = fmemopen(out + used, n - used, "w");
        if (!mem)
            break;
        if (d)
            fputs(", ", mem);
        ir_print_expr(b->shape[d], mem);
        fclose(mem);
        used = strlen(out);
    }
    if (used < n)
        snprintf(out + used, n - used, "]");
}

/* Dyn dims that are a bare PARAM in an argument's shape take their value
 * from the tensor given for it. */
static void bind_from_shape(const Buffer *b, const RtTensor *t, Bindings *bd)
{
    for (int d = 0; d < b->rank && d < t->rank; d++) {
        const Expr *e = b->shape[d];
        if (e->op == EX_PARAM && !bd->bound[e->param->index]) {
            bd->params[e->param->index] = t->shape[d];
            bd->bound[e->param->index] = true;
        }
    }
}

static bool uses_param(const Expr *e, int index)
{
    if (e->op == EX_PARAM)
        return e->param->index == index;
    for (int i = 0; i < e->nargs; i++)
        if (uses_param(e->args[i], index))
            return true;
    return false;
}

static bool eval_shape(const Kernel *k, const Buffer *b, const Bindings *bd, int64_t *shape,
                       Diag *d)
{
    for (int i = 0; i < b->rank; i++) {
        for (int p = 0; p < k->nparams; p++)
            if (!bd->bound[p] && uses_param(b->shape[i], p)) {
                diag_error(d, b->loc, "argument %s: dyn dimension %s has no value", b->name,
                           k->params[p]->name);
                diag_hint(d, "give an input whose shape uses it, or --set %s=N",
                          k->params[p]->name);
                return false;
            }
        if (!ir_eval_int(b->shape[i], bd->params, &shape[i]) || shape[i] < 0)
            return diag_error(d, b->loc, "argument %s: cannot evaluate its shape", b->name);
    }
    return true;
}

/* Integer data into a float argument (or back) is almost always a mistake;
 * u8 into an 8-bit float format and u2 into bf16 are raw bit patterns, and
 * u8 into f4e2m1 is packed bytes, two elements each (a checkpoint's
 * int8 [..., K/2] for an f4e2m1 [..., K] argument). */
static bool dtype_compatible(DType file, DType arg, bool *raw)
{
    *raw = (file == DT_U8 && dt_bits(arg) <= 8 && dt_is_float(arg)) ||
           (file == DT_BF16 && arg == DT_BF16);
    if (*raw)
        return true;
    return dt_is_float(file) == dt_is_float(arg);
}

static bool load_input(const Kernel *k, int arg, const char *path, Bindings *bd, Diag *d)
{
    const Buffer *b = k->bufs[arg];
    RtTensor *file = rt_npy_load(path, d);
    if (!file)
        return false;
    char want[256], got[128];
    describe_shape(b, want, sizeof want);
    rt_tensor_describe(file, got, sizeof got);
    bool raw;
    if (!dtype_compatible(file->dtype, b->dtype, &raw)) {
        SrcLoc loc = {path, 0};
        diag_error(d, loc, "holds %s but argument %s is %s", got, b->name, want);
        rt_tensor_free(file);
        return false;
    }
    if (file->rank != b->rank) {
        SrcLoc loc = {path, 0};
        diag_error(d, loc, "is %s but argument %s is %s (rank %d, not %d)", got, b->name, want,
                   b->rank, file->rank);
        rt_tensor_free(file);
        return false;
    }
    if (raw && b->dtype == DT_F4E2M1 && b->rank)
        file->shape[b->rank - 1] *= 2; /* elements, as the argument counts them */
    bind_from_shape(b, file, bd);
    int64_t shape[IR_MAX_RANK];
    if (!eval_shape(k, b, bd, shape, d)) {
        rt_tensor_free(file);
        return false;
    }
    for (int i = 0; i < b->rank; i++)
        if (shape[i] != file->shape[i]) {
            SrcLoc loc = {path, 0};
            diag_error(d, loc, "is %s but argument %s is %s: dim %d is %lld, expected %lld", got,
                       b->name, want, i, (long long)file->shape[i], (long long)shape[i]);
            rt_tensor_free(file);
            return false;
        }
    RtTensor *t = file;
    if (raw) {
        file->dtype = b->dtype; /* the bytes already are the argument's encoding */
    } else if (file->dtype != b->dtype) {
        t = rt_tensor_convert(file, b->dtype);
        rt_tensor_free(file);
    }
    bd->t[arg] = t;
    return t != NULL;
}

static void fill_random(RtTensor *t, unsigned seed)
{
    unsigned s = seed * 2654435761u + 12345u;
    int64_t n = rt_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        double v = (double)(s >> 8) / 8388608.0 - 1.0;
        if (dt_is_int(t->dtype))
            v = (double)(s % 16);
        else if (t->dtype == DT_E8M0) /* scales: powers of two around 1 */
            v = ldexp(1.0, (int)(s % 9) - 4);
        dt_store(t->dtype, t->data, i, v);
    }
}

/* An input the spec's `inputs` gave values; false (d says why) where the
 * argument's size is not the count of those values. */
static bool fill_sample(const Buffer *b, RtTensor *t, Diag *d)
{
    int64_t n = rt_tensor_numel(t);
    if (n != b->nsample)
        return diag_error(d, b->loc, "argument %s: the spec's inputs give %lld values for its %lld elements",
                          b->name, (long long)b->nsample, (long long)n);
    for (int64_t i = 0; i < n; i++)
        dt_store(t->dtype, t->data, i, b->sample[i]);
    return true;
}

/* The spec's inputs were not taken (a dyn size had no --set value): say
 * so, as random inputs may break their contract. */
static void note_inputs_unset(const Kernel *k, const Opts *o)
{
    char dyn[256] = "";
    for (int i = 0; i < k->nkparams; i++)
        if (k->kparams[i].kind == KP_DYN && strlen(dyn) + strlen(k->kparams[i].name) + 3 < sizeof dyn)
            snprintf(dyn + strlen(dyn), sizeof dyn - strlen(dyn), "%s%s", *dyn ? ", " : "", k->kparams[i].name);
    fprintf(stderr, "tilec: %s: note: kernel %s takes its spec's inputs only with its dyn sizes given by --set (%s); "
            "inputs not given with --in are random\n", o->spec, k->name, dyn);
}

/* Build every argument: given inputs first (they bind dyn dims), then
 * the spec's sample inputs, random inputs and zeroed outputs. */
bool setup_args(const Kernel *k, const Opts *o, Bindings *bd, Diag *d)
{
    memset(bd, 0, sizeof *bd);
    for (int i = 0; i < o->nsets; i++) { /* a printed kernel's dyn sizes (load_kernel checked them) */
        const KParam *p = ir_kparam_find(k, o->sets[i].name);
        if (p && p->kind == KP_DYN && p->dyn && dyn_value(o->sets[i].value, &bd->params[p->dyn->index]))
            bd->bound[p->dyn->index] = true;
    }
    for (int i = 0; i < o->nins; i++)
        if (!ir_buf_find(k, o->ins[i].name) || ir_buf_find(k, o->ins[i].name)->scope != SCOPE_GLOBAL) {
            SrcLoc none = {0};
            return diag_error(d, none, "--in %s: kernel %s has no argument %s", o->ins[i].name,
                              k->name, o->ins[i].name);
        }
    for (int i = 0; i < o->nouts; i++) {
        const Buffer *b = ir_buf_find(k, o->outs[i].name);
        if (!b || b->scope != SCOPE_GLOBAL || b->dir == ARG_IN) {
            SrcLoc none = {0};
            return diag_error(d, none, "--out %s: kernel %s has no output argument %s",
                              o->outs[i].name, k->name, o->outs[i].name);
        }
    }
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        const char *path = find_named(o->ins, o->nins, b->name);
        if (path && !load_input(k, i, path, bd, d))
            return false;
    }
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (bd->t[i])
            continue;
        int64_t shape[IR_MAX_RANK];
        if (!eval_shape(k, b, bd, shape, d))
            return false;
        bd->t[i] = rt_tensor_new(b->dtype, b->rank, shape);
        if (!bd->t[i])
            return diag_error(d, b->loc, "argument %s: out of memory", b->name);
        if (b->dir != ARG_OUT && b->sample && !fill_sample(b, bd->t[i], d))
            return false;
        if (b->dir != ARG_OUT && !b->sample)
            fill_random(bd->t[i], o->seed + (unsigned)i);
    }
    if (k->inputs_unset)
        note_inputs_unset(k, o);
    return true;
}

bool bindings_fit(const Kernel *k, const Kernel *of, const Bindings *bd)
{
    if (k->nargs != of->nargs || k->nparams != of->nparams)
        return false;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        const RtTensor *t = bd->t[i];
        int64_t shape[IR_MAX_RANK];
        Diag quiet = {0};
        if (strcmp(b->name, of->bufs[i]->name) || b->dir != of->bufs[i]->dir || t->dtype != b->dtype ||
            t->rank != b->rank || !eval_shape(k, b, bd, shape, &quiet) ||
            memcmp(shape, t->shape, sizeof(int64_t) * (size_t)b->rank))
            return false;
    }
    return true;
}

Bindings *bindings_clone(const Kernel *k, const Bindings *src)
{
    Bindings *b = malloc(sizeof *b);
    *b = *src;
    for (int i = 0; i < k->nargs; i++)
        b->t[i] = rt_tensor_convert(src->t[i], src->t[i]->dtype);
    return b;
}

/* --------------------------------------------------------------- running */

/* Runs the kernel on bd: the interpreter on Tile IR, or the pipeline and the
 * JIT.  k is lowered in place when compiling. */
static bool execute_gpu(Kernel *k, const TargetInfo *t, const Opts *o, Bindings *bd, double *median,
                        Diag *d)
{
    PassOptions po = {.dump_after = NULL, .dump = stderr, .time_passes = o->time_passes};
    if (!pass_pipeline(k, t, &po, d))
        return false;
    void *host[64];
    size_t bytes[64];
    for (int i = 0; i < k->nargs; i++) {
        host[i] = bd->t[i]->data;
        bytes[i] = rt_tensor_bytes(bd->t[i]);
    }
    if (o->simt) { /* the GPU-lowered IR, threads and all, in the interpreter */
        double t0 = rt_now();
        bool ok = ir_interp(k, host, bd->params, d);
        *median = rt_now() - t0;
        return ok;
    }
    CgGpuArgs a = {host, bytes, bd->params};
    double ms = 0;
    if (!cg_gpu_run(k, t, &a, o->repeat, &ms, d))
        return false;
    *median = ms * 1e-3;
    return true;
}

/* The argument lists of --rotate: list 0 is the bindings themselves, the
 * others hold copies of each read-only input (outputs and inout
 * arguments stay shared, so the last run's results are the ones kept),
 * stored as the tensors are (64-byte aligned: malloc's 16-byte alignment
 * made every zmm load of a copy straddle two cache lines, and timed tiles
 * of many loads per multiply-add slower than they run on aligned inputs —
 * bf16 at 16 rows in 8x2 tiles 3.5-3.8 ms against 1.9-2.0 in
 * bench_decode). */
enum { MAX_ROTATE = 64 }; /* parse_opts refuses more */
typedef struct Copies {
    int n;
    void *args[MAX_ROTATE][64];
} Copies;

static void copies_free(const Kernel *k, Copies *c)
{
    for (int r = 1; r < c->n; r++)
        for (int i = 0; i < k->nargs; i++)
            if (k->bufs[i]->dir == ARG_IN)
                free(c->args[r][i]);
}

static bool rotated_inputs(const Kernel *k, const Bindings *bd, int n, Copies *c, Diag *d)
{
    c->n = n < MAX_ROTATE ? n : MAX_ROTATE;
    for (int r = 0; r < c->n; r++)
        for (int i = 0; i < k->nargs; i++) {
            void *data = bd->t[i]->data;
            if (r > 0 && k->bufs[i]->dir == ARG_IN) {
                size_t bytes = rt_tensor_bytes(bd->t[i]);
                void *copy = rt_tensor_storage(bytes);
                if (!copy) {
                    c->n = r + 1; /* this list's earlier copies are freed too */
                    for (int j = i; j < k->nargs; j++)
                        c->args[r][j] = NULL;
                    copies_free(k, c);
                    SrcLoc none = {k->bufs[i]->loc.file, k->bufs[i]->loc.line};
                    diag_error(d, none, "--rotate %d: no memory for copy %d of input %s (%zu bytes)", n, r,
                               k->bufs[i]->name, bytes);
                    return false;
                }
                data = memcpy(copy, data, bytes);
            }
            c->args[r][i] = data;
        }
    return true;
}

/* --time-passes, after the passes' lines: where code generation's time
 * went (LLVM's; a GEMM's passes take under a millisecond, its O3 and
 * machine code most of the compile). */
static void print_cg_times(const CgTimes *t)
{
    fprintf(stderr, "llvm %-10s %8.3f ms\nllvm %-10s %8.3f ms\n", "ir", t->build * 1e3, "O3", t->optimise * 1e3);
    if (t->machine > 0)
        fprintf(stderr, "llvm %-10s %8.3f ms\n", "machine", t->machine * 1e3);
}

CgJit *compile_jit(Kernel *k, const TargetInfo *t, const Opts *o, Diag *d)
{
    PassOptions po = {.dump_after = NULL, .dump = stderr, .time_passes = o->time_passes};
    CgJit *jit = pass_pipeline(k, t, &po, d) ? cg_jit_compile(k, t, d) : NULL;
    if (jit && o->time_passes) {
        CgTimes times = cg_jit_times(jit);
        print_cg_times(&times);
    }
    return jit;
}

bool run_cpu(Kernel *k, CgJit *jit, const Opts *o, Bindings *bd, int untimed, double *median, Diag *d)
{
    Copies c;
    if (!rotated_inputs(k, bd, o->rotate, &c, d))
        return false;
    int reps = o->repeat;
    double *times = malloc((size_t)reps * sizeof *times); /* every run asked for (it was 64 at most) */
    bool ok = times != NULL;
    if (!times)
        diag_error(d, (SrcLoc){o->spec, 0}, "--repeat %d: no memory for the timings", reps);
    for (int r = -untimed; ok && r < reps; r++) {
        void **args = c.args[r < 0 ? 0 : r % c.n];
        double t0 = rt_now();
        ok = jit ? cg_launch(k, cg_jit_fn(jit), args, bd->params, o->threads, d) : ir_interp(k, args, bd->params, d);
        if (r >= 0)
            times[r] = rt_now() - t0;
    }
    copies_free(k, &c);
    if (ok)
        *median = rt_median(times, reps);
    free(times);
    return ok;
}

bool execute(Kernel *k, bool interp, const TargetInfo *t, const Opts *o, Bindings *bd,
                    double *median, Diag *d)
{
    if (!interp && t->gpu_sm && o->rotate > 1) {
        SrcLoc none = {o->spec, 0};
        diag_error(d, none, "--rotate is for CPU targets: %s keeps its inputs in device memory", t->name);
        return false;
    }
    if (!interp && t->gpu_sm)
        return execute_gpu(k, t, o, bd, median, d);
    CgJit *jit = NULL;
    if (!interp && !(jit = compile_jit(k, t, o, d)))
        return false;
    bool ok = run_cpu(k, jit, o, bd, 0, median, d);
    cg_jit_free(jit);
    return ok;
}

/* Whether lowered code multiplies 8-bit floats on a GPU's tensor cores.
 * Those keep their running sum with ~13 fraction bits, not f32's 23, and
 * truncate, so the error drifts with K: on an H200, 2^-12 of the sum at
 * K = 32 and 0.3 in values of ~80 at K = 4096 (cuBLASLt's FAST_ACCUM mode
 * behaves alike; promoting partial sums to f32 is the way out, not done). */
static bool fp8_mma_in(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (fp8_mma_in(s->u.seq.items[i]))
                return true;
        return false;
    case ST_FOR: return fp8_mma_in(s->u.loop.body);
    case ST_IF: return fp8_mma_in(s->u.if_.then_) || (s->u.if_.else_ && fp8_mma_in(s->u.if_.else_));
    case ST_MICRO_GEMM: return dt_bits(s->u.gemm.a.buf->dtype) == 8;
    default: return false;
    }
}

bool fp8_tensor_cores(const Kernel *k) { return fp8_mma_in(k->body); }

/* Tolerance of a compiled result against the interpreter, from the output
 * dtype: f32 results differ only by summation order — or, from fp8 tensor
 * cores, by their rounding (above). */
static double tolerance(DType dt, bool fp8_mma)
{
    switch (dt) {
    case DT_F32: return fp8_mma ? 1e-2 : 1e-4;
    case DT_F16: return 2e-3;
    case DT_BF16: return 1.6e-2;
    case DT_F8E4M3: return 1.3e-1;
    case DT_F8E5M2: return 2.6e-1;
    default: return 0;
    }
}

OutputDiff output_diff(DType dt, bool fp8_mma, const RtTensor *ref, const RtTensor *got)
{
    int64_t n = rt_tensor_numel(ref);
    double maxabs = 0, maxref = 0, maxrel = 0;
    for (int64_t j = 0; j < n; j++) {
        double x = dt_load(dt, ref->data, j), y = dt_load(dt, got->data, j);
        double diff = fabs(x - y);
        if (!isfinite(x) || !isfinite(y)) /* infinities and NaNs must match exactly */
            diff = (x == y || (isnan(x) && isnan(y))) ? 0 : INFINITY;
        else
            maxref = fmax(maxref, fabs(x));
        maxabs = fmax(maxabs, diff);
        if (fabs(x) > 1e-6)
            maxrel = fmax(maxrel, diff / fabs(x));
    }
    return (OutputDiff){maxabs, maxrel, tolerance(dt, fp8_mma) * fmax(maxref, 1.0)};
}

static bool compare_outputs(const Kernel *k, const Bindings *ref, const Bindings *got,
                            const char *what, bool on_gpu)
{
    bool ok = true, fp8_mma = on_gpu && fp8_tensor_cores(k);
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dir == ARG_IN)
            continue;
        OutputDiff od = output_diff(b->dtype, fp8_mma, ref->t[i], got->t[i]);
        bool pass = od.maxabs <= od.tol;
        printf("check %s: max |diff| %.3g, max rel %.3g (tolerance %.3g) — %s vs interpreter: %s\n",
               b->name, od.maxabs, od.maxrel, od.tol, what, pass ? "OK" : "MISMATCH");
        ok &= pass;
    }
    return ok;
}

static bool write_outputs(const Kernel *k, const Opts *o, const Bindings *bd, Diag *d)
{
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dir == ARG_IN)
            continue;
        const RtTensor *t = bd->t[i];
        const char *path = find_named(o->outs, o->nouts, b->name);
        char desc[128];
        rt_tensor_describe(t, desc, sizeof desc);
        if (!path) {
            double sum = 0;
            int64_t n = rt_tensor_numel(t);
            for (int64_t j = 0; j < n; j++)
                sum += dt_load(t->dtype, t->data, j);
            printf("%s: %s, sum %.6g (no --out %s=FILE given)\n", b->name, desc, sum, b->name);
            continue;
        }
        bool keep = o->raw && t->dtype != DT_F8E4M3 && t->dtype != DT_F8E5M2 && t->dtype != DT_E8M0;
        RtTensor *w = keep ? (RtTensor *)t : rt_tensor_convert(t, DT_F32);
        if (o->raw && !keep) { /* raw fp8 bytes go out as u1 */
            w = rt_tensor_convert(t, t->dtype);
            w->dtype = DT_U8;
        }
        bool ok = w && rt_npy_save(path, w, d);
        if (w != t)
            rt_tensor_free(w);
        if (!ok)
            return false;
        printf("%s: %s written to %s\n", b->name, desc, path);
    }
    return true;
}

/* " (tiles from the spec's choose: BK=4096 BM=1)" when it picked any. */
static const char *picks_of(const Kernel *k)
{
    static char out[512];
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < k->nkparams; i++)
        if (k->kparams[i].picked && n < sizeof out)
            n += (size_t)snprintf(out + n, sizeof out - n, "%s%s=%s", n ? " " : " (tiles from the spec's choose: ",
                                  k->kparams[i].name, k->kparams[i].value);
    if (n && n < sizeof out)
        snprintf(out + n, sizeof out - n, ")");
    return out;
}

/* A copy of the kernel lowered and JIT-compiled on a thread of its own
 * while `tilec run` makes the inputs and runs the interpreter, its two
 * other long waits (an MoE GEMM: 1.3 s compiling, 0.6 s making fp4
 * weights). */
typedef struct Compiling {
    Kernel *k;
    const TargetInfo *t;
    const Opts *o;
    CgJit *jit;
    Diag d;
    pthread_t thread;
    bool started;
} Compiling;

static void *compile_copy(void *arg)
{
    Compiling *c = arg;
    c->jit = compile_jit(c->k, c->t, c->o, &c->d);
    return NULL;
}

/* Starts compiling a copy of o's kernel; false (and no thread) where it
 * cannot be loaded or the thread not made: the caller compiles its own. */
static bool start_compiling(Compiling *c, const Opts *o, const TargetInfo *t)
{
    *c = (Compiling){.t = t, .o = o};
    if (!(c->k = load_kernel(o, t, &c->d)))
        return false;
    c->started = !pthread_create(&c->thread, NULL, compile_copy, c);
    if (!c->started) {
        ir_kernel_free(c->k);
        c->k = NULL;
    }
    return c->started;
}

/* Waits for the compile; its code, or NULL with d set. */
static CgJit *finish_compiling(Compiling *c, Diag *d)
{
    if (!c->started)
        return NULL;
    pthread_join(c->thread, NULL);
    c->started = false;
    if (!c->jit && !d->set)
        *d = c->d;
    return c->jit;
}

static int cmd_run(const Opts *o)
{
    Diag d = {0};
    const TargetInfo *t = target_of(o, &d);
    if (!t)
        return fail(&d);
    if (o->simt && !t->gpu_sm) {
        SrcLoc none = {0};
        diag_error(&d, none, "--simt runs GPU-lowered code: it needs --target sm_90a or sm_80");
        return fail(&d);
    }
    if (!o->interp && !t->gpu_sm && !ir_target_runs_here(t)) {
        SrcLoc none = {0};
        diag_error(&d, none, "this CPU cannot run target %s", t->name);
        diag_hint(&d, "use --target %s, or --interp",
                  ir_host_target() ? ir_host_target()->name : "x86-avx2");
        return fail(&d);
    }
    Opts tuned;
    if (!(o = with_tuned(o, t, &tuned, &d)))
        return fail(&d);
    Kernel *k = load_kernel(o, t, &d);
    if (!k)
        return fail(&d);
    if (k->nargs > 64 || k->nparams > 64) {
        SrcLoc none = {o->spec, 0};
        diag_error(&d, none, "kernel %s is too large for tilec run (64 arguments at most)", k->name);
        ir_kernel_free(k);
        return fail(&d);
    }
    Bindings *bd = malloc(sizeof *bd);
    int rc = 1;
    Bindings *ref = NULL;
    Kernel *tile = NULL;
    Compiling cc = {0};
    bool compiles = !(o->interp && !o->check) && !t->gpu_sm; /* else the interpreter, or the GPU's own path */
    bool compiled_apart = compiles && start_compiling(&cc, o, t);
    CgJit *jit = NULL;
    if (!setup_args(k, o, bd, &d))
        goto out;
    if (o->check) {
        /* The interpreter runs the Tile IR as the frontend built it, before
         * any pass: an independent path to the same numbers. */
        ref = bindings_clone(k, bd);
        tile = load_kernel(o, t, &d);
        double tref;
        Opts once = *o;
        once.repeat = 1;
        if (!tile || !execute(tile, true, t, &once, ref, &tref, &d))
            goto out;
    }
    double median;
    if (compiled_apart ? !(jit = finish_compiling(&cc, &d)) || !run_cpu(cc.k, jit, o, bd, 0, &median, &d)
                       : !execute(k, o->interp && !o->check, t, o, bd, &median, &d))
        goto out;
    const char *what = o->interp && !o->check ? "interpreter"
                       : o->simt                 ? "SIMT interpreter"
                                                 : t->name;
    if (o->repeat > 1)
        printf("%s: %s median of %d runs: %.3f ms%s\n", k->name, what, o->repeat, median * 1e3, picks_of(k));
    rc = 0;
    if (o->check && !compare_outputs(k, ref, bd, what, t->gpu_sm && !o->simt && !o->interp))
        rc = 1;
    if (!write_outputs(k, o, bd, &d))
        rc = 1;
out:
    finish_compiling(&cc, &d); /* where an error came first */
    cg_jit_free(cc.jit);
    ir_kernel_free(cc.k);
    if (d.set)
        fail(&d);
    if (ref) {
        bindings_free(ref, k->nargs);
        free(ref);
    }
    bindings_free(bd, k->nargs);
    free(bd);
    ir_kernel_free(tile);
    ir_kernel_free(k);
    return rc;
}

/* PTX to o->out_path (atomically: a temporary file renamed into place),
 * then the --report from it. */
static bool write_ptx(const Kernel *k, const TargetInfo *t, const Opts *o, Diag *d)
{
    char *ptx = cg_emit_ptx(k, t, d);
    if (!ptx)
        return false;
    bool to_stdout = !strcmp(o->out_path, "-");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", to_stdout ? "/tmp/tilec.ptx" : o->out_path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f && fputs(ptx, f) >= 0;
    if (f)
        ok = !fclose(f) && ok;
    if (ok && to_stdout)
        fputs(ptx, stdout);
    free(ptx);
    if (!ok) {
        SrcLoc loc = {to_stdout ? tmp : o->out_path, 0};
        remove(tmp);
        return diag_error(d, loc, "cannot write");
    }
    if (o->report && !report_gpu(k->name, t->name, tmp, (long)pass_shared_bytes(k), stdout, d)) {
        remove(tmp);
        return false;
    }
    if (to_stdout)
        remove(tmp);
    else if (rename(tmp, o->out_path)) {
        SrcLoc loc = {o->out_path, 0};
        remove(tmp);
        return diag_error(d, loc, "cannot write");
    }
    return true;
}

static int cmd_compile(const Opts *o)
{
    Diag d = {0};
    const TargetInfo *t0 = o->target ? ir_target(o->target) : NULL;
    bool gpu = t0 && t0->gpu_sm;
    const char *emit = o->emit ? o->emit : gpu ? "ptx" : "obj";
    CgEmit what = CG_EMIT_OBJ;
    if (gpu && (!strcmp(emit, "obj") || !strcmp(emit, "asm")))
        emit = !strcmp(emit, "asm") ? "ptx" : emit;
    if (gpu && !strcmp(emit, "obj"))
        return usage_error("GPU targets emit ptx, llvm or ir, not '%s'", emit);
    if (!gpu && !strcmp(emit, "ptx"))
        return usage_error("--emit ptx needs --target sm_90a or sm_80%s", "");
    if (o->report && !gpu)
        return usage_error("--report is for GPU targets (--target sm_90a or sm_80)%s", "");
    if (!strcmp(emit, "llvm"))
        what = CG_EMIT_LLVM;
    else if (!strcmp(emit, "asm"))
        what = CG_EMIT_ASM;
    else if (!strcmp(emit, "obj"))
        what = CG_EMIT_OBJ;
    else if (strcmp(emit, "ir") && strcmp(emit, "ptx"))
        return usage_error("unknown --emit kind '%s' (ir, llvm, asm, obj or ptx)", emit);
    if (!o->out_path)
        return usage_error("compile needs -o OUT%s", "");
    if (!strcmp(o->out_path, "-") && !strcmp(emit, "obj"))
        return usage_error("an object file cannot go to stdout%s", "");
    const TargetInfo *t = target_of(o, &d);
    if (!t)
        return fail(&d);
    Opts tuned;
    if (!(o = with_tuned(o, t, &tuned, &d)))
        return fail(&d);
    Kernel *k = load_kernel(o, t, &d);
    if (!k)
        return fail(&d);
    PassOptions po = {.dump_after = o->dump_after, .dump = stderr, .time_passes = o->time_passes};
    int rc = 1;
    if (!pass_pipeline(k, t, &po, &d))
        goto out;
    if (!strcmp(emit, "ir")) {
        bool to_stdout = !strcmp(o->out_path, "-");
        FILE *f = to_stdout ? stdout : fopen(o->out_path, "w");
        if (!f) {
            SrcLoc loc = {o->out_path, 0};
            diag_error(&d, loc, "cannot write");
            goto out;
        }
        ir_print(k, f);
        if (!to_stdout)
            fclose(f);
    } else if (!strcmp(emit, "ptx")) {
        if (!write_ptx(k, t, o, &d))
            goto out;
    } else {
        CgTimes times = {0};
        if (!cg_emit_file(k, t, what, !strcmp(o->out_path, "-") ? "/dev/stdout" : o->out_path, &times, &d))
            goto out;
        if (o->time_passes)
            print_cg_times(&times);
    }
    rc = 0;
out:
    if (rc)
        fail(&d);
    ir_kernel_free(k);
    return rc;
}

static int cmd_ir(const Opts *o)
{
    Diag d = {0};
    /* whose figures the spec's choose sees (none on a CPU tilec cannot run) */
    const TargetInfo *t = o->target ? target_of(o, &d) : ir_host_target();
    if (o->target && !t)
        return fail(&d);
    Kernel *k = load_kernel(o, t, &d);
    if (!k)
        return fail(&d);
    ir_print(k, stdout);
    ir_kernel_free(k);
    return 0;
}

static int cmd_targets(void)
{
    const char *names[] = {"x86-avx512", "x86-avx2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const TargetInfo *t = ir_target(names[i]), *host = ir_host_target();
        printf("%-12s %d-bit vectors%s  %s\n", t->name, t->vector_bits,
               t->has_bf16_dot ? ", bf16 dot" : "          ",
               ir_target_runs_here(t) ? "runs on this CPU" : "compile only on this CPU");
        if (host && !strcmp(host->name, t->name))
            printf("%-12s the default here: L1d %lld KiB, L2 %lld KiB (%s; --target %s plans for %lld and %lld)\n",
                   "", (long long)(host->l1_bytes >> 10), (long long)(host->l2_bytes >> 10),
                   ir_host_caches_read() ? "this CPU's, from sysfs" : "the kind's: sysfs gave none",
                   t->name, (long long)(t->l1_bytes >> 10), (long long)(t->l2_bytes >> 10));
        if (host && !strcmp(host->name, t->name))
            printf("%-12s %s; %s%s%s\n", "",
                   host->subnormal_assists ? "subnormal operands slow this CPU's FMAs"
                                           : "subnormal operands at full speed here",
                   host->has_bf16_dot ? "bf16 dot products" : "bf16 widened to f32 for FMAs",
                   host->split_512 ? "; 512-bit operations in two halves" : "",
                   host->one_stream ? "; weights read best as one stream" : "");
    }
    const char *gpus[] = {"sm_90a", "sm_80"};
    for (size_t i = 0; i < sizeof gpus / sizeof gpus[0]; i++) {
        const TargetInfo *t = ir_target(gpus[i]);
        printf("%-12s PTX, %d threads per block, %lld KiB shared  runs on a CUDA device (tilec run)\n",
               t->name, t->gpu_threads, (long long)(t->max_shared_bytes / 1024));
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            char *args[] = {argv[0], argv[2], "--help", NULL};
            return main(3, args);
        }
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    const char *help = !strcmp(cmd, "run")       ? usage_run
                       : !strcmp(cmd, "compile") ? usage_compile
                       : !strcmp(cmd, "sweep")   ? usage_sweep
                       : !strcmp(cmd, "ir")      ? usage_ir
                                                 : NULL;
    if (!help && strcmp(cmd, "targets"))
        return usage_error("unknown command '%s' (run, compile, sweep, ir, targets)", cmd);
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(help ? help : "usage: tilec targets\n", stdout);
            return 0;
        }
    if (!strcmp(cmd, "targets"))
        return cmd_targets();
    Opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        return rc;
    if (!o.spec)
        return usage_error("%s needs a SPEC.lua", cmd);
    if (is_printed_ir(o.spec) && (!strcmp(cmd, "sweep") || o.tuned))
        return usage_error("%s is printed IR, its tile sizes fixed: sweep and --tuned take a SPEC.lua", o.spec);
    if ((o.novers || o.store || o.jobs) && strcmp(cmd, "sweep"))
        return usage_error("--over, --store and --jobs belong to 'tilec sweep', not '%s'", cmd);
    if (o.tuned && strcmp(cmd, "run") && strcmp(cmd, "compile"))
        return usage_error("--tuned belongs to 'tilec run' and 'tilec compile', not '%s'", cmd);
    if (!strcmp(cmd, "run"))
        return cmd_run(&o);
    if (!strcmp(cmd, "sweep")) {
        if (o.nouts || o.interp || o.simt || o.raw)
            return usage_error("--out/--interp/--simt/--raw belong to 'tilec run', not '%s'", cmd);
        return cmd_sweep(&o);
    }
    if (o.nins || o.nouts || o.interp || o.check || o.simt)
        return usage_error("--in/--out/--interp/--simt/--check belong to 'tilec run', not '%s'", cmd);
    return !strcmp(cmd, "compile") ? cmd_compile(&o) : cmd_ir(&o);
}
