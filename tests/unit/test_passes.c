/* test_passes.c — each pass alone on printed IR, and the pipeline's promises.
 *
 *   - golden: tests/passes/NAME.in.tir, parsed, through ONE pass (lower or
 *     vectorize) for x86-avx512, printed == tests/passes/NAME.out.tir byte
 *     for byte.  The .out files were generated once from the pass and read
 *     line by line (tails guarded, reductions through an f32 accumulator,
 *     GEMM staged/packed into micro_gemm tiles, vector marks only on safe
 *     loops).  TILEC_BLESS=1 rewrites them — read the diff before keeping it.
 *   - equivalence: Tile IR and the Loop IR that pass_pipeline makes of it
 *     give bitwise-equal outputs under ir_interp on the same random inputs
 *     (the lowering keeps the per-element order of every sum).
 *   - pass_check and the pipeline driver's errors and dumps.
 * Run from the repository root (ctest does). */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test.h"
#include "tests/harness/run.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */


static Kernel *parse_file(const char *path)
{
    char *src = th_read_file(path);
    CHECKF(src != NULL, "cannot read %s", path);
    if (!src)
        return NULL;
    Diag d = {0};
    Kernel *k = ir_parse(src, path, &d);
    if (!k)
        diag_print(&d, stdout);
    CHECKF(k != NULL, "cannot parse %s", path);
    free(src);
    return k;
}

static const TargetInfo *avx512(void) { return ir_target("x86-avx512"); }

typedef bool (*PassFn)(Kernel *, const TargetInfo *, Diag *);

/* NAME.in.tir through `pass` == NAME.out.tir; the golden also parses back
 * and prints identically (it is valid Loop IR, not just text). */
static void golden_for(const char *name, PassFn pass, const TargetInfo *t);

static void golden(const char *name, PassFn pass) { golden_for(name, pass, avx512()); }

static void golden_for(const char *name, PassFn pass, const TargetInfo *t)
{
    char in[256], out[256];
    snprintf(in, sizeof in, "tests/passes/%s.in.tir", name);
    snprintf(out, sizeof out, "tests/passes/%s.out.tir", name);
    Kernel *k = parse_file(in);
    if (!k)
        return;
    Diag d = {0};
    bool ok = pass(k, t, &d) && ir_verify(k, &d);
    if (!ok)
        diag_print(&d, stdout);
    CHECKF(ok, "%s: pass or verify failed", name);
    char *got = ir_print_string(k);
    ir_kernel_free(k);
    if (getenv("TILEC_BLESS")) {
        FILE *f = fopen(out, "w");
        fputs(got, f);
        fclose(f);
    }
    char *want = th_read_file(out);
    CHECKF(want != NULL, "missing %s (run with TILEC_BLESS=1 once, then read it)", out);
    if (want) {
        CHECKF(!strcmp(got, want), "%s: output differs from %s; got:\n%s", name, out, got);
        Diag d2 = {0};
        Kernel *back = ir_parse(want, out, &d2);
        if (!back)
            diag_print(&d2, stdout);
        CHECKF(back && ir_verify(back, &d2), "%s does not parse or verify", out);
        if (back) {
            char *again = ir_print_string(back);
            CHECKF(!strcmp(again, want), "%s does not print back identically:\n%s", out, again);
            free(again);
            ir_kernel_free(back);
        }
    }
    free(want);
    free(got);
}

/* ------------------------------------------------------------ goldens */

/* a serial loop of one iteration unwrapped; of the repeated copies, the
 * one whose buffer still holds the window dropped, and kept: after a
 * write to the buffer, from an argument the kernel writes, of another
 * window, at a loaded offset, across a loop's iterations */
TEST(golden_reuse) { golden("reuse", pass_reuse); }
/* GPU passes on printed IR: a pipelined gemm's tiles staged (sm_80:
 * cp.async, two buffers); a one-row rmsnorm's tile kept in registers by
 * pass_threads (its copy nest has one loop, its element-wise nests two);
 * the wgmma waits of a staged sm_90a gemm */
TEST(golden_stages) { golden_for("stages_gemm", pass_stages, ir_target("sm_80")); }
TEST(golden_threads) { golden_for("threads_row", pass_threads, ir_target("sm_90a")); }
TEST(golden_wgwait) { golden_for("wgwait_gemm", pass_wgwait, ir_target("sm_90a")); }
TEST(golden_lower_copy) { golden("lower_copy", pass_lower); }
TEST(golden_lower_reduce) { golden("lower_reduce", pass_lower); }
/* reductions over an axis before the source's last (x86-avx2: rows of 8
 * lanes or more): per-element accumulators, a vector loop along the
 * contiguous dimension for each step of the axis (lower_reduce_across) —
 * but not into 8192 elements (32 KiB of accumulators, past half of L1) */
TEST(golden_lower_reduce_across) { golden_for("lower_reduce_across", pass_lower, ir_target("x86-avx2")); }
TEST(golden_lower_gemm_f32) { golden("lower_gemm_f32", pass_lower); }
TEST(golden_lower_gemm_bf16) { golden("lower_gemm_bf16", pass_lower); }
/* Without a bf16 dot product, narrow operands are staged widened to f32. */
TEST(golden_lower_gemm_widen) { golden_for("lower_gemm_widen", pass_lower, ir_target("x86-avx2")); }
/* decode: dot tiles, the fp8 weight read in place, prefetch of the next step */
TEST(golden_lower_dot) { golden("lower_dot", pass_lower); }
/* weight rows past half of L2 (80 x 1024 f32): the column tiles outside,
 * the row bands (and the tail band, in the same columns) inside */
TEST(golden_lower_dot_columns) { golden_for("lower_dot_columns", pass_lower, ir_target("x86-avx2")); }
/* a block-scaled fp4 B (1x32 scales, leading unit dim): dot tiles that
 * scale it in place, and f32 dequantisation where the window may leave w */
TEST(golden_lower_scaled) { golden("lower_scaled", pass_lower); }
/* 16 rows on AVX2: broadcast tiles (micro_gemm trans_a trans_b) of 6
 * weight rows over A staged transposed, B's scale on the tiles (a 4x6 tile
 * and 24 rows of weights); dot tiles where the window may leave x */
TEST(golden_lower_scaled_rows) { golden_for("lower_scaled_rows", pass_lower, ir_target("x86-avx2")); }
/* the same where `rows` may want fewer: broadcast tiles where 12 or more
 * are wanted (a run-time test), else e2m1 dot tiles of 6 rows (bands of 6
 * while that many are left, then one of the rows left), one column each:
 * a decoded register feeds 6 FMAs */
TEST(golden_lower_scaled_tall) { golden_for("lower_scaled_tall", pass_lower, ir_target("x86-avx2")); }
/* 20 rows (no dot tiles): B dequantised into bf16 scratch (e2m1 times a
 * power of two is exact there), then the plain GEMM; 8x32 blocks */
TEST(golden_lower_scaled_deq) { golden("lower_scaled_deq", pass_lower); }
/* both operands block-scaled at 4 rows: dot tiles that promote each
 * 128-wide block's sums in registers (a_scale and b_scale on the tiles,
 * A staged widened where its window is inside x — to bf16 for the
 * vdpbf16ps tiles of x86-avx512, e4m3_pairs — dequantised to f32 with its
 * scale where it may leave it); A's 64-wide blocks within B's 128: both
 * still on the tiles; A's 64 against B's 96 (not nested): A dequantised,
 * B still scaled in the tiles */
TEST(golden_lower_promote) { golden("lower_promote", pass_lower); }
/* e4m3 pair tiles over 8-row bands whose bf16 A (8 x 2048) outgrows 3/4 of
 * the target's 32 KiB L1: A staged with its scale in it (a_prescaled), C
 * cleared, then the bands' tiles in K chunks of 1024 adding into it */
