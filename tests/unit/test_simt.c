/* test_simt.c — the interpreter's SIMT mode (kernels with `threads tid < N`):
 * per-thread variables and LOCAL buffers, one SHARED buffer per block (fresh
 * each block), lock-step at barriers, the race detector and the divergent
 * barrier check.  Kernels are hand-written Loop IR in tests/ir/simt_*.tir;
 * results are checked against plain C, errors by message and line. */
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "test.h"
#include "tests/harness/run.h"

#include <math.h>
#include <stdlib.h>

#include <stdint.h>
#include <string.h>
#include <time.h>


/* Parse (and verify) text as file `name`; NULL with a printed reason. */
static Kernel *parse_text(const char *text, const char *name)
{
    Diag d = {0};
    Kernel *k = ir_parse(text, name, &d);
    if (k && !ir_verify(k, &d)) {
        ir_kernel_free(k);
        k = NULL;
    }
    if (!k) {
        printf("  ");
        diag_print(&d, stdout);
    }
    return k;
}

/* Remove the first `cut` after the first `anchor` (NULL: the start) from
 * text, to make a broken variant of a good kernel. */
static bool cut_text(char *text, const char *anchor, const char *cut)
{
    char *from = anchor ? strstr(text, anchor) : text;
    char *at = from ? strstr(from, cut) : NULL;
    if (at)
        memmove(at, at + strlen(cut), strlen(at + strlen(cut)) + 1);
    return at != NULL;
}

/* tests/ir/NAME.tir, with `cut` (if not NULL) removed after `anchor`. */
static char *variant(const char *name, const char *anchor, const char *cut)
{
    char path[256];
    snprintf(path, sizeof path, "tests/ir/%s.tir", name);
    char *text = th_read_file(path);
    CHECKF(text != NULL, "cannot read %s (run from the repo root)", path);
    if (text && cut && !cut_text(text, anchor, cut)) {
        CHECKF(false, "%s has no '%s'", path, cut);
        free(text);
        return NULL;
    }
    return text;
}

static Kernel *load(const char *name, const char *anchor, const char *cut)
{
    char *text = variant(name, anchor, cut);
    if (!text)
        return NULL;
    char path[256];
    snprintf(path, sizeof path, "tests/ir/%s.tir", name);
    Kernel *k = parse_text(text, path);
    CHECKF(k != NULL, "%s does not parse", path);
    free(text);
    return k;
}

/* Line (1-based) of the first line containing `what` in the variant. */
static int line_of(const char *name, const char *anchor, const char *cut, const char *what)
{
    char *text = variant(name, anchor, cut);
    char *hit = text ? strstr(text, what) : NULL;
    int line = 1;
    for (char *p = text; hit && p < hit; p++)
        line += *p == '\n';
    free(text);
    return hit ? line : -1;
}

static void fill(float *x, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = test_rand(&seed);
}

/* Run k; on failure the diagnostic is left in d. */
static bool run(const Kernel *k, void **args, Diag *d)
{
    *d = (Diag){0};
    return ir_interp(k, args, NULL, d);
}

/* k must fail with a message containing `want` at `name`.tir:`line`. */
static void expect_error(const Kernel *k, void **args, const char *name, int line, const char *want)
{
    Diag d;
    bool ok = run(k, args, &d);
    CHECKF(!ok, "%s ran without the expected error '%s'", name, want);
    if (ok)
        return;
    char file[256];
    snprintf(file, sizeof file, "tests/ir/%s.tir", name);
    CHECKF(strstr(d.msg, want) != NULL, "%s: message '%s' lacks '%s'", name, d.msg, want);
    CHECKF(d.loc.file && !strcmp(d.loc.file, file) && d.loc.line == line,
           "%s: error at %s:%d, want %s:%d (%s)", name, d.loc.file ? d.loc.file : "?", d.loc.line,
           file, line, d.msg);
}

static void expect_ok(const Kernel *k, void **args, const char *name)
{
    Diag d;
    bool ok = run(k, args, &d);
    CHECKF(ok, "%s failed: %s:%d: %s", name, d.loc.file ? d.loc.file : "?", d.loc.line, d.msg);
}

/* ------------------------------------------------------ correct kernels */

TEST(reverse_through_shared)
{
    Kernel *k = load("simt_reverse", NULL, NULL);
    if (!k)
        return;
    float x[512], y[512];
    fill(x, 512, 1);
    void *args[] = {x, y};
    expect_ok(k, args, "simt_reverse");
    int bad = 0;
    for (int b = 0; b < 4; b++)
        for (int t = 0; t < 128; t++)
            bad += y[b * 128 + t] != x[b * 128 + 127 - t];
    CHECKF(bad == 0, "%d of 512 elements wrong", bad);
    ir_kernel_free(k);
}

/* A tree sum over 7 phases, each behind a barrier inside a serial loop. */
TEST(reduction_phases_in_a_loop)
{
    Kernel *k = load("simt_reduce", NULL, NULL);
    if (!k)
        return;
    float x[4 * 128], y[4];
    fill(x, 4 * 128, 2);
    void *args[] = {x, y};
    expect_ok(k, args, "simt_reduce");
    for (int b = 0; b < 4; b++) {
        float s[128];
        memcpy(s, x + b * 128, sizeof s);
        for (int h = 64; h >= 1; h /= 2) /* the same tree, the same f32 sums */
            for (int t = 0; t < h; t++)
                s[t] = s[t] + s[t + h];
        CHECKF(y[b] == s[0], "block %d: %g, want %g", b, y[b], s[0]);
    }
    ir_kernel_free(k);
}

/* 2x2 blocks of 128 threads transposing 64x64 tiles through a padded shared
 * tile; also the detector's cost: it must stay far below a second. */
