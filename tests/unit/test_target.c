/* test_target.c — the host target's cache sizes (ir/target.c).
 *
 *   ir_read_caches reads a sysfs tree's cache/index* entries (a tree built
 *   here: sizes with K and M suffixes, instruction caches skipped) and reads
 *   a malformed or missing entry as 0;
 *   ir_host_target plans with this machine's L1 and L2 where sysfs gives
 *   sane ones, else with the named target's, and differs from it in
 *   nothing else;
 *   the passes plan with the figures they are given: pass_hoist keeps a
 *   GEMM's A staging once per row block only while it fits the L2;
 *   an Intel AVX-512 host (subnormal assists, no vdpbf16ps: what
 *   ir_host_target makes of one) compiles the decode GEMMs without f32
 *   subnormals or vdpbf16ps — the device's Xeon runs them, this host
 *   cannot. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

/* dir/index<i>/{level,type,size}; a NULL field is left out. */
static void cache_entry(const char *dir, int i, const char *level, const char *type, const char *size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/cache", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cache/index%d", dir, i);
    mkdir(path, 0700);
    const char *names[3] = {"level", "type", "size"}, *values[3] = {level, type, size};
    for (int f = 0; f < 3; f++) {
        if (!values[f])
            continue;
        char file[600];
        snprintf(file, sizeof file, "%s/%s", path, names[f]);
        FILE *fp = fopen(file, "w");
        fprintf(fp, "%s\n", values[f]);
        fclose(fp);
    }
}

static void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

TEST(caches_are_read_from_a_sysfs_tree)
{
    char dir[] = "/tmp/tilec_sysfs_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cache_entry(dir, 0, "1", "Data", "48K");
    cache_entry(dir, 1, "1", "Instruction", "32K");
    cache_entry(dir, 2, "2", "Unified", "2048K");
    cache_entry(dir, 3, "3", "Unified", "105M");
    HostCaches hc = ir_read_caches(dir);
    CHECK(hc.l1d == 48 << 10);
    CHECK(hc.l2 == 2 << 20);
    CHECK(hc.l3 == 105LL << 20);
    remove_tree(dir);
}

TEST(malformed_or_missing_entries_read_as_zero)
{
    char dir[] = "/tmp/tilec_sysfs_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cache_entry(dir, 0, "1", "Data", "32 K");   /* not a size */
    cache_entry(dir, 1, "2", "Unified", NULL);  /* no size */
    cache_entry(dir, 2, "3", "Unified", "-4K"); /* negative */
    HostCaches hc = ir_read_caches(dir);
    CHECK(hc.l1d == 0 && hc.l2 == 0 && hc.l3 == 0);
    cache_entry(dir, 0, "1", "Data", "12Q");
    cache_entry(dir, 1, "2", "Unified", "");
    cache_entry(dir, 2, "3", "Unified", "99999999999999G");
    hc = ir_read_caches(dir);
    CHECK(hc.l1d == 0 && hc.l2 == 0 && hc.l3 == 0);
    remove_tree(dir);
    hc = ir_read_caches("/nonexistent/cpu0");
    CHECK(hc.l1d == 0 && hc.l2 == 0 && hc.l3 == 0);
}

TEST(the_host_target_plans_with_this_machines_caches)
{
    const TargetInfo *host = ir_host_target(), *named = host ? ir_target(host->name) : NULL;
    if (!host) {
        printf("  skipped: this CPU runs no CPU target\n");
        return;
    }
    CHECK(named && named != host);
    CHECK(named->l1_bytes == 32 << 10 && named->l2_bytes == 512 << 10); /* fixed: the smallest core of the kind */
    HostCaches hc = ir_read_caches("/sys/devices/system/cpu/cpu0");
    bool sane = hc.l1d >= 8 << 10 && hc.l1d <= 1 << 20 && hc.l2 >= 128 << 10 && hc.l2 <= 64 << 20;
    CHECK(ir_host_caches_read() == sane);
    CHECK(host->l1_bytes == (sane ? hc.l1d : named->l1_bytes));
    CHECK(host->l2_bytes == (sane ? hc.l2 : named->l2_bytes));
    CHECK(named->subnormal_assists); /* code for any core of the kind */
    CHECK(host->subnormal_assists == !__builtin_cpu_is("amd"));
    CHECK(host->has_bf16_dot == (named->has_bf16_dot && __builtin_cpu_is("amd")));
    CHECK(!named->split_512); /* full-width units: Zen 5's, Intel's */
    CHECK(!host->split_512 || (__builtin_cpu_is("amd") && host->vector_bits == 512));
    CHECK(!named->one_stream); /* a few interleaved streams served as well as one */
    CHECK(host->one_stream == host->split_512); /* Zen 4 */
    TargetInfo same = *host; /* everything else is the named target's */
    same.l1_bytes = named->l1_bytes;
    same.l2_bytes = named->l2_bytes;
    same.subnormal_assists = named->subnormal_assists;
    same.has_bf16_dot = named->has_bf16_dot;
    same.split_512 = named->split_512;
    same.one_stream = named->one_stream;
    CHECK(!memcmp(&same, named, sizeof same));
}

/* fp8_gemm at 16 rows stages A transposed to f32 for its broadcast tiles:
 * 16 rows of K = 4096, 256 KiB, which pass_hoist runs once per row block
 * (its buffer then holds 128 rows of K for each of the 32 steps) when that
 * fits twice the L2 it is told of. */
