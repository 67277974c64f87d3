/* report.c — `tilec compile --report` for GPU targets: what the assembler
 * made of the kernel.  ptxas -v gives registers, spills and shared memory;
 * cuobjdump -sass on the cubin gives the instruction mix.  Both are tools of
 * the CUDA toolkit, found on PATH or in /usr/local/cuda/bin. */
#include "cli/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tool(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "/usr/local/cuda/bin/%s", name);
    if (access(buf, X_OK) == 0)
        return buf;
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(buf, n, "%.*s/%s", (int)len, path, name);
        if (access(buf, X_OK) == 0)
            return buf;
        path = end ? end + 1 : NULL;
    }
    return NULL;
}

static long field(const char *line, const char *after)
{
    const char *p = strstr(line, after);
    return p ? strtol(p + strlen(after), NULL, 10) : -1;
}

/* The number just before `unit` in line ("12 bytes spill stores"). */
static long before(const char *line, const char *unit)
{
    const char *p = strstr(line, unit);
    if (!p)
        return -1;
    while (p > line && p[-1] == ' ')
        p--;
    while (p > line && p[-1] >= '0' && p[-1] <= '9')
        p--;
    return strtol(p, NULL, 10);
}

typedef struct Mix {
    const char *op;
    long n;
} Mix;

static void sass_mix(const char *cuobjdump, const char *cubin, Mix *mix, int nmix, long *total)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -sass '%s' 2>/dev/null", cuobjdump, cubin);
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        /* instruction lines: an address in a comment, then the opcode */
        const char *c = strstr(line, "*/");
        if (!c || !strstr(line, "/*"))
            continue;
        c += 2;
        while (*c == ' ' || *c == '\t')
            c++;
        if (*c == '@') /* predicate */
            while (*c && *c != ' ')
                c++;
        while (*c == ' ')
            c++;
        if (*c < 'A' || *c > 'Z')
            continue;
        (*total)++;
        for (int i = 0; i < nmix; i++)
            if (!strncmp(c, mix[i].op, strlen(mix[i].op)))
                mix[i].n++;
    }
    pclose(p);
}

bool report_gpu(const char *kernel, const char *arch, const char *ptx_path, long dyn_shared,
                FILE *out, Diag *d)
{
    char pbuf[512], cbuf[512];
    const char *ptxas = tool("ptxas", pbuf, sizeof pbuf);
    if (!ptxas) {
        SrcLoc none = {0};
        return diag_error(d, none, "--report needs ptxas (CUDA toolkit) on PATH or in /usr/local/cuda/bin");
    }
    char cubin[512], cmd[2048];
    snprintf(cubin, sizeof cubin, "%s.cubin", ptx_path);
    snprintf(cmd, sizeof cmd, "'%s' -arch=%s -v -o '%s' '%s' 2>&1", ptxas, arch, cubin, ptx_path);
    FILE *p = popen(cmd, "r");
    long regs = -1, spill_st = -1, spill_ld = -1, stack = -1, smem = 0;
    char line[512], err[512] = "";
    while (p && fgets(line, sizeof line, p)) {
        if (strstr(line, "error") && !err[0])
            snprintf(err, sizeof err, "%s", line);
        if (strstr(line, "Used ")) {
            regs = field(line, "Used ");
            long s = before(line, "bytes smem");
            smem = s > 0 ? s : 0;
        }
        if (strstr(line, "spill stores")) {
            stack = before(line, "bytes stack frame");
            spill_st = before(line, "bytes spill stores");
            spill_ld = before(line, "bytes spill loads");
        }
    }
    int rc = p ? pclose(p) : -1;
    if (rc != 0) {
        SrcLoc loc = {ptx_path, 0};
        err[strcspn(err, "\n")] = 0;
        return diag_error(d, loc, "ptxas -arch=%s failed: %s", arch, err[0] ? err : "(no message)");
    }
    fprintf(out, "kernel %s on %s: %ld registers, %ld bytes static + %ld bytes dynamic shared memory, "
                 "%ld bytes stack, spills %ld bytes stored / %ld loaded\n",
            kernel, arch, regs, smem, dyn_shared, stack, spill_st, spill_ld);
    Mix mix[] = {{"HGMMA", 0}, {"HMMA", 0}, {"FFMA", 0}, {"FMUL", 0}, {"FADD", 0}, {"LDG", 0},
                 {"STG", 0},   {"LDS", 0},  {"STS", 0},  {"BAR", 0},  {"MUFU", 0}};
    int nmix = (int)(sizeof mix / sizeof mix[0]);
    long total = 0;
    const char *cuobjdump = tool("cuobjdump", cbuf, sizeof cbuf);
    if (cuobjdump)
        sass_mix(cuobjdump, cubin, mix, nmix, &total);
    if (!cuobjdump || !total) {
        fprintf(out, "instruction mix: unavailable (cuobjdump -sass %s)\n",
                cuobjdump ? "printed nothing" : "not found");
    } else {
        fprintf(out, "instruction mix (SASS, %ld instructions):", total);
        for (int i = 0; i < nmix; i++)
            fprintf(out, " %s %ld", mix[i].op, mix[i].n);
        fputc('\n', out);
    }
    remove(cubin);
    return true;
}