TEST(transpose_64x64_tiles)
{
    Kernel *k = load("simt_transpose", NULL, NULL);
    if (!k)
        return;
    static float x[128 * 128], y[128 * 128];
    fill(x, 128 * 128, 3);
    void *args[] = {x, y};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_ok(k, args, "simt_transpose");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int bad = 0;
    for (int i = 0; i < 128; i++)
        for (int j = 0; j < 128; j++)
            bad += y[i * 128 + j] != x[j * 128 + i];
    CHECKF(bad == 0, "%d of %d elements wrong", bad, 128 * 128);
    printf("  4 blocks x 128 threads, 64x64 tiles: %.1f ms\n", s * 1e3);
    CHECKF(s < 1.0, "took %.3f s", s); /* sanitizers included */
    ir_kernel_free(k);
}

/* A tensor-core product over one warp: each thread's accumulator slots
 * are elements ir_mma_pos of the 16x8 result. */
TEST(micro_gemm_per_thread_slots)
{
    Kernel *k = load("simt_mma", NULL, NULL);
    if (!k)
        return;
    float a[16 * 16], b[16 * 8], c[16 * 8];
    fill(a, 16 * 16, 4);
    fill(b, 16 * 8, 5);
    void *args[] = {a, b, c};
    expect_ok(k, args, "simt_mma");
    float worst = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            float want = 0;
            for (int kk = 0; kk < 16; kk++)
                want += a[i * 16 + kk] * b[kk * 8 + j];
            float e = fabsf(c[i * 8 + j] - want);
            worst = e > worst ? e : worst;
        }
    CHECKF(worst < 1e-5f, "max |diff| %g", worst);
    ir_kernel_free(k);
}

TEST(local_buffers_are_private)
{
    Kernel *k = load("simt_local", NULL, NULL);
    if (!k)
        return;
    float x[2 * 128], y[2 * 128];
    fill(x, 2 * 128, 6);
    void *args[] = {x, y};
    expect_ok(k, args, "simt_local");
    int bad = 0;
    for (int i = 0; i < 2 * 128; i++)
        bad += y[i] != x[i] * 2.0f + 1.0f;
    CHECKF(bad == 0, "%d of 256 threads read another thread's LOCAL value", bad);
    ir_kernel_free(k);
}

/* Block 1 reads shared memory that only block 0 wrote: it sees the NaN
 * pattern of fresh shared memory, not block 0's values. */
TEST(shared_buffers_are_fresh_per_block)
{
    Kernel *k = load("simt_fresh_shared", NULL, NULL);
    if (!k)
        return;
    float x[128], y[2 * 128];
    fill(x, 128, 7);
    void *args[] = {x, y};
    expect_ok(k, args, "simt_fresh_shared");
    int bad0 = 0, bad1 = 0;
    for (int t = 0; t < 128; t++) {
        bad0 += y[t] != x[t];
        bad1 += !isnan(y[128 + t]);
    }
    CHECKF(bad0 == 0 && bad1 == 0, "block 0: %d wrong, block 1: %d not NaN", bad0, bad1);
    ir_kernel_free(k);
}

/* All threads add to one shared and one global element: atomics do not
 * race with each other, and the sums come out in thread order. */
TEST(atomic_adds_do_not_race)
{
    Kernel *k = load("simt_atomic", NULL, NULL);
    if (!k)
        return;
    float x[4 * 128], total[1] = {0.5f}, y[4];
    for (int i = 0; i < 4 * 128; i++)
        x[i] = (float)(i % 7) - 2.5f;
    void *args[] = {x, total, y};
    expect_ok(k, args, "simt_atomic");
    float want_total = 0.5f;
    for (int b = 0; b < 4; b++) {
        float acc = 0;
        for (int t = 0; t < 128; t++) {
            acc += x[b * 128 + t];
            want_total += x[b * 128 + t];
        }
        CHECKF(y[b] == acc, "block %d: %g, want %g", b, y[b], acc);
    }
    CHECKF(total[0] == want_total, "total %g, want %g", total[0], want_total);
    ir_kernel_free(k);
}

/* ------------------------------------------------------------- races */

/* Threads run one after another between barriers, so the first conflict is
 * known exactly: the messages below are the detector's whole verdict. */

TEST(missing_barrier_is_a_race)
{
    const char *cut = "  barrier\n";
    Kernel *k = load("simt_reverse", NULL, cut);
    if (!k)
        return;
    float x[512], y[512];
    fill(x, 512, 8);
    void *args[] = {x, y};
    /* thread 63 read s[64] (unwritten yet); thread 64 then writes it */
    expect_error(k, args, "simt_reverse", line_of("simt_reverse", NULL, cut, "s[tid] ="),
                 "race on s[64]: thread 64 writes it after thread 63 read it with no barrier between");
    ir_kernel_free(k);
}

TEST(missing_barrier_in_phase_loop_is_a_race)
{
    const char *cut = "    barrier\n";
    Kernel *k = load("simt_reduce", NULL, cut);
    if (!k)
        return;
    float x[4 * 128], y[4];
    fill(x, 4 * 128, 9);
    void *args[] = {x, y};
    /* phase 0 of thread 0 reads s[64], which thread 64 wrote just before */
    expect_error(k, args, "simt_reduce", line_of("simt_reduce", NULL, cut, "s[tid] = s[tid]"),
                 "race on s[64]: thread 0 reads it after thread 64 wrote it with no barrier between");
    ir_kernel_free(k);
}

/* A second phase overwrites what a neighbour read in the first one. */
TEST(write_after_read_is_a_race)
{
    Kernel *k = load("simt_war", NULL, NULL);
    if (!k)
        return;
    float x[128], y[128];
    fill(x, 128, 10);
    void *args[] = {x, y};
    /* the two statements after the barrier run one after the other, each
     * for every thread: thread 127 read s[0] before thread 0 writes it */
    expect_error(k, args, "simt_war", line_of("simt_war", NULL, NULL, "s[tid] = 0.0"),
                 "race on s[0]: thread 0 writes it after thread 127 read it with no barrier between");
    ir_kernel_free(k);
}

TEST(write_after_write_is_a_race)
{
    Kernel *k = load("simt_waw", NULL, NULL);
    if (!k)
        return;
    float x[128], y[1];
    fill(x, 128, 11);
    void *args[] = {x, y};
    expect_error(k, args, "simt_waw", line_of("simt_waw", NULL, NULL, "s[0] = x[tid]"),
                 "race on s[0]: thread 1 writes it after thread 0 wrote it with no barrier between");
    ir_kernel_free(k);
}

