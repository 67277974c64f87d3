/* lower_gemm.c — GEMM, Tile IR → Loop IR (pass_lower's; lower.c has the
 * rest).
 *
 * On the CPU a GEMM becomes MICRO_GEMM register tiles over operands staged
 * into row-major scratch (or read in place: an f32 A, B's kernel copy
 * forwarded), B packed in NR-column panels (k-pairs for a pairwise dot
 * product); a GEMM of few rows with B as [N, K] becomes dot tiles along K
 * that read B in place, block scales included.  On a GPU: tensor-core
 * tiles, or one thread per element of C.  After this, codegen sees only
 * static-shaped, row-major, in-bounds MICRO_GEMM operands. */
#include "passes/lower.h"
#include "passes/passes.h"

#include <math.h>

/* How an operand window is laid out in its scratch copy. */
typedef enum Layout {
    ROWS,   /* b[i, j] = R(i, j): a row-major copy */
    PAIRS,  /* b[kk, 2n + t] = R(2kk + t, n): k-pairs for a dot-product instruction */
    PANELS, /* b[p*K + k, n] = R(k, p*NR + n): panels of NR columns, one after another */
    /* b[i, ir_order_position(o, j)] = R(i, j), a micro_gemm a_decode_order A (layout_order's o): */
    E2M1_ORDER, /* f32 beside packed e2m1 */
    E2M1_PAIRS, /* bf16 beside packed e2m1 */
    E4M3_WORDS, /* bf16 beside e4m3 */
} Layout;

/* The order of an a_decode_order layout (ir.h). */
static IrOrder layout_order(Layout lay)
{
    return lay == E2M1_ORDER   ? ir_decode_order(DT_F32, DT_F4E2M1)
           : lay == E2M1_PAIRS ? ir_decode_order(DT_BF16, DT_F4E2M1)
                               : ir_decode_order(DT_BF16, DT_F8E4M3);
}

/* What a staged copy's values are multiplied by: 2^lift, and where
 * `scale` is not NULL the window's block scale (an f32 product), clamped into the
 * window the dot tiles fold where `clamp` says (fold_clamp). */
typedef struct Scaling {
    int lift;
    const Region *scale;
    bool clamp;
} Scaling;

/* A block scale clamped into the window the dot tiles fold (ir.h,
 * IR_FOLD_SCALE_LO): what a copy with micro_gemm a_prescaled holds. */
static Expr *fold_clamp(Lower *L, Expr *scale)
{
    Expr *lo = ir_const_f(L->k, ldexp(1, IR_FOLD_SCALE_LO - 127));
    Expr *hi = ir_const_f(L->k, ldexp(1, IR_FOLD_SCALE_HI - 127));
    return ir_binary(L->k, EX_MIN, ir_binary(L->k, EX_MAX, scale, lo), hi);
}

/* The value a staged copy holds for window r's element at pos (its
 * leading dims 0 first), its load guarded or not, scaled as `by` says;
 * the scale's element at pos divided by the window's elements per scale,
 * or in the last dim at scol where given. */
static Expr *staged_value(Lower *L, const Region *r, Expr *const *pos, Expr *scol, bool guard, Scaling by)
{
    Expr *si[IR_MAX_RANK];
    lower_region_at(L, r, pos, si);
    Expr *v = lower_guarded_load(L, r->buf, si, guard);
    const Region *scale = by.scale;
    if (by.lift)
        v = ir_binary(L->k, EX_MUL, v, ir_const_f(L->k, ldexp(1.0, by.lift)));
    if (scale) {
        Expr *sp[IR_MAX_RANK], *ssi[IR_MAX_RANK];
        int C = r->buf->rank - 1;
        for (int d = 0; d <= C; d++) {
            int64_t per = r->ext[d] / scale->ext[d];
            sp[d] = d == C && scol ? scol : per == 1 ? pos[d] : ir_binary(L->k, EX_DIV, pos[d], ci(L, per));
        }
        lower_region_at(L, scale, sp, ssi);
        Expr *f = lower_guarded_load(L, scale->buf, ssi, guard);
        v = ir_binary(L->k, EX_MUL, v, by.clamp ? fold_clamp(L, f) : f);
    }
    return v;
}

/* The staging loops of A's copy in a tile's decode order (lay E2M1_ORDER,
 * E2M1_PAIRS or E4M3_WORDS, layout_order): each block of B = Q·W columns
 * of the copy holds the window's B columns there as a W x Q matrix
 * transposed,
 *   for i < rows { for blk < K/B { for l < W {
 *       b[i, blk·B + W·q + l] = R(i, blk·B + Q·l + q)   for q < Q } } }
 * — Q stores a step, which LLVM vectorises over l as one interleaved
 * group (wide loads split by shuffles).  Written as one store at
 * position p reading column ir_order_column(p), the loads were gathers
 * of one byte each (16 x 4096 e4m3 into the bf16 pairs order, one
 * thread: 0.122 -> 0.035 ms). */
static Stmt *stage_order_loops(Lower *L, const Region *r, Buffer *b, Layout lay, const int64_t *shape, bool guard,
                               Scaling by, SrcLoc loc)
{
    IrOrder o = layout_order(lay);
    int64_t B = o.block, Q = o.parts, W = B / Q;
    int R = r->buf->rank - 2, C = R + 1;
    int64_t ext[3] = {shape[0], shape[1] / B, W};
    Expr *v[3], *pos[IR_MAX_RANK];
    Stmt *inner;
    Stmt *loops = lower_nest(L, 3, ext, LOOP_PARALLEL, "e", v, &inner, loc);
    Expr *first = ir_binary(L->k, EX_MUL, v[1], ci(L, B));
    /* a block lies in one scale block where those are whole blocks of the
     * copy (A's 1x128 scales): its scale found from blk, an invariant of
     * the vectorised loop */
    int64_t per = by.scale ? r->ext[C] / by.scale->ext[C] : 0;
    Expr *scol = per && per % B == 0 ? ir_binary(L->k, EX_DIV, v[1], ci(L, per / B)) : NULL;
    for (int d = 0; d < R; d++)
        pos[d] = ci(L, 0);
    pos[R] = v[0];
    for (int64_t q = 0; q < Q; q++) {
        /* the loop's variable added last: LLVM's instcombine makes
         * `l·Q + q` an or, and scalar evolution then no longer sees the
         * loads' addresses step (the loop was not vectorised) */
        pos[C] = add(L, add(L, first, ci(L, q)), ir_binary(L->k, EX_MUL, v[2], ci(L, Q)));
        Expr *di[2] = {v[0], add(L, add(L, first, ci(L, W * q)), v[2])};
        ir_seq_push(L->k, inner, ir_store(L->k, b, di, staged_value(L, r, pos, scol, guard, by), loc));
    }
    return loops;
}

/* The PAIRS staging loops of a [K, N] window r (not transposed): row kk
 * of b interleaves rows 2kk and 2kk + 1 of r, two stores a step,
 *   for kk < K/2 { for n < N { b[kk, 2n] = R(2kk, n); b[kk, 2n + 1] = R(2kk + 1, n) } }
 * which LLVM vectorises as one interleaved group (two row loads, their
 * words zipped).  As one store reading R(2kk + j % 2, j / 2) the loads
 * were gathers of a word each (sparse_attn's P·V, whose B is the
 * gathered key rows: half of its time). */
static Stmt *stage_row_pairs(Lower *L, const Region *r, Buffer *b, const int64_t *shape, bool guard, Scaling by,
                             SrcLoc loc)
{
    int R = r->buf->rank - 2;
    int64_t ext[2] = {shape[0], shape[1] / 2};
    Expr *v[2], *pos[IR_MAX_RANK];
    Stmt *inner;
    Stmt *loops = lower_nest(L, 2, ext, LOOP_PARALLEL, "q", v, &inner, loc);
    for (int d = 0; d < R; d++)
        pos[d] = ci(L, 0);
    pos[R + 1] = v[1];
    for (int t = 0; t < 2; t++) {
        pos[R] = add(L, ir_binary(L->k, EX_MUL, v[0], ci(L, 2)), ci(L, t));
        Expr *di[2] = {v[0], add(L, ir_binary(L->k, EX_MUL, v[1], ci(L, 2)), ci(L, t))};
        ir_seq_push(L->k, inner, ir_store(L->k, b, di, staged_value(L, r, pos, NULL, guard, by), loc));
    }
    return loops;
}

/* The staging loops of window r (transposed or not) into b with layout
 * lay, its loads guarded or not, its values scaled as `by` says.  Loops
 * over `shape` (PANELS: over panels [p0, p0 + shape[0]) of shape[2] <= NR
 * columns each). */
static Stmt *stage_loops(Lower *L, const Region *r, Buffer *b, Layout lay, const int64_t *shape, int64_t p0,
                         bool transpose, bool guard, Scaling by, SrcLoc loc)
{
    if (lay == E2M1_ORDER || lay == E2M1_PAIRS || lay == E4M3_WORDS)
        return stage_order_loops(L, r, b, lay, shape, guard, by, loc); /* (never transposed) */
    if (lay == PAIRS && !transpose)
        return stage_row_pairs(L, r, b, shape, guard, by, loc);
    int n = lay == PANELS ? 3 : 2, R = r->buf->rank - 2; /* (leading dims of extent 1) */
    if (lay == ROWS && !transpose && guard && !by.scale && !by.lift && r->ext[R] == shape[0] &&
        r->ext[R + 1] == shape[1]) { /* an edge block's rows as runs, no index clamped (lower.c) */
        Region whole = {.buf = b, .off = {ci(L, 0), ci(L, 0)}, .ext = {shape[0], shape[1]}};
        Stmt *split = lower_copy_rows_split(L, r, &whole, loc);
        if (split)
            return split;
    }
    Expr *vars[3], *pos[IR_MAX_RANK], *di[2];
    Stmt *inner;
    Stmt *loops = lower_nest(L, n, shape, LOOP_PARALLEL, lay == PAIRS ? "q" : "p", vars, &inner, loc);
    Expr *row = vars[0], *col = vars[1];
    di[0] = vars[0];
    di[1] = vars[1];
    if (lay == PAIRS) {
        row = add(L, ir_binary(L->k, EX_MUL, vars[0], ci(L, 2)), ir_binary(L->k, EX_MOD, vars[1], ci(L, 2)));
        col = ir_binary(L->k, EX_DIV, vars[1], ci(L, 2));
    } else if (lay == PANELS) {
        /* the panel loop is serial: its rows p*K + k differ, but a parallel
         * loop's stores must each move with its own variable */
        loops->u.seq.items[0]->u.loop.kind = LOOP_SERIAL;
        int64_t NR = L->t->micro_n, K = shape[1];
        Expr *p = add(L, vars[0], ci(L, p0)), *k = vars[1], *j = vars[2];
        row = k;
        col = add(L, ir_binary(L->k, EX_MUL, p, ci(L, NR)), j);
        di[0] = add(L, ir_binary(L->k, EX_MUL, p, ci(L, K)), k);
        di[1] = j;
    }
    for (int d = 0; d < R; d++)
        pos[d] = ci(L, 0);
    pos[R] = transpose ? col : row;
    pos[R + 1] = transpose ? row : col;
    ir_seq_push(L->k, inner, ir_store(L->k, b, di, staged_value(L, r, pos, NULL, guard, by), loc));
    return loops;
}

/* Whether a staging copy's loads are guarded: where its window is known
 * to lie inside the buffer (a fast path), known not to, or to be decided
 * at run time (an unguarded copy where it does, unless constant). */
typedef enum Guard { INSIDE, OUTSIDE, CHECK } Guard;

static void stage_into(Lower *L, Stmt *seq, const Region *r, Buffer *b, Layout lay, const int64_t *shape,
                       int64_t p0, bool transpose, Guard guard, Scaling by, SrcLoc loc)
{
    Expr *inside = guard == CHECK ? lower_window_inside(L, r) : NULL;
    if (inside && by.scale)
        inside = lower_and(L, inside, lower_window_inside(L, by.scale));
    Stmt *s;
    if (guard != CHECK || !inside || inside->op == EX_CONST)
        s = stage_loops(L, r, b, lay, shape, p0, transpose, guard == OUTSIDE || (inside && !inside->imm.i), by, loc);
    else
        s = ir_if(L->k, inside, stage_loops(L, r, b, lay, shape, p0, transpose, false, by, loc),
                  stage_loops(L, r, b, lay, shape, p0, transpose, true, by, loc), loc);
    ir_seq_push(L->k, seq, s);
}

/* Copy a (possibly global, possibly transposed) operand window into a new
 * row-major scratch buffer of `rows x cols` and dtype dt (r's own, or f32
 * to widen it), its values times 2^lift. */
static Buffer *stage_lifted(Lower *L, Stmt *seq, const Region *r, bool transpose, int64_t rows, int64_t cols,
                            DType dt, const char *what, Guard guard, int lift, SrcLoc loc)
{
    int64_t shape[2] = {rows, cols};
    Buffer *b = lower_temp(L, what, SCOPE_SHARED, dt, 2, shape, loc);
    stage_into(L, seq, r, b, ROWS, shape, 0, transpose, guard, (Scaling){.lift = lift}, loc);
    return b;
}

static Buffer *stage(Lower *L, Stmt *seq, const Region *r, bool transpose, int64_t rows, int64_t cols, DType dt,
                     const char *what, Guard guard, SrcLoc loc)
{
    return stage_lifted(L, seq, r, transpose, rows, cols, dt, what, guard, 0, loc);
}

/* Pack B (a [K,N] window, or [N,K] if transposed; K even) in k-pairs for a
 * dot-product instruction: bp[kk, 2n + t] = B(2kk + t, n), as bf16 (B's
 * values are bf16's: fp8 widens exactly). */
static Buffer *stage_pairs(Lower *L, Stmt *seq, const Region *r, bool transpose, int64_t K,
                           int64_t N, SrcLoc loc)
{
    int64_t shape[2] = {K / 2, 2 * N};
    Buffer *b = lower_temp(L, "gemm_bp", SCOPE_SHARED, DT_BF16, 2, shape, loc);
    stage_into(L, seq, r, b, PAIRS, shape, 0, transpose, CHECK, (Scaling){0}, loc);
    return b;
}

/* Pack B (a [K,N] window, or [N,K] if transposed) as f32 panels of NR
 * columns: a register tile then walks NR·4 contiguous bytes per k.  Read
 * from a row-major [K,BN] copy, each tile's rows lie BN·4 bytes apart,
 * all in a quarter of L1's sets at BN = 64: the tiles' B rows evicted
 * one another every k step. */
static Buffer *stage_panels(Lower *L, Stmt *seq, const Region *r, bool transpose, int64_t K, int64_t N,
                            SrcLoc loc)
{
    int64_t NR = L->t->micro_n, full = N / NR, rem = N % NR;
    int64_t shape[2] = {(full + (rem > 0)) * K, NR};
    Buffer *b = lower_temp(L, "gemm_b", SCOPE_SHARED, DT_F32, 2, shape, loc);
    int64_t whole[3] = {full, K, NR}, tail[3] = {1, K, rem};
    if (full)
        stage_into(L, seq, r, b, PANELS, whole, 0, transpose, CHECK, (Scaling){0}, loc);
    if (rem)
        stage_into(L, seq, r, b, PANELS, tail, full, transpose, CHECK, (Scaling){0}, loc);
    return b;
}