TEST(golden_lower_band_chunks) { golden("lower_band_chunks", pass_lower); }
/* e4m3 A by packed e2m1 B, both block-scaled, at 4 rows on a target with
 * a fast vdpbf16ps: A's bf16 copy in e2m1 order (blocks of 128) holding A
 * times its scale clamped into the fold window (a_prescaled), 4x2 tiles
 * reading it — the scales fold into the operands (codegen/micro.c,
 * dot_pair8_block) */
TEST(golden_lower_e2m1_pairs) { golden("lower_e2m1_pairs", pass_lower); }
/* e4m3 A by e4m3 B, both block-scaled, at one row on a target whose
 * 512-bit operations run in halves (Zen 4: the pair tiles there too): A's
 * bf16 copy in the tiles' decode order (E4M3_WORDS: each 64 columns, the
 * even ones first), A times its scale clamped into the fold window
 * (a_prescaled), the tiles micro_gemm a_decode_order */
static const TargetInfo *split_512(void)
{
    static TargetInfo t;
    t = *avx512();
    t.split_512 = true;
    return &t;
}

TEST(golden_lower_e4m3_words) { golden_for("lower_e4m3_words", pass_lower, split_512()); }
/* ... at 8 rows, one band whose bf16 A (8 x 2048 in e2m1 order) outgrows
 * 3/4 of the target's 32 KiB L1: C cleared, then the 8x2 tiles in K
 * chunks of 1024 adding into it (band_k_chunk) */
TEST(golden_lower_e2m1_bands) { golden("lower_e2m1_bands", pass_lower); }
/* ... an MoE tile's rows (16, `rows` of them wanted): 8-row bands, then
 * one of the variants for the rows left, and those of 7 rows (28 KiB of
 * A) in K chunks of 1024 too, C cleared first; 6 rows and fewer over all
 * of K */
TEST(golden_lower_e2m1_rows_left) { golden("lower_e2m1_rows_left", pass_lower); }
/* gemm rows: register bands (20 rows: 6-row bands and a 2-row tail) and
 * dot tiles (7 rows) stop after the band holding the last wanted row; dot
 * tiles have a one-row variant (the 3-row one's taken at M = 4) */
TEST(golden_lower_rows) { golden("lower_rows", pass_lower); }
/* the cols option: the register tiles' column loop stops after the tile
 * holding the last wanted column, the 8-column tail (72 = 2 x 32 + 8 on
 * x86-avx512) only where it holds one */
TEST(golden_lower_cols) { golden("lower_cols", pass_lower); }
/* examples/gemm.lua's shape: the copies into scratch forwarded to the
 * register tiles — A (f32) read in place where its window is inside the
 * matrix, else staged with its tail zeroed; B packed straight from b in
 * 32-column panels (an 8x8-block transposed copy, then an 8-column tail
 * panel); the step is left to the hardware prefetchers (register tiles) */
TEST(golden_lower_forward) { golden("lower_forward", pass_lower); }
/* one staging buffer for two dot GEMMs, a copy before each (hc_post_pre's
 * four weight tiles): both copies forwarded; a buffer also read elsewhere
 * (vs) keeps its copies */
TEST(golden_lower_forward_pairs) { golden_for("lower_forward_pairs", pass_lower, ir_target("x86-avx2")); }
/* a weight tile of a 3-D tensor (a group's, an expert's: leading extent
 * 1) copied for dot tiles: forwarded too, the tiles reading w[g +: 1, ..]
 * in place */
TEST(golden_lower_forward_group) { golden("lower_forward_group", pass_lower); }
/* prefetch of the next step: the step of a 96-row GEMM (register tiles)
 * is left to the hardware's prefetchers, the copy loop's step fetches its
 * next window (lower_dot: a step of dot tiles fetches its operands') */
TEST(golden_lower_prefetch) { golden("lower_prefetch", pass_lower); }
/* a window read twice in a block (x, in two loops) fetches the next
 * block's in its second copy; one that does not move with the grid (w)
 * or is read once (r's two halves) does not */
TEST(golden_lower_next_block) { golden("lower_next_block", pass_lower); }
TEST(golden_lower_next_block_retiled) { golden("lower_next_block_retiled", pass_lower); }
/* the same on sm_90a: dequantised into bf16 shared memory for the tensor cores */
TEST(golden_lower_scaled_gpu) { golden_for("lower_scaled_gpu", pass_lower, ir_target("sm_90a")); }
TEST(golden_vectorize) { golden("vectorize", pass_vectorize); }
/* lanes for narrow stores (AVX-512: 16 f32 lanes): a byte store packs
 * 64 lanes (4 registers of f32 into one of bytes), bf16 32, f32 16; a
 * constant extent takes no more than it needs, never fewer than 16 */
TEST(golden_vectorize_narrow) { golden("vectorize_narrow", pass_vectorize); }
/* a guard free of a loop's variable and reading no buffer rises above the
 * loop (adjacent guards on one condition merged), so the loop it guarded
 * vectorises: the row guard `b * 4 + i < M` above the h and j loops, and
 * `0 < f[1]` (f not written in that loop, which runs 40 times); not a
 * guard on the loop's variable, one reading a buffer its loop writes, one
 * reading a buffer in a loop that may not run (extent M), one with an
 * else, two guards on different conditions, or one covering part of its
 * loop's body (j9: unswitching it was 4% slower on moe_gemm_swiglu) */
TEST(golden_vectorize_guards) { golden("vectorize_guards", pass_vectorize); }
/* streamed (non-temporal) stores: y and the 8-column-offset o and the
 * bf16 g (16-lane vectors, offset 16); not r (read back), u (inout), o at
 * 3, t (not unit-stride along j1), h (rows of 60 bf16: a row starts off a
 * vector), n (extent M: maybe a tail), e (extent 60; stores under an if),
 * a (added to atomically), v in the else arm of a branch whose then arm
 * streams it (a window test's slow path) */
TEST(golden_stream) { golden_for("stream", pass_stream, ir_target("x86-avx2")); }
/* also: a variable of extent 1 is 0; an index in i32's range cast to f32
 * through i32, a dyn size not */
TEST(golden_bounds) { golden("bounds", pass_bounds); }
/* a block's schedule in a small local: sched[0], stored only as the loop
 * variable i < 4 after its clear, lies in [0, 4), so the window test on it
 * folds and its else arm goes; sched[1] (a count: sched[1] + 1, read as
 * unknown while the stores are gathered) and sched[2] (an input) stay
 * unknown; _late: a load of sched before its clear — what an earlier
 * block left — and nothing folds */
TEST(golden_bounds_scratch) { golden("bounds_scratch", pass_bounds); }
TEST(golden_bounds_scratch_late) { golden("bounds_scratch_late", pass_bounds); }
/* copy in, scale, a row reduction, normalise, copy out: one row loop, the
 * elementwise loops fused into the reduction's, xs forwarded and gone */
TEST(golden_fuse_chain) { golden("fuse_chain", pass_fuse); }
/* what must stay apart: inner extents 8 and 7 (the rows still fuse), a
 * read of another row (t[3 - r0, r1]), a read of another iteration's
 * element (v[3 - e0]), and on the CPU the loops of per-row statements
 * (c0, d0, e0, h0) from the nests, so that they vectorise over the rows */
TEST(golden_fuse_keep) { golden("fuse_keep", pass_fuse); }
/* updates in place read before they are stored: t's (q = clamp(t)) sinks
 * below q's store and goes, as nothing reads t after the nest; u's sinks
 * but stays (read by the next nest); v's stays where it is (the nest reads
 * v[c0, 7 - c1], another iteration's element); w's running sum sinks below
 * r's store and stays (every c1 of a row updates the same element) */