/* The transpose without its barrier: thread 0 read row 0 of the tile,
 * thread 2 then writes t[0, 2] (2-D indices in the message). */
TEST(missing_barrier_in_transpose_is_a_race)
{
    const char *cut = "  barrier\n";
    Kernel *k = load("simt_transpose", NULL, cut);
    if (!k)
        return;
    static float x[128 * 128], y[128 * 128];
    fill(x, 128 * 128, 12);
    void *args[] = {x, y};
    expect_error(k, args, "simt_transpose", line_of("simt_transpose", NULL, cut, "t[r * 2"),
                 "race on t[0, 2]: thread 2 writes it after thread 0 read it with no barrier between");
    ir_kernel_free(k);
}

/* The tensor-core product reads the shared operands: without the barrier
 * thread 0 reads row 0 of `as` before thread 1 has written its part. */
TEST(micro_gemm_without_barrier_is_a_race)
{
    const char *cut = "  barrier\n";
    Kernel *k = load("simt_mma", NULL, cut);
    if (!k)
        return;
    float a[16 * 16] = {0}, b[16 * 8] = {0}, c[16 * 8];
    void *args[] = {a, b, c};
    expect_error(k, args, "simt_mma", line_of("simt_mma", NULL, cut, "as[i * 2"),
                 "race on as[0, 1]: thread 1 writes it after thread 0 read it with no barrier between");
    ir_kernel_free(k);
}

/* Global buffers are watched too (within a block). */
TEST(race_on_a_global_buffer)
{
    Kernel *k = load("simt_global_race", NULL, NULL);
    if (!k)
        return;
    float x[2 * 128], y[64];
    fill(x, 2 * 128, 13);
    void *args[] = {x, y};
    expect_error(k, args, "simt_global_race", line_of("simt_global_race", NULL, NULL, "y[tid"),
                 "race on y[0]: thread 64 writes it after thread 0 wrote it with no barrier between");
    ir_kernel_free(k);
}

/* A plain read of an element that other threads add to atomically in the
 * same epoch (the barrier before thread 0 reads the block's sum is gone). */
TEST(plain_read_after_atomics_is_a_race)
{
    const char *anchor = "atomic total", *cut = "  barrier\n";
    Kernel *k = load("simt_atomic", anchor, cut);
    if (!k)
        return;
    float x[4 * 128] = {0}, total[1] = {0}, y[4];
    void *args[] = {x, total, y};
    expect_error(k, args, "simt_atomic", line_of("simt_atomic", anchor, cut, "y[blk]"),
                 "race on acc[0]: thread 0 reads it after thread 1 added to it atomically with no "
                 "barrier between");
    ir_kernel_free(k);
}

/* A plain write meeting another thread's atomic add to the same element. */
TEST(atomic_after_plain_write_is_a_race)
{
    const char *cut = "  barrier\n";
    Kernel *k = load("simt_atomic", NULL, cut);
    if (!k)
        return;
    float x[4 * 128] = {0}, total[1] = {0}, y[4];
    void *args[] = {x, total, y};
    expect_error(k, args, "simt_atomic", line_of("simt_atomic", NULL, cut, "atomic acc[0]"),
                 "race on acc[0]: thread 1 adds to it atomically after thread 0 wrote it with no "
                 "barrier between");
    ir_kernel_free(k);
}

/* ------------------------------------------------------ divergent barriers */

TEST(barrier_under_thread_dependent_if)
{
    Kernel *k = load("simt_divergent_if", NULL, NULL);
    if (!k)
        return;
    float x[128], y[128];
    fill(x, 128, 14);
    void *args[] = {x, y};
    expect_error(k, args, "simt_divergent_if", line_of("simt_divergent_if", NULL, NULL, "if tid < 3"),
                 "barrier inside an if whose condition differs between threads (thread 0: true, "
                 "thread 3: false)");
    ir_kernel_free(k);
}

TEST(barrier_in_loop_of_thread_dependent_extent)
{
    Kernel *k = load("simt_divergent_loop", NULL, NULL);
    if (!k)
        return;
    float x[128], y[128];
    fill(x, 128, 14);
    void *args[] = {x, y};
    expect_error(k, args, "simt_divergent_loop", line_of("simt_divergent_loop", NULL, NULL, "for i"),
                 "barrier inside a loop whose extent differs between threads (thread 0: 1, "
                 "thread 5: 2)");
    ir_kernel_free(k);
}

/* ------------------------------------------- barriers placed by the passes */

/* The spec lowered for sm_90a (NULL with a printed reason). */
static Kernel *lowered(const char *spec, const FeSet *sets, int nsets)
{
    Diag d = {0};
    Kernel *k = fe_load(spec, sets, nsets, &d);
    if (k && !pass_pipeline(k, ir_target("sm_90a"), NULL, &d)) {
        ir_kernel_free(k);
        k = NULL;
    }
    if (!k) {
        printf("  ");
        diag_print(&d, stdout);
    }
    return k;
}

/* The n-th barrier (or async_wait, which is one too) of s in program order
 * (counting down *n), with the SEQ that holds it and its index there. */
static bool find_barrier(Stmt *s, int *n, Stmt **seq, int *at)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++) {
            StmtOp op = s->u.seq.items[i]->op;
            if ((op == ST_BARRIER || op == ST_ASYNC_WAIT) && (*n)-- == 0) {
                *seq = s;
                *at = i;
                return true;
            }
            if (find_barrier(s->u.seq.items[i], n, seq, at))
                return true;
        }
        return false;
    case ST_FOR: return find_barrier(s->u.loop.body, n, seq, at);
    case ST_IF:
        return find_barrier(s->u.if_.then_, n, seq, at) ||
               (s->u.if_.else_ && find_barrier(s->u.if_.else_, n, seq, at));
    default: return false;
    }
}

/* Run k (static shapes) on inputs in [-1, 1); the diagnostic lands in d;
 * argument `out` (if >= 0) is copied to *result (malloc'd). */
