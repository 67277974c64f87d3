/* target.c — the targets passes know about, and what this CPU can run. */
#include "ir/ir.h"

#include <string.h>

static const TargetInfo targets[] = {
    {
        .name = "x86-avx512",
        .llvm_triple = "x86_64-unknown-linux-gnu",
        .llvm_cpu = "x86-64-v4",
        /* Intel CPUs prefer 256-bit vectors unless told otherwise. */
        .llvm_features = "+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512bf16,+fma,+f16c,"
                         "-prefer-256-bit",
        .vector_bits = 512,
        .has_bf16_dot = true,
        /* A CPU fragment is a C tile that the micro-kernel loads and stores
         * once per K block: it must stay cache-resident, not in registers.
         * 128 KiB keeps a block's tiles within this core's L2 (1 MiB). */
        .max_fragment_bytes = 128 * 1024,
        .micro_m = 6,
        .micro_n = 32,
        .dot_m = 4, /* 24 accumulators + 4 + 1 of 32 zmm */
        .dot_n = 6,
        .l1_bytes = 32 * 1024,
        .l2_bytes = 512 * 1024,
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

const TargetInfo *ir_host_target(void)
{
    for (int i = 0; i < NTARGETS && !targets[i].gpu_sm; i++)
        if (ir_target_runs_here(&targets[i]))
            return &targets[i];
    return NULL;
}
