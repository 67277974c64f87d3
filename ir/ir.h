/* ir.h — every IR type of tilec in one place.
 *
 * One set of nodes serves two levels:
 *   Tile IR  — what the frontend builds: loops, element stores and tile ops
 *              (copy, fill, gemm, reduce, atomic_add) on whole regions.
 *   Loop IR  — what codegen sees: pass_lower has replaced every tile op by
 *              loops of element loads/stores, except GEMM, which becomes
 *              register-tile MICRO_GEMM statements.  Loops may carry the
 *              VECTOR kind (set by pass_vectorize).
 * Kernel.level says which level a kernel is at; the verifier enforces it.
 *
 * Memory: every node of a kernel lives in the kernel's arena and dies with
 * ir_kernel_free().  Nothing in here owns a malloc'd pointer.
 *
 * Value semantics (shared by the interpreter and every back end):
 *   - float arithmetic is f32: loads of bf16/f16/fp8 widen exactly to f32,
 *     every float op yields F32, a store (or CAST) rounds to the destination
 *     dtype with round-to-nearest-even and, for fp8, saturation;
 *   - float MIN/MAX (and the max/min/absmax reductions) are IEEE 754-2019
 *     minimum/maximum: NaN if either operand is NaN, and -0 < +0;
 *   - integer arithmetic is i64 (loop variables, params, index math); DIV and
 *     MOD on integers are floor division / floor modulo, like Lua's // and %;
 *   - comparisons yield BOOL; SELECT picks without evaluating order effects.
 *   - bit operations (& | ^ << >>) act on integers as i64 two's complement;
 *     >> is arithmetic.  BITCAST reinterprets bits between f32 and i32 (an
 *     i32 value is sign-extended to i64; to f32 it takes the low 32 bits).
 *   - a store whose value is a load of the store's own dtype (whole bytes)
 *     moves the bits: the same value, and a NaN keeps its sign and payload;
 *   - COPY reads outside the source buffer's bounds as 0 and drops writes
 *     outside the destination's bounds (tails of non-multiple shapes).
 *
 * Threads (GPU Loop IR): a kernel with nthreads > 0 runs its body once per
 * thread of each block, nthreads threads per block, with thread_var bound to
 * 0..nthreads-1.  pass_threads produces such kernels: it distributes parallel
 * loops over the threads and guards one-thread work with `tid == 0`.  There,
 *   - SHARED buffers are one per block, seen by all its threads; LOCAL
 *     buffers are private to each thread; FRAGMENT buffers no longer exist;
 *   - BARRIER waits until every thread of the block reaches it, and orders
 *     the memory accesses before it (shared and global) before those after.
 *     Every thread must reach the same barriers: a barrier lies only in
 *     control flow that does not depend on the thread index;
 *   - two threads touching the same element between two barriers, one of
 *     them writing, is a race (undefined); atomic stores excepted;
 *   - MICRO_GEMM is a tensor-core product the whole block issues together:
 *     a [M,K] and b ([K,N], or [N,K] with trans_b) are 2-D shared buffers,
 *     c is each thread's LOCAL share of the [M,N] f32 accumulator, slot s of
 *     thread t holding element ir_mma_pos(t, s) of it (see MmaLayout);
 *   - a scratch buffer may have padded rows (strides other than row-major):
 *     its storage spans ir_buf_span() elements.
 *   - Shared buffers lie in one per-block array, in buffer order, each at
 *     ir_shared_offset() (16-byte aligned, or Buffer.align).  A MICRO_GEMM
 *     with descriptors (sm_90a) is the block's product as wgmma: the
 *     warpgroups (128 threads each) form the grid of ir_wgmma_layout, and
 *     for k step s, 64-row piece p and column chunk q (in that nesting
 *     order, i = (s * mt + p) * nq + q) a warpgroup multiplies the 64 x K
 *     step of A that desc[2i] describes by the wg_n x K step of B that
 *     desc[2i+1] describes, into its 64 x wg_n piece of c.  B is K-major
 *     ([N, K]) with trans_b, else MN-major ([K, N], 16-bit types only: the
 *     instruction's transpose immediate is set and the descriptor's offsets
 *     take their MN-major meaning).
 *     A descriptor's start address is a byte offset into the block's
 *     shared array (the back end adds the array's address); its fields are
 *     those of the PTX ISA's wgmma matrix descriptor.  The a and b regions
 *     name the buffers read; how their elements are placed is whatever the
 *     kernel's stores wrote (pass_threads writes the swizzled layout the
 *     descriptors describe).
 *   - Such a MICRO_GEMM is asynchronous: each thread issues it as one
 *     wgmma group that stays in flight until a WGMMA_WAIT n of the thread
 *     leaves at most n newer groups in flight.  While a group is in flight
 *     its thread must not read or write c (other in-flight products into
 *     the same c excepted: they chain) and no thread may write a or b
 *     (pass_wgwait places the waits; the SIMT interpreter reports both).
 *
 * Asynchronous copies (GPU, made by pass_stages for `pipelined` loops): an
 * `async` COPY (Tile IR) or STORE (Loop IR) moves elements from a global
 * buffer into a scratch buffer of the same dtype without waiting for them:
 * a thread's async stores land at some point before the ASYNC_WAIT that
 * covers them.  ASYNC_COMMIT closes the thread's open group of async stores;
 * ASYNC_WAIT n waits until at most n of the thread's committed groups are
 * still in flight, then is a block barrier (BARRIER's rules apply to it).
 * Landing "immediately" is one legal schedule (the CPU and the plain
 * interpreter take it); the SIMT interpreter lands them at the wait, so a
 * read before its wait sees stale data.
 *
 * TMA (sm_90a, made by pass_tma for staged loops): an mbarrier is an i64
 * element bar[slot] of a shared buffer.  MBAR_INIT bar, n sets it up for n
 * arrivals per phase, phase 0 — once per block, by one thread, before any
 * other use, which a barrier must order after it.  MBAR_EXPECT bar, bytes
 * is one arrival that also makes the current phase wait for `bytes` more
 * bytes of TMA transactions.  TMA_LOAD src -> dst, bar copies a window of
 * a global argument (dense rows, zeros outside its shape: COPY's tail rule)
 * into the whole of a shared buffer, asynchronously, and its bytes (the
 * whole window's, zeros included) complete transactions on bar; with
 * `swizzle W` (32, 64, 128) the buffer's K is cut into W-byte columns of
 * R rows each, one TMA box per column, and within the buffer's storage the
 * 16-byte chunk bits 4.. of each byte address are XORed with bits 7.. (the
 * layout pass_threads gives wgmma operands); without, it is the buffer's
 * row-major order.  A phase completes once it has all its arrivals and
 * every byte it expects, and the next begins.  MBAR_WAIT bar, p waits
 * until the phase of parity p (p = phase % 2) that was last or is now
 * current has completed; every thread runs it, in control flow that does
 * not depend on the thread index (as for BARRIER), but it orders nothing
 * but the TMA data: a thread may read what a TMA load wrote only after a
 * wait that saw the phase it completed.
 */