static bool run_kernel(const Kernel *k, Diag *d, int out, float **result)
{
    void *args[16] = {0};
    unsigned seed = 7;
    for (int i = 0; i < k->nargs && i < 16; i++) {
        const Buffer *b = k->bufs[i];
        int64_t n = 1, dim;
        for (int r = 0; r < b->rank; r++)
            n *= ir_expr_is_const(b->shape[r], &dim) ? dim : 1;
        args[i] = calloc(dt_storage_bytes(b->dtype, n) + 64, 1);
        for (int64_t j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            dt_store(b->dtype, args[i], j, (double)(seed >> 8 & 0xffff) / 32768.0 - 1.0);
        }
    }
    bool ok = ir_interp(k, args, NULL, d);
    if (out >= 0) {
        const Buffer *b = k->bufs[out];
        int64_t n = 1, dim;
        for (int r = 0; r < b->rank; r++)
            n *= ir_expr_is_const(b->shape[r], &dim) ? dim : 1;
        *result = malloc((size_t)n * sizeof **result);
        for (int64_t j = 0; j < n; j++)
            (*result)[j] = (float)dt_load(b->dtype, args[out], j);
    }
    for (int i = 0; i < 16; i++)
        free(args[i]);
    return ok;
}

static bool run_lowered(const Kernel *k, Diag *d) { return run_kernel(k, d, -1, NULL); }

/* Every barrier pass_threads puts in spec's lowering is needed: the kernel
 * runs clean as lowered, and with any one barrier removed the race detector
 * fires.  This is the planted missing barrier on real pass output, and it
 * also catches barriers placed where the data flow needs none. */
static void check_every_barrier_needed(const char *spec, const FeSet *sets, int nsets)
{
    Kernel *k = lowered(spec, sets, nsets);
    if (!k)
        return;
    Diag d = {0};
    CHECKF(run_lowered(k, &d), "%s as lowered: %s", spec, d.msg);
    int nbarriers = 0, n = 1 << 30, at;
    Stmt *seq;
    find_barrier(k->body, &n, &seq, &at);
    nbarriers = (1 << 30) - n;
    ir_kernel_free(k);
    CHECKF(nbarriers > 0, "%s: the lowering has no barrier to remove", spec);
    for (int i = 0; i < nbarriers; i++) {
        k = lowered(spec, sets, nsets);
        if (!k)
            return;
        n = i;
        CHECK(find_barrier(k->body, &n, &seq, &at));
        SrcLoc loc = seq->u.seq.items[at]->loc;
        memmove(&seq->u.seq.items[at], &seq->u.seq.items[at + 1],
                (size_t)(seq->u.seq.n - at - 1) * sizeof(Stmt *));
        seq->u.seq.n--;
        d = (Diag){0};
        bool ok = run_lowered(k, &d);
        CHECKF(!ok && strstr(d.msg, "race on"), "%s without barrier %d (line %d): %s", spec, i, loc.line,
               ok ? "ran clean" : d.msg);
        ir_kernel_free(k);
    }
}

/* Elements of a and b that differ by 1e-3 or more, NaN counting. */
static int64_t mismatches(const float *a, const float *b, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += !(fabsf(a[i] - b[i]) < 1e-3f);
    return bad;
}

/* A pipelined loop's async_wait that leaves one group too many in flight
 * lets the product read a tile that has not landed: the SIMT interpreter's
 * results differ from the plain interpreter's (stale NaN-filled scratch). */
TEST(async_wait_that_lands_too_little_reads_stale_tiles)
{
    /* K = 132: rows of 264 bytes, no multiple of 16, which TMA cannot
     * take: the tiles stream with cp.async */
    FeSet sets[] = {{"M", "64"}, {"N", "64"}, {"K", "132"}, {"dtype", "bf16"},
                    {"BM", "64"}, {"BN", "64"}, {"BK", "32"}};
    Diag d = {0};
    Kernel *plain = fe_load("examples/gemm.lua", sets, 7, &d);
    Kernel *k = lowered("examples/gemm.lua", sets, 7);
    if (!plain || !k)
        return;
    float *want = NULL, *got = NULL;
    CHECK(run_kernel(plain, &d, 2, &want));
    CHECK(run_kernel(k, &d, 2, &got));
    CHECK(mismatches(want, got, 64 * 64) == 0);
    free(got);
    int n, at, waits = 0;
    Stmt *seq;
    for (int i = 0; (n = i, find_barrier(k->body, &n, &seq, &at)); i++)
        if (seq->u.seq.items[at]->op == ST_ASYNC_WAIT) {
            seq->u.seq.items[at]->u.wait.pending++;
            waits++;
        }
    CHECKF(waits > 0, "the lowered gemm has no async_wait");
    CHECK(run_kernel(k, &d, 2, &got));
    CHECKF(mismatches(want, got, 64 * 64) > 0, "waiting for one group too few still gave the right product");
    free(want);
    free(got);
    ir_kernel_free(plain);
    ir_kernel_free(k);
}


/* ------------------------------------------------------------- TMA */

static bool find_op(Stmt *s, StmtOp op, int *n, Stmt **seq, int *at);

static Stmt *nth_op(Kernel *k, StmtOp op, int n, Stmt **seq, int *at)
{
    Stmt *sq = NULL;
    int i = 0;
    if (!find_op(k->body, op, &n, &sq, &i))
        return NULL;
    if (seq)
        *seq = sq, *at = i;
    return sq->u.seq.items[i];
}

/* The staged gemm on sm_90a loads its tiles with TMA (swizzled like its
 * wgmma operands, zeros past the edges) and gives the plain interpreter's
 * product, in bf16 and e4m3, at shapes with tails in M, N and K. */