/* A window of the matrix of r (its last two dims: a block-scaled operand
 * may have leading unit dims): rows [o0 + d0, +e0), columns [o1 + d1, +e1). */
static Region sub(Lower *L, const Region *r, int64_t d0, int64_t e0, Expr *o0, int64_t d1, int64_t e1,
                  Expr *o1)
{
    Region s = *r;
    int R = r->buf->rank - 2, C = R + 1;
    s.off[R] = add(L, add(L, r->off[R], o0), ci(L, d0));
    s.off[C] = add(L, add(L, r->off[C], o1), ci(L, d1));
    s.ext[R] = e0;
    s.ext[C] = e1;
    return s;
}

/* One register tile at rows [i, i+mr), columns [j, j+nr) = panel `p` of
 * NR; b is B laid out as blay says ([K,N], [K/2, 2N] pairs, or panels). */
static Stmt *micro(Lower *L, const Stmt *g, const Region *a, const Region *b, const Region *c,
                   Expr *i, int64_t i0, int64_t mr, Expr *j, int64_t j0, int64_t nr, Expr *p, int64_t K,
                   Layout blay)
{
    Expr *z = ci(L, 0);
    Region ta = g->u.gemm.trans_a ? sub(L, a, 0, K, z, i0, mr, i) : sub(L, a, i0, mr, i, 0, K, z);
    Region tb = blay == PAIRS    ? sub(L, b, 0, K / 2, z, 2 * j0, 2 * nr, ir_binary(L->k, EX_MUL, j, ci(L, 2)))
                : blay == PANELS ? sub(L, b, 0, K, ir_binary(L->k, EX_MUL, p, ci(L, K)), 0, nr, z)
                                 : sub(L, b, 0, K, z, j0, nr, j);
    Region tc = sub(L, c, i0, mr, i, j0, nr, j);
    Stmt *s = ir_micro_gemm(L->k, ta, tb, tc, g->u.gemm.trans_a, false, g->u.gemm.clear, g->loc);
    s->u.gemm.b_pairs = blay == PAIRS;
    return s;
}

/* Bands of mr rows over C's M rows: `full` of them, then a tail band of
 * M % mr rows.  Where only C's first `rows` rows are wanted (the gemm's
 * rows option, an expression clamped to [0, M]), the loop of full bands
 * stops after the band holding the last wanted row and the tail runs only
 * if it holds one: a last row block mostly outside the matrix, or an MoE
 * tile of one expert's two rows, computes no padding rows. */
typedef struct Bands {
    Expr *loop; /* the full bands' loop extent */
    Expr *tail; /* the tail band's condition; NULL: always */
} Bands;

/* The gemm's rows option clamped to [0, M]. */
static Expr *wanted_rows(Lower *L, Expr *rows, int64_t M)
{
    return ir_binary(L->k, EX_MIN, ir_binary(L->k, EX_MAX, rows, ci(L, 0)), ci(L, M));
}

static Bands wanted_bands(Lower *L, Expr *rows, int64_t M, int64_t mr)
{
    int64_t full = M / mr;
    Bands b = {ci(L, full), NULL};
    if (!rows)
        return b;
    Expr *n = wanted_rows(L, rows, M);
    Expr *need = ir_binary(L->k, EX_DIV, add(L, n, ci(L, mr - 1)), ci(L, mr));
    b.loop = ir_binary(L->k, EX_MIN, need, ci(L, full));
    b.tail = ir_binary(L->k, EX_LT, ci(L, full * mr), n);
    return b;
}

/* Columns of one row band: full NR tiles in a loop, then the tail — those
 * holding wanted columns (the gemm's cols option, as rows for bands): the
 * last column block's columns past N are not computed (bf16 333 x 777 x
 * 555 in BN 64: its 13th block holds 9). */
static void row_band(Lower *L, Stmt *seq, const Stmt *g, const Region *a, const Region *b,
                     const Region *c, Expr *i, int64_t i0, int64_t mr, int64_t N, int64_t K, Layout blay,
                     Expr *cols)
{
    int64_t NR = L->t->micro_n, full = N / NR, rem = N % NR;
    Bands tiles = wanted_bands(L, cols, N, NR);
    if (full) {
        Var *jv = ir_var_new(L->k, "jt");
        Stmt *body = ir_seq(L->k, g->loc);
        Expr *j = ir_binary(L->k, EX_MUL, ir_var(L->k, jv), ci(L, NR));
        ir_seq_push(L->k, body, micro(L, g, a, b, c, i, i0, mr, j, 0, NR, ir_var(L->k, jv), K, blay));
        ir_seq_push(L->k, seq, ir_for(L->k, jv, tiles.loop, LOOP_SERIAL, 0, body, g->loc));
    }
    if (rem) {
        Stmt *tail = micro(L, g, a, b, c, i, i0, mr, ci(L, 0), full * NR, rem, ci(L, full), K, blay);
        ir_seq_push(L->k, seq, tiles.tail ? ir_if(L->k, tiles.tail, tail, NULL, g->loc) : tail);
    }
}

/* Register tiles over C: bands of MR rows (those holding wanted rows), each
 * a row of NR-column tiles (those holding wanted columns). */
static void register_tiles(Lower *L, Stmt *seq, const Stmt *g, const Region *a, const Region *b,
                           const Region *c, Expr *rows, Expr *cols, Layout blay)
{
    int64_t M = c->ext[0], N = c->ext[1], K = g->u.gemm.trans_a ? a->ext[0] : a->ext[1];
    int64_t MR = L->t->micro_m, full = M / MR, rem = M % MR;
    Bands bands = wanted_bands(L, rows, M, MR);
    if (full) {
        Var *iv = ir_var_new(L->k, "it");
        Stmt *body = ir_seq(L->k, g->loc);
        Expr *i = ir_binary(L->k, EX_MUL, ir_var(L->k, iv), ci(L, MR));
        row_band(L, body, g, a, b, c, i, 0, MR, N, K, blay, cols);
        ir_seq_push(L->k, seq, ir_for(L->k, iv, bands.loop, LOOP_SERIAL, 0, body, g->loc));
    }
    if (rem) {
        Stmt *tail = bands.tail ? ir_seq(L->k, g->loc) : seq;
        row_band(L, tail, g, a, b, c, ci(L, 0), full * MR, rem, N, K, blay, cols);
        if (bands.tail)
            ir_seq_push(L->k, seq, ir_if(L->k, bands.tail, tail, NULL, g->loc));
    }
}

/* An f32 A that is global (a copy into scratch forwarded: see
 * forward_operand) is read in place by the register tiles. */
static bool a_reads_in_place(Lower *L, const Stmt *g)
{
    const Region *a = &g->u.gemm.a;
    return !L->t->gpu_sm && a->buf->scope == SCOPE_GLOBAL && a->buf->dtype == DT_F32 && !g->u.gemm.trans_a &&
           a->buf->rank == 2;
}

/* GEMM on a GPU without tensor cores: one thread per element of C, a
 * private f32 accumulator and a serial loop over K (pass_threads spreads
 * the C elements over the block's threads). */
static Stmt *lower_gemm_simt(Lower *L, const Stmt *g)
{
    const Region *a = &g->u.gemm.a, *b = &g->u.gemm.b, *c = &g->u.gemm.c;
    bool ta = g->u.gemm.trans_a, tb = g->u.gemm.trans_b;
    int64_t K = ta ? a->ext[0] : a->ext[1], one = 1;
    Buffer *acc = lower_temp(L, "acc", SCOPE_LOCAL, DT_F32, 1, &one, g->loc);
    Expr *zero[1] = {ci(L, 0)};
    Expr *cv[2], *ci_[2];
    Stmt *body;
    Stmt *outer = lower_nest(L, 2, c->ext, LOOP_PARALLEL, "g", cv, &body, g->loc);
    lower_region_at(L, c, cv, ci_);
    Expr *init = g->u.gemm.clear ? ir_const_f(L->k, 0) : lower_guarded_load(L, c->buf, ci_, true);
    ir_seq_push(L->k, body, ir_store(L->k, acc, zero, init, g->loc));
    Var *kv = ir_var_new(L->k, "kk");
    Expr *kx = ir_var(L->k, kv), *pa[2], *pb[2], *ia[2], *ib[2];
    pa[0] = ta ? kx : cv[0];
    pa[1] = ta ? cv[0] : kx;
    pb[0] = tb ? cv[1] : kx;
    pb[1] = tb ? kx : cv[1];
    lower_region_at(L, a, pa, ia);
    lower_region_at(L, b, pb, ib);
    Expr *prod = ir_binary(L->k, EX_MUL, lower_guarded_load(L, a->buf, ia, true),
                           lower_guarded_load(L, b->buf, ib, true));
    Stmt *step = ir_seq(L->k, g->loc);
    ir_seq_push(L->k, step, ir_store(L->k, acc, zero, ir_binary(L->k, EX_ADD, ir_load(L->k, acc, zero), prod), g->loc));
    ir_seq_push(L->k, body, ir_for(L->k, kv, ci(L, K), LOOP_SERIAL, 0, step, g->loc));
    ir_seq_push(L->k, body, lower_guarded_store(L, c->buf, ci_, ir_load(L->k, acc, zero), true, false, g->loc));
    return outer;
}

Stmt *pass_gemm_loops(Kernel *k, const TargetInfo *t, const Stmt *g)
{
    Lower L = {.k = k, .t = t};
    return lower_gemm_simt(&L, g);
}


/* Tensor cores take the GEMM when its operands are whole scratch tiles of a
 * dtype they take (ir_mma_k), A untransposed, K a multiple of the mma's k,
 * and C a whole f32 fragment that tiles into 16x8 pieces over the block's
 * warps (pass_threads gives C that layout).  8-bit B must be [N, K]
 * (trans_b): ldmatrix cannot transpose bytes.  Which instruction runs it
 * (mma.sync, or wgmma on sm_90a) pass_threads decides, once the block's
 * threads are known. */
static bool tensor_core_gemm(Lower *L, const Stmt *g)
{
    const Region *a = &g->u.gemm.a, *b = &g->u.gemm.b, *c = &g->u.gemm.c;
    DType dt = a->buf->dtype;
    int kstep = ir_mma_k(L->t, dt);
    MmaLayout lay;
    return kstep && b->buf->dtype == dt && (g->u.gemm.trans_b || dt_bits(dt) == 16) &&
           !g->u.gemm.trans_a && a->buf->scope != SCOPE_GLOBAL && b->buf->scope != SCOPE_GLOBAL &&
           c->buf->scope == SCOPE_FRAGMENT && ir_region_is_whole(a) && ir_region_is_whole(b) && ir_region_is_whole(c) &&
           a->ext[1] % kstep == 0 && ir_mma_layout(c->ext[0], c->ext[1], L->t->gpu_threads, &lay);
}

/* ------------------------------------------------ dot tiles (decode) */

/* The matrix of a window is its last two dims (a scaled operand may have
 * leading unit dims). */
static int64_t mat_rows(const Region *r) { return r->ext[r->buf->rank - 2]; }
static int64_t mat_cols(const Region *r) { return r->ext[r->buf->rank - 1]; }

/* A product of few rows (decode: one token, a few) with B as [N, K] runs on
 * the CPU as dot products along K, which is contiguous in A and in B: a
 * MICRO_GEMM with trans_b is a dot_m x dot_n tile of them (codegen/micro.c),
 * B read in place and in its own dtype.  The broadcast register tiles would
 * first transpose B into k-major panels and then compute micro_m rows, most
 * of them padding. */
enum { DOT_MAX_ROWS = 16 };

static bool dot_gemm(Lower *L, const Stmt *g)
{
    return !L->t->gpu_sm && g->u.gemm.trans_b && !g->u.gemm.trans_a && g->u.gemm.c.ext[0] <= DOT_MAX_ROWS;
}

bool lower_gemm_in_register_tiles(Lower *L, const Stmt *g) { return !L->t->gpu_sm && !dot_gemm(L, g); }

/* Whether an e4m3 A beside an e4m3 B is staged as bf16 (exactly: bf16
 * holds every e4m3 value as a normal) for tiles that decode B to bf16
 * words and sum with vdpbf16ps (codegen/micro.c, e4m3_words): where the
 * target's vdpbf16ps is fast, it does the work of two FMAs.  At one row
 * only where 512-bit operations run in halves (split_512): there the
 * pairs' 2.5 instructions per 16 weights beat the f32 route's 4 (Zen 4,
 * fp8_gemm M = 1, 4096^2, normal codes, weights in L3: 0.80-0.84 ->
 * 0.60-0.66 ms); full-width units run the f32 route's FMAs, whose chains
 * are shorter than vdpbf16ps's, faster from L3 at one row (Zen 5:
 * 0.19-0.23 ms against 0.26-0.27, 2048 x 4096). */
static bool e4m3_pairs(const Lower *L, const Stmt *g)
{
    return L->t->has_bf16_dot && L->t->vector_bits == 512 && g->u.gemm.a.buf->dtype == DT_F8E4M3 &&
           g->u.gemm.b.buf->dtype == DT_F8E4M3 && g->u.gemm.c.ext[0] >= (L->t->split_512 ? 1 : 2);
}

/* What a dot tile's K loop keeps in vector registers besides its mr x nr
 * accumulators (codegen/micro.c), per operand dtypes ta x tb: each A row's
 * widened chunk, chunk / W registers (2 where an operand is 8-bit: the
 * chunk is 2W), and B's widening — none beyond a vector or two for the
 * 16- and 32-bit types, but e4m3 keeps three 16-bit constants and three
 * temporaries live (AVX2, fp8 at one row: nine columns spilled accumulators
 * every step, eight do not). */
typedef struct DotRegs {
    int64_t regs, per_row, fixed;
} DotRegs;

/* The target's vector registers: 32 zmm or 16 ymm. */
static int64_t vector_regs(const TargetInfo *t) { return t->vector_bits >= 512 ? 32 : 16; }

/* What a packed e2m1 dot tile keeps in vector registers beside its
 * accumulators, tables and A rows: constants and temporaries. */
enum { E2M1_FIXED = 8 };

static DotRegs dot_regs(const TargetInfo *t, DType ta, DType tb)
{
    bool wide = dt_bits(ta) == 8 || dt_bits(tb) == 8;
    DotRegs r = {vector_regs(t), wide ? 2 : 1, 2};
    if (tb == DT_F8E4M3)
        r.fixed = 6;
    else if (tb == DT_F8E5M2)
        r.fixed = 4;
    return r;
}

/* The columns of a tile of mr rows: the accumulator budget dot_m x dot_n,
 * spent on columns when rows are few, and no more than the registers left
 * beside what dot_regs counts. */
static int64_t dot_fit_cols(const TargetInfo *t, int64_t mr, DType ta, DType tb)
{
    DotRegs r = dot_regs(t, ta, tb);
    int64_t nr = (int64_t)t->dot_m * t->dot_n / mr, fit = (r.regs - r.fixed - mr * r.per_row) / mr;
    return nr < fit ? nr : fit;
}