TEST(golden_fuse_update) { golden("fuse_update", pass_fuse); }
/* stores no one reads, past loops: t's squares go (the s2 loop, which
 * reads t, overwrites it first each time round); u's stay (the s2 loop
 * reads u before it overwrites it), and so do v's (the loop that
 * overwrites v may run no times: M - 1 is 0 at one row) */
TEST(golden_fuse_dead_loop) { golden("fuse_dead_loop", pass_fuse); }
/* rmsnorm_quant (D 256, BM 4) after bounds: the sum of squares' squares
 * in t are dead — the normalising step overwrites t before the quantising
 * one reads it, behind the window test's arms, each a nested sequence
 * once unswitched — so its fused loop keeps only the reduction */
TEST(golden_fuse_dead_nested) { golden("fuse_dead_nested", pass_fuse); }
/* a column sum over an edge test's arms (x86-avx2 after bounds): the
 * fast arm's copy into t is forwarded into the sum and its stores go —
 * the edge arm's split copy writes each row of t (its runs back to back,
 * lower_row_runs) before the sum reads it; with its last run a column
 * short (_short) the row is not all written, and the fast arm keeps t */
TEST(golden_fuse_dead_runs) { golden_for("fuse_dead_runs", pass_fuse, ir_target("x86-avx2")); }
TEST(golden_fuse_dead_runs_short) { golden_for("fuse_dead_runs_short", pass_fuse, ir_target("x86-avx2")); }
/* staging that consecutive blocks share: A's rows (both arms of the
 * window test, by's only) move into a once per by before the step loop,
 * their scratch a block per step, and the step loop's prefetches of a go;
 * a step's scales, an if whose two arms both stage sr, move as one; the
 * scale row at the top level stays in place, in a once; the weight tile
 * (bx's, the fastest dimension) stays */
TEST(golden_hoist_staging) { golden_for("hoist_staging", pass_hoist, ir_target("x86-avx2")); }
/* one row in one step (fp8_gemm at M = 1, K in one step): the row's nest,
 * its variable folded to 0, into a once keyed 0 (no grid variable), at
 * step 0, its scratch as it was; the prefetch of a goes */
TEST(golden_hoist_one_step) { golden_for("hoist_one_step", pass_hoist, ir_target("x86-avx2")); }
/* an MoE block's schedule (first row, rows) found from by at the top of
 * the block: the rows' staging, reading it, inside a loop of at most one
 * step (none for an empty tile), goes into a once keyed by by, the loops
 * and the window test around it copied */
TEST(golden_hoist_derived) { golden_for("hoist_derived", pass_hoist, ir_target("x86-avx2")); }
/* an MoE tile's K steps, `select(0 < rows, 2, 0)` (none for an empty
 * tile): a step loop of at most two steps, its rows' staging into a once
 * per by, the scratch a block per step, the loop copied with its extent */
TEST(golden_hoist_bounded_steps) { golden_for("hoist_bounded_steps", pass_hoist, ir_target("x86-avx2")); }
/* staging nests of several stores: as's two (each 8-column block as two
 * halves of strided columns, lower's e2m1-order copies in small) write
 * every element once, a number in mixed radix, and go into a once per by;
 * bt's overlap (2 + t2 meets t2) and stay */
TEST(golden_hoist_unrolled) { golden_for("hoist_unrolled", pass_hoist, ir_target("x86-avx2")); }
/* two nests staging the same rows of a (as, as2: the gate and up GEMMs
 * of moe_gemm_swiglu in small) go into onces under one key, and the
 * second goes, its reads taken from as; at (the rows doubled) keeps its
 * own once */
TEST(golden_hoist_merge) { golden_for("hoist_merge", pass_hoist, ir_target("x86-avx2")); }
/* lower's edge copy in row runs (the window test's else arm: each row's
 * inside run, then zeros to the row's end) stages every element of as
 * once, so the if moves into a once per by as a nest would; bad's runs
 * stop a column short of the row and stay */
TEST(golden_hoist_split) { golden_for("hoist_split", pass_hoist, ir_target("x86-avx2")); }
/* rows padded past their copy (lowering's dot_a_copy): the runs' lengths
 * numbers; one that stops a column short of the row's end stays */
TEST(golden_hoist_padded_rows) { golden_for("hoist_padded_rows", pass_hoist, ir_target("x86-avx2")); }
/* a K tail (40 in steps of 16): the window test names the step, and both
 * its arms stage every element of as, so the if moves into a once per by
 * all the same, the step loop copied around it and each step's block
 * tested there (bf16 320 x 768 x 555, BK 64, Zen 4, one thread: A staged
 * again for every column block, 1.62-1.68 -> 1.45-1.46 ms); bad's stores,
 * under a test of the step with no else arm (the last step's block left
 * unwritten), stay */
TEST(golden_hoist_step_tail) { golden_for("hoist_step_tail", pass_hoist, ir_target("x86-avx2")); }
/* fusion's one window test over both copies (no M edge sets A's apart):
 * the if becomes one per buffer, as's then moves into a once per by; bs
 * (bx's) stays in its own if (bf16 2048 x 2048 x 2000, Zen 4, one thread:
 * A staged again for each column block, 93 -> 78-80 ms) */
TEST(golden_hoist_window_split) { golden_for("hoist_window_split", pass_hoist, ir_target("x86-avx2")); }
/* ... also where an arm's second nest reads what its first staged (bs
 * from as): the pieces keep their order, so as's moves into the once and
 * bs's reads of it, in its own if, move to the step's block */
TEST(golden_hoist_window_reads) { golden_for("hoist_window_reads", pass_hoist, ir_target("x86-avx2")); }
/* lower's `if inside {fast} else {guarded}` copies unswitched: both arms
 * fused, t gone */
TEST(golden_fuse_switch) { golden("fuse_switch", pass_fuse); }
/* strided blocks: iteration i writes y[., 8i + a1] and w[., 8i + a1], the
 * next nest reads y[., 8j + 7 - c1], y[., 8j + 2c2 (+ 1)], w[., 8j + 7 - 2c2]:
 * one block per iteration, so the nests fuse (the column loops, reversed,
 * do not); y lives in one iteration and contracts to [2, 8], w is read
 * after the loop and keeps its 32 columns */
TEST(golden_fuse_strided) { golden("fuse_strided", pass_fuse); }
/* strided blocks that must stay apart: e's range reaching s (8j + 2c1,
 * c1 < 5), strides 8 and 4, an offset s·v + e + 1 with e over all of [0, s) */
TEST(golden_fuse_strided_keep) { golden("fuse_strided_keep", pass_fuse); }
/* adjacent ifs on one condition merge, so their arms' nests fuse: the
 * window test `b * 4 + 4 <= M` (no loads; each arm two nests, so unswitch
 * alone would keep them apart) and `0 < n[0]` (a load nothing writes);
 * under the window test, select(b * 4 + c0 < M, v, 0) is v and
 * select(M <= b * 4 + a0, 7, v) is v */
TEST(golden_fuse_merge) { golden("fuse_merge", pass_fuse); }
/* a prefetch (lower's fetch of the next block) rides along in the loop
 * it sits in: the copy still fuses with its consumer */
TEST(golden_fuse_prefetch) { golden("fuse_prefetch", pass_fuse); }
/* ifs that must stay apart: the first writes f, which the condition loads
 * (merged, the second if's else arm would never run); conditions that
 * differ (b * 4 + 3 <= M, b * 4 + 4 <= M).  Under b * 4 + 4 <= M the row
 * guard b * 4 + e0 < M goes, but b * 4 + e0 + 1 < M and its negation
 * stay in their selects (either may hold at e0 = 3) */