static void check_tma_gemm(const char *dtype, const char *BK, const char *K)
{
    FeSet sets[] = {{"M", "100"}, {"N", "72"}, {"K", K}, {"dtype", dtype},
                    {"BM", "64"}, {"BN", "64"}, {"BK", BK}};
    Diag d = {0};
    Kernel *plain = fe_load("examples/gemm.lua", sets, 7, &d);
    Kernel *k = lowered("examples/gemm.lua", sets, 7);
    if (!plain || !k)
        return;
    CHECKF(nth_op(k, ST_TMA_LOAD, 0, NULL, NULL) && nth_op(k, ST_MBAR_WAIT, 0, NULL, NULL),
           "%s gemm: no TMA loads", dtype);
    CHECKF(!nth_op(k, ST_ASYNC_WAIT, 0, NULL, NULL), "%s gemm: cp.async waits left", dtype);
    float *want = NULL, *got = NULL;
    CHECK(run_kernel(plain, &d, 2, &want));
    CHECKF(run_kernel(k, &d, 2, &got), "%s", d.msg);
    CHECK(mismatches(want, got, 100 * 72) == 0);
    free(want);
    free(got);
    ir_kernel_free(plain);
    ir_kernel_free(k);
}

TEST(tma_gemm_bf16_matches_the_interpreter) { check_tma_gemm("bf16", "64", "200"); }
TEST(tma_gemm_e4m3_matches_the_interpreter) { check_tma_gemm("f8e4m3", "128", "272"); }

/* One planted fault in the TMA gemm's lowering: the SIMT interpreter must
 * fail with `want` in its message. */
typedef void (*Plant)(Kernel *k);

static void check_planted(const char *what, Plant plant, const char *want)
{
    FeSet sets[] = {{"M", "100"}, {"N", "72"}, {"K", "200"}, {"dtype", "bf16"},
                    {"BM", "64"}, {"BN", "64"}, {"BK", "64"}};
    Kernel *k = lowered("examples/gemm.lua", sets, 7);
    if (!k)
        return;
    plant(k);
    Diag d = {0};
    bool ok = run_lowered(k, &d);
    CHECKF(!ok && strstr(d.msg, want), "%s: %s", what, ok ? "ran clean" : d.msg);
    ir_kernel_free(k);
}

static void drop_stmt(Kernel *k, StmtOp op)
{
    Stmt *seq;
    int at;
    if (!nth_op(k, op, 0, &seq, &at))
        return;
    memmove(&seq->u.seq.items[at], &seq->u.seq.items[at + 1], (size_t)(seq->u.seq.n - at - 1) * sizeof(Stmt *));
    seq->u.seq.n--;
}

static void drop_wait(Kernel *k) { drop_stmt(k, ST_MBAR_WAIT); }
static void drop_init(Kernel *k) { drop_stmt(k, ST_MBAR_INIT); }

static void flip_parity(Kernel *k)
{
    Stmt *w = nth_op(k, ST_MBAR_WAIT, 0, NULL, NULL);
    if (w)
        w->u.mbar.arg = ir_binary(k, EX_SUB, ir_const_i(k, 1), w->u.mbar.arg);
}

static void halve_bytes(Kernel *k)
{
    Stmt *e = nth_op(k, ST_MBAR_EXPECT, 0, NULL, NULL);
    int64_t n;
    if (e && ir_expr_is_const(e->u.mbar.arg, &n))
        e->u.mbar.arg = ir_const_i(k, n / 2);
}

static void double_bytes(Kernel *k)
{
    Stmt *e = nth_op(k, ST_MBAR_EXPECT, 0, NULL, NULL);
    int64_t n;
    if (e && ir_expr_is_const(e->u.mbar.arg, &n))
        e->u.mbar.arg = ir_const_i(k, n * 2);
}

TEST(tma_planted_faults_are_caught)
{
    check_planted("no mbar_wait", drop_wait, "before waiting for phase");
    check_planted("wrong parity", flip_parity, "deadlock: mbar_wait");
    check_planted("expect_tx of half the bytes", halve_bytes, "delivers");
    check_planted("expect_tx of twice the bytes", double_bytes, "expects 32768 bytes (mbar_expect_tx) but its TMA loads deliver 16384");
    check_planted("no mbar_init", drop_init, "used before mbar_init");
}

/* The first product of s that runs as wgmma (has descriptors). */
static Stmt *first_wgmma(Stmt *s)
{
    Stmt *r = NULL;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n && !r; i++)
            r = first_wgmma(s->u.seq.items[i]);
        return r;
    case ST_FOR: return first_wgmma(s->u.loop.body);
    case ST_IF: return (r = first_wgmma(s->u.if_.then_)) || !s->u.if_.else_ ? r : first_wgmma(s->u.if_.else_);
    case ST_MICRO_GEMM: return s->u.gemm.desc ? s : NULL;
    default: return NULL;
    }
}

/* A gemm spec at M x N x K = 100 x 72 x 160 (edge tiles in M, N and K)
 * with the given tiles and dtype: the plain interpreter's product in *want,
 * the sm_90a lowering in *k (NULL with a printed reason). */
static bool spec_pair(const char *spec, const char *bm, const char *bn, const char *bk, const char *dt,
                      float **want, Kernel **k)
{
    FeSet sets[] = {{"M", "100"}, {"N", "72"}, {"K", "160"}, {"dtype", dt},
                    {"BM", bm}, {"BN", bn}, {"BK", bk}};
    Diag d = {0};
    Kernel *plain = fe_load(spec, sets, 7, &d);
    *k = lowered(spec, sets, 7);
    bool ok = plain && *k && run_kernel(plain, &d, 2, want);
    if (plain)
        ir_kernel_free(plain);
    return ok;
}

/* examples/gemm.lua (B as [N, K]) */
static bool gemm_pair(const char *bm, const char *bn, const char *bk, const char *dt, float **want,
                      Kernel **k)
{
    return spec_pair("examples/gemm.lua", bm, bn, bk, dt, want, k);
}

/* Each tile configuration {BM, BN, BK, dtype} of a gemm spec runs on sm_90a
 * as wgmma (with an MN-major B when kn: no trans_b on the product) and the
 * SIMT interpreter gets the plain interpreter's product. */