/* Tall tiles: with A staged as f32 (lower_gemm_dot's widen_a) and B
 * widened in registers, each widened B register feeds one FMA per row of
 * the tile, and A's rows are the FMAs' memory operands (no register each),
 * so rows are what pays for the widening: fp8 at 16 rows spent 18 of a
 * 2x3 tile's 34 instructions per step widening, an 8x1 tile spends 6 of
 * 24 (cache-resident, N = K = 1024, one thread: 1.12 -> 0.70 ms; at 4 rows
 * 4x2 against 2x3 and a 2x3: 0.38 -> 0.23).  Up to DOT_TALL rows (more
 * were no faster and leave a short band), then as many columns as the
 * registers hold: accumulators, B's widened step (two registers for 8-bit
 * B, whose step is two registers of f32) and two for constants and
 * temporaries.  Only while the band's rows of A stay in L1 (half of it):
 * every column reads all of them again (bf16 at 16 rows, K 4096: 128 KiB
 * of A per 8 KiB weight row from L2, 11.4 -> 14-17 ms from DRAM). */
enum { DOT_TALL = 8 };

static int64_t dot_tall_rows(int64_t M)
{
    int64_t bands = (M + DOT_TALL - 1) / DOT_TALL;
    return (M + bands - 1) / bands;
}

/* Pair tiles over e4m3 weights (lowering's e4m3_pairs: A staged bf16,
 * codegen/micro.c's e4m3_words) and over bf16 ones: each decoded register
 * of 32 weights feeds one vdpbf16ps per row, so rows again pay for the
 * decoding (bf16's: each register of A feeds a vdpbf16ps per column, each
 * of B one per row) — bands
 * of up to DOT_TALL rows as for tall tiles (Zen 5, fp8_gemm at 16 rows,
 * 4096^2, one thread, weights from DRAM: 8x2 tiles 2.43 ms, 4x4 2.56, 8x3
 * 2.96, 8x1 4.12) — and PAIR_SUMS sums a tile (their promoted running
 * sums take as many registers again), at most PAIR_COLS columns: 4 rows
 * 4x4 0.75 ms, 4x2 0.88; 2 rows 2x8 0.56-0.63, 2x4 0.74-0.81; one row
 * (the rows-left variant of a dyn block of 16 rows; N x K 2048 x 4096 and
 * 4096 x 2048, with the fast decode) 1x8 0.22-0.34 ms, 1x16 0.41-0.47, 1x2
 * 0.43-0.67, the f32 route's 1x16 0.31-0.36 — but from L3 that route wins
 * (0.19-0.23 against 0.26-0.27 at 1x8; bench_moe, whose weights stay in
 * L3, shows it in its shared expert at one token).  Not bound by L1 as
 * tall tiles are: a band of 8 rows over all of K 4096 (64 KiB of bf16)
 * ran 2.43 ms against 2.62 in steps of 1024.  bf16 weights took 4x6
 * tiles in bands of 4 before (the general rule, dot_fit_cols): Zen 5,
 * bench_decode --fmt bf16, one thread, three alternations, 4096^2 16 rows
 * 2.60-2.69 -> 1.93-2.00 ms (8x2 tiles in K chunks of 2048, the next
 * tile's rows fetched in every band), 4 rows 1.45-1.54 -> 1.31-1.36
 * (4x4); at one row they keep the 16 columns they had (lm_head's 1 GiB
 * head at one row: 8 columns 34.2-37.9 ms against 29.0-34.1 with 16, but
 * the same code read 39.5-40.0 in a later run — within the host's noise,
 * so not changed).  Where the core streams one run of weight rows best
 * (TargetInfo.one_stream, Zen 4), one row takes one column, the tiles
 * reading the block's rows one after the other: with two chains per sum
 * (codegen/micro.c, pair_chains) and no prefetch hints.  bench_decode at
 * one row, one thread, weights from DRAM, three alternations against 1x4
 * (fp8) and 1x16 (bf16) tiles: fp8 4096^2 0.97-1.22 -> 0.72-0.83 ms,
 * 7168x2048 1.10-1.26 -> 0.61-0.76; bf16 1.45-1.72 -> 1.16-1.21 and
 * 1.58-2.07 -> 0.96-1.02 (1.63 and 1.74 in a run whose copy peer read 12
 * GB/s, half its usual).  At 4 rows 4x1 tiles were slower (fp8 4096^2
 * 1.45 -> 3.2 ms). */
enum { PAIR_SUMS = 16, PAIR_COLS = 8 };

static bool bf16_pair_tiles(const TargetInfo *t, DType ta, DType tb)
{
    return t->has_bf16_dot && t->vector_bits == 512 && ta == DT_BF16 && (tb == DT_F8E4M3 || tb == DT_BF16);
}

/* Pair tiles over packed e2m1 weights (A's bf16 copy in e2m1 order,
 * codegen/micro.c's dot_pair8_block) likewise take bands of up to
 * DOT_TALL = IR_E2M1_PAIR_ROWS rows, each decoded part feeding a
 * vdpbf16ps per row, in K chunks where a band's A outgrows L1
 * (band_k_chunk).  Zen 5, bench_decode --fmt fp4 at 16 rows, one thread,
 * three alternations: 4096^2 1.39-1.44 ms in 4-row bands, 1.25-1.33 in
 * 8-row ones (1.92-1.99 over all of K); 7168x2048 1.26-1.32 -> 1.06-1.16. */
static bool bf16_by_e2m1_tiles(const TargetInfo *t, DType ta, DType tb)
{
    return t->has_bf16_dot && t->vector_bits == 512 && ta == DT_BF16 && tb == DT_F4E2M1;
}

static bool dot_tall(const TargetInfo *t, int64_t M, int64_t K, DType ta, DType tb)
{
    bool widened = tb == DT_BF16 || tb == DT_F16 || tb == DT_F8E4M3 || tb == DT_F8E5M2;
    return M >= 2 && ta == DT_F32 && widened && dot_tall_rows(M) * K * 4 <= t->l1_bytes / 2;
}

static int64_t dot_tall_cols(const TargetInfo *t, int64_t mr, DType tb)
{
    int64_t parts = dt_bits(tb) == 8 ? 2 : 1, nr = (vector_regs(t) - 2) / (mr + parts);
    return nr < 1 ? 1 : nr;
}

/* The tile's rows for a product of M rows along K.  Tall tiles: all of
 * them up to DOT_TALL, else equal bands of at most that.  Otherwise all of
 * them up to one more than dot_m where that leaves two columns (then each
 * weight is widened once instead of twice), else bands of dot_m rows or as
 * many as keep two columns. */
static int64_t dot_rows_of(const TargetInfo *t, int64_t M, int64_t K, DType ta, DType tb)
{
    if (dot_tall(t, M, K, ta, tb) || bf16_pair_tiles(t, ta, tb) || bf16_by_e2m1_tiles(t, ta, tb))
        return dot_tall_rows(M);
    if (M >= 2 && ta == DT_F32 && tb == DT_F4E2M1) {
        /* packed e2m1 (one column: its accumulators per row, the block's
         * table, an A row and E2M1_FIXED more): as many rows as leave
         * those, each decoded register feeding one FMA per row —
         * moe_expert_gemm 16 rows, N = K = 1024, cache-resident, 3x1 tiles
         * 1.30 ms, 4x1 1.05, 6x1 0.92, 8x1 (spilling) 0.98 */
        int64_t fit = vector_regs(t) - E2M1_FIXED - 2, most = fit < DOT_TALL ? fit : DOT_TALL;
        int64_t bands = (M + most - 1) / most;
        return (M + bands - 1) / bands;
    }
    int64_t most = 1;
    while (most <= t->dot_m && dot_fit_cols(t, most + 1, ta, tb) >= 2)
        most++;
    return M <= most ? M : most < t->dot_m ? most : t->dot_m;
}

/* A dot tile over block-scaled packed e2m1 B (codegen/micro.c) holds, per
 * column, its accumulators and the block's scaled table, beside one A
 * vector per row and about eight constants and temporaries; and each
 * column walks two row pointers (B's and its scale's) through the general
 * registers.  So: (registers - 8 - rows) / (rows + 1) columns, at most 4 —
 * AVX2 3 for one row (at 4 and more the K loop reloads a table or the
 * sign constant from the stack), AVX-512 4 (at 6, pointers are reloaded).
 * Narrower, down to half, where that divides the N columns: a tail tile's
 * K loop had its row pointers reloaded from the stack (N 128 in 3s).
 * A block-scaled B (bn > 0 rows per scale row): fewer columns where that
 * keeps every tile's rows within whole block rows of the scale.  A tile
 * reading A in e2m1 order (at most e2m1_rows rows) takes one column: its A vectors are
 * then the FMAs' memory operands, where at two columns LLVM kept them in
 * registers and spilled them and the decoding's constants (bench_decode
 * --quick --fmt fp4, M = 1, one thread: 1255-1274 us at two, 1177-1183 at
 * one), except where its scales fold (e2m1_fold, prescales_e2m1_copy)
 * and it has two rows or more: two columns then halve the reads of A per
 * vdpbf16ps and keep enough chains (codegen/micro.c, PAIR8_FOLD_SUMS).
 * With 16 lanes at least two columns: a one-column tile's FMA
 * reads 64 bytes of A, more than L2 feeds once A outgrows L1 (Zen 5,
 * packed e2m1, one expert, N = K = 4096, 8 rows: 8x1 3.76 ms, 8x2 1.68;
 * 16 rows 6.76 -> 3.24). */
static int64_t dot_cols_of(const TargetInfo *t, int64_t mr, int64_t K, DType ta, DType tb, int64_t bn, int64_t N,
                           int64_t e2m1_rows, bool e2m1_fold)
{
    int64_t nr = dot_tall(t, mr, K, ta, tb) ? dot_tall_cols(t, mr, tb) : dot_fit_cols(t, mr, ta, tb);
    if (mr <= e2m1_rows)
        nr = e2m1_fold && mr >= 2 && N % 2 == 0 ? 2 : 1;
    else if (bf16_pair_tiles(t, ta, tb) && mr == 1 && t->one_stream)
        nr = 1; /* one weight row at a time: see below */
    else if (bf16_pair_tiles(t, ta, tb) && (tb == DT_F8E4M3 || mr >= 2)) /* (bf16 at one row: as before) */
        nr = PAIR_SUMS / mr < PAIR_COLS ? PAIR_SUMS / mr : PAIR_COLS;
    else if (bn && tb == DT_F4E2M1) {
        nr = (vector_regs(t) - E2M1_FIXED - mr) / (1 + mr);
        nr = nr < 1 ? 1 : nr > 4 ? 4 : nr;
        if (t->vector_bits / 32 >= 16 && nr < 2 && N >= 2)
            nr = 2; /* one column's FMAs would read 64 bytes of A each */
        for (int64_t d = nr; 2 * d >= nr && N % nr; d--)
            if (N % d == 0)
                nr = d;
    }
    nr = nr < 1 ? 1 : nr < 16 ? nr : 16; /* codegen/micro.c's MAX_DOT_COLS */
    while (bn && bn % nr && nr % bn)
        nr--;
    return nr;
}

/* What a GEMM's dot tiles take besides A, B and C: the block scales they
 * apply (codegen/micro.c), NULL where absent, whether their A is a lifted
 * e4m3 copy (micro_gemm a_lifted), and A's copy in e2m1 order for tiles of at most IR_E2M1_TABLE_ROWS rows
 * (micro_gemm a_decode_order; NULL: none): of all of A's rows, or with
 * a_e2m1_band of just the rows-left variant's band (its row 0 the band's
 * first). */
typedef struct DotInputs {
    const Region *a, *b;
    bool a_lifted, a_prescaled;
    const Region *a_e2m1;
    bool a_e2m1_band;
    bool e2m1_prescaled; /* a_e2m1 holds A times its clamped scale (prescales_e2m1_copy) */
    int64_t e2m1_rows;   /* the most rows of a tile reading a_e2m1 (e2m1_order_rows; 0: none) */
    bool a_words;        /* A is a bf16 copy in e4m3 B's decode order (stages_e4m3_words) */
} DotInputs;

/* The rows of the block scale bs of an operand (A or B) that its rows
 * [j + j0, +n) of a dot tile use: one block row, or n / bn of them
 * (dot_cols_of keeps B's to whole ones; A's scale rows are single rows). */
static Region scale_rows(Lower *L, const Region *b, const Region *bs, Expr *j, int64_t j0, int64_t n)
{
    int R = b->buf->rank - 2;
    int64_t bn = b->ext[R] / bs->ext[R];
    Expr *first = ir_binary(L->k, EX_DIV, add(L, j, ci(L, j0)), ci(L, bn));
    return sub(L, bs, 0, n > bn ? n / bn : 1, first, 0, bs->ext[R + 1], ci(L, 0));
}

/* The dot tile of C's rows [i0 + i, +mr) and columns [j0 + j, +n) (i, j a
 * loop index times the tile's extent, or 0), with the rows of the block
 * scales they use. */
static Stmt *dot_tile(Lower *L, const Stmt *g, const Region *a, const Region *b, DotInputs sc, const Region *c,
                      Expr *i, int64_t i0, int64_t mr, Expr *j, int64_t j0, int64_t n, int64_t K)
{
    Expr *z = ci(L, 0);
    bool e2m1_order = sc.a_e2m1 && mr <= sc.e2m1_rows;
    Region ta = !e2m1_order        ? sub(L, a, i0, mr, i, 0, K, z)
                : sc.a_e2m1_band ? sub(L, sc.a_e2m1, 0, mr, z, 0, K, z)
                                 : sub(L, sc.a_e2m1, i0, mr, i, 0, K, z);
    Region tb = sub(L, b, j0, n, j, 0, K, z);
    Region tc = sub(L, c, i0, mr, i, j0, n, j);
    Stmt *tile = ir_micro_gemm(L->k, ta, tb, tc, false, true, g->u.gemm.clear, g->loc);
    if (sc.b)
        tile->u.gemm.b_scale = scale_rows(L, b, sc.b, j, j0, n);
    if (sc.a)
        tile->u.gemm.a_scale = scale_rows(L, a, sc.a, i, i0, mr);
    tile->u.gemm.a_lifted = sc.a_lifted;
    tile->u.gemm.a_prescaled = e2m1_order ? sc.e2m1_prescaled : sc.a_prescaled;
    tile->u.gemm.a_decode_order = e2m1_order || sc.a_words;
    return tile;
}

/* Rows of C in bands: `full` bands of mr rows from row i0 (in a loop of
 * `loop` steps, or NULL: one band, from i0 + i — i NULL: 0), then a tail
 * band of rem rows (under the condition `tail`, or NULL: always), or with
 * `left` (the rows the loop's bands leave, 0 to mr - 1 at run time) a band
 * of exactly that many: one variant per row count, chosen by a chain of
 * tests. */
typedef struct RowBands {
    int64_t i0, mr, full, rem;
    Expr *loop, *tail, *i, *left;
} RowBands;