TEST(golden_fuse_merge_keep) { golden("fuse_merge_keep", pass_fuse); }
/* GPU: no fusion across a barrier; the nests after it fuse */
/* pass_tma: a staged loop's argument tiles become TMA loads on one
 * mbarrier per stage (waits with parity kb % 2, no cp.async sync left);
 * with rows of 264 bytes (K = 132, no multiple of 16) they stay cp.async */
TEST(golden_tma_gemm) { golden_for("tma_gemm", pass_tma, ir_target("sm_90a")); }
TEST(golden_tma_keep) { golden_for("tma_keep", pass_tma, ir_target("sm_90a")); }
TEST(golden_tma_not_on_sm80) { golden_for("tma_keep", pass_tma, ir_target("sm_80")); }
TEST(golden_fuse_barrier) { golden_for("fuse_barrier", pass_fuse, ir_target("sm_90a")); }

/* Kind of the loop over variable `name` (or -1 if there is none). */
static int loop_kind_of(const Stmt *s, const char *name)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++) {
            int k = loop_kind_of(s->u.seq.items[i], name);
            if (k >= 0)
                return k;
        }
        return -1;
    case ST_IF: {
        int k = loop_kind_of(s->u.if_.then_, name);
        return k >= 0 || !s->u.if_.else_ ? k : loop_kind_of(s->u.if_.else_, name);
    }
    case ST_FOR:
        if (!strcmp(s->u.loop.var->name, name))
            return (int)s->u.loop.kind;
        return loop_kind_of(s->u.loop.body, name);
    default:
        return -1;
    }
}

static Kernel *parse_text(const char *text)
{
    Diag d = {0};
    Kernel *k = ir_parse(text, "inline.tir", &d);
    if (!k)
        diag_print(&d, stdout);
    CHECK(k != NULL);
    return k;
}

/* vectorize.c promises a reduction mark only for `acc[0] = acc[0] op e`
 * into a one-element accumulator: an index that moves with the loop
 * (acc[j % 4]) carries a dependence at distance 4 and is not a reduction
 * codegen may reassociate.  Same for an accumulator that is f32[4] but
 * indexed at the loop variable's function. */
TEST(vectorize_reduction_needs_a_fixed_accumulator)
{
    Kernel *k = parse_text("kernel v level loop\n"
                           "arg x: f32[40] in\n"
                           "arg y: f32[4] out\n"
                           "buf acc4: local f32[4]\n"
                           "grid (b) < [1]\n"
                           "{\n"
                           "  for j: serial < 40 {\n"
                           "    acc4[j % 4] = acc4[j % 4] + x[j]\n"
                           "  }\n"
                           "  for q: serial < 40 {\n"
                           "    acc4[3 - q % 4] = max(acc4[3 - q % 4], x[q])\n"
                           "  }\n"
                           "}\n");
    if (!k)
        return;
    Diag d = {0};
    CHECK(pass_vectorize(k, avx512(), &d));
    CHECKF(loop_kind_of(k->body, "j") == LOOP_SERIAL,
           "acc4[j %% 4] += x[j] was marked %s: not a one-element reduction",
           loop_kind_name((LoopKind)loop_kind_of(k->body, "j")));
    CHECKF(loop_kind_of(k->body, "q") == LOOP_SERIAL,
           "acc4[3 - q %% 4] = max(...) was marked %s: not a one-element reduction",
           loop_kind_name((LoopKind)loop_kind_of(k->body, "q")));
    ir_kernel_free(k);
}

/* The vector width is the target's f32 lanes: 16 on AVX-512, 8 on AVX2. */
TEST(vectorize_width_follows_target)
{
    static const char *text = "kernel w level loop\n"
                              "arg x: f32[40] in\n"
                              "arg y: f32[40] out\n"
                              "grid (b) < [1]\n"
                              "{\n"
                              "  for j: parallel < 40 {\n"
                              "    y[j] = x[j]\n"
                              "  }\n"
                              "}\n";
    const char *names[] = {"x86-avx512", "x86-avx2"};
    int widths[] = {16, 8};
    for (int i = 0; i < 2; i++) {
        Kernel *k = parse_text(text);
        if (!k)
            return;
        Diag d = {0};
        CHECK(pass_vectorize(k, ir_target(names[i]), &d));
        const Stmt *loop = k->body->u.seq.items[0];
        CHECK(loop->op == ST_FOR && loop->u.loop.kind == LOOP_VECTOR);
        CHECKF(loop->u.loop.arg == widths[i], "%s: width %d", names[i], loop->u.loop.arg);
        ir_kernel_free(k);
    }
}

/* The scratch buffers pass_lower adds (acc0, gemm_a1, ...) must not take a
 * name the kernel already uses: the printed Loop IR would declare the same
 * buffer name twice and no longer parse back to the same kernel. */
TEST(lower_scratch_names_are_unique)
{
    Kernel *k = parse_text("kernel names level tile\n"
                           "arg x: f32[4, 8] in\n"
                           "arg y: f32[4] out\n"
                           "buf acc0: fragment f32[4]\n"
                           "grid (b) < [1]\n"
                           "{\n"
                           "  reduce sum axis 1 x[0 +: 4, 0 +: 8] -> acc0 clear\n"
                           "  copy acc0 -> y[0 +: 4]\n"
                           "}\n");
    if (!k)
        return;
    Diag d = {0};
    CHECK(pass_pipeline(k, avx512(), NULL, &d));
    for (int i = 0; i < k->nbufs; i++)
        for (int j = i + 1; j < k->nbufs; j++)
            CHECKF(strcmp(k->bufs[i]->name, k->bufs[j]->name), "two buffers named %s after lowering",
                   k->bufs[i]->name);
    char *text = ir_print_string(k);
    Diag d2 = {0};
    Kernel *back = ir_parse(text, "names.tir", &d2);
    char *again = back ? ir_print_string(back) : NULL;
    CHECKF(again && !strcmp(text, again), "lowered IR does not parse back: %s\n%s", d2.msg, text);
    free(again);
    free(text);
    ir_kernel_free(back);
    ir_kernel_free(k);
}

/* ------------------------------------------ parallel loops are parallel */

/* ir.h: LOOP_PARALLEL/VECTOR iterations are independent, free to vectorise
 * or distribute.  A plain store whose indices do not mention an enclosing
 * parallel loop's variable writes the same element in every iteration of
 * it: a cross-iteration dependence (atomic stores are the exception by
 * design).  Reports the first such store into *why. */
/* A reduction step acc[c] = acc[c] op e: in a vector loop (what
 * vectorize.c marks, reordering allowed) a reduction, not a dependence
 * between iterations; the loop's other stores must still be independent. */
static bool is_reduction_store(const Stmt *b)
{
    if (b->op != ST_STORE || b->u.store.buf->rank != 1)
        return false;
    const Expr *v = b->u.store.value;
    return (v->op == EX_ADD || v->op == EX_MAX || v->op == EX_MIN) && v->args[0]->op == EX_LOAD &&
           v->args[0]->buf == b->u.store.buf && ir_expr_is_const(b->u.store.idx[0], NULL);
}

/* vec: the innermost enclosing vector loop's variable (or NULL). */
static bool independent(const Stmt *s, const Var **par, int npar, const Var *vec, char *why, size_t n)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!independent(s->u.seq.items[i], par, npar, vec, why, n))
                return false;
        return true;
    case ST_IF:
        return independent(s->u.if_.then_, par, npar, vec, why, n) &&
               (!s->u.if_.else_ || independent(s->u.if_.else_, par, npar, vec, why, n));
    case ST_FOR: {
        bool p = s->u.loop.kind == LOOP_PARALLEL || s->u.loop.kind == LOOP_VECTOR;
        if (p)
            par[npar] = s->u.loop.var;
        return independent(s->u.loop.body, par, npar + p,
                           s->u.loop.kind == LOOP_VECTOR ? s->u.loop.var : vec, why, n);
    }
    case ST_STORE:
        if (s->u.store.atomic)
            return true;
        for (int p = 0; p < npar; p++) {
            if (par[p] == vec && is_reduction_store(s))
                continue;
            bool any = false;
            for (int d = 0; d < s->u.store.buf->rank; d++)
                any |= ir_mentions_var(s->u.store.idx[d], par[p]);
            if (!any) {
                snprintf(why, n, "%s is written at one element in every iteration of parallel loop %s",
                         s->u.store.buf->name, par[p]->name);
                return false;
            }
        }
        return true;
    default:
        return true;
    }
}