static void wgmma_configs_match(const char *spec, const char *const (*cfg)[4], size_t n, bool kn)
{
    for (size_t c = 0; c < n; c++) {
        float *want = NULL, *got = NULL;
        Kernel *k = NULL;
        Diag d = {0};
        if (spec_pair(spec, cfg[c][0], cfg[c][1], cfg[c][2], cfg[c][3], &want, &k)) {
            Stmt *s = first_wgmma(k->body);
            CHECKF(s && (!kn || !s->u.gemm.trans_b), "%s BM=%s BN=%s BK=%s %s: no %swgmma", spec, cfg[c][0],
                   cfg[c][1], cfg[c][2], cfg[c][3], kn ? "MN-major " : "");
            bool ok = run_kernel(k, &d, 2, &got);
            CHECKF(ok, "%s BM=%s BN=%s BK=%s %s: %s", spec, cfg[c][0], cfg[c][1], cfg[c][2], cfg[c][3], d.msg);
            CHECKF(ok && mismatches(want, got, 100 * 72) == 0, "%s BM=%s BN=%s BK=%s %s: %lld elements differ", spec,
                   cfg[c][0], cfg[c][1], cfg[c][2], cfg[c][3], ok ? (long long)mismatches(want, got, 100 * 72) : -1LL);
        } else {
            CHECKF(false, "%s BM=%s BN=%s BK=%s %s does not lower", spec, cfg[c][0], cfg[c][1], cfg[c][2], cfg[c][3]);
        }
        free(want);
        free(got);
        if (k)
            ir_kernel_free(k);
    }
}

/* On sm_90a the tensor-core gemm runs as wgmma — one warpgroup or two, one
 * or two 64-row pieces each, bf16 (k16) and e4m3 (k32), swizzles of 128,
 * 64 and 32 bytes — and the SIMT interpreter, reading the operands through
 * the descriptors as the PTX ISA lays them out, gets the plain
 * interpreter's product. */
TEST(wgmma_gemm_matches_the_interpreter)
{
    static const char *const cfg[][4] = {
        {"128", "128", "64", "bf16"},  /* 2 warpgroups over M, 128-byte swizzle, staged */
        {"64", "64", "32", "bf16"},    /* 1 warpgroup, 64-byte swizzle */
        {"128", "64", "128", "bf16"},  /* two 64-row pieces, K in two 128-byte columns */
        {"64", "256", "64", "bf16"},   /* 2 warpgroups over N, n128 each */
        {"128", "128", "64", "f8e4m3"}, /* k32, 64-byte rows */
        {"64", "32", "32", "f8e4m3"},  /* 32-byte swizzle, n32 */
    };
    wgmma_configs_match("examples/gemm.lua", cfg, sizeof cfg / sizeof cfg[0], false);
}

/* The wgmma form prints and parses back (descriptors, 1024-byte aligned
 * operands), and the parsed kernel runs to the same product. */
TEST(wgmma_kernel_text_round_trips)
{
    float *want = NULL, *got = NULL;
    Kernel *k = NULL;
    Diag d = {0};
    if (!gemm_pair("128", "64", "128", "bf16", &want, &k)) {
        CHECKF(false, "the bf16 gemm does not lower");
        free(want);
        if (k)
            ir_kernel_free(k);
        return;
    }
    char *text = ir_print_string(k);
    CHECK(strstr(text, " wgmma [") && strstr(text, " align 1024") && strstr(text, "wgmma_wait "));
    Kernel *back = parse_text(text, "wgmma.tir");
    CHECK(back != NULL);
    if (back) {
        char *again = ir_print_string(back);
        CHECK(!strcmp(text, again));
        free(again);
        CHECKF(run_kernel(back, &d, 2, &got), "%s", d.msg);
        CHECK(got && mismatches(want, got, 100 * 72) == 0);
        ir_kernel_free(back);
    }
    free(text);
    free(want);
    free(got);
    ir_kernel_free(k);
}

/* Planted descriptor faults in real pass output: a stride byte offset
 * (8-row groups) twice too large, B read without its swizzle, A's start
 * one k step (32 bytes) late.  Each must make the SIMT run fail — a wrong
 * product, or a read outside the operand. */
TEST(wgmma_descriptor_faults_are_caught)
{
    enum { SBO, NO_SWIZZLE, START };
    for (int fault = SBO; fault <= START; fault++) {
        float *want = NULL, *got = NULL;
        Kernel *k = NULL;
        Diag d = {0};
        if (!gemm_pair("128", "128", "64", "bf16", &want, &k)) {
            CHECKF(false, "the bf16 gemm does not lower");
            free(want);
            if (k)
                ir_kernel_free(k);
            continue;
        }
        Stmt *s = first_wgmma(k->body);
        CHECK(s != NULL);
        for (int i = 0; s && i < s->u.gemm.ndesc; i += 4) {
            Expr **a_hi = &s->u.gemm.desc[i + 1], **b_hi = &s->u.gemm.desc[i + 3], **a_lo = &s->u.gemm.desc[i];
            int64_t hi;
            if (fault == SBO && ir_expr_is_const(*a_hi, &hi))
                *a_hi = ir_const_i(k, (hi & ~(int64_t)0x3fff) | (hi & 0x3fff) * 2);
            if (fault == NO_SWIZZLE && ir_expr_is_const(*b_hi, &hi))
                *b_hi = ir_const_i(k, hi & ~((int64_t)3 << 30));
            if (fault == START)
                *a_lo = ir_binary(k, EX_ADD, *a_lo, ir_const_i(k, 2));
        }
        bool ok = run_kernel(k, &d, 2, &got);
        CHECKF(!ok || mismatches(want, got, 100 * 72) > 0, "descriptor fault %d still gave the right product",
               fault);
        free(want);
        free(got);
        ir_kernel_free(k);
    }
}

/* ---------------------------------------------- wgmma, MN-major B */

/* tests/specs/gemm_kn.lua (B as [K, N]) */
static bool kn_pair(const char *bm, const char *bn, const char *bk, const char *dt, float **want, Kernel **k)
{
    return spec_pair("tests/specs/gemm_kn.lua", bm, bn, bk, dt, want, k);
}