/* band[k] where left == k, for k = 1 .. mr - 1 (a chain of tests). */
static Stmt *by_rows_left(Lower *L, Expr *left, Stmt *const *band, int64_t mr, SrcLoc loc)
{
    Stmt *chain = NULL;
    for (int64_t k = mr - 1; k >= 1; k--)
        chain = ir_if(L->k, ir_binary(L->k, EX_EQ, left, ci(L, k)), band[k], chain, loc);
    return chain;
}

/* The tiles of columns [j0 + j, +n) in every band of rb. */
static void dot_column(Lower *L, Stmt *seq, const Stmt *g, const Region *a, const Region *b, DotInputs sc,
                       const Region *c, Expr *j, int64_t j0, int64_t n, const RowBands *rb, int64_t K)
{
    if (rb->loop) {
        Var *iv = ir_var_new(L->k, "it");
        Stmt *body = ir_seq(L->k, g->loc);
        Expr *i = ir_binary(L->k, EX_MUL, ir_var(L->k, iv), ci(L, rb->mr));
        ir_seq_push(L->k, body, dot_tile(L, g, a, b, sc, c, i, rb->i0, rb->mr, j, j0, n, K));
        ir_seq_push(L->k, seq, ir_for(L->k, iv, rb->loop, LOOP_SERIAL, 0, body, g->loc));
    } else if (rb->full) {
        ir_seq_push(L->k, seq, dot_tile(L, g, a, b, sc, c, rb->i ? rb->i : ci(L, 0), rb->i0, rb->mr, j, j0, n, K));
    }
    if (rb->left) {
        Expr *done = ir_binary(L->k, EX_MUL, rb->loop, ci(L, rb->mr));
        Stmt *band[DOT_MAX_ROWS]; /* a band has at most DOT_MAX_ROWS rows */
        for (int64_t k = rb->mr - 1; k >= 1; k--) /* (the order of the printed loop names) */
            band[k] = dot_tile(L, g, a, b, sc, c, done, rb->i0, k, j, j0, n, K);
        ir_seq_push(L->k, seq, by_rows_left(L, rb->left, band, rb->mr, g->loc));
    } else if (rb->rem) {
        Stmt *tail = dot_tile(L, g, a, b, sc, c, ci(L, 0), rb->i0 + rb->full * rb->mr, rb->rem, j, j0, n, K);
        ir_seq_push(L->k, seq, rb->tail ? ir_if(L->k, rb->tail, tail, NULL, g->loc) : tail);
    }
}

/* The tiles of rb's bands over all of C's columns in groups of nr, the
 * columns outside and the bands inside (dot_tiles says where; for one
 * band, the band's tiles). */
static void dot_columns(Lower *L, Stmt *seq, const Stmt *g, const Region *a, const Region *b, DotInputs sc,
                        const Region *c, int64_t nr, const RowBands *rb, int64_t K)
{
    int64_t N = c->ext[1], cols = N / nr, rem = N % nr;
    if (cols) {
        Var *jv = cols > 1 ? ir_var_new(L->k, "jt") : NULL;
        Stmt *body = jv ? ir_seq(L->k, g->loc) : seq;
        Expr *j = jv ? ir_binary(L->k, EX_MUL, ir_var(L->k, jv), ci(L, nr)) : ci(L, 0);
        dot_column(L, body, g, a, b, sc, c, j, 0, nr, rb, K);
        if (jv)
            ir_seq_push(L->k, seq, ir_for(L->k, jv, ci(L, cols), LOOP_SERIAL, 0, body, g->loc));
    }
    if (rem)
        dot_column(L, seq, g, a, b, sc, c, ci(L, 0), cols * nr, rem, rb, K);
}

/* The K chunk a band of mr rows of pair tiles (bf16, e4m3 or e2m1
 * weights) runs in (K: none): the tiles re-read the band's bf16 rows of A for every column, so
 * they are kept within 3/4 of L1 beside the streamed weights — a multiple
 * of the scale blocks (and of the tiles' 32-element step, or e2m1's
 * 128-element blocks of A's copy) that divides K.
 * Zen 5, fp8_gemm 4096^2 at 16 rows (8-row bands, 64 KiB of A over all
 * of K), a dyn M in blocks of 16 weight rows, weights from DRAM, one
 * thread: 2.25-2.36 ms over all of K, 1.72 in chunks of 2048, 4-row bands
 * instead 2.07-2.12. */
static int64_t band_k_chunk(const Lower *L, const DotInputs *sc, int64_t mr, int64_t K, DType ta, DType tb)
{
    int64_t most = L->t->l1_bytes * 3 / 4 / (mr * (dt_bits(ta) / 8));
    bool pairs = bf16_pair_tiles(L->t, ta, tb) && !sc->a_e2m1;
    bool e2m1_pairs = bf16_by_e2m1_tiles(L->t, ta, tb) && sc->a_e2m1 && !sc->a_e2m1_band;
    if (!(pairs || e2m1_pairs) || K <= most)
        return K;
    int64_t unit = e2m1_pairs ? IR_E2M1_PAIR_BLOCK : sc->a_words ? IR_E4M3_WORD_BLOCK : 32;
    const Region *scs[2] = {sc->a, sc->b};
    for (int x = 0; x < 2; x++)
        if (scs[x] && K / mat_cols(scs[x]) > unit)
            unit = K / mat_cols(scs[x]); /* one block divides the other */
    for (int64_t kc = most / unit * unit; kc >= unit; kc -= unit)
        if (K % kc == 0)
            return kc;
    return K;
}

/* Region r's columns [k0, k0 + kc) (a K chunk), scale regions in K / cols
 * blocks likewise. */
static Region k_chunk(Lower *L, const Region *r, Expr *k0, int64_t kc, int64_t K)
{
    int64_t per = K / mat_cols(r);
    return sub(L, r, 0, mat_rows(r), ci(L, 0), 0, kc / per, per == 1 ? k0 : ir_binary(L->k, EX_DIV, k0, ci(L, per)));
}

/* A band's tiles (dot_columns) in K chunks of kc (band_k_chunk), each
 * adding into C (the GEMM's clear done before, dot_tiles). */
static void dot_band_chunks(Lower *L, Stmt *seq, const Stmt *g, const Region *a, const Region *b, DotInputs sc,
                            const Region *c, int64_t nr, const RowBands *rb, int64_t K, int64_t kc)
{
    if (kc == K) {
        dot_columns(L, seq, g, a, b, sc, c, nr, rb, K);
        return;
    }
    Var *kv = ir_var_new(L->k, "kc");
    Expr *k0 = ir_binary(L->k, EX_MUL, ir_var(L->k, kv), ci(L, kc));
    Region ca = k_chunk(L, a, k0, kc, K), cb = k_chunk(L, b, k0, kc, K), csa, csb, cae;
    if (sc.a)
        csa = k_chunk(L, sc.a, k0, kc, K), sc.a = &csa;
    if (sc.b)
        csb = k_chunk(L, sc.b, k0, kc, K), sc.b = &csb;
    if (sc.a_e2m1)
        cae = k_chunk(L, sc.a_e2m1, k0, kc, K), sc.a_e2m1 = &cae;
    Stmt adding = *g;
    adding.u.gemm.clear = false;
    Stmt *body = ir_seq(L->k, g->loc);
    dot_columns(L, body, &adding, &ca, &cb, sc, c, nr, rb, kc);
    ir_seq_push(L->k, seq, ir_for(L->k, kv, ci(L, K / kc), LOOP_SERIAL, 0, body, g->loc));
}

/* C's window set to 0 (a GEMM with clear whose tiles add in K chunks). */
static Stmt *zero_window(Lower *L, const Region *c, SrcLoc loc)
{
    int64_t shape[2] = {mat_rows(c), mat_cols(c)};
    Expr *v[2], *idx[IR_MAX_RANK];
    Stmt *inner;
    Stmt *loops = lower_nest(L, 2, shape, LOOP_PARALLEL, "z", v, &inner, loc);
    lower_region_at(L, c, v, idx);
    ir_seq_push(L->k, inner, ir_store(L->k, c->buf, idx, ir_const_f(L->k, 0), loc));
    return loops;
}

/* Every row band of C = A·Bᵀ in dot tiles: those holding wanted rows
 * (wanted_bands), or with `variants` exactly the wanted ones — bands of mr
 * rows while that many are left, then a band of the rows left, in one of
 * mr - 1 variants (RowBands.left).  A wanted row costs an FMA (and a load
 * of A) per step, and a band decodes its weights once, so the padding
 * rows of a fixed band were a fifth of the work where an MoE expert's
 * tile holds 3 to 9 tokens: a 16-row tile's bands of 6 computed 138 rows
 * for 96 wanted at a decode step of 16 tokens over 16 experts.  At one
 * row per tile, the common case at decode (T tokens times 6 routed
 * experts among 256), the variant is one row of the widest tiles. */
static Stmt *dot_tiles(Lower *L, const Stmt *g, const Region *a, const Region *b, DotInputs sc,
                       const Region *c, Expr *rows, bool variants)
{
    int64_t M = c->ext[0], N = c->ext[1], K = a->ext[1];
    Stmt *seq = ir_seq(L->k, g->loc);
    DType ta = a->buf->dtype, tb = b->buf->dtype;
    int64_t mr = dot_rows_of(L->t, M, K, ta, tb), full = M / mr, rem = M % mr;
    Bands bands = wanted_bands(L, rows, M, mr);
    Expr *left = NULL;
    if (rows && variants && mr >= 2) {
        Expr *n = wanted_rows(L, rows, M);
        bands.loop = ir_binary(L->k, EX_DIV, n, ci(L, mr));
        bands.tail = NULL;
        left = ir_binary(L->k, EX_MOD, n, ci(L, mr));
        rem = 0;
    }
    bool loop = full > 1 || (full && rows);
    int64_t bn = sc.b ? mat_rows(b) / mat_rows(sc.b) : 0;
    int64_t nr = dot_cols_of(L->t, full ? mr : rem, K, ta, tb, bn, N, sc.e2m1_rows, sc.e2m1_prescaled);
    /* Weight rows that overflow half of L2 would come from L3 or memory
     * again for every band: there the columns go outside and the bands
     * inside, each tile of weight rows read once and then from the cache
     * (f32 at 16 rows, 64 rows of 16 KiB per block: 11.2 -> 9.7 ms), the
     * tail band in the full bands' columns.  Otherwise the bands go outside,
     * each in tiles of its own width: a block of packed e2m1 at 16 rows
     * (128 rows of 2 KiB) stays in L2, and columns outside ran 4-7% slower
     * there. */
    if ((double)N * K * dt_bits(tb) / 8 > L->t->l2_bytes / 2) {
        RowBands rb = {0, mr, full, rem, loop ? bands.loop : NULL, bands.tail, NULL, left};
        dot_columns(L, seq, g, a, b, sc, c, nr, &rb, K);
        return seq;
    }
    /* the full bands and the rows-left ones in K chunks where their A
     * outgrows L1 (band_k_chunk; the most rows left, mr - 1, chunk first) */
    int64_t kc = full || loop ? band_k_chunk(L, &sc, mr, K, ta, tb) : K;
    bool left_chunked = left && band_k_chunk(L, &sc, mr - 1, K, ta, tb) < K;
    if ((kc < K || left_chunked) && g->u.gemm.clear)
        ir_seq_push(L->k, seq, zero_window(L, c, g->loc));
    if (loop) {
        Var *iv = ir_var_new(L->k, "it");
        Stmt *body = ir_seq(L->k, g->loc);
        RowBands band = {.mr = mr, .full = 1, .i = ir_binary(L->k, EX_MUL, ir_var(L->k, iv), ci(L, mr))};
        dot_band_chunks(L, body, g, a, b, sc, c, nr, &band, K, kc);
        ir_seq_push(L->k, seq, ir_for(L->k, iv, bands.loop, LOOP_SERIAL, 0, body, g->loc));
    } else if (full) {
        dot_band_chunks(L, seq, g, a, b, sc, c, nr, &(RowBands){.mr = mr, .full = 1}, K, kc);
    }
    if (left) {
        Expr *done = ir_binary(L->k, EX_MUL, bands.loop, ci(L, mr));
        Stmt *band[DOT_MAX_ROWS]; /* a band has at most DOT_MAX_ROWS rows */
        for (int64_t k = mr - 1; k >= 1; k--) {
            band[k] = ir_seq(L->k, g->loc);
            int64_t k_nr = dot_cols_of(L->t, k, K, ta, tb, bn, N, sc.e2m1_rows, sc.e2m1_prescaled);
            dot_band_chunks(L, band[k], g, a, b, sc, c, k_nr, &(RowBands){.mr = k, .full = 1, .i = done}, K,
                            band_k_chunk(L, &sc, k, K, ta, tb));
        }
        ir_seq_push(L->k, seq, by_rows_left(L, left, band, mr, g->loc));
    } else if (rem) {
        Stmt *tail = bands.tail ? ir_seq(L->k, g->loc) : seq;
        int64_t tail_nr = full ? dot_cols_of(L->t, rem, K, ta, tb, bn, N, sc.e2m1_rows, sc.e2m1_prescaled) : nr;
        dot_columns(L, tail, g, a, b, sc, c, tail_nr, &(RowBands){.i0 = full * mr, .mr = rem, .full = 1}, K);
        if (bands.tail)
            ir_seq_push(L->k, seq, ir_if(L->k, bands.tail, tail, NULL, g->loc));
    }
    return seq;
}

/* A grid variable's interval where the grid's extent is a constant. */
static IrRange grid_leaf(const Expr *e, void *ctx)
{
    const Kernel *k = ctx;
    int64_t n;
    for (int d = 0; e->op == EX_VAR && d < k->ngrid; d++)
        if (k->grid_var[d] == e->var && ir_expr_is_const(k->grid[d], &n) && n > 0)
            return (IrRange){0, n - 1, true};
    return (IrRange){0, 0, false};
}

