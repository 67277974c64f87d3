/* v4ops.c — the V4 operator table at Flash decode shapes (v4ops.h). */
#include "bench/v4ops.h"

#include <stdlib.h>
#include <string.h>

/* Flash (v4-spec §1) decode: 16 tokens. */
const V4Op v4_ops[] = {
    {"kernels_src/act_quant.lua", {{"K", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/rmsnorm_quant.lua", {{"D", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/hc_pre.lua", {{"D", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/hc_post.lua", {{"D", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/hc_post_pre.lua", {{"D", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/hc_head.lua", {{"D", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/q_norm.lua", {{"H", "64"}, {"HD", "512"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/rope.lua", {{"H", "64"}, {"D", "512"}, {"P", "4096"}}, {{0}}, {{"pos", "4096"}}, 16, NULL, 0},
    {"kernels_src/kv_fp8_sim.lua", {{"D", "512"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/hadamard.lua", {{"N", "128"}}, {{0}}, {{0}}, 16 * 64, NULL, 0},
    {"kernels_src/fp4_act_quant.lua", {{"K", "128"}}, {{0}}, {{0}}, 16 * 64, NULL, 0},
    {"kernels_src/indexer_logits.lua", {{"N", "4096"}}, {{0}}, {{"pos", "16384"}}, 16, NULL, 0},
    {"kernels_src/topk.lua", {{"N", "4096"}, {"K", "512"}}, {{0}}, {{0}}, 16, NULL, 0},
    /* all 64 heads per block, as choose picks at 16 known rows */
    {"kernels_src/sparse_attn.lua", {{"H", "64"}, {"D", "512"}, {"L", "640"}, {"NKV", "65664"}}, {{"BH", "64"}},
     {{"idx", "65664"}}, 16, NULL, 0},
    {"kernels_src/grouped_oproj.lua", {{"G", "8"}, {"R", "1024"}, {"GD", "4096"}}, {{0}}, {{0}}, 16, NULL, 0},
    /* decode row blocks of 16 (M is a run-time scalar here): the spec's
     * choose then picks the dot tiles' weight rows per block and K step
     * for the target (128 rows per block, its first candidates, ran 30.9
     * against 21.7 ms at 16 on the AVX2 host) */
    {"kernels_src/fp8_gemm.lua", {{"N", "4096"}, {"K", "4096"}}, {{"BM", "16"}}, {{0}}, 16, NULL, 0},
    {"kernels_src/moe_gate.lua", {{"D", "4096"}, {"E", "256"}}, {{0}}, {{0}}, 16, NULL, 0},
    {"kernels_src/swiglu_quant.lua", {{"I", "2048"}}, {{0}}, {{0}}, 16 * 6, NULL, 0},
    {"kernels_src/compress.lua", {{"T", "128"}, {"ratio", "4"}, {"D", "512"}}, {{0}}, {{0}}, 0, NULL, 0},
    {"kernels_src/topk_long.lua", {{"N", "262144"}, {"K", "1024"}}, {{0}}, {{0}}, 16, NULL, 0},
    /* a GEMV: 32 head rows per block, each read start to end (BK = D), as
     * bench_decode's bf16 rows (V 32768, one thread: 16.6 ms against 29 at
     * BV 256, BK 256) */
    {"kernels_src/lm_head.lua", {{"V", "129280"}, {"D", "4096"}}, {{"BM", "1"}, {"BV", "32"}, {"BK", "4096"}}, {{0}}, 1,
     NULL, 0},
    {"kernels_src/moe_count.lua", {{"E", "256"}}, {{0}}, {{"idx", "256"}}, 16, NULL, 0},
    {"kernels_src/moe_offsets.lua", {{"E", "256"}}, {{0}}, {{0}}, 16, NULL, 0},
    /* its bases laid out as moe_offsets would (layout_bases) */
    {"kernels_src/moe_place.lua", {{"E", "256"}}, {{0}}, {{"idx", "256"}}, 16, NULL, 0},
    {"kernels_src/moe_gather.lua", {{"D", "4096"}}, {{0}}, {{"src", "16"}}, 16, NULL, 0},
    /* the expert GEMMs: 16 tokens x top-6 rows over 8 experts (12 each), in
     * one 16-row tile per expert whose GEMMs compute its 12 rows (rows):
     * moe_gemm_swiglu 96 against 181 ms in 4-row tiles, moe_expert_gemm 46
     * against 67 */
    {"kernels_src/moe_gemm_swiglu.lua", {{"E", "8"}, {"I", "2048"}, {"K", "4096"}}, {{"BM", "16"}}, {{0}}, 16 * 6, NULL, 0},
    {"kernels_src/moe_expert_gemm.lua", {{"E", "8"}, {"N", "4096"}, {"K", "2048"}}, {{"BM", "16"}}, {{0}}, 16 * 6, NULL, 0},
    {"kernels_src/moe_combine.lua", {{"D", "4096"}, {"shared", "add"}, {"out_dtype", "bf16"}}, {{0}}, {{"row", "96"}}, 16, NULL, 0},
    /* The compressors (v4-spec §3.4.1), one spec in several configurations,
     * so each row is labelled: the projections of 16 tokens (attention CSA
     * reads 2 x [1024, 4096] bf16 weights, HCA 2 x [512, 4096], the
     * indexer's 2 x [256, 4096]); one decode token at a block's last
     * position (m is the position: the step that pools the block and emits
     * an entry); the fused prefill of the 128 tokens compress.lua pools
     * above.  The decode rows' bytes count the whole cache [1024, 512] and
     * cos/sin table they index. */
    {"kernels_src/compress_proj.lua", {{"d", "4096"}, {"D", "512"}, {"ratio", "4"}}, {{0}}, {{0}}, 16,
     "compress_proj attn CSA", 16},
    {"kernels_src/compress_proj.lua", {{"d", "4096"}, {"D", "512"}, {"ratio", "128"}}, {{0}}, {{0}}, 16,
     "compress_proj attn HCA", 16},
    {"kernels_src/compress_proj.lua", {{"d", "4096"}, {"D", "128"}, {"kind", "index"}}, {{0}}, {{0}}, 16,
     "compress_proj indexer", 16},
    {"kernels_src/compress_decode.lua", {{"D", "512"}, {"ratio", "4"}}, {{0}}, {{0}}, 15, "compress_decode attn CSA, emit", 1},
    {"kernels_src/compress_decode.lua", {{"D", "512"}, {"ratio", "128"}}, {{0}}, {{0}}, 127,
     "compress_decode attn HCA, emit", 1},
    {"kernels_src/compress_decode.lua", {{"D", "128"}, {"kind", "index"}}, {{0}}, {{0}}, 15,
     "compress_decode indexer, emit", 1},
    {"kernels_src/compress_decode.lua", {{"D", "512"}, {"ratio", "4"}}, {{0}}, {{0}}, 14,
     "compress_decode attn CSA, no emit", 1},
    {"kernels_src/compress_prefill.lua", {{"D", "512"}, {"ratio", "4"}}, {{0}}, {{0}}, 128, "compress_prefill attn CSA", 128},
};

const size_t v4_nops = sizeof v4_ops / sizeof v4_ops[0];

const char *v4_op_name(const V4Op *op)
{
    return op->label ? op->label : op->spec + strlen("kernels_src/");
}

int64_t v4_op_tokens(const V4Op *op) { return op->label ? op->tokens : op->m; }

int v4_op_sets(const V4Op *op, bool cpu_tiles, FeSet *out)
{
    int n = 0;
    for (int i = 0; i < V4OP_MAX_SETS && op->sets[i][0]; i++)
        out[n++] = (FeSet){op->sets[i][0], op->sets[i][1]};
    for (int i = 0; cpu_tiles && i < V4OP_MAX_SETS && op->tiles[i][0]; i++)
        out[n++] = (FeSet){op->tiles[i][0], op->tiles[i][1]};
    return n;
}

/* The expert GEMMs take per-expert row counts and offsets (int32 [E], named
 * cnt and off): the m rows spread evenly, so every expert has work. */
static void spread_rows(const Kernel *k, int64_t m, void **args)
{
    int32_t *cnt = NULL, *off = NULL;
    int64_t E = 0;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dtype != DT_I32 || b->rank != 1 || !ir_expr_is_const(b->shape[0], &E))
            continue;
        if (!strcmp(b->name, "cnt"))
            cnt = args[i];
        else if (!strcmp(b->name, "off"))
            off = args[i];
    }
    for (int64_t e = 0, at = 0; cnt && off && e < E; e++) {
        cnt[e] = (int32_t)(m / E + (e < m % E));
        off[e] = (int32_t)at;
        at += cnt[e];
    }
}

/* The expert GEMMs' row layout for moe_place (its bases, int32 [blocks,
 * E], named base, beside its expert ids idx [M, TOPK]): the rows of each
 * expert in block order, the experts one after another, as moe_offsets
 * makes them.  Then every row 0 .. M*TOPK-1 is written once; with
 * other bases the blocks' rows collide or leave rows unwritten, and the
 * CPU's and the GPU's outputs differ where neither is defined. */
static void layout_bases(const Kernel *k, const int64_t *params, void **args)
{
    const Buffer *bb = NULL, *ib = NULL;
    int32_t *base = NULL, *idx = NULL;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dtype == DT_I32 && b->rank == 2 && !strcmp(b->name, "base"))
            bb = b, base = args[i];
        else if (b->dtype == DT_I32 && b->rank == 2 && !strcmp(b->name, "idx"))
            ib = b, idx = args[i];
    }
    int64_t blocks, E, M, topk;
    if (!bb || !ib || !ir_eval_int(bb->shape[0], params, &blocks) || !ir_eval_int(bb->shape[1], params, &E) ||
        !ir_eval_int(ib->shape[0], params, &M) || !ir_eval_int(ib->shape[1], params, &topk) || blocks < 1)
        return;
    int64_t bt = (M + blocks - 1) / blocks, at = 0; /* tokens per block */
    for (int64_t e = 0; e < E; e++)
        for (int64_t b = 0; b < blocks; b++) {
            base[b * E + e] = (int32_t)at;
            for (int64_t q = b * bt * topk; q < (b + 1) * bt * topk && q < M * topk; q++)
                at += idx[q] == e;
        }
}

/* An integer input named in op's ints: element j at a spread of [0, bound). */
static int64_t int_bound(const V4Op *op, const Buffer *b)
{
    for (int i = 0; i < 2 && op->ints[i][0]; i++)
        if (!strcmp(op->ints[i][0], b->name))
            return atoll(op->ints[i][1]);
    return 0;
}

size_t v4_make_args(const V4Op *op, const Kernel *k, const int64_t *params, void **args, size_t *bytes)
{
    size_t total = 0;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        int64_t n = ir_buf_elems(b, params);
        bytes[i] = dt_storage_bytes(b->dtype, n);
        args[i] = aligned_alloc(64, (bytes[i] + 127) / 64 * 64);
        memset(args[i], 0, bytes[i]);
        int64_t bound = int_bound(op, b);
        if (dt_is_float(b->dtype))
            for (int64_t j = 0; j < n; j++)
                dt_store(b->dtype, args[i], j, b->dtype == DT_E8M0 ? 1.0 : (double)((j * 7) % 13) / 13 - 0.5);
        else if (bound > 0)
            for (int64_t j = 0; j < n; j++)
                dt_store(b->dtype, args[i], j, (double)((j * 2654435761u + 12345) % (uint64_t)bound));
        total += bytes[i];
    }
    spread_rows(k, k->nparams ? params[0] : 0, args);
    layout_bases(k, params, args);
    return total;
}