/* Every loop pass_pipeline marks parallel or vector really is: checked on
 * the lowered goldens' inputs and the examples. */
TEST(lowered_parallel_loops_are_independent)
{
    const char *files[] = {"tests/passes/lower_copy.in.tir", "tests/passes/lower_reduce.in.tir",
                           "tests/passes/lower_gemm_f32.in.tir", "tests/passes/lower_gemm_bf16.in.tir",
                           "tests/passes/lower_dot.in.tir"};
    const char *specs[] = {"examples/gemm.lua", "examples/softmax.lua", "examples/rmsnorm.lua",
                           "examples/silu_mul.lua", "examples/dyn_scale.lua"};
    for (int i = 0; i < 10; i++) {
        Diag d = {0};
        const char *name = i < 5 ? files[i] : specs[i - 5];
        Kernel *k = i < 5 ? parse_file(name) : fe_load(name, NULL, 0, &d);
        bool ok = k && pass_pipeline(k, avx512(), NULL, &d);
        CHECKF(ok, "%s: %s", name, d.msg);
        if (ok) {
            const Var *par[64];
            char why[256] = "";
            CHECKF(independent(k->body, par, 0, NULL, why, sizeof why), "%s: %s", name, why);
        }
        ir_kernel_free(k);
    }
}

/* -------------------------------------------------------- equivalence */

/* Storage of every argument, filled from one seed (integers get small
 * values, floats uniform [-1, 1) rounded to the dtype). */
typedef struct Args {
    int n;
    void *p[16];
    size_t bytes[16];
} Args;

static void args_make(const Kernel *k, const int64_t *params, unsigned seed, Args *a)
{
    a->n = k->nargs;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        int64_t n = 1, dim = 0;
        for (int r = 0; r < b->rank; r++) {
            ir_eval_int(b->shape[r], params, &dim);
            n *= dim;
        }
        a->bytes[i] = dt_storage_bytes(b->dtype, n);
        a->p[i] = calloc(a->bytes[i] + 16, 1);
        for (int64_t j = 0; j < n; j++) {
            float v = test_rand(&seed);
            if (b->dtype == DT_E8M0) /* scales: powers of two 2^-4 .. 2^3 */
                v = ldexpf(1.0f, (int)floorf(v * 4));
            dt_store(b->dtype, a->p[i], j, dt_is_float(b->dtype) ? v : (double)(int)(v * 8));
        }
    }
}

static void args_free(Args *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->p[i]);
}

/* Interpret `tile` and `loop` (the same kernel before and after the
 * pipeline) on the same inputs; returns the number of arguments whose bytes
 * differ (-1: the interpreter failed), naming them unless quiet. */
static int count_differences(const Kernel *tile, const Kernel *loop, const int64_t *params, const char *what,
                             bool quiet)
{
    int bad = 0;
    for (unsigned seed = 3; seed < 5; seed++) {
        Args x, y;
        args_make(tile, params, seed, &x);
        args_make(loop, params, seed, &y);
        Diag d1 = {0}, d2 = {0};
        bool ok1 = ir_interp(tile, x.p, params, &d1), ok2 = ir_interp(loop, y.p, params, &d2);
        if (!ok1)
            diag_print(&d1, stdout);
        if (!ok2)
            diag_print(&d2, stdout);
        if (!ok1 || !ok2)
            bad = -1;
        for (int i = 0; ok1 && ok2 && bad >= 0 && i < x.n; i++) {
            bool same = x.bytes[i] == y.bytes[i] && !memcmp(x.p[i], y.p[i], x.bytes[i]);
            if (!same && !quiet)
                printf("  %s (params[0]=%lld, seed %u): argument %s differs between tile and loop IR\n", what,
                       (long long)(params ? params[0] : 0), seed, tile->bufs[i]->name);
            bad += !same;
        }
        args_free(&x);
        args_free(&y);
    }
    return bad;
}

static void same_results(const Kernel *tile, const Kernel *loop, const int64_t *params, const char *what)
{
    int bad = count_differences(tile, loop, params, what, false);
    CHECKF(bad == 0, "%s: %s", what, bad < 0 ? "interpreter failed" : "tile and loop IR differ");
}

/* The comparison can fail: goldens with one wrong detail (a tail read as 1
 * instead of 0, a wrong reduction identity, a reduce that forgets the old
 * destination, a lost remainder tile, a wrong k-pair packing, a dot tile
 * reading the wrong K window) must differ from the Tile IR at a size that
 * reaches the detail. */