/* Broadcast tiles (codegen/micro.c, a micro_gemm with trans_a and
 * trans_b): C's rows are the vector lanes, A is staged transposed ([K, M]
 * f32, times its block scale), and each weight of B, decoded once per
 * chunk of K, meets A's row k in one FMA per vector of rows.  For a decode
 * GEMM of two vectors' worth of rows (16 tokens on AVX2), where the dot
 * tiles run at about half the FMA peak — each FMA reads 32 bytes of A
 * (from L2 once a band's rows outgrow L1) and B is widened on the ports
 * the FMAs share: examples/gemm.lua bf16 4096^2, one thread, 16 rows
 * 9.07-10.1 -> 6.88-8.44 ms.  Each decoded weight feeds a tile's vectors
 * of rows, and with one vector (8 rows) it gained 5% (4.91 -> 4.68 ms);
 * at 12 rows in two (a quarter of the lanes idle) bf16 ran as fast as its
 * dot tiles (6.55-6.90 against 6.69-6.71 ms) and fp8 slower (7.68-8.08
 * against 7.11-7.77), so two full vectors or nearly (BCAST_IDLE lanes at
 * most) — but packed e2m1, whose dot tiles decode it on the shuffle ports
 * once per band of 6 rows, gains from 12 rows (BCAST_IDLE_E2M1:
 * moe_expert_gemm, 12 rows for each of 8 experts, N 4096, K 2048, one
 * thread, 34.0-41.0 -> 30.6-33.9 ms; at 10 rows 29.7-34.8 against
 * 31.1-42.8, a loss).
 * With 16 lanes (AVX-512) one vector of rows holds as many as AVX2's two,
 * and there one vector pays too (bcast_least): on Zen 5, fp8_gemm at 16
 * rows 3.76-4.08 -> 3.22-3.29 ms (at 12 rows 3.07 -> 3.36-3.51, a loss),
 * packed e2m1 (in 8x2 dot tiles there: dot_cols_of) at 16 rows 3.24 ->
 * 2.82-2.92, at 14 2.74 (at 12 2.59 against 2.82, at 8 1.68-1.77 against
 * 2.76-2.81: losses; at 13 3.23 against 2.84, a gain let go for one rule
 * of idle lanes) — but not bf16, whose dot tiles there take vdpbf16ps
 * (2.50 -> 3.15-3.23 ms at 16 rows), nor e4m3 beside e4m3 where the dot
 * tiles take it too (e4m3_pairs; 16 rows 3.0-3.2 -> 2.4).  The rows
 * computed are those `rows` may want at most (fp8_gemm's M - by·BM at a known M); where it may want
 * fewer (an MoE tile's run-time count, whose idle lanes would be computed)
 * two vectors' tiles run under a run-time test of n, the rows wanted
 * (*test; NULL where they are known to be enough), dot tiles otherwise.  Not for an f32 B (nothing to decode: the dot tiles
 * read it as it is).  B's block scale goes into the tiles, where
 * IR_BCAST_CHUNK allows.  Returns the rows, 0 for none. */
enum { BCAST_IDLE = 2, BCAST_IDLE_E2M1 = 4 };

/* The fewest rows a broadcast tile for at most `most` rows of a B of dtype
 * tb may compute (INT64_MAX: none). */
static int64_t bcast_least(const TargetInfo *t, DType tb, int64_t most, bool pairs)
{
    int64_t w = t->vector_bits / 32;
    if (most > w)
        return 2 * w - (tb == DT_F4E2M1 ? BCAST_IDLE_E2M1 : BCAST_IDLE);
    if (w < 16 || pairs)
        return INT64_MAX;
    return w - BCAST_IDLE;
}

static int64_t bcast_rows(Lower *L, const Stmt *g, const Expr *rows, Expr *n, Expr **test)
{
    const Region *a = &g->u.gemm.a, *as = &g->u.gemm.a_scale, *b = &g->u.gemm.b, *bs = &g->u.gemm.b_scale;
    DType tb = b->buf->dtype;
    int64_t w = L->t->vector_bits / 32, M = g->u.gemm.c.ext[0], K = a->ext[1];
    int64_t bk = bs->buf ? mat_cols(b) / mat_cols(bs) : 0;
    bool decodes = tb == DT_BF16 || tb == DT_F16 || tb == DT_F8E4M3 || tb == DT_F8E5M2 || (tb == DT_F4E2M1 && bk);
    IrRange r = rows ? ir_range_of(rows, grid_leaf, L->k) : (IrRange){M, M, true};
    bool pairs = (tb == DT_BF16 && L->t->has_bf16_dot) || e4m3_pairs(L, g); /* dot tiles of vdpbf16ps */
    int64_t most = r.known && r.hi < M ? r.hi : M, least = bcast_least(L->t, tb, most, pairs);
    bool ok = !L->t->gpu_sm && a->buf->rank == 2 && (!as->buf || as->buf->rank == 2) && K % IR_BCAST_CHUNK == 0 &&
              decodes && (!bk || bk == 32 || bk % IR_BCAST_CHUNK == 0) && most >= least && most <= 2 * w &&
              most <= IR_BCAST_ROWS;
    /* one vector of rows only where they are known to be enough: under a
     * run-time test the dot tiles' arm reads A through the staging it
     * shares with the broadcast tiles, a copy per step (Zen 5, fp8_gemm of
     * a dyn M in 16-row blocks: 1 row 1.54 -> 1.95 ms, 4 rows 3.9-4.1 ->
     * 4.4-4.7; packed e2m1 at 4 and 6 rows per expert 15-18% slower) */
    bool sure = r.known && r.lo >= least;
    ok = ok && (most > w || sure);
    *test = ok && !sure ? ir_binary(L->k, EX_LT, ci(L, least - 1), n) : NULL;
    return ok ? most : 0;
}

/* The columns of a broadcast tile of M rows: as many as keep the
 * accumulators (columns x vectors of rows) within the registers less four
 * (A's vectors, the broadcast weight) — each accumulator takes one FMA per
 * k, and two FMA ports of latency 4 want 8 of them in flight, which 6
 * columns of 2 vectors keep with room to spare (4 columns, exactly 8, ran
 * fp8_gemm at 16 rows as fast within this host's noise) — and fewer where
 * that keeps a tile within a block row of B's scale (bn rows per scale
 * row of the window; 0: one scale row, or none). */
static int64_t bcast_cols(const TargetInfo *t, int64_t M, int64_t bn)
{
    int64_t w = t->vector_bits / 32, nv = (M + w - 1) / w, nr = (vector_regs(t) - 4) / nv;
    nr = nr > IR_BCAST_COLS ? IR_BCAST_COLS : nr < 1 ? 1 : nr;
    while (bn && bn % nr && nr % bn)
        nr--;
    return nr;
}

/* The broadcast tile of C's columns [j0 + j, +n) (j: a loop index times
 * the tiles' width, or 0). */
static Stmt *bcast_tile(Lower *L, const Stmt *g, const Region *at, const Region *b, const Region *bs,
                        const Region *c, Expr *j, int64_t j0, int64_t n)
{
    Expr *z = ci(L, 0);
    int64_t M = c->ext[0], K = at->ext[0];
    Stmt *tile = ir_micro_gemm(L->k, sub(L, at, 0, K, z, 0, M, z), sub(L, b, j0, n, j, 0, K, z),
                               sub(L, c, 0, M, z, j0, n, j), true, true, g->u.gemm.clear, g->loc);
    if (bs)
        tile->u.gemm.b_scale = scale_rows(L, b, bs, j, j0, n);
    return tile;
}

/* C = A·Bᵀ in broadcast tiles over the transposed A `at`, nr columns each
 * (a loop of them), the last one and the columns left over (a tail of
 * fewer than half a tile, whose few accumulators would wait on the FMA
 * latency) split into two tiles of about equal width where each scale row
 * is one tile row's, or there is one. */
static Stmt *bcast_tiles(Lower *L, const Stmt *g, const Region *at, const Region *b, const Region *bs,
                         const Region *c)
{
    int64_t M = c->ext[0], N = c->ext[1];
    int64_t bn = bs && mat_rows(bs) > 1 ? mat_rows(b) / mat_rows(bs) : 0;
    int64_t nr = bcast_cols(L->t, M, bn), full = N / nr, rem = N % nr;
    bool split = rem && 2 * rem < nr && full && bn <= 1;
    int64_t loop = split ? full - 1 : full, left = N - loop * nr;
    Stmt *seq = ir_seq(L->k, g->loc);
    if (loop > 1) {
        Var *jv = ir_var_new(L->k, "jt");
        Stmt *body = ir_seq(L->k, g->loc);
        Expr *j = ir_binary(L->k, EX_MUL, ir_var(L->k, jv), ci(L, nr));
        ir_seq_push(L->k, body, bcast_tile(L, g, at, b, bs, c, j, 0, nr));
        ir_seq_push(L->k, seq, ir_for(L->k, jv, ci(L, loop), LOOP_SERIAL, 0, body, g->loc));
    } else if (loop) {
        ir_seq_push(L->k, seq, bcast_tile(L, g, at, b, bs, c, ci(L, 0), 0, nr));
    }
    int64_t first = split ? (left + 1) / 2 : left;
    if (first)
        ir_seq_push(L->k, seq, bcast_tile(L, g, at, b, bs, c, ci(L, 0), loop * nr, first));
    if (left > first)
        ir_seq_push(L->k, seq, bcast_tile(L, g, at, b, bs, c, ci(L, 0), loop * nr + first, left - first));
    return seq;
}

static Region dequantise(Lower *L, Stmt *seq, const Region *x, const Region *s, DType dt, const char *what,
                         SrcLoc loc);
static Region prescale_a(Lower *L, Stmt *seq, const Region *a, const Region *as, Guard guard, SrcLoc loc);

/* Whether operand x's window and its scale's (NULL: none) lie inside
 * their buffers: NULL where that holds without a test. */
static Expr *operand_inside(Lower *L, const Region *x, const Region *scale)
{
    Expr *in = x->buf->scope == SCOPE_GLOBAL ? lower_window_inside(L, x) : NULL;
    if (scale && scale->buf->scope == SCOPE_GLOBAL)
        in = lower_and(L, in, lower_window_inside(L, scale));
    return in && in->op == EX_CONST && in->imm.i ? NULL : in;
}

/* Whether the first n (an expression, at most the window's) of operand
 * x's window rows, with the rows of its scale they use (NULL: none), lie
 * inside their buffers — all a GEMM's dot tiles read where it has `rows`
 * (dot_tiles' variants).  NULL where that holds without a test. */
static Expr *rows_inside(Lower *L, const Region *x, const Region *scale, Expr *n)
{
    Expr *in = lower_window_part_inside(L, x, x->buf->rank - 2, n);
    if (scale) {
        int64_t per = mat_rows(x) / mat_rows(scale); /* rows of x per scale row */
        Expr *ext = per == 1 ? n : ir_binary(L->k, EX_DIV, add(L, n, ci(L, per - 1)), ci(L, per));
        in = lower_and(L, in, lower_window_part_inside(L, scale, scale->buf->rank - 2, ext));
    }
    return in && in->op == EX_CONST && in->imm.i ? NULL : in;
}

/* An e4m3 A widened to f32 for dot tiles beside an e4m3 B is staged
 * lifted by 2^IR_A_LIFT_EXP (micro_gemm a_lifted): the tiles then widen B
 * straight into f32's fields, three integer operations per 8 weights where
 * the F16C route spends a lane-crossing extension and two conversions per
 * 16 (codegen/micro.c, e4m3_direct).  fp8_gemm 4096^2, one thread: M = 4
 * 3.83-3.92 -> 3.51-3.53 ms, M = 16 13.0-13.3 -> 11.9-12.2; at one row,
 * where the tiles had lifted A in registers, see lower_gemm_dot.  Not where
 * the target's FMAs take an assist on subnormal operands (TargetInfo
 * subnormal_assists): B's subnormal codes widen to f32 subnormals, 5% of
 * random e4m3 bytes, and bench_decode's fp8 rows ran 20x slower than bf16
 * on a Sapphire Rapids Xeon; the F16C route's values are all normal. */
static bool lifts_a(const Lower *L, const Stmt *g, bool widen_a)
{
    return widen_a && !L->t->subnormal_assists && g->u.gemm.a.buf->dtype == DT_F8E4M3 &&
           g->u.gemm.b.buf->dtype == DT_F8E4M3 && !e4m3_pairs(L, g);
}

/* Whether e4m3 pair tiles take A's bf16 copy in their decode order
 * (micro_gemm a_decode_order, ir.h's IR_E4M3_WORD_BLOCK): B's bytes read
 * as words, the low bytes' bf16 words and the high bytes' each by shifts
 * within the words (codegen/micro.c, e4m3_word_parts), where a byte at a
 * time took a lane-crossing widening more per 32 weights: fp8_gemm at one
 * row, N 256, K 4096 (weights in L2), one thread, nine alternations,
 * 0.044 -> 0.040 ms.  At one row only: at 2 and 4 rows (each column's
 * two parts summed as they come, A's padded copy still hoisted) it gained
 * 1-7% in cache and nothing from DRAM, and the 8x2 tiles at 16 rows, both
 * parts of 8 rows of A held, spilled: 0.76 -> 0.87 ms (bench/HISTORY.md).
 * Where every scale block along K is whole blocks of the order. */
static bool stages_e4m3_words(const Lower *L, const Stmt *g)
{
    const Region *scs[2] = {&g->u.gemm.a_scale, &g->u.gemm.b_scale};
    int64_t K = mat_cols(&g->u.gemm.a);
    if (!e4m3_pairs(L, g) || g->u.gemm.c.ext[0] != 1 || K % IR_E4M3_WORD_BLOCK)
        return false;
    for (int x = 0; x < 2; x++)
        if (scs[x]->buf && (K / mat_cols(scs[x])) % IR_E4M3_WORD_BLOCK)
            return false;
    return true;
}

/* The dtype A is staged in where the dot tiles want it widened. */
static DType widened_a(const Lower *L, const Stmt *g) { return e4m3_pairs(L, g) ? DT_BF16 : DT_F32; }

/* Whether e4m3 pair tiles take A's bf16 copy with its UE8M0 block scale in
 * it (prescale_a, micro_gemm a_prescaled): the tiles then fold both scales
 * into their operands where they allow, and sum all of K in one running
 * sum instead of promoting each block's — at 16 rows 16 FMAs, 8 scale
 * products and the running sums' spills per 64 vdpbf16ps (codegen/micro.c,
 * fold_scales). */
static bool prescales_a(const Lower *L, const Stmt *g)
{
    const Region *as = &g->u.gemm.a_scale, *bs = &g->u.gemm.b_scale;
    return e4m3_pairs(L, g) && as->buf && as->buf->dtype == DT_E8M0 && (!bs->buf || bs->buf->dtype == DT_E8M0);
}

/* The dot tiles of a GEMM whose A (and, with copy_b, B) may leave its
 * buffer: A staged with its tail zeroed (dequantised where it has a
 * scale), B read in place or likewise copied; no row-count variants
 * (compile time). */
static Stmt *tail_tiles(Lower *L, const Stmt *g, const Region *c, Expr *rows, bool widen_a, bool copy_b)
{
    Stmt *seq = ir_seq(L->k, g->loc);
    Region a = g->u.gemm.a, b = g->u.gemm.b, sa = a, sb = b;
    const Region *as = g->u.gemm.a_scale.buf ? &g->u.gemm.a_scale : NULL;
    const Region *bs = g->u.gemm.b_scale.buf ? &g->u.gemm.b_scale : NULL;
    bool lift = !as && !(copy_b && bs) && lifts_a(L, g, widen_a); /* A as it is, beside B's e4m3 */
    if (as)
        sa = dequantise(L, seq, &a, as, DT_F32, "gemm_a", g->loc);
    else if (a.buf->scope == SCOPE_GLOBAL || widen_a)
        sa = whole(L, stage_lifted(L, seq, &a, false, a.ext[0], a.ext[1], widen_a ? widened_a(L, g) : a.buf->dtype,
                                   "gemm_a", OUTSIDE, lift ? IR_A_LIFT_EXP : 0, g->loc));
    if (copy_b && bs)
        sb = dequantise(L, seq, &b, bs, DT_F32, "gemm_b", g->loc);
    else if (copy_b)
        sb = whole(L, stage(L, seq, &b, false, mat_rows(&b), mat_cols(&b), b.buf->dtype, "gemm_b", OUTSIDE, g->loc));
    DotInputs sc = {.b = copy_b ? NULL : bs, .a_lifted = lift};
    ir_seq_push(L->k, seq, dot_tiles(L, g, &sa, &sb, sc, c, rows, false));
    return seq;
}

