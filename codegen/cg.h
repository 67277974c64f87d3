/* cg.h — what the codegen files share (private to codegen/). */
#ifndef TILEC_CODEGEN_CG_H
#define TILEC_CODEGEN_CG_H

#include "codegen/codegen.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

/* Build an LLVM module holding k's function, optimised at O3 for t.
 * *tm receives the target machine it was built for (caller disposes);
 * times (or NULL) the build's and O3's. */
LLVMModuleRef cg_build_module(LLVMContextRef ctx, const Kernel *k, const TargetInfo *t,
                              LLVMTargetMachineRef *tm, CgTimes *times, Diag *d);
/* A target machine for t (NULL with d set if LLVM lacks the target). */
LLVMTargetMachineRef cg_target_machine(const TargetInfo *t, Diag *d);

#endif