#ifndef TILEC_IR_H
#define TILEC_IR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define IR_MAX_RANK 6
#define IR_MAX_GRID 3
/* a_lifted micro_gemm: A's e4m3 values times 2^112 are below 2^121, and
 * their products with B's stored values times 2^-120 at least 2^-26 */
#define IR_A_LIFT_EXP 112
/* Block scales a CPU dot tile over e4m3 or packed e2m1 B folds into its
 * operands (codegen/micro.c, fold_scales): UE8M0 codes within
 * [IR_FOLD_SCALE_LO, IR_FOLD_SCALE_HI], 2^-54 .. 2^42.  An e4m3 value
 * times such a scale is a normal at least 2^-63 (a bf16 holds it exactly),
 * the product of two at least 2^-126 (vdpbf16ps flushes nothing) and at
 * most 2^101.6, whose sums stay finite for any K below 2^26; a nonzero
 * e2m1 value (0.5 .. 6) times one lies in [2^-55, 2^44.6], its products
 * with e4m3's in [2^-118, 2^95.4].  pass_lower stages an e4m3 A times its
 * scale clamped into this window (prescale_a, prescales_e2m1_copy;
 * micro_gemm a_prescaled); the tile applies the rest, 1 within it. */
#define IR_FOLD_SCALE_LO 73
#define IR_FOLD_SCALE_HI 169
/* a_decode_order micro_gemm (IrOrder below): beside packed e2m1 B, an
 * f32 A's blocks of IR_E2M1_BLOCK columns are stored 8x8-transposed,
 * the order in which the CPU's byte-table dot tiles decode B
 * (codegen/micro.c, e2m1_t8_parts); such tiles have at most
 * IR_E2M1_TABLE_ROWS rows. */
#define IR_E2M1_BLOCK 64
#define IR_E2M1_TABLE_ROWS 2
/* A micro_gemm with trans_a and a block-scaled B is one of the CPU's
 * broadcast tiles (codegen/micro.c, bcast_gemm), which decode B in chunks
 * of IR_BCAST_CHUNK along K: an f32 A, K a multiple of that chunk, B's
 * scale blocks 32 elements or a multiple of the chunk, at most
 * IR_BCAST_ROWS rows and IR_BCAST_COLS columns of C (unscaled, such a tile
 * may be any shape: codegen takes a scalar loop where these do not hold). */
#define IR_BCAST_CHUNK 64
#define IR_BCAST_ROWS 32
#define IR_BCAST_COLS 16

/* A bf16 a_decode_order A beside packed e2m1 (vdpbf16ps dot tiles,
 * codegen/micro.c, e2m1_pair_part) is stored in blocks of
 * IR_E2M1_PAIR_BLOCK columns, each four parts of 32: column 4w + s of a
 * block at position 32s + w — the order in which 64 bytes of packed e2m1,
 * read as 32 words of four nibbles and shifted right by 4s, become bf16
 * words through one 32-entry word table (vpermw): part s holds nibble s
 * of each word, and f32 lane l of a vdpbf16ps over the parts sums columns
 * 8l .. 8l + 7, so lanes 4L .. 4L + 3 hold the block's 32-column scale
 * block L. */
#define IR_E2M1_PAIR_BLOCK 128
/* ... and such tiles have at most IR_E2M1_PAIR_ROWS rows (each decoded
 * part feeds one vdpbf16ps per row). */
#define IR_E2M1_PAIR_ROWS 8
/* A bf16 a_decode_order A beside e4m3 B (vdpbf16ps dot tiles,
 * codegen/micro.c, e4m3_word_parts) is stored in blocks of
 * IR_E4M3_WORD_BLOCK columns, the even columns first: column 2w + s at
 * position 32s + w — 64 bytes of e4m3 read as 32 words become the bf16
 * words of their low bytes (part 0) and of their high bytes (part 1),
 * each by shifts within the words, with no byte shuffled across them. */
#define IR_E4M3_WORD_BLOCK 64

/* ---------------------------------------------------------------- arena */

typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...);

/* ---------------------------------------------------------- diagnostics */

/* A source position in the user's file (a .lua spec or a printed .tir). */
typedef struct SrcLoc {
    const char *file; /* NULL when unknown */
    int line;
} SrcLoc;

/* The one way tilec reports an error: where, what, and how to fix it.
 * Printed as one line: "file:line: message (hint: ...)". */
typedef struct Diag {
    bool set;
    SrcLoc loc; /* loc.file points at file: the error outlives the kernel that named it */
    char file[256];
    char msg[512];
    char hint[256];
} Diag;

/* Fill d (first error wins) and return false, so callers can
 * `return diag_error(d, loc, "...")`. */