/* Whether A's copy in e2m1 order is bf16 in IR_E2M1_PAIR_BLOCK blocks, for
 * tiles that decode 128 weights to bf16 words at once and sum them with
 * vdpbf16ps (codegen/micro.c, e2m1_pair_part): where the target has a
 * fast vdpbf16ps and A holds e4m3 values — exact in bf16, every one of
 * them and their products with e2m1's normal (the instruction takes
 * subnormal inputs and results as zero).  Zen 5, bench_decode --fmt fp4,
 * one row, one thread: see the tile's comment. */
static bool e2m1_pairs(const Lower *L, const Stmt *g)
{
    return L->t->has_bf16_dot && g->u.gemm.a.buf->dtype == DT_F8E4M3 && g->u.gemm.a.ext[1] % IR_E2M1_PAIR_BLOCK == 0;
}

/* The most rows of a dot tile reading A's copy in e2m1 order. */
static int64_t e2m1_order_rows(const Lower *L, const Stmt *g)
{
    return e2m1_pairs(L, g) ? IR_E2M1_PAIR_ROWS : IR_E2M1_TABLE_ROWS;
}

/* Whether every band of a GEMM's dot tiles reads A's copy in e2m1 order
 * (else only the rows-left variant's band, beside taller tiles). */
static bool e2m1_all_rows(const Lower *L, const Stmt *g)
{
    int64_t M = g->u.gemm.c.ext[0], K = g->u.gemm.a.ext[1];
    return M <= e2m1_order_rows(L, g) ||
           dot_rows_of(L->t, M, K, DT_F32, g->u.gemm.b.buf->dtype) <= e2m1_order_rows(L, g);
}

/* Whether a GEMM's dot tiles of at most e2m1_order_rows rows read A
 * from a copy in e2m1 order (micro_gemm a_decode_order): beside
 * block-scaled packed e2m1 B, where those tiles decode B through the byte
 * table without restoring the elements' order (codegen/micro.c,
 * e2m1_t8_parts; bench_decode --fmt fp4 --quick, M = 1, one thread:
 * 1481-1504 -> 1177-1183 us).  The copy is staged once per call beside the
 * K x N weights it meets; where the tiles also have more rows (an MoE
 * tile's bands and its 1- and 2-row variants, `rows`; not where every band
 * reads the copy, e2m1_all_rows), A is staged both
 * ways: the e2m1 copy then holds only the band the rows-left variant
 * reads (its rows start where the full bands end), and only where the
 * GEMM reads whole rows of A (K in one step) — in steps, two copies of a
 * 16-row tile outgrew L2 for pass_hoist and were staged again in every
 * block (moe_expert_gemm at Pro's K 7168 in steps of 1024, 16-row tiles,
 * one thread: T=16 routing 86-88 -> 121-127 ms), and 16 rows of it, most
 * never read, cost moe_gemm_swiglu at 6 rows per expert 3-5%. */
static bool stages_e2m1_order(const Lower *L, const Stmt *g, const Region *bs, const Expr *rows)
{
    const Region *a = &g->u.gemm.a;
    int64_t K = a->ext[1], cols;
    if (!bs || g->u.gemm.b.buf->dtype != DT_F4E2M1 || K % IR_E2M1_BLOCK)
        return false;
    if (e2m1_all_rows(L, g))
        return true;
    /* taller tiles: their full bands are not e2m1 tiles themselves */
    bool whole_rows = ir_expr_is_const(a->buf->shape[a->buf->rank - 1], &cols) && cols == K;
    return rows && whole_rows;
}

/* Whether A's bf16 copy in e2m1 order holds A times its UE8M0 scale,
 * clamped into the fold window (micro_gemm a_prescaled): the pair tiles
 * then fold both scales into their operands where they allow and sum all
 * of K in one running sum, in tiles of two columns (codegen/micro.c,
 * dot_pair8_block; dot_cols_of). */
static bool prescales_e2m1_copy(const Lower *L, const Stmt *g)
{
    const Region *as = &g->u.gemm.a_scale, *bs = &g->u.gemm.b_scale;
    return e2m1_pairs(L, g) && as->buf && as->buf->dtype == DT_E8M0 && (!bs->buf || bs->buf->dtype == DT_E8M0);
}

/* A's copy in e2m1 order (where stages_e2m1_order says) into *fe, staged
 * in seq (its loads guarded where n, the wanted rows, may leave the
 * matrix), prescaled where prescales_e2m1_copy says: all of A's rows, or
 * beside taller tiles just the band of the rows-left variant
 * (sc->a_e2m1_band: min(mr - 1, e2m1_order_rows) rows from where the full
 * bands of mr end). */
static void stage_e2m1_copy(Lower *L, Stmt *seq, const Stmt *g, Expr *n, DotInputs *sc, Region *fe)
{
    const Region *a = &g->u.gemm.a, *as = &g->u.gemm.a_scale;
    int64_t M = g->u.gemm.c.ext[0], K = a->ext[1], shape[2] = {a->ext[0], K};
    Region from = *a, scale = as->buf ? *as : (Region){0};
    int64_t most = e2m1_order_rows(L, g);
    sc->e2m1_rows = most;
    if (!e2m1_all_rows(L, g)) {
        int64_t mr = dot_rows_of(L->t, M, K, DT_F32, g->u.gemm.b.buf->dtype);
        Expr *done = ir_binary(L->k, EX_MUL, ir_binary(L->k, EX_DIV, n, ci(L, mr)), ci(L, mr));
        shape[0] = mr - 1 < most ? mr - 1 : most;
        from = sub(L, a, 0, shape[0], done, 0, K, ci(L, 0));
        if (as->buf)
            scale = sub(L, as, 0, shape[0], done, 0, mat_cols(as), ci(L, 0));
        sc->a_e2m1_band = true;
    }
    bool pairs = e2m1_pairs(L, g);
    sc->e2m1_prescaled = prescales_e2m1_copy(L, g);
    *fe = whole(L, lower_temp(L, "gemm_a_t", SCOPE_SHARED, pairs ? DT_BF16 : DT_F32, 2, shape, g->loc));
    Scaling by = {.scale = sc->e2m1_prescaled ? &scale : NULL, .clamp = true};
    stage_into(L, seq, &from, fe->buf, pairs ? E2M1_PAIRS : E2M1_ORDER, shape, 0, false, n ? CHECK : INSIDE, by,
               g->loc);
    sc->a_e2m1 = fe;
}

/* The fast path of a GEMM in broadcast tiles over C's first bm rows
 * (bcast_rows): A's first bm rows staged transposed, times their scale
 * (loads guarded where n, the wanted rows, may leave the matrix), B's
 * scale in the tiles. */
static Stmt *bcast_path(Lower *L, const Stmt *g, const Region *c, Expr *n, int64_t bm)
{
    const Region *a = &g->u.gemm.a, *as = g->u.gemm.a_scale.buf ? &g->u.gemm.a_scale : NULL;
    const Region *bs = g->u.gemm.b_scale.buf ? &g->u.gemm.b_scale : NULL;
    Stmt *seq = ir_seq(L->k, g->loc);
    Expr *z = ci(L, 0);
    int64_t K = a->ext[1], shape[2] = {K, bm};
    Region at = whole(L, lower_temp(L, "gemm_at", SCOPE_SHARED, DT_F32, 2, shape, g->loc));
    Region from = sub(L, a, 0, bm, z, 0, K, z), cb = sub(L, c, 0, bm, z, 0, c->ext[1], z);
    Region fas = as ? sub(L, as, 0, bm, z, 0, mat_cols(as), z) : (Region){0};
    stage_into(L, seq, &from, at.buf, ROWS, shape, 0, true, n ? CHECK : INSIDE, (Scaling){.scale = as ? &fas : NULL},
               g->loc);
    ir_seq_push(L->k, seq, bcast_tiles(L, g, &at, &g->u.gemm.b, bs, &cb));
    return seq;
}

/* A band of a dot tile's rows of A, two or more, whose rows lie a multiple
 * of 4 KiB apart share L1's sets — with B's rows, which the tiles stream
 * beside them, also 4 KiB apart at the Flash shapes — and evict one
 * another before the next column tile reads them again: bf16 at 16 rows
 * (8x2 tiles), N 1024, K 4096, in cache, one thread, 1.34-1.49 ms; K 4128
 * (rows 8256 bytes apart) 1.06-1.19.  Such an A is read from a copy whose
 * rows are one cache line longer (dot_a_copy). */
enum { L1_ALIAS_BYTES = 4096, LINE_BYTES = 64 };

static bool rows_alias(int64_t rows, int64_t pitch_bytes) { return rows >= 2 && pitch_bytes % L1_ALIAS_BYTES == 0; }

/* The elements a copy of rows x cols of dt adds to each row: a line where
 * its rows would alias, else none. */
static int64_t row_pad(int64_t rows, int64_t cols, DType dt)
{
    return rows_alias(rows, cols * dt_bits(dt) / 8) ? LINE_BYTES * 8 / dt_bits(dt) : 0;
}

/* Copy A's window into scratch of dtype dt for the dot tiles (its values
 * times 2^lift), its rows padded by a line where they would alias: the
 * copy then takes the line past each row's end too, from the window
 * widened by it, zero where that leaves the matrix (one nest over the
 * whole buffer, which pass_hoist runs once where A is the same for every
 * block). */
static Region dot_a_copy(Lower *L, Stmt *seq, const Region *a, DType dt, Guard guard, int lift, SrcLoc loc)
{
    int64_t rows = mat_rows(a), cols = mat_cols(a), pad = row_pad(rows, cols, dt);
    int64_t shape[2] = {rows, cols + pad};
    Buffer *b = lower_temp(L, "gemm_a", SCOPE_SHARED, dt, 2, shape, loc);
    Region from = pad ? sub(L, a, 0, rows, ci(L, 0), 0, cols + pad, ci(L, 0)) : *a;
    stage_into(L, seq, &from, b, ROWS, shape, 0, false, pad ? OUTSIDE : guard, (Scaling){.lift = lift}, loc);
    Region r = whole(L, b);
    r.ext[1] = cols;
    return r;
}

/* A's bf16 copy for e4m3 pair tiles in their decode order (E4M3_WORDS),
 * times its UE8M0 scale clamped into the fold window where `as` is given
 * (micro_gemm a_prescaled, as prescale_a).  One row (stages_e4m3_words),
 * so no row pad: rows that alias would want one, staged from past the
 * window's end as dot_a_copy's is, for pass_hoist to see every element
 * written (left unwritten, the copy was staged again in every block). */
static Region stage_words(Lower *L, Stmt *seq, const Region *a, const Region *as, Guard guard, SrcLoc loc)
{
    int64_t shape[2] = {mat_rows(a), mat_cols(a)};
    Buffer *b = lower_temp(L, "gemm_a", SCOPE_SHARED, DT_BF16, 2, shape, loc);
    stage_into(L, seq, a, b, E4M3_WORDS, shape, 0, false, guard, (Scaling){.scale = as, .clamp = true}, loc);
    return whole(L, b);
}

/* Whether A, read in place, has rows that alias in L1 (rows_alias). */
static bool a_aliases_in_place(const Region *a)
{
    int64_t pitch;
    const Buffer *b = a->buf;
    return b->rank >= 2 && ir_expr_is_const(b->shape[b->rank - 1], &pitch) &&
           rows_alias(mat_rows(a), pitch * dt_bits(b->dtype) / 8);
}

/* The fast path of a GEMM in dot tiles: A staged widened (lifted, in e2m1
 * order: DotInputs) where the tiles want it so, scales in the tiles.  With
 * `rows` only the first n rows need be inside: the whole window is staged
 * (pass_hoist finds it), its loads guarded where it leaves the matrix. */
static Stmt *dot_path(Lower *L, const Stmt *g, const Region *c, Expr *rows, Expr *n, bool widen_a)
{
    const Region *a = &g->u.gemm.a;
    const Region *bs = g->u.gemm.b_scale.buf ? &g->u.gemm.b_scale : NULL;
    DotInputs sc = {.a = g->u.gemm.a_scale.buf ? &g->u.gemm.a_scale : NULL, .b = bs,
                    .a_lifted = lifts_a(L, g, widen_a)};
    Stmt *seq = ir_seq(L->k, g->loc);
    Region fa = *a, fe;
    if (stages_e2m1_order(L, g, bs, rows))
        stage_e2m1_copy(L, seq, g, n, &sc, &fe);
    /* A in its own order only where a tile has more rows than those
     * reading the e2m1 copy (which otherwise stands in for it) */
    if (sc.a_e2m1 && !sc.a_e2m1_band)
        fa = fe;
    else if (widen_a && stages_e4m3_words(L, g)) {
        sc.a_prescaled = prescales_a(L, g);
        fa = stage_words(L, seq, a, sc.a_prescaled ? sc.a : NULL, n ? CHECK : INSIDE, g->loc);
        sc.a_words = true;
    } else if (widen_a && prescales_a(L, g)) {
        fa = prescale_a(L, seq, a, sc.a, n ? CHECK : INSIDE, g->loc);
        sc.a_prescaled = true;
    } else if (widen_a)
        fa = dot_a_copy(L, seq, a, widened_a(L, g), n ? CHECK : INSIDE, sc.a_lifted ? IR_A_LIFT_EXP : 0, g->loc);
    else if (a->buf->scope == SCOPE_GLOBAL && !sc.a && a_aliases_in_place(a))
        fa = dot_a_copy(L, seq, a, a->buf->dtype, n ? CHECK : INSIDE, 0, g->loc);
    ir_seq_push(L->k, seq, dot_tiles(L, g, &fa, &g->u.gemm.b, sc, c, rows, true));
    return seq;
}

/* A global operand is read in place when its window lies inside the
 * buffer; otherwise (a tail block) it is first copied with its tail zeroed,
 * which is the GEMM's meaning of the parts outside.  Block scales
 * (dot_scaled_in_place, dot_a_scale_in_place) are applied in the dot
 * tiles, or in the tail case the operand is dequantised into f32 scratch.
 * B is copied only where its own window may leave: an MoE tile's rows of
 * A run past the last expert's, and dequantising its expert's packed
 * weights as well (32 x 2048 into f32, every column block) made the decode
 * 4.7x slower (moe_expert_gemm, 6 rows over 16 experts, BK = K: 50 ms
 * against 10.6 at BK 128). */