static bool staged_once(int64_t l2_bytes)
{
    FeSet sets[] = {{"M", "16"}, {"BM", "16"}, {"BN", "16"}, {"N", "256"}, {"K", "4096"}, {"BK", "128"}};
    Diag d = {0};
    Kernel *k = fe_load("kernels_src/fp8_gemm.lua", sets, 6, &d);
    TargetInfo t = *ir_target("x86-avx2");
    t.l2_bytes = l2_bytes;
    bool ok = k && pass_pipeline(k, &t, NULL, &d);
    CHECKF(ok, "%s", d.msg);
    char *text = ok ? ir_print_string(k) : NULL;
    bool once = text && strstr(text, "buf gemm_at0: shared f32[4096, 16]"); /* a block of rows per step */
    free(text);
    ir_kernel_free(k);
    return once;
}

TEST(hoisting_follows_the_l2_it_is_given)
{
    CHECK(staged_once(512 << 10));
    CHECK(staged_once(128 << 10)); /* twice the L2 holds it (HOIST_L2S) */
    CHECK(!staged_once(120 << 10));
}

/* The assembly of spec at sets for t; NULL (checked) on failure. */
static char *asm_of(const char *spec, const FeSet *sets, int nsets, const TargetInfo *t)
{
    Diag d = {0};
    Kernel *k = fe_load(spec, sets, nsets, &d);
    char path[] = "/tmp/tilec_target_XXXXXX";
    int fd = mkstemp(path);
    bool ok = k && fd >= 0 && pass_pipeline(k, t, NULL, &d) && cg_emit_file(k, t, CG_EMIT_ASM, path, NULL, &d);
    CHECKF(ok, "%s: %s", spec, d.msg);
    char *text = NULL;
    FILE *f = ok ? fopen(path, "r") : NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        text = calloc((size_t)n + 1, 1);
        CHECK(fread(text, 1, (size_t)n, f) == (size_t)n);
        fclose(f);
    }
    if (fd >= 0)
        close(fd), unlink(path);
    ir_kernel_free(k);
    return text;
}

TEST(an_intel_avx512_host_takes_no_subnormals_nor_vdpbf16ps)
{
    TargetInfo t = *ir_target("x86-avx512");
    t.has_bf16_dot = false;
    t.subnormal_assists = true;
    /* the decode tiles choose picks at one row: all of K in one scaled step */
    FeSet fp8[] = {{"M", "1"}, {"N", "256"}, {"K", "1024"}, {"BM", "1"}, {"BN", "16"}, {"BK", "1024"}};
    char *a = asm_of("kernels_src/fp8_gemm.lua", fp8, 6, &t);
    /* B widened through F16C, not shifted into f32's fields */
    CHECK(a && strstr(a, "vcvtph2ps") && !strstr(a, "vpslld\t$20"));
    free(a);
    /* and with the assists off (AMD's hosts), B straight into f32's fields */
    TargetInfo amd = *ir_target("x86-avx2");
    amd.subnormal_assists = false;
    a = asm_of("kernels_src/fp8_gemm.lua", fp8, 6, &amd);
    CHECK(a && strstr(a, "vpslld\t$20"));
    free(a);
    FeSet bf16[] = {{"M", "64"}, {"N", "64"}, {"K", "64"}, {"dtype", "bf16"}};
    a = asm_of("examples/gemm.lua", bf16, 4, &t);
    CHECK(a && strstr(a, "vfmadd231ps") && strstr(a, "zmm") && !strstr(a, "vdpbf16ps"));
    free(a);
}

/* The printed Loop IR of spec at sets for t (its choose's picks for t);
 * NULL (checked) on failure. */
static char *loop_ir_of(const char *spec, const FeSet *sets, int nsets, const TargetInfo *t)
{
    Diag d = {0};
    Kernel *k = fe_load_for(spec, sets, nsets, t, &d);
    bool ok = k && pass_pipeline(k, t, NULL, &d);
    CHECKF(ok, "%s: %s", spec, d.msg);
    char *text = ok ? ir_print_string(k) : NULL;
    ir_kernel_free(k);
    return text;
}

/* fp8_gemm at 16 rows on AVX-512: where vdpbf16ps is fast (AMD's hosts),
 * A staged bf16 for dot tiles of 8 rows that decode e4m3 B to bf16 words
 * (lowering's e4m3_pairs); elsewhere broadcast tiles of one vector of
 * rows, A staged transposed as f32 (bcast_rows). */
TEST(fp8_decode_at_16_rows_follows_vdpbf16ps)
{
    FeSet sets[] = {{"M", "16"}, {"N", "256"}, {"K", "1024"}};
    TargetInfo amd = *ir_target("x86-avx512"), intel = amd;
    amd.has_bf16_dot = true;
    intel.has_bf16_dot = false;
    char *pairs = loop_ir_of("kernels_src/fp8_gemm.lua", sets, 3, &amd);
    CHECK(pairs && strstr(pairs, "buf gemm_a0: shared bf16[16, 1024]") && strstr(pairs, "+: 8, 0 +: 1024], b[") &&
          !strstr(pairs, "trans_a trans_b"));
    free(pairs);
    char *bcast = loop_ir_of("kernels_src/fp8_gemm.lua", sets, 3, &intel);
    CHECK(bcast && strstr(bcast, "trans_a trans_b") && !strstr(bcast, "shared bf16"));
    free(bcast);
}

int main(void)
{
    RUN(caches_are_read_from_a_sysfs_tree);
    RUN(malformed_or_missing_entries_read_as_zero);
    RUN(the_host_target_plans_with_this_machines_caches);
    RUN(hoisting_follows_the_l2_it_is_given);
    RUN(an_intel_avx512_host_takes_no_subnormals_nor_vdpbf16ps);
    RUN(fp8_decode_at_16_rows_follows_vdpbf16ps);
    return test_summary();
}