/* A 16-bit gemm whose B tile is [K, N] runs on sm_90a as wgmma with an
 * MN-major B (no trans_b on the product: the transpose immediate), and the
 * SIMT interpreter, decoding its descriptors the MN-major way, gets the
 * plain interpreter's product: swizzles of 128 bytes (one atom along N per
 * instruction, and two: the leading byte offset), 64 and 32 bytes (three
 * atoms), one warpgroup and two (over M, and over N: the column offset). */
TEST(wgmma_mn_major_b_matches_the_interpreter)
{
    static const char *const cfg[][4] = {
        {"64", "64", "64", "bf16"},   /* 128-byte swizzle, n64: one atom */
        {"128", "128", "64", "bf16"}, /* 2 warpgroups over M, n128: two atoms along N */
        {"64", "256", "32", "bf16"},  /* 2 warpgroups over N, n128 each */
        {"64", "48", "32", "f16"},    /* 32-byte swizzle, n48: three atoms */
        {"64", "32", "64", "bf16"},   /* 64-byte swizzle */
        {"64", "320", "32", "bf16"},  /* n160 per warpgroup: 64-byte atoms though rows take 128 */
    };
    wgmma_configs_match("tests/specs/gemm_kn.lua", cfg, sizeof cfg / sizeof cfg[0], true);
}

/* wgmma takes an MN-major B for 16-bit types only: an 8-bit (e4m3) [K, N]
 * B stays off it (fp8 operands must be K-major), and so does f32; both
 * still give the right product on sm_90a. */
TEST(wgmma_mn_major_b_is_16_bit_only)
{
    const char *dts[] = {"f8e4m3", "f32"};
    for (int i = 0; i < 2; i++) {
        float *want = NULL, *got = NULL;
        Kernel *k = NULL;
        Diag d = {0};
        if (kn_pair("64", "64", "64", dts[i], &want, &k)) {
            CHECKF(first_wgmma(k->body) == NULL, "gemm_kn %s runs on wgmma", dts[i]);
            CHECKF(run_kernel(k, &d, 2, &got), "%s: %s", dts[i], d.msg);
            CHECKF(got && mismatches(want, got, 100 * 72) == 0, "gemm_kn %s: wrong product", dts[i]);
        } else
            CHECKF(false, "gemm_kn %s does not lower", dts[i]);
        free(want);
        free(got);
        if (k)
            ir_kernel_free(k);
    }
}

/* Planted faults in the MN-major descriptors of real pass output: the
 * leading byte offset (atoms along N) halved, the stride byte offset
 * (8-row k groups) doubled, B's swizzle mode dropped, and the transpose
 * bit off (the product read as a K-major B).  Each must make the SIMT run
 * fail — a wrong product, or a read outside the operand. */
TEST(wgmma_mn_major_descriptor_faults_are_caught)
{
    enum { LBO, SBO, NO_SWIZZLE, NO_TRANSPOSE };
    for (int fault = LBO; fault <= NO_TRANSPOSE; fault++) {
        float *want = NULL, *got = NULL;
        Kernel *k = NULL;
        Diag d = {0};
        if (!kn_pair("128", "128", "64", "bf16", &want, &k)) {
            CHECKF(false, "gemm_kn bf16 does not lower");
            free(want);
            if (k)
                ir_kernel_free(k);
            continue;
        }
        Stmt *s = first_wgmma(k->body);
        CHECK(s != NULL);
        for (int i = 0; s && i < s->u.gemm.ndesc; i += 4) {
            Expr **b_lo = &s->u.gemm.desc[i + 2], **b_hi = &s->u.gemm.desc[i + 3];
            int64_t lo, hi;
            if (fault == LBO && ir_expr_is_const(*b_lo, &lo))
                *b_lo = ir_const_i(k, (lo & 0x3fff) | (lo >> 16 & 0x3fff) / 2 << 16);
            if (fault == SBO && ir_expr_is_const(*b_hi, &hi))
                *b_hi = ir_const_i(k, (hi & ~(int64_t)0x3fff) | (hi & 0x3fff) * 2);
            if (fault == NO_SWIZZLE && ir_expr_is_const(*b_hi, &hi))
                *b_hi = ir_const_i(k, hi & ~((int64_t)3 << 30));
        }
        if (s && fault == NO_TRANSPOSE)
            s->u.gemm.trans_b = true;
        bool ok = run_kernel(k, &d, 2, &got);
        CHECKF(!ok || mismatches(want, got, 100 * 72) > 0, "MN-major descriptor fault %d still gave the right product",
               fault);
        free(want);
        free(got);
        ir_kernel_free(k);
    }
}

/* sparse_attn's P·V (P [BH, 64] by the gathered rows as [K, N]) runs as
 * wgmma with an MN-major B where its head tile is 64 rows (BH = 64: wgmma
 * has no smaller m); its Q·Kᵀ, whose scores are reduced across rows, stays
 * on FMA loops that read the same swizzled rows elementwise.  (Its values
 * are checked against the reference in test_v4_formats.c.) */
TEST(sparse_attn_pv_runs_on_wgmma)
{
    FeSet sets[] = {{"H", "64"}, {"D", "192"}, {"L", "128"}, {"NKV", "150"}, {"BH", "64"}};
    Kernel *k = lowered("kernels_src/sparse_attn.lua", sets, 5);
    if (!k)
        return;
    Stmt *s = first_wgmma(k->body);
    CHECKF(s && !s->u.gemm.trans_b, "sparse_attn BH=64: P.V is not an MN-major wgmma");
    ir_kernel_free(k);
}

/* The n-th statement of kind op in s (program order, counting down *n),
 * with the SEQ that holds it and its index there. */
static bool find_op(Stmt *s, StmtOp op, int *n, Stmt **seq, int *at)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++) {
            if (s->u.seq.items[i]->op == op && (*n)-- == 0) {
                *seq = s;
                *at = i;
                return true;
            }
            if (find_op(s->u.seq.items[i], op, n, seq, at))
                return true;
        }
        return false;
    case ST_FOR: return find_op(s->u.loop.body, op, n, seq, at);
    case ST_IF:
        return find_op(s->u.if_.then_, op, n, seq, at) || (s->u.if_.else_ && find_op(s->u.if_.else_, op, n, seq, at));
    default: return false;
    }
}

