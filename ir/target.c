/* target.c — the targets passes know about, and what this CPU can run. */
#include "ir/ir.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const TargetInfo targets[] = {
    {
        .name = "x86-avx512",
        .llvm_triple = "x86_64-unknown-linux-gnu",
        .llvm_cpu = "x86-64-v4",
        /* Intel CPUs prefer 256-bit vectors unless told otherwise.  And
         * LLVM's generic AVX-512 costs take gathers and scatters for
         * strided accesses, slow on AMD's cores: hadamard's butterflies
         * (stride 2 to 8) ran 4.7x slower on Zen 5 than in shuffles. */
        .llvm_features = "+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512bf16,+fma,+f16c,"
                         "-prefer-256-bit,+prefer-no-gather,+prefer-no-scatter",
        .vector_bits = 512,
        .has_bf16_dot = true,
        /* A CPU fragment is a C tile that the micro-kernel loads and stores
         * once per K block: it must stay cache-resident, not in registers.
         * 128 KiB keeps a block's tiles within this core's L2 (1 MiB). */
        .max_fragment_bytes = 128 * 1024,
        /* 16 accumulators: vdpbf16ps takes 6 cycles at 2 a cycle on Zen 5
         * (12 would just cover it; 6x32 ran a bf16 GEMM 10% slower) */
        .micro_m = 8,
        .micro_n = 32,
        .dot_m = 4, /* 24 accumulators + 4 + 1 of 32 zmm */
        .dot_n = 6,
        .l1_bytes = 32 * 1024,
        .l2_bytes = 512 * 1024,
        .subnormal_assists = true,
        .stream_bytes = 16 << 20,
    },
    {
        .name = "x86-avx2",
        .llvm_triple = "x86_64-unknown-linux-gnu",
        .llvm_cpu = "x86-64-v3",
        .llvm_features = "+avx2,+fma,+f16c",
        .vector_bits = 256,
        .has_bf16_dot = false,
        .max_fragment_bytes = 128 * 1024,
        .micro_m = 6,
        .micro_n = 16,
        .dot_m = 3, /* 9 accumulators + 3 + 1 of 16 ymm */
        .dot_n = 3,
        .l1_bytes = 32 * 1024,
        .l2_bytes = 512 * 1024,
        .subnormal_assists = true,
        .stream_bytes = 16 << 20,
    },
    {
        .name = "sm_90a",
        .llvm_triple = "nvptx64-nvidia-cuda",
        .llvm_cpu = "sm_90a",
        .llvm_features = "+ptx84",
        .vector_bits = 32,
        .max_fragment_bytes = 128 * 1024, /* spread over the block: registers */
        .gpu_sm = 90,
        .gpu_threads = 128,
        .max_shared_bytes = 227 * 1024,
    },
    {
        .name = "sm_80",
        .llvm_triple = "nvptx64-nvidia-cuda",
        .llvm_cpu = "sm_80",
        .llvm_features = "+ptx70",
        .vector_bits = 32,
        .max_fragment_bytes = 128 * 1024, /* spread over the block: registers */
        .gpu_sm = 80,
        .gpu_threads = 128,
        .max_shared_bytes = 163 * 1024,
    },
};

enum { NTARGETS = sizeof targets / sizeof targets[0] };

const TargetInfo *ir_target(const char *name)
{
    for (int i = 0; i < NTARGETS; i++)
        if (!strcmp(targets[i].name, name))
            return &targets[i];
    return NULL;
}

const char *ir_target_names(void) { return "x86-avx512, x86-avx2, sm_90a, sm_80"; }

bool ir_target_runs_here(const TargetInfo *t)
{
    __builtin_cpu_init();
    if (!strcmp(t->name, "x86-avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bf16");
    if (!strcmp(t->name, "x86-avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return false;
}

/* The first line of dir/name, without its newline; false if unreadable. */
static bool read_line(const char *dir, const char *name, char *out, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
    return ok;
}

/* "32K", "1M", "512": bytes, or 0 when it is not a size. */
static int64_t parse_size(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v <= 0 || v > (1LL << 40))
        return 0;
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : *end ? -1 : 0;
    if (shift < 0 || (shift && end[1]))
        return 0;
    return (int64_t)v << shift;
}

HostCaches ir_read_caches(const char *sysfs_cpu)
{
    HostCaches hc = {0};
    for (int i = 0; i < 16; i++) {
        char dir[768], level[32], type[32], size[32];
        snprintf(dir, sizeof dir, "%s/cache/index%d", sysfs_cpu, i);
        if (!read_line(dir, "level", level, sizeof level) || !read_line(dir, "type", type, sizeof type) ||
            !read_line(dir, "size", size, sizeof size))
            continue;
        int64_t bytes = parse_size(size);
        if (!strcmp(level, "1") && !strcmp(type, "Data"))
            hc.l1d = bytes;
        else if (!strcmp(level, "2") && strcmp(type, "Instruction"))
            hc.l2 = bytes;
        else if (!strcmp(level, "3") && strcmp(type, "Instruction"))
            hc.l3 = bytes;
    }
    return hc;
}

/* bytes where the passes may plan with it, within [lo, hi]; else 0 (a
 * VM's made-up figure, a level the kernel did not report). */
static int64_t sane(int64_t bytes, int64_t lo, int64_t hi)
{
    return bytes >= lo && bytes <= hi ? bytes : 0;
}

/* AMD's Zen 4: family 19h (Zen 3, the same family, has no AVX-512, so
 * a 512-bit target that runs here is Zen 4), whose vector units are
 * 256 bits wide; Zen 5 (1Ah) has full-width ones. */
static bool amd_zen4(void)
{
    unsigned eax, ebx, ecx, edx;
    if (!__builtin_cpu_is("amd") || !__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return false;
    unsigned family = (eax >> 8) & 0xf;
    if (family == 0xf)
        family += (eax >> 20) & 0xff;
    return family == 0x19;
}

static TargetInfo host;
static bool host_found, caches_read;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void find_host(void)
{
    for (int i = 0; i < NTARGETS && !targets[i].gpu_sm; i++)
        if (ir_target_runs_here(&targets[i])) {
            HostCaches hc = ir_read_caches("/sys/devices/system/cpu/cpu0");
            host = targets[i];
            host.l1_bytes = sane(hc.l1d, 8 << 10, 1 << 20);
            host.l2_bytes = sane(hc.l2, 128 << 10, 64 << 20);
            caches_read = host.l1_bytes && host.l2_bytes;
            if (!caches_read) /* both or neither: the passes weigh one against the other */
                host = targets[i];
            /* the cores that run subnormal operands at full speed: AMD's
             * (an fp8 decode on a Sapphire Rapids Xeon ran 20x slower with
             * them, bench/RESULTS.md) */
            host.subnormal_assists = !__builtin_cpu_is("amd");
            /* vdpbf16ps only where it outruns FMAs on widened values:
             * AMD's Zen 4 issues it at twice their flops, a Sapphire Rapids
             * Xeon at half (bench_fma_peak: 88 GFLOP/s against 178; its
             * bf16 GEMM ran at 71 GFLOP/s, its f32 one at 149) */
            host.has_bf16_dot = host.has_bf16_dot && __builtin_cpu_is("amd");
            host.split_512 = host.vector_bits == 512 && amd_zen4();
            host.one_stream = host.split_512;
            host_found = true;
            return;
        }
}

const TargetInfo *ir_host_target(void)
{
    pthread_once(&host_once, find_host);
    return host_found ? &host : NULL;
}

bool ir_host_caches_read(void)
{
    pthread_once(&host_once, find_host);
    return caches_read;
}
