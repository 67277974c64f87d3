/* report.h — what the CUDA assembler made of a GPU kernel (tilec compile --report). */
#ifndef TILEC_CLI_REPORT_H
#define TILEC_CLI_REPORT_H

#include "ir/ir.h"

#include <stdio.h>

/* Assemble ptx_path with ptxas -arch=arch -v and print one line of registers,
 * shared memory, stack and spills, and one of the SASS instruction mix
 * (HGMMA, HMMA, FFMA, ...; from cuobjdump when present). */
bool report_gpu(const char *kernel, const char *arch, const char *ptx_path, long dyn_shared,
                FILE *out, Diag *d);

#endif