/* The staged 128 x 128 x 64 gemm on sm_90a, four K steps, 2 x 2 blocks
 * (whole and edge tiles in M and N: both copy branches run): each step's wgmma group stays in
 * flight across the next step's wait (`wgmma_wait 1` before the refill of
 * the tiles it reads), and every wgmma_wait pass_wgwait placed is needed:
 * with any one removed, or leaving one group more in flight, the SIMT
 * interpreter reports the accumulator read or the operand tile overwritten
 * while a group is in flight. */
TEST(every_wgmma_wait_is_needed)
{
    FeSet sets[] = {{"M", "200"}, {"N", "136"}, {"K", "256"}, {"dtype", "bf16"},
                    {"BM", "128"}, {"BN", "128"}, {"BK", "64"}};
    Kernel *k = lowered("examples/gemm.lua", sets, 7);
    if (!k)
        return;
    Diag d = {0};
    char *text = ir_print_string(k);
    CHECKF(strstr(text, "wgmma_wait 1\n") != NULL, "no group is left in flight across a step");
    free(text);
    CHECKF(run_lowered(k, &d), "as lowered: %s", d.msg);
    int n = 1 << 30, at;
    Stmt *seq;
    find_op(k->body, ST_WGMMA_WAIT, &n, &seq, &at);
    int nwaits = (1 << 30) - n;
    ir_kernel_free(k);
    CHECKF(nwaits >= 4, "only %d wgmma_wait", nwaits);
    for (int i = 0; i < 2 * nwaits; i++) {
        if (!(k = lowered("examples/gemm.lua", sets, 7)))
            return;
        n = i / 2;
        CHECK(find_op(k->body, ST_WGMMA_WAIT, &n, &seq, &at));
        Stmt *w = seq->u.seq.items[at];
        int line = w->loc.line;
        if (i % 2) {
            w->u.wait.pending++;
        } else {
            memmove(&seq->u.seq.items[at], &seq->u.seq.items[at + 1],
                    (size_t)(seq->u.seq.n - at - 1) * sizeof(Stmt *));
            seq->u.seq.n--;
        }
        d = (Diag){0};
        bool ok = run_lowered(k, &d);
        CHECKF(!ok && strstr(d.msg, "wgmma group"), "wgmma_wait %d (line %d) %s: %s", i / 2, line,
               i % 2 ? "one group laxer" : "removed", ok ? "ran clean" : d.msg);
        ir_kernel_free(k);
    }
}

TEST(every_barrier_in_lowered_softmax_is_needed)
{
    FeSet sets[] = {{"M", "11"}, {"N", "700"}}; /* whole and tail tiles: both copy branches run */
    check_every_barrier_needed("examples/softmax.lua", sets, 2);
}

TEST(every_barrier_in_lowered_rmsnorm_is_needed)
{
    FeSet sets[] = {{"M", "11"}, {"N", "700"}};
    check_every_barrier_needed("examples/rmsnorm.lua", sets, 2);
}

/* K = 128 is four 32-wide steps: the refills of both stage buffers run
 * while the other buffer's wgmma group is in flight, in whole tiles
 * (block row 0) and edge tiles (block row 1), so the barrier after each
 * wgmma_wait is exercised too. */
TEST(every_barrier_in_lowered_tensor_core_gemm_is_needed)
{
    FeSet sets[] = {{"M", "100"}, {"N", "100"}, {"K", "128"}, {"dtype", "bf16"},
                    {"BM", "64"}, {"BN", "64"}, {"BK", "32"}};
    check_every_barrier_needed("examples/gemm.lua", sets, 7);
}

TEST(every_barrier_in_lowered_fma_gemm_is_needed)
{
    FeSet sets[] = {{"M", "60"}, {"N", "40"}, {"K", "80"}, {"BM", "48"}, {"BN", "32"}, {"BK", "32"}};
    check_every_barrier_needed("examples/gemm.lua", sets, 6);
}

int main(void)
{
    RUN(reverse_through_shared);
    RUN(every_barrier_in_lowered_softmax_is_needed);
    RUN(every_barrier_in_lowered_rmsnorm_is_needed);
    RUN(every_barrier_in_lowered_tensor_core_gemm_is_needed);
    RUN(every_barrier_in_lowered_fma_gemm_is_needed);
    RUN(async_wait_that_lands_too_little_reads_stale_tiles);
    RUN(tma_gemm_bf16_matches_the_interpreter);
    RUN(tma_gemm_e4m3_matches_the_interpreter);
    RUN(tma_planted_faults_are_caught);
    RUN(wgmma_gemm_matches_the_interpreter);
    RUN(wgmma_descriptor_faults_are_caught);
    RUN(wgmma_mn_major_b_matches_the_interpreter);
    RUN(wgmma_mn_major_b_is_16_bit_only);
    RUN(wgmma_mn_major_descriptor_faults_are_caught);
    RUN(sparse_attn_pv_runs_on_wgmma);
    RUN(wgmma_kernel_text_round_trips);
    RUN(every_wgmma_wait_is_needed);
    RUN(reduction_phases_in_a_loop);
    RUN(transpose_64x64_tiles);
    RUN(micro_gemm_per_thread_slots);
    RUN(local_buffers_are_private);
    RUN(shared_buffers_are_fresh_per_block);
    RUN(atomic_adds_do_not_race);
    RUN(missing_barrier_is_a_race);
    RUN(missing_barrier_in_phase_loop_is_a_race);
    RUN(write_after_read_is_a_race);
    RUN(write_after_write_is_a_race);
    RUN(missing_barrier_in_transpose_is_a_race);
    RUN(micro_gemm_without_barrier_is_a_race);
    RUN(race_on_a_global_buffer);
    RUN(plain_read_after_atomics_is_a_race);
    RUN(atomic_after_plain_write_is_a_race);
    RUN(barrier_under_thread_dependent_if);
    RUN(barrier_in_loop_of_thread_dependent_extent);
    return test_summary();
}