static Stmt *lower_gemm_dot(Lower *L, const Stmt *g)
{
    Stmt *seq = ir_seq(L->k, g->loc);
    Region a = g->u.gemm.a, b = g->u.gemm.b, c = g->u.gemm.c, c_out = c;
    const Region *bs = g->u.gemm.b_scale.buf ? &g->u.gemm.b_scale : NULL;
    const Region *as = g->u.gemm.a_scale.buf ? &g->u.gemm.a_scale : NULL;
    bool stage_c = c.buf->scope == SCOPE_GLOBAL;
    Expr *rows = stage_c ? NULL : g->u.gemm.rows; /* a global C's staging copies every row */
    if (stage_c) {
        c = whole(L, lower_temp(L, "gemm_c", SCOPE_SHARED, DT_F32, 2, c.ext, g->loc));
        if (!g->u.gemm.clear)
            ir_seq_push(L->k, seq, lower_copy(L, &c_out, &c, false, g->loc));
    }
    /* With `rows`, the dot tiles read only the first n of A's rows: an MoE
     * expert's tile runs past the last row of A far more often than its
     * rows do (at decode, every tile but the first few), and the slow path
     * below dequantises A and computes whole bands (moe_expert_gemm at one
     * row per expert, 16-row tiles: 2x the time of 4-row ones). */
    Expr *n = rows ? wanted_rows(L, rows, mat_rows(&a)) : NULL;
    Expr *inside_a = n ? rows_inside(L, &a, as, n) : operand_inside(L, &a, as);
    Expr *inside_b = operand_inside(L, &b, bs), *inside = lower_and(L, inside_a, inside_b);
    bool always = !inside || (inside->op == EX_CONST && inside->imm.i);
    bool never = inside && inside->op == EX_CONST && !inside->imm.i;
    /* A narrow A of several rows is widened to f32 once per call: every
     * column tile would widen all its rows again (bf16 at 4 rows: 8 of a
     * tile's 20 instructions per step).  Cache-resident, N = K = 1024, one
     * thread: bf16 M=4 0.168 -> 0.111 ms, M=16 0.65 -> 0.51; fp8 M=4 0.367 ->
     * 0.298, M=16 1.17 -> 1.06.  One row is read in place: there A is one
     * load in nr + 1 — but beside packed e2m1, whose tiles of two or three
     * columns widened e4m3 A again each (moe_expert_gemm at one row, K
     * 4096 in one step: 3.2 -> 2.6 ms staged), and an e4m3 A beside e4m3
     * B, staged lifted (lifts_a), which takes the F16C widening and the
     * lift out of the K loop: pass_hoist then stages it once for all the
     * column blocks (fp8_gemm 4096^2 at one row, K in one step, one
     * thread: 1.69-1.74 -> 1.48-1.54 ms).  bf16 pairs (vdpbf16ps) take A
     * as it is. */
    bool pairs = L->t->has_bf16_dot && a.buf->dtype == DT_BF16 && b.buf->dtype == DT_BF16 && !bs && !as;
    bool e4m3_pair = a.buf->dtype == DT_F8E4M3 && b.buf->dtype == DT_F8E4M3;
    bool widen_a = a.buf->dtype != DT_F32 && (c.ext[0] >= 2 || b.buf->dtype == DT_F4E2M1 || e4m3_pair) && !pairs;
    Stmt *fast = NULL, *slow = NULL;
    Expr *test = NULL;
    int64_t bm = never ? 0 : bcast_rows(L, g, rows, n, &test);
    if (!never) {
        Stmt *bc = bm ? bcast_path(L, g, &c, n, bm) : NULL;
        Stmt *dots = !bm || test ? dot_path(L, g, &c, rows, n, widen_a) : NULL;
        fast = !bc ? dots : !dots ? bc : ir_if(L->k, test, bc, dots, g->loc);
    }
    if (!always) {
        bool b_never = inside_b && inside_b->op == EX_CONST; /* (operand_inside: not a constant true) */
        slow = tail_tiles(L, g, &c, rows, widen_a, b_never);
        if (inside_b && !b_never)
            slow = ir_if(L->k, inside_b, slow, tail_tiles(L, g, &c, rows, widen_a, true), g->loc);
    }
    ir_seq_push(L->k, seq, always ? fast : never ? slow : ir_if(L->k, inside, fast, slow, g->loc));
    if (stage_c)
        ir_seq_push(L->k, seq, lower_copy(L, &c, &c_out, false, g->loc));
    return seq;
}

/* The dtypes a dot tile reads in place and widens in vector registers
 * (codegen/micro.c's dot_dtype): packed fp4, say, is not among them. */
static bool dot_reads_in_place(DType t)
{
    return t == DT_F32 || t == DT_F16 || t == DT_BF16 || t == DT_F8E4M3 || t == DT_F8E5M2;
}

static bool touches(const Stmt *s, const Buffer *b)
{
    IrUse u = {0};
    ir_buffer_use(s, b, &u);
    return u.reads || u.writes;
}

/* Does GEMM g read ws as the whole of one operand and touch it nowhere else? */
static bool reads_whole_operand(const Stmt *g, const Buffer *ws)
{
    const Region *a = &g->u.gemm.a, *b = &g->u.gemm.b;
    return (a->buf == ws) != (b->buf == ws) && ir_region_is_whole(a->buf == ws ? a : b) &&
           g->u.gemm.c.buf != ws && g->u.gemm.a_scale.buf != ws && g->u.gemm.b_scale.buf != ws;
}

/* Is every access of scratch ws in the kernel a pair in seq: a copy into
 * the whole of it, then a GEMM reading the whole of it, nothing else
 * touching it in between?  (hc_post_pre stages four weight tiles through
 * one buffer, one per stream, each for one GEMM.)  Then each GEMM may take
 * its copy's source instead, whatever the other pairs do. */
static bool only_copy_gemm_pairs(const Lower *L, const Stmt *seq, const Buffer *ws)
{
    int copies = 0, gemms = 0;
    bool pending = false;
    for (int i = 0; i < seq->u.seq.n; i++) {
        const Stmt *s = seq->u.seq.items[i];
        if (!touches(s, ws))
            continue;
        if (s->op == ST_COPY && s->u.copy.dst.buf == ws && ir_region_is_whole(&s->u.copy.dst) && !pending) {
            pending = true;
            copies++;
        } else if (s->op == ST_GEMM && pending && reads_whole_operand(s, ws)) {
            pending = false;
            gemms++;
        } else {
            return false;
        }
    }
    IrUse all = {0};
    ir_buffer_use(L->k->body, ws, &all);
    return !pending && all.writes == copies && all.reads == gemms;
}

/* In-register dequantisation: `copy w -> Ws; gemm(X, Ws)` where w is a
 * read-only input (an fp8 weight tile) and Ws a scratch tile used nowhere
 * else becomes `gemm(X, w)` when the GEMM takes dot tiles: they widen w's
 * bytes in registers instead of a copy converting, writing and re-reading
 * twice as many.  Only exact copies qualify (the values the GEMM sees are
 * unchanged).  Each row band widens w again, and it still pays with six
 * bands: fp8_gemm at M = 16, x86-avx2, 38 ms forwarded against 62 ms with
 * the copy (N = K = 4096, one thread).  A's tile is forwarded the same
 * way (a_ok): fp8_gemm's e4m3 → bf16 copy of the activations costs ~5
 * instructions per element each step (the generic conversion), but every
 * column tile widens A again (~9 per 16 e4m3 elements; ~7 per 8 beside
 * packed fp4, whose steps are 8 wide), so a widening copy goes only where
 * at most 8 (fp4: 4) column tiles would (fp8 at BN = 16: at one row
 * 0.030 ms against 0.037, N = K = 512; at 16 rows and BN = 128, 43 tiles,
 * it was 18% slower).  With leading_dims (B of dot tiles, which read any
 * rank's last two dims) the source may be the tile of a higher-rank
 * tensor whose leading extents are 1 — a group's weights in
 * grouped_oproj (16 rows, Flash's shapes, from DRAM, one thread: 4.88-5.44
 * -> 4.46-4.72 ms). */
static void forward_operand(Lower *L, Stmt *seq, int j, Region *op, bool (*ok)(Lower *, const Stmt *, DType),
                            bool leading_dims)
{
    Buffer *ws = op->buf;
    if (ws->scope == SCOPE_GLOBAL || !ir_region_is_whole(op) || !only_copy_gemm_pairs(L, seq, ws))
        return;
    int i = j - 1; /* the copy of this GEMM's pair */
    while (i >= 0 && !touches(seq->u.seq.items[i], ws))
        i--;
    if (i < 0)
        return;
    Stmt *cp = seq->u.seq.items[i];
    const Region *src = &cp->u.copy.src;
    int R = src->buf->rank - 2; /* leading dims of extent 1 (an MoE expert's, a group's weights) */
    bool matrix = (R == 0 || (R > 0 && leading_dims)) && op->buf->rank == 2;
    for (int d = 0; matrix && d < R; d++)
        matrix = src->ext[d] == 1;
    if (cp->u.copy.async || src->buf->scope != SCOPE_GLOBAL || src->buf->dir != ARG_IN || !matrix ||
        src->ext[R] != op->ext[0] || src->ext[R + 1] != op->ext[1] || !dt_widens_exactly(src->buf->dtype, ws->dtype) ||
        !dot_reads_in_place(src->buf->dtype) || (ok && !ok(L, seq->u.seq.items[j], src->buf->dtype)))
        return;
    *op = *src;
    seq->u.seq.items[i] = ir_seq(L->k, cp->loc); /* the copy is gone */
}

static bool a_ok(Lower *L, const Stmt *g, DType from)
{
    const Region *b = &g->u.gemm.b, *bs = &g->u.gemm.b_scale;
    if (from == g->u.gemm.a.buf->dtype)
        return true;
    int64_t M = g->u.gemm.c.ext[0], N = g->u.gemm.c.ext[1], K = g->u.gemm.a.ext[1];
    int64_t bn = bs->buf ? mat_rows(b) / mat_rows(bs) : 0;
    int64_t mr = dot_rows_of(L->t, M, K, from, b->buf->dtype);
    int64_t nr = dot_cols_of(L->t, mr, K, from, b->buf->dtype, bn, N, 0, false);
    /* B of 8 bits: A widened 16 elements at a time; else 8, costlier */
    return (N + nr - 1) / nr <= (dt_bits(b->buf->dtype) == 8 ? 8 : 4);
}

/* A register-tile GEMM packs B from wherever it lies, so the kernel's
 * copy is one copy too many: forwarded, B is read once instead of twice.
 * It reads an f32 A in place (a_reads_in_place), and stages a narrow one
 * widened to f32 (no pairwise dot product) from wherever it lies too
 * (bf16 1024^3 on x86-avx2: 29.1 -> 28.2 ms). */
static bool b_register_ok(Lower *L, const Stmt *g, DType from)
{
    return !g->u.gemm.a_scale.buf && !g->u.gemm.b_scale.buf;
}

static bool a_register_ok(Lower *L, const Stmt *g, DType from)
{
    DType a = g->u.gemm.a.buf->dtype;
    bool widened = a != DT_F32 && from == a && !L->t->has_bf16_dot; /* staged once, from A */
    return (widened || (from == DT_F32 && a == DT_F32)) && !g->u.gemm.trans_a && !g->u.gemm.a_scale.buf &&
           !g->u.gemm.b_scale.buf;
}

void lower_forward_gemm_operands(Lower *L, Stmt *seq)
{
    for (int j = 0; j < seq->u.seq.n; j++) {
        Stmt *g = seq->u.seq.items[j];
        if (g->op != ST_GEMM)
            continue;
        if (!dot_gemm(L, g)) {
            forward_operand(L, seq, j, &g->u.gemm.b, b_register_ok, false);
            forward_operand(L, seq, j, &g->u.gemm.a, a_register_ok, false);
            continue;
        }
        forward_operand(L, seq, j, &g->u.gemm.b, NULL, true); /* (dot tiles read B with leading unit dims) */
        forward_operand(L, seq, j, &g->u.gemm.a, a_ok, false);
    }
}

/* ------------------------------------------------ block-scaled operands */

/* The loops of dequantise, guarded or not. */
/* The loops of dequantise, guarded or not.  Packed e2m1 with blocks of an
 * even width goes a byte (two elements, one scale) per iteration, which
 * LLVM vectorises as byte loads; element by element, each nibble's address
 * is a shift it does not see through, and the loop ran 4x slower than the
 * spec's own byte loop (moe_expert_gemm, 4 rows). */
static Stmt *dequant_loops(Lower *L, const Region *x, const Region *s, Buffer *xs, bool guard, bool clamp,
                           SrcLoc loc)
{
    int rank = x->buf->rank, R = rank - 2;
    int64_t shape[2] = {mat_rows(x), mat_cols(x)}, block[2] = {shape[0] / mat_rows(s), shape[1] / mat_cols(s)};
    int per = x->buf->dtype == DT_F4E2M1 && block[1] % 2 == 0 ? 2 : 1;
    int64_t iters[2] = {shape[0], shape[1] / per};
    Expr *v[2], *xp[IR_MAX_RANK], *sp[IR_MAX_RANK], *xi[IR_MAX_RANK], *si[IR_MAX_RANK];
    Stmt *inner;
    Stmt *loops = lower_nest(L, 2, iters, LOOP_PARALLEL, "d", v, &inner, loc);
    Expr *col = per == 1 ? v[1] : ir_binary(L->k, EX_MUL, v[1], ci(L, per));
    for (int d = 0; d < rank; d++) {
        Expr *pos = d == R ? v[0] : col;
        xp[d] = d >= R ? pos : ci(L, 0);
        sp[d] = d < R ? ci(L, 0) : block[d - R] == 1 ? pos : ir_binary(L->k, EX_DIV, pos, ci(L, block[d - R]));
    }
    lower_region_at(L, s, sp, si);
    Expr *scale = lower_guarded_load(L, s->buf, si, guard);
    if (clamp) /* prescale_a */
        scale = fold_clamp(L, scale);
    for (int e = 0; e < per; e++) { /* (both elements of a pair share the block's scale) */
        Expr *c = e ? add(L, col, ci(L, e)) : col, *di[2] = {v[0], c};
        xp[rank - 1] = c;
        lower_region_at(L, x, xp, xi);
        Expr *val = ir_binary(L->k, EX_MUL, lower_guarded_load(L, x->buf, xi, guard), scale);
        ir_seq_push(L->k, inner, ir_store(L->k, xs, di, val, loc));
    }
    int64_t pad;
    ir_expr_is_const(xs->shape[1], &pad);
    pad -= shape[1];
    if (pad > 0) { /* xs's rows padded (prescale_a): zero past the copy, a run of the row loop's */
        Var *z = ir_var_new(L->k, "z");
        Expr *zi[2] = {v[0], ir_binary(L->k, EX_ADD, ci(L, shape[1]), ir_var(L->k, z))};
        Stmt *zero = ir_seq(L->k, loc);
        ir_seq_push(L->k, zero, ir_store(L->k, xs, zi, ir_const_f(L->k, 0.0), loc));
        ir_seq_push(L->k, loops->u.seq.items[0]->u.loop.body, ir_for(L->k, z, ci(L, pad), LOOP_PARALLEL, 0, zero, loc));
    }
    return loops;
}

/* xs[r][c] = x(r, c) · s(r / br, c / bc) over the matrix of window x, an
 * f32 product stored as dt (tails outside either buffer read 0, as the
 * GEMM's operands do), s clamped into the fold window where `clamp` says
 * (dequant_loops), its loads guarded as `guard` says (as for stage_into:
 * CHECK tests the windows at run time, unguarded where both lie inside). */