TEST(equivalence_catches_broken_lowerings)
{
    static const struct { const char *name, *from, *to; int64_t m; } mutants[] = {
        {"lower_copy", "t[c0, select(0 <= b * 4 + c0 and b * 4 + c0 < M, 4, 0) + z] = 0.0",
         "t[c0, select(0 <= b * 4 + c0 and b * 4 + c0 < M, 4, 0) + z] = 1.0", 5},
        /* an edge row's run one short: its last element left as it was */
        {"lower_copy", "for r: parallel < select(0 <= b * 4 + c0 and b * 4 + c0 < M, 4, 0)",
         "for r: parallel < select(0 <= b * 4 + c0 and b * 4 + c0 < M, 3, 0)", 5},
        {"lower_reduce", "acc1[0] = -inf", "acc1[0] = 0.0", 1},
        {"lower_reduce", "min(select(0 <= 4 + r0_2 and 4 + r0_2 < 12, cm[max(min(4 + r0_2, 11), 0)], 0.0), acc2[0])",
         "min(acc2[0], acc2[0])", 4},
        /* reductions across rows: a max's accumulators from 0; a sum
         * keeping only the last row */
        {"lower_reduce_across", "acc1[a0_3, a1] = -inf", "acc1[a0_3, a1] = 0.0", 4},
        {"lower_reduce_across", "acc0[a0_1] = acc0[a0_1] + select(", "acc0[a0_1] = 0.0 + select(", 4},
        {"lower_gemm_f32", "micro_gemm gemm_a1[12 +: 1, 0 +: 7], gemm_b2[32 +: 8, 0 +: 7] -> gemm_c0[12 +: 1, 32 +: 8] trans_b",
         "", 0},
        {"lower_gemm_bf16", "bg[max(min(q0 * 2 + 1, 9), 0)", "bg[max(min(q0 * 2, 9), 0)", 0},
        {"lower_gemm_bf16", "bs[jt_1 * 2 +: 2, 1 +: 9]", "bs[jt_1 * 2 +: 2, 0 +: 9]", 0},
        {"lower_dot", "micro_gemm gemm_a0, w[jt * 4 +: 4", "micro_gemm gemm_a0, w[jt * 3 +: 4", 5},
        /* the tail band's tile one column group behind */
        {"lower_dot_columns", "micro_gemm gemm_a0[6 +: 1, 0 +: 1024], w[jt * 3 +: 3",
         "micro_gemm gemm_a0[6 +: 1, 0 +: 1024], w[jt * 3 + 3 +: 3", 0},
        /* A's copy with its rows padded (dot_a_copy): a row's last element left out */
        {"lower_dot_columns", "for r: parallel < select(0 <= c0 and c0 < 7, 1024, 0)",
         "for r: parallel < select(0 <= c0 and c0 < 7, 1023, 0)", 0},
        /* A's copy in the e4m3 tiles' decode order: an odd column stored
         * where an even one belongs (the tile reads its parts swapped) */
        {"lower_e4m3_words", "gemm_a0[e0, e1 * 64 + e2] = x[e0, e1 * 64 + e2 * 2]",
         "gemm_a0[e0, e1 * 64 + e2] = x[e0, e1 * 64 + 1 + e2 * 2]", 0},
        /* the rows of A widened once for every column tile: one row twice */
        {"lower_dot", "gemm_a0[p0, p1] = x[b * 5 + p0, k * 40 + p1]", "gemm_a0[p0, p1] = x[b * 5, k * 40 + p1]", 5},
        /* block scales: another expert's scales in a dot tile; the high
         * nibble dequantised for the low one; 16-row instead of 8-row blocks */
        {"lower_scaled", "b_scale sw[1 +: 1, jt * 3 +: 3", "b_scale sw[0 +: 1, jt * 3 +: 3", 5},
        {"lower_scaled_deq", "gemm_db0[d0, d1 * 2] = w[d0, d1 * 2]", "gemm_db0[d0, d1 * 2] = w[d0, d1 * 2 + 1]", 1},
        {"lower_scaled_deq", "sw[d0 / 8, d1 * 2 / 32]", "sw[d0 / 16, d1 * 2 / 32]", 1},
        {"lower_gemm_widen", "gemm_a0[p0, p1] = as[p0, p1]", "gemm_a0[p0, p1] = as[p0, 0]", 0},
        /* gemm rows: a band short (row 8 of 9 not computed), the tail kept
         * off when row 17 is wanted (in the staged-A path a last block takes) */
        {"lower_rows", "it_1: serial < min((min(max(M - b * 20, 0), 20) + 7) / 8",
         "it_1: serial < min((min(max(M - b * 20, 0), 20) + 6) / 8", 9},
        {"lower_rows", "if 16 < min(max(M - b * 20, 0), 20) {\n      micro_gemm gemm_a1",
         "if 17 < min(max(M - b * 20, 0), 20) {\n      micro_gemm gemm_a1", 37},
        /* a 3-row tile's one-row variant taken for two rows; the band of
         * the rows left after 4-row bands reading A from row 0 */
        {"lower_rows", "if min(max(M - b * 20 - 3, 0), 3) % 3 == 1 {", "if min(max(M - b * 20 - 3, 0), 3) % 3 == 2 {", 5},
        {"lower_rows", "micro_gemm x[b * 20 + min(max(min(M - b * 20, 7), 0), 7) / 4 * 4 +: 3",
         "micro_gemm x[b * 20 +: 3", 7},
        /* broadcast tiles: A staged transposed from one column of x; a
         * tile's weight rows a column group behind its accumulators */
        {"lower_scaled_rows", "gemm_at0[p0, p1] = x[b * 16 + p1, k * 64 + p0]",
         "gemm_at0[p0, p1] = x[b * 16 + p1, k * 64]", 16},
        {"lower_scaled_rows", "w[1 +: 1, jt * 6 +: 6, k * 64 +: 64] -> acc[0 +: 16, jt * 6 +: 6]",
         "w[1 +: 1, jt * 5 +: 6, k * 64 +: 64] -> acc[0 +: 16, jt * 6 +: 6]", 16},
        /* forwarded operands: A read in place a row band off; B's panels
         * packed from the first K step every step; the 8-column tail tile
         * reading the first panel (all at M = 45: blocks inside the matrix) */
        {"lower_forward", "micro_gemm a[by * 20 + it * 8 +: 8", "micro_gemm a[by * 20 + it * 7 +: 8", 45},
        {"lower_forward", "= b[p0_1 * 32 + p2_1, k * 8 + p1_1]", "= b[p0_1 * 32 + p2_1, p1_1]", 45},
        {"lower_forward", "gemm_b0[8 +: 8, 0 +: 8] -> acc[it * 8", "gemm_b0[0 +: 8, 0 +: 8] -> acc[it * 8", 45},
        /* ... and the one-row variant reading A's second row (run at M = 4) */
        {"lower_rows", "micro_gemm x[b * 20 + min(max(M - b * 20 - 3, 0), 3) / 3 * 3 +: 1, 0 +: 16], ws[0 +: 16",
         "micro_gemm x[b * 20 + 1 + min(max(M - b * 20 - 3, 0), 3) / 3 * 3 +: 1, 0 +: 16], ws[0 +: 16", 4},
    };
    for (size_t i = 0; i < sizeof mutants / sizeof mutants[0]; i++) {
        char in[256], out[256];
        snprintf(in, sizeof in, "tests/passes/%s.in.tir", mutants[i].name);
        snprintf(out, sizeof out, "tests/passes/%s.out.tir", mutants[i].name);
        char *text = th_read_file(out);
        char *at = text ? strstr(text, mutants[i].from) : NULL;
        CHECKF(at != NULL, "mutant %zu: '%s' not in %s", i, mutants[i].from, out);
        if (!at) {
            free(text);
            continue;
        }
        size_t nf = strlen(mutants[i].from), nt = strlen(mutants[i].to);
        char *mut = malloc(strlen(text) + nt + 1);
        memcpy(mut, text, (size_t)(at - text));
        memcpy(mut + (at - text), mutants[i].to, nt);
        strcpy(mut + (at - text) + nt, at + nf);
        Kernel *tile = parse_file(in), *loop = parse_text(mut);
        if (tile && loop)
            CHECKF(count_differences(tile, loop, &mutants[i].m, mutants[i].name, true) > 0,
                   "mutant %zu of %s (%s -> %s) went unnoticed", i, mutants[i].name, mutants[i].from,
                   mutants[i].to);
        ir_kernel_free(tile);
        ir_kernel_free(loop);
        free(mut);
        free(text);
    }
}

/* e4m3 by e4m3 at one row where the pair tiles read A in their decode
 * order (split_512): the Loop IR's micro_gemm a_decode_order reads the
 * copy where the order puts each column */
TEST(tile_equals_loop_e4m3_words)
{
    Kernel *tile = parse_file("tests/passes/lower_e4m3_words.in.tir");
    Kernel *loop = parse_file("tests/passes/lower_e4m3_words.in.tir");
    Diag d = {0};
    bool ok = tile && loop && pass_pipeline(loop, split_512(), NULL, &d);
    if (!ok)
        diag_print(&d, stdout);
    CHECKF(ok, "lower_e4m3_words: pipeline failed");
    if (ok)
        same_results(tile, loop, NULL, "lower_e4m3_words");
    ir_kernel_free(tile);
    ir_kernel_free(loop);
}

/* The hand-written inputs of the goldens, each at several dyn sizes
 * (1-row edges, partial last block, exact multiple, blocks inside the
 * matrix and a last one that is not). */
TEST(tile_equals_loop_hand_written)
{
    const char *names[] = {"lower_copy",       "lower_reduce", "lower_reduce_across", "lower_gemm_f32",   "lower_gemm_bf16",  "lower_dot",
                           "lower_gemm_widen", "lower_scaled", "lower_scaled_deq", "lower_scaled_rows", "lower_scaled_tall",
                           "lower_rows",       "lower_cols",       "lower_forward", "lower_dot_columns", "lower_forward_pairs"};
    const int64_t ms[] = {1, 4, 5, 11, 45}; /* 45: whole 20-row blocks, then a partial one */
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/passes/%s.in.tir", names[i]);
        for (int m = 0; m < (int)(sizeof ms / sizeof ms[0]); m++) {
            Kernel *tile = parse_file(path), *loop = parse_file(path);
            if (!tile || !loop)
                return;
            Diag d = {0};
            bool ok = pass_pipeline(loop, avx512(), NULL, &d);
            if (!ok)
                diag_print(&d, stdout);
            CHECKF(ok && loop->level == LEVEL_LOOP, "%s: pipeline failed", names[i]);
            if (ok)
                same_results(tile, loop, &ms[m], names[i]);
            bool dyn = tile->nparams > 0;
            ir_kernel_free(tile);
            ir_kernel_free(loop);
            if (!dyn)
                break; /* static shapes: one size is all there is */
        }
    }
}