bool diag_error(Diag *d, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_hint(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_print(const Diag *d, FILE *f);
/* The line diag_print writes ("FILE:LINE: message (hint: ...)"), without
 * its newline, into buf. */
const char *diag_format(const Diag *d, char *buf, size_t n);

/* ---------------------------------------------------------------- dtypes */

/* X(ENUM, text, bits, kind) — kind: 'f' float, 'i' signed, 'u' unsigned, 'b' bool.
 * F4E2M1 packs two elements per byte, low nibble first (element 2j in the low
 * nibble).  E8M0 is the unsigned power-of-two scale format (2^(e-127)). */
#define IR_DTYPES(X)                  \
    X(BOOL, "bool", 8, 'b')           \
    X(I8, "i8", 8, 'i')               \
    X(U8, "u8", 8, 'u')               \
    X(I32, "i32", 32, 'i')            \
    X(I64, "i64", 64, 'i')            \
    X(F16, "f16", 16, 'f')            \
    X(BF16, "bf16", 16, 'f')          \
    X(F32, "f32", 32, 'f')            \
    X(F8E4M3, "f8e4m3", 8, 'f')       \
    X(F8E5M2, "f8e5m2", 8, 'f')       \
    X(F4E2M1, "f4e2m1", 4, 'f')       \
    X(E8M0, "e8m0", 8, 'f')

typedef enum DType {
    DT_NONE,
#define X(e, t, b, k) DT_##e,
    IR_DTYPES(X)
#undef X
    DT_COUNT
} DType;

const char *dt_name(DType t);
DType dt_parse(const char *name); /* DT_NONE if unknown */
int dt_bits(DType t);
bool dt_is_float(DType t);
bool dt_is_int(DType t); /* signed or unsigned integer, not bool */
/* Every value of float dtype `from` is exactly one of `to` (a conversion
 * from one to the other never rounds). */
bool dt_widens_exactly(DType from, DType to);
/* Bytes occupied by n elements (F4E2M1: ceil(n/2)). */
size_t dt_storage_bytes(DType t, int64_t n);

/* The order in which A's columns are stored for a CPU dot tile that
 * decodes B of dtype b beside A of dtype a (micro_gemm a_decode_order):
 * in blocks of `block` columns, each `parts` parts of block / parts,
 * column parts·w + s of a block at position (block / parts)·s + w; tiles
 * of at most `rows` rows (0: any).  block 0: no such tile. */
typedef struct IrOrder {
    int64_t block, parts, rows;
} IrOrder;

static inline IrOrder ir_decode_order(DType a, DType b)
{
    if (b == DT_F4E2M1 && a == DT_F32)
        return (IrOrder){IR_E2M1_BLOCK, 8, IR_E2M1_TABLE_ROWS};
    if (b == DT_F4E2M1 && a == DT_BF16)
        return (IrOrder){IR_E2M1_PAIR_BLOCK, 4, IR_E2M1_PAIR_ROWS};
    if (b == DT_F8E4M3 && a == DT_BF16)
        return (IrOrder){IR_E4M3_WORD_BLOCK, 2, 0};
    return (IrOrder){0, 0, 0};
}

/* Where column k is stored in order o, and the column stored at p. */
static inline int64_t ir_order_position(IrOrder o, int64_t k)
{
    int64_t r = k % o.block;
    return k - r + o.block / o.parts * (r % o.parts) + r / o.parts;
}

static inline int64_t ir_order_column(IrOrder o, int64_t p)
{
    int64_t r = p % o.block, w = o.block / o.parts;
    return p - r + o.parts * (r % w) + r / w;
}

/* Exact conversions (ir/dtype.c).  to_f32 is exact for every float dtype;
 * from_f32 rounds to nearest even and saturates fp8 to its max finite value
 * (NaN stays NaN where the format has one). */
float dt_bf16_to_f32(uint16_t h);
uint16_t dt_f32_to_bf16(float f);
float dt_f16_to_f32(uint16_t h);
uint16_t dt_f32_to_f16(float f);
float dt_e4m3_to_f32(uint8_t b);
uint8_t dt_f32_to_e4m3(float f);
float dt_e5m2_to_f32(uint8_t b);
uint8_t dt_f32_to_e5m2(float f);
float dt_e2m1_to_f32(uint8_t nibble);
uint8_t dt_f32_to_e2m1(float f);
float dt_e8m0_to_f32(uint8_t b);
/* The smallest power of two >= f, as a UE8M0 byte (clamped to 2^-127 ..
 * 2^127; 0 encodes as 2^-127, NaN/negative as 255). */
uint8_t dt_f32_to_e8m0(float f);
/* Round f to the nearest value representable in dtype t (for CAST). */
float dt_round_f32(DType t, float f);
/* Element access on raw storage: element i of an array of dtype t. */
double dt_load(DType t, const void *base, int64_t i);
void dt_store(DType t, void *base, int64_t i, double v);

/* ------------------------------------------------------------ variables */

/* A loop or block-index variable (always i64). Names are unique per kernel. */
typedef struct Var {
    const char *name;
    int id;
} Var;

/* A runtime scalar of the kernel: a `dyn` dimension (I64) known only at run
 * time, bound from the argument shapes or given explicitly. */
typedef struct Param {
    const char *name;
    DType dtype;
    int index; /* position in the runtime scalar array */
} Param;

/* A parameter of the spec as the user wrote it: fixed, tunable or dynamic.
 * Fixed and tunable parameters are resolved to a value before IR is built;
 * they are kept so tools (sweeps, caches) can see the kernel's signature.
 * A variant (T.variant{...}) is a KP_TUNE whose value selects what the
 * kernel computes (a dtype, a mode): set like a tune{} one, but never
 * swept, chosen by the spec's choose or taken from a results store — it
 * belongs to the problem, as a size does. */
typedef enum KParamKind { KP_FIXED, KP_TUNE, KP_DYN } KParamKind;

typedef struct KParam {
    const char *name;
    KParamKind kind;
    const char *value; /* chosen value as text ("128", "bf16"); NULL for dyn */
    const char **cands; /* tune candidates as text */
    int ncands;
    Param *dyn; /* KP_DYN only */
    bool picked; /* KP_TUNE: the spec's choose gave the value (not printed) */
    bool variant; /* KP_TUNE: T.variant{...} (see above) */
} KParam;

/* --------------------------------------------------------------- buffers */

typedef enum Scope { SCOPE_GLOBAL, SCOPE_SHARED, SCOPE_FRAGMENT, SCOPE_LOCAL } Scope;
const char *scope_name(Scope s);

typedef enum ArgDir { ARG_NONE, ARG_IN, ARG_OUT, ARG_INOUT } ArgDir;

/* Global buffers are the kernel's tensor arguments (shapes and strides are
 * expressions over dyn params and constants, strides in elements).  Other
 * scopes are per-block scratch with constant shapes, row-major. */
typedef struct Buffer {
    const char *name;
    int id;
    Scope scope;
    DType dtype;
    ArgDir dir; /* globals only */
    int rank;
    struct Expr *shape[IR_MAX_RANK];
    struct Expr *stride[IR_MAX_RANK];
    int align; /* shared scratch: byte alignment of its storage (0: 16) */
    /* an input argument's values from the spec's `inputs`, row-major (in
     * the kernel's arena), which tilec run and sweep give it in place of
     * random numbers; NULL: none */
    const double *sample;
    int64_t nsample;
    SrcLoc loc;
} Buffer;

/* ----------------------------------------------------------- expressions */

/* X(ENUM, text, nargs) — nargs -1: variable (LOAD takes buf->rank indices). */
#define IR_EXPR_OPS(X)            \
    X(CONST, "const", 0)          \
    X(VAR, "var", 0)              \
    X(PARAM, "param", 0)          \
    X(LOAD, "load", -1)           \
    X(ADD, "+", 2)                \
    X(SUB, "-", 2)                \
    X(MUL, "*", 2)                \
    X(DIV, "/", 2)                \
    X(MOD, "%", 2)                \
    X(MIN, "min", 2)              \
    X(MAX, "max", 2)              \
    X(LT, "<", 2)                 \
    X(LE, "<=", 2)                \
    X(EQ, "==", 2)                \
    X(NE, "!=", 2)                \
    X(AND, "and", 2)              \
    X(OR, "or", 2)                \
    X(BAND, "&", 2)               \
    X(BOR, "|", 2)                \
    X(BXOR, "^", 2)               \
    X(SHL, "<<", 2)               \
    X(SHR, ">>", 2)               \
    X(NOT, "not", 1)              \
    X(NEG, "neg", 1)              \
    X(ABS, "abs", 1)              \
    X(EXP, "exp", 1)              \
    X(EXP2, "exp2", 1)            \
    X(LOG, "log", 1)              \
    X(SQRT, "sqrt", 1)            \
    X(RSQRT, "rsqrt", 1)          \
    X(SIGMOID, "sigmoid", 1)      \
    X(SILU, "silu", 1)            \
    X(SOFTPLUS, "softplus", 1)    \
    X(CAST, "cast", 1)            \
    X(BITCAST, "bitcast", 1)      \
    X(SELECT, "select", 3)

typedef enum ExprOp {
#define X(e, t, n) EX_##e,
    IR_EXPR_OPS(X)
#undef X
    EX_COUNT
} ExprOp;

const char *ex_name(ExprOp op);
int ex_nargs(ExprOp op);

typedef struct Expr {
    ExprOp op;
    DType dtype; /* result type; CAST: the target dtype */
    int nargs;
    struct Expr **args;
    union {
        int64_t i; /* CONST of int/bool dtype */
        double f;  /* CONST of float dtype */
    } imm;
    Var *var;     /* VAR */
    Param *param; /* PARAM */
    Buffer *buf;  /* LOAD; args are the indices */
} Expr;

/* ------------------------------------------------------------ statements */

typedef enum LoopKind {
    LOOP_SERIAL,    /* plain sequential loop */
    LOOP_PARALLEL,  /* iterations independent: free to vectorise/distribute */
    LOOP_UNROLL,    /* fully unrolled by codegen (extent must be constant) */
    LOOP_PIPELINED, /* serial, with `arg` stages of prefetch/multi-buffering */
    LOOP_VECTOR,    /* Loop IR only: lanes of `arg` width with masked tail */
} LoopKind;
const char *loop_kind_name(LoopKind k);

typedef enum ReduceOp { RED_SUM, RED_MAX, RED_MIN, RED_ABSMAX } ReduceOp;
const char *reduce_op_name(ReduceOp r);

/* A rectangular window of a buffer: off[d] .. off[d]+ext[d].  Extents are
 * constants (tile shapes are static); offsets are expressions.  Parts of the
 * window outside the buffer's shape are the "tail" (see COPY). */
typedef struct Region {
    Buffer *buf;
    Expr *off[IR_MAX_RANK];
    int64_t ext[IR_MAX_RANK];
} Region;

#define IR_STMT_OPS(X)                                          \
    X(SEQ, "seq")               /* items in order */            \
    X(FOR, "for")               /* loop var in 0..extent */     \
    X(IF, "if")                 /* cond, then, optional else */ \
    X(STORE, "store")           /* buf[idx] = value */          \
    X(COPY, "copy")             /* dst = src (tails: see top) */\
    X(FILL, "fill")             /* dst = value */               \
    X(GEMM, "gemm")             /* c (+)= op(a) . op(b) */      \
    X(REDUCE, "reduce")         /* dst (op)= reduce(src, axis)*/\
    X(ATOMIC_ADD, "atomic_add") /* dst += src, atomically */    \
    X(MICRO_GEMM, "micro_gemm") /* Loop IR: register tile */    \
    X(BARRIER, "barrier")       /* Loop IR with threads: sync */\
    X(ASYNC_COMMIT, "async_commit") /* close a group of async stores */\
    X(ASYNC_WAIT, "async_wait") /* land old groups, then barrier */\
    X(WGMMA_WAIT, "wgmma_wait") /* complete old wgmma groups */\
    X(PREFETCH, "prefetch")     /* Loop IR: buf[idx] is read soon */\
    X(MBAR_INIT, "mbar_init")   /* sm_90a: set up an mbarrier */\
    X(MBAR_EXPECT, "mbar_expect_tx") /* arrive, expecting TMA bytes */\
    X(TMA_LOAD, "tma_load")     /* TMA tile copy onto an mbarrier */\
    X(MBAR_WAIT, "mbar_wait")   /* wait for an mbarrier's phase */\
    X(ONCE, "once")             /* CPU Loop IR: body once per key */

typedef enum StmtOp {
#define X(e, t) ST_##e,
    IR_STMT_OPS(X)
#undef X
    ST_COUNT
} StmtOp;

const char *st_name(StmtOp op);

typedef struct Stmt Stmt;
struct Stmt {
    StmtOp op;
    SrcLoc loc; /* the user's line that made it */
    union {
        struct { Stmt **items; int n, cap; } seq;
        struct { Var *var; Expr *extent; LoopKind kind; int arg; Stmt *body; } loop;
        struct { Expr *cond; Stmt *then_, *else_; } if_;
        /* atomic: buf[idx] += value as one atomic read-modify-write (what
         * ATOMIC_ADD lowers to; blocks of the grid run concurrently).
         * stream (CPU, pass_stream): the store may bypass the cache — a
         * write-once output's; codegen streams it when the buffer is large
         * and aligned at run time. */
        struct { Buffer *buf; Expr **idx; Expr *value; bool atomic, async, stream; } store;
        /* ONCE (CPU Loop IR, made by pass_hoist): body runs unless the
         * block this thread ran before, in the same launch, ran it with
         * the same key (an integer).  The contract, which the pass keeps
         * and the verifier cannot check: body writes only scratch, from
         * read-only inputs and the key's values, so what it leaves there
         * is the same each time the key is; the blocks after it read that
         * scratch without writing it.  Scratch keeps its contents from
         * one block to the next on the CPU (stack arrays per launch of a
         * run of blocks); the interpreter, the meaning, runs body always. */
        struct { Expr *key; Stmt *body; } once;
        struct { Region src, dst; bool async; } copy; /* also ATOMIC_ADD */
        struct { int pending; } wait; /* ASYNC_WAIT, WGMMA_WAIT: groups left in flight */
        struct { Region dst; Expr *value; } fill;
        /* GEMM and MICRO_GEMM.  a: [M,K] ([K,M] if trans_a), b: [K,N] ([N,K]
         * if trans_b), c: [M,N]; clear: c = a.b instead of c += a.b.
         * Inputs are f32, bf16 (or f16/fp8), the accumulator is f32.
         * b_pairs (MICRO_GEMM only): b is packed in k-pairs for dot-product
         * instructions — b's window is [K/2, 2N] and B(k, n) is element
         * [k/2, 2n + k%2] of it.
         * a_scale, b_scale (optional, buf NULL when absent): block scales,
         * e8m0 or f32, one per block of the operand:
         *   C (+)= op(a ⊙ expand(a_scale)) . op(b ⊙ expand(b_scale)).
         * A scale's window has its operand's rank, and divides the
         * operand's window into blocks of ext[d] / scale.ext[d] elements
         * per dimension; element (r, c) of the operand's window (in its
         * storage order, before any trans) is multiplied, as an f32
         * product, by element (r / br, c / bc) of the scale's window.  An
         * element outside either buffer reads 0.  A scaled operand may
         * have any float dtype (packed f4e2m1 included) and rank > 2 with
         * extent 1 in all but its last two dims, which are the matrix.
         * On the GPU only GEMM has scales (lowering dequantises); on the
         * CPU a MICRO_GEMM may have a_scale and b_scale (trans_b, K blocks
         * a multiple of 32 elements, one operand's a multiple of the
         * other's): the dot tile applies them in registers; with trans_a
         * (a broadcast tile) b_scale only, as IR_BCAST_CHUNK says. */
        /* a_lifted (MICRO_GEMM only): A is an f32 copy of fp8 e4m3 values
         * times 2^IR_A_LIFT_EXP, and C (+)= (a · 2^-IR_A_LIFT_EXP) . b: a
         * staged A that lets the CPU's dot tile widen an e4m3 B straight
         * into f32's fields (codegen/micro.c, e4m3_direct), every product
         * of the two still an f32 normal.  Needs trans_b and an e4m3 b. */
        /* a_prescaled (MICRO_GEMM only): A holds its values times its
         * UE8M0 a_scale clamped into [2^(IR_FOLD_SCALE_LO - 127),
         * 2^(IR_FOLD_SCALE_HI - 127)], so that the scale left to apply
         * is a_scale / clamp(a_scale) (1 within the window, NaN for a NaN
         * code): a bf16 copy of e4m3 values with the scale in it as far
         * as bf16 holds it exactly, which lets the CPU's dot tiles fold
         * the scales into their operands (codegen/micro.c, fold_scales).
         * Needs trans_b, a bf16 a and an e8m0 a_scale. */
        /* a_decode_order (MICRO_GEMM only): A is stored in the order in
         * which the CPU's dot tile decodes b (IrOrder, ir_decode_order of
         * the two dtypes): element (i, k) at column ir_order_position(k)
         * (its scale, if any, still column k's).  Needs trans_b, K a
         * multiple of the order's block, at most its rows of C, and for
         * packed e2m1 a block-scaled b: an f32 A in 8x8-transposed blocks
         * of 64, a bf16 A (vdpbf16ps tiles, on targets with has_bf16_dot)
         * in four parts of 32 per 128; beside e4m3 a bf16 A in two parts
         * of 32 per 64, every scale block along K a multiple of 64. */
        /* rows (GEMM only, NULL for all): an integer expression n saying
         * that only C's first n rows are wanted (a tile's rows of one MoE
         * expert, the rows of the last row block that lie inside the
         * matrix).  The others are unspecified afterwards: the interpreter
         * leaves them as they were, the CPU computes whole register bands
         * and stops after the band holding row n - 1, the GPU computes the
         * whole tile.  n is clamped to [0, M].  cols likewise for C's
         * first columns (the last column block's inside the matrix): the
         * CPU's register tiles stop after the tile holding column n - 1. */
        /* desc (MICRO_GEMM of a threaded kernel only, NULL otherwise): the
         * product runs as warpgroup MMAs (wgmma) whose shared operands are
         * read through these 64-bit matrix descriptors (see Threads) —
         * ndesc = 2 * (instructions per warpgroup), A's and B's in turn. */
        struct {
            Region a, b, c;
            Region a_scale, b_scale;
            /* fast_accum (GEMM): 8-bit operands on tensor cores keep the
             * hardware's own running sum (~13 fraction bits) instead of a
             * step's partial products added into C in f32 (pass_lower) */
            bool trans_a, trans_b, clear, b_pairs, a_lifted, a_prescaled, a_decode_order, fast_accum;
            struct Expr *rows, *cols;
            struct Expr **desc;
            int ndesc;
        } gemm;
        /* MBAR_INIT (arg: arrival count), MBAR_EXPECT (arg: bytes),
         * MBAR_WAIT (arg: parity), TMA_LOAD (src, dst, swizzle): the
         * mbarrier is element bar[slot]; see "TMA" at the top. */
        struct { Region src, dst; Buffer *bar; struct Expr *slot, *arg; int swizzle; } mbar;
        /* dst has src's rank minus one (axis removed).  clear: dst = r
         * instead of dst = dst (op) r. */
        struct { Region src, dst; int axis; ReduceOp rop; bool clear; } reduce;
    } u;
};

/* ---------------------------------------------------------------- kernel */

typedef enum IRLevel { LEVEL_TILE, LEVEL_LOOP } IRLevel;

typedef struct Kernel {
    Arena *arena;
    const char *name;
    SrcLoc loc;
    IRLevel level;

    KParam *kparams; /* the spec's parameters, in declaration order */
    int nkparams;
    Param **params; /* runtime scalars (dyn dims), index order */
    int nparams;

    Buffer **bufs; /* arguments first (nargs of them), then scratch buffers */
    int nbufs, nargs;

    int ngrid; /* block grid: 1..3 dimensions, outermost first */
    Var *grid_var[IR_MAX_GRID];
    Expr *grid[IR_MAX_GRID];

    int nthreads;    /* threads per block (GPU Loop IR); 0: one logical thread */
    int block_threads; /* GPU threads per block the spec asks for (0: the target chooses) */
    Var *thread_var; /* the thread index when nthreads > 0 */

    bool inputs_unset; /* the spec has `inputs`, not taken: a dyn size had no value */
    Stmt *body; /* a SEQ, run once per block (per thread when nthreads > 0) */
    Var **vars; /* every variable made by ir_var_new (names unique) */
    int nvars;
    int next_id;
} Kernel;

/* ------------------------------------------------------------- builders */
/* ir/build.c.  Builders never fail on well-typed input; the frontend checks
 * the user's shapes and types first and reports with source lines. */

Kernel *ir_kernel_new(const char *name, SrcLoc loc);
void ir_kernel_free(Kernel *k);

KParam *ir_kparam_add(Kernel *k, const char *name, KParamKind kind, const char *value);
KParam *ir_kparam_find(const Kernel *k, const char *name); /* NULL if k has none of that name */
void ir_kparam_cand(Kernel *k, KParam *p, const char *cand);
Param *ir_param_add(Kernel *k, const char *name, DType dtype);
Param *ir_param_find(const Kernel *k, const char *name);

/* Argument with row-major strides over the given shape. */
Buffer *ir_arg_add(Kernel *k, const char *name, DType dt, ArgDir dir, int rank,
                   Expr *const *shape, SrcLoc loc);
Buffer *ir_buf_add(Kernel *k, const char *name, Scope scope, DType dt, int rank,
                   const int64_t *shape, SrcLoc loc);
Buffer *ir_buf_find(const Kernel *k, const char *name);
/* A new variable; the name is made unique within k (i, i_1, i_2, ...). */
Var *ir_var_new(Kernel *k, const char *name);
Var *ir_var_find(const Kernel *k, const char *name);
void ir_set_grid(Kernel *k, int n, Var *const *vars, Expr *const *extents);
/* Make k a threaded kernel: n threads per block, index variable v. */
void ir_set_threads(Kernel *k, int n, Var *v);

Expr *ir_const_i(Kernel *k, int64_t v);           /* I64 */
Expr *ir_const_f(Kernel *k, double v);            /* F32 */
Expr *ir_const_bool(Kernel *k, bool v);
Expr *ir_var(Kernel *k, Var *v);
Expr *ir_param(Kernel *k, Param *p);
Expr *ir_load(Kernel *k, Buffer *b, Expr *const *idx);
/* Unary/binary ops with the promotion rules at the top of this file;
 * integer constants, their comparisons and and/or with a constant side are
 * folded. */
Expr *ir_unary(Kernel *k, ExprOp op, Expr *a);
Expr *ir_binary(Kernel *k, ExprOp op, Expr *a, Expr *b);
Expr *ir_select(Kernel *k, Expr *c, Expr *a, Expr *b);
Expr *ir_cast(Kernel *k, DType to, Expr *a);
/* Reinterpret bits: f32 <-> i32 only (checked by the verifier). */
Expr *ir_bitcast(Kernel *k, DType to, Expr *a);
bool ir_expr_is_const(const Expr *e, int64_t *out); /* integer constant? */
bool ir_expr_equal(const Expr *a, const Expr *b);

Stmt *ir_seq(Kernel *k, SrcLoc loc);
void ir_seq_push(Kernel *k, Stmt *seq, Stmt *s);
Stmt *ir_for(Kernel *k, Var *v, Expr *extent, LoopKind kind, int arg, Stmt *body, SrcLoc loc);
Stmt *ir_if(Kernel *k, Expr *cond, Stmt *then_, Stmt *else_, SrcLoc loc);
Stmt *ir_once(Kernel *k, Expr *key, Stmt *body, SrcLoc loc);
Stmt *ir_store(Kernel *k, Buffer *b, Expr *const *idx, Expr *value, SrcLoc loc);
/* A hint that the cache line holding buf[idx] is read soon (u.store, no
 * value): no effect on results, out-of-bounds indices allowed. */
Stmt *ir_prefetch(Kernel *k, Buffer *b, Expr *const *idx, SrcLoc loc);
Stmt *ir_copy(Kernel *k, Region src, Region dst, SrcLoc loc);
Stmt *ir_fill(Kernel *k, Region dst, Expr *value, SrcLoc loc);
Stmt *ir_gemm(Kernel *k, Region a, Region b, Region c, bool trans_a, bool trans_b,
              bool clear, SrcLoc loc);
Stmt *ir_micro_gemm(Kernel *k, Region a, Region b, Region c, bool trans_a, bool trans_b,
                    bool clear, SrcLoc loc);
Stmt *ir_reduce(Kernel *k, Region src, Region dst, int axis, ReduceOp rop, bool clear,
                SrcLoc loc);
Stmt *ir_atomic_add(Kernel *k, Region src, Region dst, SrcLoc loc);
Stmt *ir_barrier(Kernel *k, SrcLoc loc);
Stmt *ir_async_commit(Kernel *k, SrcLoc loc);
Stmt *ir_async_wait(Kernel *k, int pending, SrcLoc loc);
Stmt *ir_wgmma_wait(Kernel *k, int pending, SrcLoc loc);
/* TMA and mbarriers (see "TMA" at the top). */
Stmt *ir_mbar_init(Kernel *k, Buffer *bar, Expr *slot, int64_t count, SrcLoc loc);
Stmt *ir_mbar_expect(Kernel *k, Buffer *bar, Expr *slot, int64_t bytes, SrcLoc loc);
Stmt *ir_mbar_wait(Kernel *k, Buffer *bar, Expr *slot, Expr *parity, SrcLoc loc);
Stmt *ir_tma_load(Kernel *k, Region src, Region dst, Buffer *bar, Expr *slot, int swizzle, SrcLoc loc);
/* The TMA box of a TMA_LOAD (outermost first, as shapes are written): its
 * window, or with a swizzle one W-byte column of it; returns how many boxes
 * along the innermost dimension make the window. */
int64_t ir_tma_box(const Stmt *s, int64_t *box);
/* Byte b of a W-byte swizzled layout (W 32, 64, 128; 0: none) is stored
 * at the returned byte: 16-byte chunk bits 4.. XORed with bits 7.. */
int64_t ir_swizzle_byte(int64_t b, int W);

/* Deep copies (ir/clone.c): how a pass repeats a piece of a kernel.  In
 * the copy, variable var[i] reads as a copy of by[i], buffer from[i] is
 * replaced by to[i] and scalar pfrom[i] by pto[i]; loops get fresh
 * variables (a variable is defined once per kernel).  With every variable,
 * buffer and scalar mapped, the source may be another kernel (how
 * ir/compose.c joins two). */
typedef struct IrSubst {
    const Var *var[32];
    Expr *by[32];
    int nvars;
    const Buffer *from[64];
    Buffer *to[64];
    int nbufs;
    const Param *pfrom[8];
    Param *pto[8];
    int nparams;
} IrSubst;
Expr *ir_clone_expr(Kernel *k, const Expr *e, const IrSubst *sub);
Stmt *ir_clone_stmt(Kernel *k, const Stmt *s, const IrSubst *sub);

/* How often s reads and writes buffer b, counted statically (a statement
 * in a loop counts once): regions, loads and stores, added to *u; of the
 * stores, the atomic ones and those marked stream. */
typedef struct IrUse {
    int reads, writes, atomics, streamed;
} IrUse;
void ir_buffer_use(const Stmt *s, const Buffer *b, IrUse *u);
/* Is every load of b in e at index tuple idx (structurally equal)? */
bool ir_loads_only_at(const Expr *e, const Buffer *b, Expr *const *idx);
/* Does e load from b (from any buffer)?  Does it use variable v? */
bool ir_loads_from(const Expr *e, const Buffer *b);
bool ir_loads_any(const Expr *e);
bool ir_mentions_var(const Expr *e, const Var *v);
/* Is e v itself or v + x with x free of v (terms in any order): distinct
 * values of v, distinct values of e, one apart? */
bool ir_var_plus(const Expr *e, const Var *v);
/* Is s (or a one-statement sequence of it) a reduction step
 * `acc[c] = acc[c] op e` — op +, max or min, acc a one-dimensional LOCAL
 * f32 or i32 buffer, c a constant, e not reading acc?  *op gets the op. */
bool ir_reduction_step(const Stmt *s, ExprOp *op);
/* An integer interval lo..hi (known false: could be anything). */
typedef struct IrRange {
    int64_t lo, hi;
    bool known;
} IrRange;
/* The interval of integer expression e (ir/range.c) from those of its
 * leaves, which leaf(VAR or PARAM expression, ctx) gives: + - * min max
 * select, and floor / and % by positive constants; anything else (loads,
 * floats, overflow) is unknown. */
IrRange ir_range_of(const Expr *e, IrRange (*leaf)(const Expr *, void *), void *ctx);
/* The least value of Σ sign[i]·e[i] over n integer expressions, terms that
 * cancel dropped before their ranges (ir_range_of's, with leaf) are used;
 * false when some remaining term's range is unknown. */
bool ir_least_of_sum(const Expr *const *e, const int64_t *sign, int n, IrRange (*leaf)(const Expr *, void *), void *ctx,
                     int64_t *lo);
/* Remove the scratch buffers the body no longer reads or writes. */
void ir_drop_unused_buffers(Kernel *k);
/* The whole of a scratch buffer (offsets 0, extents = its shape). */
Region ir_region_whole(Kernel *k, Buffer *b);
/* Is r all of its (static-shaped) buffer, from offset 0? */
bool ir_region_is_whole(const Region *r);
/* Region rank is its buffer's rank. Number of elements of the window. */
int64_t ir_region_elems(const Region *r);

/* ------------------------------------------------- printer, parser, verifier */

/* The printed form is the IR's text interface: ir_parse(ir_print(k)) prints
 * identically.  ir/print.c, ir/parse.c. */
void ir_print(const Kernel *k, FILE *f);
/* The same with "  # file:line" after the kernel line, each buffer and each
 * statement (the parser reads them back into the locations). */
void ir_print_locs(const Kernel *k, FILE *f);
char *ir_print_string(const Kernel *k); /* malloc'd */
void ir_print_expr(const Expr *e, FILE *f);
Kernel *ir_parse(const char *text, const char *filename, Diag *d);
/* A file of printed IR (a .tir), parsed and verified; errors name the file
 * and line. */
Kernel *ir_parse_file(const char *path, Diag *d);

/* Structural and type checks; run after every pass (ir/verify.c). */
bool ir_verify(const Kernel *k, Diag *d);

/* --------------------------------------------------------------- targets */

/* What passes need to know of a target; codegen has the rest. */
typedef struct TargetInfo {
    const char *name;         /* "x86-avx512", "x86-avx2", ... */
    const char *llvm_triple;
    const char *llvm_cpu;     /* NULL: host */
    const char *llvm_features;
    int vector_bits;          /* 512, 256 */
    bool has_bf16_dot;        /* vdpbf16ps, where it is faster than FMAs (the host: AMD's) */
    int64_t max_fragment_bytes;
    int micro_m, micro_n;     /* register tile of MICRO_GEMM (f32 accumulators) */
    /* A dot-product MICRO_GEMM (trans_b: few rows, B [N, K] read in place)
     * keeps dot_m x dot_n accumulators, dot_m A vectors and a B vector in
     * the vector registers. */
    int dot_m, dot_n;
    /* L1 data cache of one core, for tiles that must stay in it, and its
     * L2.  A named target (ir_target) holds the smallest core of the kind
     * (x86: 32 KiB and 512 KiB, Zen 2-4; Skylake-SP has 1 MiB of L2, later
     * Intel cores 48 KiB of L1), so code compiled for it is the same on
     * every machine; the host target (ir_host_target) this machine's. */
    int64_t l1_bytes;
    int64_t l2_bytes;
    /* Whether an FMA with a subnormal f32 operand takes a microcode assist
     * (Intel cores: ~100 cycles each, unless DAZ/FTZ, which the exact fp8
     * formats cannot have): then no tile may widen values into f32
     * subnormals (codegen/micro.c's e4m3_direct, for one).  The named
     * targets assume it, so their code has no such cliff on any core of
     * the kind (what that costs AMD's, which run subnormals at full speed:
     * fp8_gemm 4096^2 on Zen 3, one thread, M = 1 1.20-1.38 -> 1.65-1.93
     * ms, M = 16 9.12-9.16 -> 10.05-10.16); the host target knows. */
    bool subnormal_assists;
    /* Whether the core runs a 512-bit operation as two 256-bit halves
     * (AMD's Zen 4): a zmm instruction then costs two issue slots, so a
     * tile with fewer instructions per weight wins over one that keeps more
     * independent chains (fp8 decode at one row in vdpbf16ps pairs rather
     * than widened to f32 for FMAs, lower_gemm's e4m3_pairs).  The named
     * targets assume full-width units; the host target knows. */
    bool split_512;
    /* Whether the core's prefetchers serve one sequential stream of weight
     * rows far better than a few interleaved ones (AMD's Zen 4: a C loop
     * reading 4 neighbouring rows of 2 KiB at a time drew 10-12 GB/s from
     * DRAM on one thread, of 4 KiB 18, one sequential stream 27): a GEMM
     * at one row of A then reads one weight row at a time (lowering's
     * dot_cols_of) and leaves the next one to the hardware's prefetch
     * (codegen/micro.c).  The named targets assume not; the host target
     * knows. */
    bool one_stream;
    /* The size from which a write-once output is written with non-temporal
     * stores (pass_stream): larger than the L2s and the L3 share of the
     * threads that write it, where it would not be found by the kernel
     * that reads it next anyway; a smaller one stays in the cache. */
    int64_t stream_bytes;
    /* GPU targets (gpu_sm > 0): the block grid maps to CTAs of
     * gpu_threads threads; shared buffers live in the CTA's shared memory. */
    int gpu_sm;               /* 90 for sm_90a, 80 for sm_80; 0: a CPU */
    int gpu_threads;          /* threads per CTA */
    int64_t max_shared_bytes; /* per CTA, with the opt-in for large blocks */
} TargetInfo;

const TargetInfo *ir_target(const char *name); /* NULL if unknown */
const char *ir_target_names(void);             /* "x86-avx512, x86-avx2" */
/* Best target this CPU can run (checks cpuid), with this machine's L1 and
 * L2 sizes (ir_read_caches) where Linux reports sane ones, else the named
 * target's: what `tilec run` and `compile` use without --target. */
const TargetInfo *ir_host_target(void);
/* Whether ir_host_target's L1 and L2 sizes are this machine's (else the
 * named target's: sysfs unreadable, or figures out of range). */
bool ir_host_caches_read(void);
/* The cache sizes of a CPU as Linux reports them in sysfs_cpu (normally
 * "/sys/devices/system/cpu/cpu0"): cache/index* with level, type and size
 * ("32K"; K, M and G suffixes).  0 for a level not found or not parsed. */
typedef struct HostCaches {
    int64_t l1d, l2, l3;
} HostCaches;
HostCaches ir_read_caches(const char *sysfs_cpu);
bool ir_target_runs_here(const TargetInfo *t);

/* ------------------------------------------------------- GPU layouts */

/* How the threads of a block share an [m, n] f32 accumulator of tensor-core
 * products (PTX mma.m16n8k16, whose C fragment gives thread `lane` of a warp
 * rows lane/4 and lane/4 + 8, columns 2(lane%4) and 2(lane%4) + 1 of each
 * 16x8 piece): the warps form a wm x wn grid, each owning an (m/wm) x (n/wn)
 * tile of mt x nt pieces; a thread holds slots = 4 mt nt values, slot
 * s = 4 (i_mt nt + i_nt) + c. */
typedef struct MmaLayout {
    int64_t m, n;
    int nthreads, wm, wn, mt, nt;
    int64_t slots;
    /* warps per unit of the wm x wn grid: 1 (mma.sync, 16-row pieces), or 4
     * for a wgmma warpgroup, whose warp w owns rows 16w..16w+15 of each
     * 64-row piece (the rest of the fragment is the m16n8 one); wg_n: the
     * n of one wgmma (0 for mma.sync), nq = n / wn / wg_n of them per row
     * of pieces.  The position formula is the same: unit u = warp / unit,
     * i = (u / wn) (m / wm) + 16 unit pmt + 16 (warp % unit) + lane / 4 + 8 (c / 2). */
    int unit, wg_n, nq;
} MmaLayout;

/* The layout for an [m, n] accumulator over nthreads threads (a multiple of
 * 32); false if m, n do not tile into 16x8 pieces over the warps. */
bool ir_mma_layout(int64_t m, int64_t n, int nthreads, MmaLayout *l);
/* The same for wgmma on sm_90a: nthreads a multiple of 128, warpgroups in
 * a grid whose tiles split into 64-row pieces and columns that one wgmma
 * (n a multiple of 8, at most 256, the largest dividing them) covers. */
bool ir_wgmma_layout(int64_t m, int64_t n, int nthreads, MmaLayout *l);
/* Row i and column j of the element that slot `slot` of thread tid holds. */
void ir_mma_pos(const MmaLayout *l, int64_t tid, int64_t slot, int64_t *i, int64_t *j);
/* The k extent of one tensor-core mma for operands of dtype dt on target t
 * (16 for bf16/f16 from sm_80, 32 for fp8 e4m3/e5m2 from sm_89), or 0 when
 * its tensor cores do not take dt (or t is a CPU). */
int ir_mma_k(const TargetInfo *t, DType dt);
/* Elements the storage of a scratch buffer spans (padded strides included). */
int64_t ir_buf_span(const Buffer *b);
/* Byte offset of shared buffer b in the block's shared array (buffers in
 * order, each aligned to max(16, align)); ir_shared_bytes: the array's size. */
int64_t ir_shared_offset(const Kernel *k, const Buffer *b);
int64_t ir_shared_bytes(const Kernel *k);

/* ----------------------------------------------------------- interpreter */

/* Run a kernel (either level) on the CPU, block after block, with the exact
 * value semantics at the top of this file.  args[i] points at the storage of
 * argument i (dtype and strides as the kernel declares); params[i] is the
 * value of runtime scalar i.  ir/interp.c. */
bool ir_interp(const Kernel *k, void *const *args, const int64_t *params, Diag *d);

/* -------------------------------------------------------------- helpers */

/* Evaluate an integer expression over params only (grid sizes, shapes). */
bool ir_eval_int(const Expr *e, const int64_t *params, int64_t *out);
/* Elements of b's shape at the dyn sizes params; -1 if it cannot be evaluated. */
int64_t ir_buf_elems(const Buffer *b, const int64_t *params);

/* ------------------------------------------------------- composition */

/* One tensor a composition connects: the producer's output `out` feeds
 * the consumer's input `in`. */
typedef struct ComposeVia {
    const char *out, *in;
} ComposeVia;
/* T.compose: fill k (name, parameters and scalars already set) with one
 * kernel computing what producer P then consumer C compute, each `via`
 * tensor a block-local buffer instead of an argument; false with d at k's
 * line naming why when that is not legal (see ir/compose.c).  Tile IR. */
bool ir_compose(Kernel *k, const Kernel *P, const Kernel *C, const ComposeVia *via, int nvia, Diag *d);

#endif