static Region dequantise_as(Lower *L, Stmt *seq, const Region *x, const Region *s, DType dt, const char *what,
                            Guard guard, bool clamp, int64_t pad, SrcLoc loc)
{
    int64_t shape[2] = {mat_rows(x), mat_cols(x) + pad};
    Buffer *xs = lower_temp(L, what, SCOPE_SHARED, dt, 2, shape, loc);
    Expr *inside = guard == CHECK ? lower_and(L, lower_window_inside(L, x), lower_window_inside(L, s)) : NULL;
    Stmt *loops;
    if (guard != CHECK || !inside || inside->op == EX_CONST)
        loops = dequant_loops(L, x, s, xs, guard == OUTSIDE || (inside && !inside->imm.i), clamp, loc);
    else
        loops = ir_if(L->k, inside, dequant_loops(L, x, s, xs, false, clamp, loc),
                      dequant_loops(L, x, s, xs, true, clamp, loc), loc);
    ir_seq_push(L->k, seq, loops);
    Region r = whole(L, xs);
    r.ext[1] = mat_cols(x);
    return r;
}

/* The scratch tile a plain GEMM reads instead of a scaled operand. */
static Region dequantise(Lower *L, Stmt *seq, const Region *x, const Region *s, DType dt, const char *what,
                         SrcLoc loc)
{
    return dequantise_as(L, seq, x, s, dt, what, CHECK, false, 0, loc);
}

/* A's bf16 copy for e4m3 pair tiles with its UE8M0 scale in it, clamped
 * into the window the tiles fold (micro_gemm a_prescaled): x times a power
 * of two there is exact in bf16.  Its rows padded by a line where they
 * would alias in L1 (row_pad). */
static Region prescale_a(Lower *L, Stmt *seq, const Region *a, const Region *as, Guard guard, SrcLoc loc)
{
    int64_t pad = row_pad(mat_rows(a), mat_cols(a), DT_BF16);
    return dequantise_as(L, seq, a, as, DT_BF16, "gemm_a", guard, true, pad, loc);
}

/* What a scaled operand x (scale dtype s) is dequantised into, beside the
 * other operand's dtype: bf16 where the other is bf16 and every x·s is
 * exact in bf16 — e2m1 times a power of two: two significant bits, 2^-128
 * at the least, within bf16's subnormals (2^-133) — so the product stays
 * bf16 x bf16 (the tensor cores' on a GPU, vdpbf16ps on AVX-512); f32
 * otherwise (exact: it is the product's own dtype), and on a CPU without a
 * bf16 dot product, which would stage bf16 widened to f32 again. */
static DType dequant_dtype(const Lower *L, DType other, DType x, DType s)
{
    bool bf16_products = L->t->gpu_sm || L->t->has_bf16_dot;
    return bf16_products && other == DT_BF16 && x == DT_F4E2M1 && s == DT_E8M0 ? DT_BF16 : DT_F32;
}

/* An integer expression that is even for every value of its variables. */
static bool provably_even(const Expr *e)
{
    int64_t v;
    if (ir_expr_is_const(e, &v))
        return v % 2 == 0;
    switch (e->op) {
    case EX_ADD: case EX_SUB: return provably_even(e->args[0]) && provably_even(e->args[1]);
    case EX_MUL: return provably_even(e->args[0]) || provably_even(e->args[1]);
    default: return false;
    }
}

/* The dtypes a dot tile reads in place and scales (codegen/micro.c). */
static bool dot_scales(DType t) { return dot_reads_in_place(t) || t == DT_F4E2M1; }

/* A decode GEMM whose B is block-scaled runs as dot tiles that scale B in
 * registers (packed e2m1 through a table): B of a dtype they read, K blocks
 * of whole 32-element steps, and packed e2m1 rows
 * and windows starting on a byte.  Every row band decodes B again (an
 * e2m1 decode is ~6 vector instructions per register of weights, three
 * times a bf16 widening), and still this beats dequantising into scratch,
 * whose element loop LLVM does not vectorise (each nibble's address is a
 * shift it does not see through): moe_expert_gemm 4096 x 4096 on AVX2,
 * weights in cache, 1 row 3.4-6 ms (the spec's own dequantising loop:
 * 10-12), 4 rows 10-13 (11-17; scratch here: 55-86), 16 rows 32-39 (24). */
static bool dot_scaled_in_place(Lower *L, const Stmt *g)
{
    const Region *b = &g->u.gemm.b, *bs = &g->u.gemm.b_scale;
    if (!dot_gemm(L, g) || !bs->buf || !dot_scales(b->buf->dtype) || mat_cols(b) / mat_cols(bs) % 32)
        return false;
    if (b->buf->dtype != DT_F4E2M1)
        return true;
    int rank = b->buf->rank;
    bool even = provably_even(b->off[rank - 1]);
    for (int d = 0; d < rank - 1; d++)
        even = even && provably_even(b->buf->stride[d]);
    return even;
}

/* A's block scale goes into the dot tiles too when each row of A has its
 * own row of scales (the 1 x 128 activation scales) in K blocks of whole
 * 32-element steps, nested with a B scaled there (packed e2m1's table
 * blocks within A's): each block's sums are then scaled once, in
 * registers, where dequantising A first would also leave an fp8 B's scale
 * to be applied per weight (fp8_gemm as one scaled T.gemm over K = 4096 at
 * one row: 3.20 ms so, against 3.00 for a T.gemm per 128-wide block;
 * promoted in the tile, see bench/HISTORY.md). */
static bool dot_a_scale_in_place(Lower *L, const Stmt *g, bool b_in_place)
{
    const Region *a = &g->u.gemm.a, *as = &g->u.gemm.a_scale, *b = &g->u.gemm.b, *bs = &g->u.gemm.b_scale;
    if (!dot_gemm(L, g) || !as->buf || a->buf->rank != 2 || !dot_reads_in_place(a->buf->dtype) ||
        mat_rows(a) != mat_rows(as) || mat_cols(a) / mat_cols(as) % 32)
        return false;
    if (!b_in_place)
        return true;
    int64_t bka = mat_cols(a) / mat_cols(as), bkb = mat_cols(b) / mat_cols(bs);
    return bka % bkb == 0 || (b->buf->dtype != DT_F4E2M1 && bkb % bka == 0);
}

/* A GEMM with block scales: the scaled operands are dequantised into
 * scratch tiles, then a plain GEMM (every target; the CPU's decode GEMMs
 * apply the scales they can in the dot tiles instead). */
static Stmt *lower_gemm_scaled(Lower *L, const Stmt *g)
{
    Stmt *seq = ir_seq(L->k, g->loc), *plain = ir_gemm(L->k, g->u.gemm.a, g->u.gemm.b, g->u.gemm.c,
                                                      g->u.gemm.trans_a, g->u.gemm.trans_b, g->u.gemm.clear, g->loc);
    const Region *as = &g->u.gemm.a_scale, *bs = &g->u.gemm.b_scale;
    bool b_fast = dot_scaled_in_place(L, g), a_fast = dot_a_scale_in_place(L, g, b_fast);
    plain->u.gemm.rows = g->u.gemm.rows;
    plain->u.gemm.cols = g->u.gemm.cols;
    if (b_fast)
        plain->u.gemm.b_scale = *bs;
    else if (bs->buf)
        plain->u.gemm.b = dequantise(L, seq, &g->u.gemm.b, bs,
                                     dequant_dtype(L, g->u.gemm.a.buf->dtype, g->u.gemm.b.buf->dtype, bs->buf->dtype),
                                     "gemm_db", g->loc);
    if (a_fast)
        plain->u.gemm.a_scale = *as;
    else if (as->buf)
        plain->u.gemm.a = dequantise(L, seq, &g->u.gemm.a, as,
                                     dequant_dtype(L, plain->u.gemm.b.buf->dtype, g->u.gemm.a.buf->dtype, as->buf->dtype),
                                     "gemm_da", g->loc);
    ir_seq_push(L->k, seq, b_fast || a_fast ? lower_gemm_dot(L, plain) : lower_gemm(L, plain));
    return seq;
}

/* fp8 tensor cores keep their running sum with ~13 fraction bits and
 * truncate: on an H200 an e4m3 wgmma was off by 2^-12 of its sum, and a
 * 4096-deep product by 0.3 in values of ~80.  A gemm that adds into a
 * running accumulator therefore multiplies into a zeroed fragment of its
 * own and adds that to C in f32, one call's block of K (a pipelined step)
 * at a time — what cuBLASLt does unless asked for FAST_ACCUM: on the H200
 * the two agreed bit for bit.  The threads pass keeps C in the partial
 * fragment's register layout (pass_threads, adopt_nest).  { fast_accum = true } and a
 * gemm that clears C need none of it. */
static bool promotes(Lower *L, const Stmt *g)
{
    return dt_bits(g->u.gemm.a.buf->dtype) == 8 && !g->u.gemm.clear && !g->u.gemm.fast_accum && L->t->gpu_sm;
}

/* The partial-product fragment of accumulator c: one per accumulator, so
 * that the S copies of a pipelined step (pass_stages) share its registers. */
static Buffer *part_for(Lower *L, const Region *c, SrcLoc loc)
{
    for (int i = 0; i < L->nparts; i++) {
        int64_t rows, cols;
        if (L->part_of[i] == c->buf && ir_expr_is_const(L->part[i]->shape[0], &rows) && rows == c->ext[0] &&
            ir_expr_is_const(L->part[i]->shape[1], &cols) && cols == c->ext[1])
            return L->part[i];
    }
    int64_t shape[2] = {c->ext[0], c->ext[1]};
    Buffer *part = lower_temp(L, "gemm_part", SCOPE_FRAGMENT, DT_F32, 2, shape, loc);
    if (L->nparts < (int)(sizeof L->part / sizeof L->part[0])) {
        L->part_of[L->nparts] = c->buf;
        L->part[L->nparts++] = part;
    }
    return part;
}

static Stmt *promoted_gemm(Lower *L, const Stmt *g)
{
    const Region *c = &g->u.gemm.c;
    int64_t shape[2] = {c->ext[0], c->ext[1]};
    Buffer *part = part_for(L, c, g->loc);
    Stmt *seq = ir_seq(L->k, g->loc);
    ir_seq_push(L->k, seq, ir_micro_gemm(L->k, g->u.gemm.a, g->u.gemm.b, whole(L, part), false, g->u.gemm.trans_b,
                                         true, g->loc));
    Expr *v[2], *at[2];
    Stmt *inner, *loops = lower_nest(L, 2, shape, LOOP_PARALLEL, "p", v, &inner, g->loc);
    lower_region_at(L, c, v, at);
    Expr *sum = ir_binary(L->k, EX_ADD, ir_load(L->k, c->buf, at), ir_load(L->k, part, v));
    ir_seq_push(L->k, inner, ir_store(L->k, c->buf, at, sum, g->loc));
    ir_seq_push(L->k, seq, loops);
    return seq;
}

Stmt *lower_gemm(Lower *L, const Stmt *g)
{
    if (g->u.gemm.a_scale.buf || g->u.gemm.b_scale.buf)
        return lower_gemm_scaled(L, g);
    if (L->t->gpu_sm && tensor_core_gemm(L, g) && promotes(L, g))
        return promoted_gemm(L, g);
    if (L->t->gpu_sm && tensor_core_gemm(L, g))
        return ir_micro_gemm(L->k, g->u.gemm.a, g->u.gemm.b, g->u.gemm.c, false, g->u.gemm.trans_b,
                             g->u.gemm.clear, g->loc);
    if (L->t->gpu_sm)
        return lower_gemm_simt(L, g);
    if (dot_gemm(L, g))
        return lower_gemm_dot(L, g);
    Stmt *seq = ir_seq(L->k, g->loc);
    Region a = g->u.gemm.a, b = g->u.gemm.b, c = g->u.gemm.c;
    bool ta = g->u.gemm.trans_a, tb = g->u.gemm.trans_b;
    int64_t M = c.ext[0], N = c.ext[1], K = ta ? a.ext[0] : a.ext[1];
    /* bf16 on a target with a pairwise dot product (vdpbf16ps): B in
     * k-pairs, A read as pairs along its rows (so K must be even).  B may
     * be narrower (fp8 next to an A dequantised to bf16): packed widened. */
    bool pairs = L->t->has_bf16_dot && a.buf->dtype == DT_BF16 && dt_widens_exactly(b.buf->dtype, DT_BF16) && !ta &&
                 K % 2 == 0;
    /* Otherwise narrow operands are staged widened to f32: once per block,
     * where the register tile would widen each element again for every row
     * band (B) or column tile (A) — an f32 broadcast is one instruction, a
     * bf16 one four (bf16 2048^3 on x86-avx2: 2x the instructions per k). */
    bool a_in_place = a_reads_in_place(L, g);
    if (!a_in_place && (a.buf->scope == SCOPE_GLOBAL || (!pairs && a.buf->dtype != DT_F32)))
        a = whole(L, stage(L, seq, &a, false, a.ext[0], a.ext[1], pairs ? a.buf->dtype : DT_F32, "gemm_a", CHECK,
                           g->loc));
    /* B read where it lies only if it is one f32 tile wide, k-major */
    Layout blay = pairs ? PAIRS : PANELS;
    if (pairs)
        b = whole(L, stage_pairs(L, seq, &b, tb, K, N, g->loc));
    else if (b.buf->scope == SCOPE_GLOBAL || tb || b.buf->dtype != DT_F32 || N > L->t->micro_n)
        b = whole(L, stage_panels(L, seq, &b, tb, K, N, g->loc));
    else
        blay = ROWS;
    Region c_out = c;
    bool stage_c = c.buf->scope == SCOPE_GLOBAL;
    if (stage_c) {
        int64_t shape[2] = {M, N};
        c = whole(L, lower_temp(L, "gemm_c", SCOPE_SHARED, DT_F32, 2, shape, g->loc));
        if (!g->u.gemm.clear)
            ir_seq_push(L->k, seq, lower_copy(L, &c_out, &c, false, g->loc));
    }
    Expr *rows = stage_c ? NULL : g->u.gemm.rows, *cols = stage_c ? NULL : g->u.gemm.cols;
    if (!a_in_place) {
        register_tiles(L, seq, g, &a, &b, &c, rows, cols, blay);
    } else {
        /* A read where it lies when its window is inside the matrix, else
         * staged with the parts outside zeroed (a last row block) */
        Expr *inside = lower_window_inside(L, &a);
        bool always = inside->op == EX_CONST && inside->imm.i;
        bool never = inside->op == EX_CONST && !inside->imm.i;
        Stmt *fast = ir_seq(L->k, g->loc), *slow = ir_seq(L->k, g->loc);
        if (!never)
            register_tiles(L, fast, g, &a, &b, &c, rows, cols, blay);
        if (!always) {
            Region sa = whole(L, stage(L, slow, &a, false, a.ext[0], a.ext[1], DT_F32, "gemm_a", OUTSIDE, g->loc));
            register_tiles(L, slow, g, &sa, &b, &c, rows, cols, blay);
        }
        ir_seq_push(L->k, seq, always ? fast : never ? slow : ir_if(L->k, inside, fast, slow, g->loc));
    }
    if (stage_c)
        ir_seq_push(L->k, seq, lower_copy(L, &c, &c_out, false, g->loc));
    return seq;
}