/* Each of names' goldens' inputs through `pass` alone gives the same
 * results under the interpreter (dyn M at each of ms[0..3)); cpu is the
 * target of unthreaded kernels, sm_90a that of threaded ones. */
static void keeps_the_meaning(const char *const *names, int n, PassFn pass, const TargetInfo *cpu, const int64_t *ms)
{
    for (int i = 0; i < n; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/passes/%s.in.tir", names[i]);
        for (int m = 0; m < 3; m++) {
            Kernel *before = parse_file(path), *after = parse_file(path);
            if (!before || !after)
                return;
            Diag d = {0};
            const TargetInfo *t = after->nthreads ? ir_target("sm_90a") : cpu;
            CHECKF(pass(after, t, &d) && ir_verify(after, &d), "%s: %s", names[i], d.msg);
            same_results(before, after, &ms[m], names[i]);
            bool dyn = before->nparams > 0;
            ir_kernel_free(before);
            ir_kernel_free(after);
            if (!dyn)
                break; /* static shapes: one size is all there is */
        }
    }
}

/* pass_fuse alone keeps the meaning of its goldens' inputs bit for bit
 * (dyn M: one row, a partial block, exact blocks). */
TEST(fuse_keeps_the_meaning)
{
    const char *names[] = {"fuse_chain",   "fuse_keep",         "fuse_switch", "fuse_barrier",
                           "fuse_strided", "fuse_strided_keep", "fuse_merge",  "fuse_merge_keep",
                           "fuse_update",  "fuse_dead_loop",    "fuse_dead_nested", "fuse_dead_runs",
                           "fuse_dead_runs_short"};
    const int64_t ms[] = {1, 5, 8};
    keeps_the_meaning(names, (int)(sizeof names / sizeof names[0]), pass_fuse, avx512(), ms);
}

/* pass_bounds alone keeps the meaning of its golden's input (dyn M: inside
 * and past the grid's rows, so the unfolded tests go both ways). */
TEST(bounds_keeps_the_meaning)
{
    const char *names[] = {"bounds_scratch", "bounds_scratch_late"};
    keeps_the_meaning(names, 2, pass_bounds, avx512(), (const int64_t[]){1, 1, 1});
    const int64_t ms[] = {1, 100, 5000};
    for (int m = 0; m < 3; m++) {
        Kernel *before = parse_file("tests/passes/bounds.in.tir"), *after = parse_file("tests/passes/bounds.in.tir");
        if (!before || !after)
            return;
        Diag d = {0};
        CHECKF(pass_bounds(after, avx512(), &d) && ir_verify(after, &d), "bounds: %s", d.msg);
        same_results(before, after, &ms[m], "bounds");
        ir_kernel_free(before);
        ir_kernel_free(after);
    }
}

/* pass_reuse alone keeps the meaning of its golden's input: the dropped
 * copies would have written what the buffers held. */
TEST(reuse_keeps_the_meaning)
{
    const char *names[] = {"reuse"};
    const int64_t ms[] = {1};
    keeps_the_meaning(names, 1, pass_reuse, avx512(), ms);
}

/* pass_hoist alone keeps the meaning of its golden's input (the
 * interpreter runs a once's body each time: what the blocks read from the
 * hoisted scratch is what they staged before).  M: one row, a partial
 * row block, whole ones. */
TEST(hoist_keeps_the_meaning)
{
    const char *names[] = {"hoist_staging",       "hoist_one_step", "hoist_derived",
                           "hoist_bounded_steps", "hoist_unrolled", "hoist_merge", "hoist_split", "hoist_padded_rows",
                           "hoist_step_tail",     "hoist_window_split", "hoist_window_reads"};
    const int64_t ms[] = {1, 6, 8};
    keeps_the_meaning(names, 11, pass_hoist, ir_target("x86-avx2"), ms);
}

/* Every example spec, at shapes that hit tails (and small enough for the
 * interpreter), for both targets' lowerings. */
TEST(tile_equals_loop_examples)
{
    static const struct {
        const char *spec;
        FeSet set[4];
        int nset;
        int64_t param;
    } cases[] = {
        {"examples/gemm.lua", {{"M", "37"}, {"N", "70"}, {"K", "45"}, {"BM", "24"}}, 4, 0},
        {"examples/gemm.lua", {{"M", "30"}, {"N", "33"}, {"K", "66"}, {"dtype", "bf16"}}, 4, 0},
        {"examples/gemm.lua", {{"M", "7"}, {"N", "9"}, {"K", "7"}, {"dtype", "bf16"}}, 4, 0},
        {"examples/softmax.lua", {{"M", "5"}, {"N", "300"}, {"BM", "4"}}, 3, 0},
        {"examples/rmsnorm.lua", {{"M", "9"}, {"N", "130"}}, 2, 0},
        {"examples/silu_mul.lua", {{"M", "6"}, {"N", "70"}, {"dtype", "bf16"}}, 3, 0},
        {"examples/silu_mul.lua", {{"M", "3"}, {"N", "33"}, {"dtype", "f32"}}, 3, 0},
        {"examples/dyn_scale.lua", {{"N", "9"}}, 1, 21},
        {"examples/dyn_scale.lua", {{"N", "9"}}, 1, 1},
    };
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 2; t++) {
            Diag d = {0};
            Kernel *tile = fe_load(cases[i].spec, cases[i].set, cases[i].nset, &d);
            Kernel *loop = fe_load(cases[i].spec, cases[i].set, cases[i].nset, &d);
            bool ok = tile && loop && pass_pipeline(loop, ir_target(targets[t]), NULL, &d);
            if (!ok)
                diag_print(&d, stdout);
            CHECKF(ok, "%s [%zu] for %s: load or pipeline failed", cases[i].spec, i, targets[t]);
            if (ok) {
                char what[128];
                snprintf(what, sizeof what, "%s [%zu] %s", cases[i].spec, i, targets[t]);
                int64_t params[1] = {cases[i].param};
                same_results(tile, loop, params, what);
            }
            ir_kernel_free(tile);
            ir_kernel_free(loop);
        }
}

/* ------------------------------------------------- check and pipeline */

static const char *fragment_kernel(const char *decl)
{
    static char text[512];
    snprintf(text, sizeof text,
             "kernel big level tile\n"
             "arg y: f32[4] out\n"
             "%s\n"
             "grid (b) < [1]\n"
             "{\n"
             "  fill y[0 +: 4] = 1.0\n"
             "}\n",
             decl);
    return text;
}

/* Exactly the limit passes; one element more fails, naming the buffer, its
 * shape, dtype and size, the target and the limit; shared is not limited. */
TEST(check_fragment_limit)
{
    static const struct { const char *decl; const char *msg; } cases[] = {
        {"buf acc: fragment f32[128, 256]", NULL},
        {"buf acc: fragment bf16[256, 256]", NULL},
        {"buf big: shared f32[512, 512]", NULL},
        {"buf acc: fragment f32[129, 256]",
         "kernel big: fragment acc is 129x256 f32 (129 KiB), larger than x86-avx512 allows (128 KiB)"},
        {"buf tmp: local f32[64, 64, 9]",
         "kernel big: local tmp is 64x64x9 f32 (144 KiB), larger than x86-avx512 allows (128 KiB)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Kernel *k = parse_text(fragment_kernel(cases[i].decl));
        if (!k)
            return;
        Diag d = {0};
        bool ok = pass_check(k, avx512(), &d);
        if (!cases[i].msg) {
            CHECKF(ok, "%s: rejected: %s", cases[i].decl, d.msg);
        } else {
            CHECKF(!ok && !strcmp(d.msg, cases[i].msg), "%s: got '%s'", cases[i].decl, d.msg);
            CHECKF(d.hint[0] != 0, "%s: no hint", cases[i].decl);
            CHECKF(d.loc.line == 3, "%s: reported at line %d, not the buffer's line 3", cases[i].decl,
                   d.loc.line);
        }
        ir_kernel_free(k);
    }
}

/* Through the pipeline from a spec: the error is at the user's Lua line
 * and names the target it was compiled for. */
TEST(check_fragment_from_spec)
{
    Diag d = {0};
    FeSet sets[] = {{"BM", "192"}, {"BN", "256"}};
    Kernel *k = fe_load("examples/gemm.lua", sets, 2, &d);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(!pass_pipeline(k, ir_target("x86-avx2"), NULL, &d));
    CHECKF(strstr(d.msg, "fragment acc is 192x256 f32 (192 KiB), larger than x86-avx2 allows (128 KiB)"),
           "%s", d.msg);
    CHECKF(d.loc.file && strstr(d.loc.file, "gemm.lua") && d.loc.line == 22, "at %s:%d",
           d.loc.file ? d.loc.file : "?", d.loc.line);
    CHECK(k->level == LEVEL_TILE); /* nothing was lowered */
    ir_kernel_free(k);
}

TEST(dump_after_unknown_pass)
{
    Diag d = {0};
    Kernel *k = parse_file("tests/passes/lower_copy.in.tir");
    if (!k)
        return;
    PassOptions o = {.dump_after = "tile"};
    CHECK(!pass_pipeline(k, avx512(), &o, &d));
    CHECKF(strstr(d.msg, "unknown pass 'tile'") && strstr(d.msg, pass_names()), "%s", d.msg);
    CHECK(!strcmp(pass_names(), "check, reuse, stages, tma, lower, bounds, fuse, hoist, vectorize, stream, threads, wgwait"));
    CHECK(k->level == LEVEL_TILE);
    ir_kernel_free(k);
}

/* --dump-after NAME prints the kernel once, after that pass; "all" after
 * each; --time-passes a line per pass.  The dump after "lower" is the lower
 * golden (pass_check changes nothing). */
TEST(dump_after_and_timing)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    Kernel *k = parse_file("tests/passes/lower_gemm_f32.in.tir");
    if (!k)
        return;
    Diag d = {0};
    PassOptions o = {.dump_after = "lower", .dump = f, .time_passes = true};
    CHECK(pass_pipeline(k, avx512(), &o, &d));
    fclose(f);
    char *want = th_read_file("tests/passes/lower_gemm_f32.out.tir");
    const char *dump = strstr(buf, "# after lower\n");
    CHECKF(dump != NULL, "no dump in:\n%s", buf);
    if (dump && want) {
        dump += strlen("# after lower\n");
        CHECKF(!strncmp(dump, want, strlen(want)), "dump after lower is not the golden:\n%s", dump);
    }
    CHECK(!strstr(buf, "# after check") && !strstr(buf, "# after vectorize"));
    CHECK(strstr(buf, "pass check") && strstr(buf, "pass lower") && strstr(buf, "pass vectorize"));
    free(want);
    free(buf);
    ir_kernel_free(k);

    f = open_memstream(&buf, &len);
    k = parse_file("tests/passes/lower_copy.in.tir");
    o = (PassOptions){.dump_after = "all", .dump = f};
    CHECK(k && pass_pipeline(k, avx512(), &o, &d));
    fclose(f);
    const char *a = strstr(buf, "# after check\nkernel lower_copy level tile\n");
    const char *b = a ? strstr(a, "# after lower\nkernel lower_copy level loop\n") : NULL;
    const char *c = b ? strstr(b, "# after vectorize\nkernel lower_copy level loop\n") : NULL;
    CHECKF(a && b && c, "dump-after all:\n%s", buf);
    CHECK(!strstr(buf, "pass check")); /* no timing unless asked */
    free(buf);
    ir_kernel_free(k);
}

int main(void)
{
    RUN(golden_lower_copy);
    RUN(golden_lower_reduce);
    RUN(golden_lower_reduce_across);
    RUN(golden_lower_gemm_f32);
    RUN(golden_lower_gemm_bf16);
    RUN(golden_lower_gemm_widen);
    RUN(golden_lower_dot);
    RUN(golden_lower_dot_columns);
    RUN(golden_lower_scaled);
    RUN(golden_lower_scaled_rows);
    RUN(golden_lower_scaled_tall);
    RUN(golden_lower_promote);
    RUN(golden_lower_band_chunks);
    RUN(golden_lower_e2m1_pairs);
    RUN(golden_lower_e4m3_words);
    RUN(golden_lower_e2m1_bands);
    RUN(golden_lower_e2m1_rows_left);
    RUN(golden_lower_rows);
    RUN(golden_lower_cols);
    RUN(golden_lower_forward);
    RUN(golden_lower_forward_pairs);
    RUN(golden_lower_forward_group);
    RUN(golden_lower_prefetch);
    RUN(golden_lower_next_block);
    RUN(golden_lower_next_block_retiled);
    RUN(golden_lower_scaled_deq);
    RUN(golden_lower_scaled_gpu);
    RUN(golden_vectorize);
    RUN(golden_vectorize_narrow);
    RUN(golden_vectorize_guards);
    RUN(golden_stream);
    RUN(golden_fuse_chain);
    RUN(golden_fuse_keep);
    RUN(golden_fuse_update);
    RUN(golden_fuse_dead_loop);
    RUN(golden_fuse_dead_nested);
    RUN(golden_fuse_dead_runs);
    RUN(golden_fuse_dead_runs_short);
    RUN(golden_hoist_staging);
    RUN(golden_hoist_one_step);
    RUN(golden_hoist_derived);
    RUN(golden_hoist_bounded_steps);
    RUN(golden_hoist_unrolled);
    RUN(golden_hoist_merge);
    RUN(golden_hoist_split);
    RUN(golden_hoist_padded_rows);
    RUN(golden_hoist_step_tail);
    RUN(golden_hoist_window_split);
    RUN(golden_hoist_window_reads);
    RUN(hoist_keeps_the_meaning);
    RUN(golden_fuse_switch);
    RUN(golden_fuse_strided);
    RUN(golden_fuse_strided_keep);
    RUN(golden_fuse_merge);
    RUN(golden_fuse_prefetch);
    RUN(golden_fuse_merge_keep);
    RUN(golden_fuse_barrier);
    RUN(golden_tma_gemm);
    RUN(golden_tma_keep);
    RUN(golden_tma_not_on_sm80);
    RUN(fuse_keeps_the_meaning);
    RUN(golden_bounds);
    RUN(golden_bounds_scratch);
    RUN(golden_bounds_scratch_late);
    RUN(golden_reuse);
    RUN(reuse_keeps_the_meaning);
    RUN(golden_stages);
    RUN(golden_threads);
    RUN(golden_wgwait);
    RUN(bounds_keeps_the_meaning);
    RUN(vectorize_reduction_needs_a_fixed_accumulator);
    RUN(vectorize_width_follows_target);
    RUN(lower_scratch_names_are_unique);
    RUN(lowered_parallel_loops_are_independent);
    RUN(tile_equals_loop_hand_written);
    RUN(tile_equals_loop_e4m3_words);
    RUN(equivalence_catches_broken_lowerings);
    RUN(tile_equals_loop_examples);
    RUN(check_fragment_limit);
    RUN(check_fragment_from_spec);
    RUN(dump_after_unknown_pass);
    RUN(dump_after_and_timing);
    return test_summary();
}
