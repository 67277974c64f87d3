/* gen_cuda_api.c — writes the CUDA driver loader header from cuda.h itself.
 *
 *   gen_cuda_api CUDA_H LIST OUT_H
 *
 * The runtime never links libcuda: it dlopens the driver at run time, so it
 * needs a function-pointer type and the exported symbol name for every entry
 * point it calls.  Writing those by hand goes stale silently (cuda.h renames
 * entry points with #defines such as cuMemAlloc -> cuMemAlloc_v2, and a wrong
 * prototype still links), so this tool asks clang: it parses a probe file that
 * includes CUDA_H and takes the address of each name in LIST, lets the
 * preprocessor apply cuda.h's renames, and reads the declaration each name
 * resolved to.  OUT_H gets one typedef per entry spelled from those types,
 * struct CuApi, the symbol table and cu_api_load(), plus _Static_asserts that
 * the host compiler agrees with clang about every type and CUtensorMap's layout. */
#include <clang-c/Index.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TC_CLANG_INCLUDE
#define TC_CLANG_INCLUDE "/usr/lib/llvm-19/lib/clang/19/include"
#endif

/* The runtime's tensor-map code relies on cuda.h's 128-byte descriptor
 * aligned to at least 64 bytes (the TMA requirement). */
enum { TENSORMAP_SIZE = 128, TENSORMAP_MIN_ALIGN = 64, MAX_ENTRIES = 256, MAX_ARGS = 32 };

#define PROBE_PREFIX "tc_probe_"
#define PROBE_TENSORMAP PROBE_PREFIX "CUtensorMap"

typedef struct Entry {
    char base[64];        /* the name the runtime uses: cuMemAlloc */
    char *symbol;         /* the exported symbol: cuMemAlloc_v2 */
    char *ret;            /* spelled result type */
    char *args[MAX_ARGS]; /* spelled parameter types */
    int nargs;
    bool variadic;
    bool found;
} Entry;

typedef struct Gen {
    Entry entries[MAX_ENTRIES];
    int n;
    long long tmap_size, tmap_align; /* from clang's layout; < 0 if not found */
    const char *err;                 /* first spelling problem */
} Gen;

static void die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "gen_cuda_api: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

static char *dup_cx(CXString s)
{
    const char *c = clang_getCString(s);
    char *r = strdup(c ? c : "");
    clang_disposeString(s);
    if (!r)
        die("out of memory%s%s", "", "");
    return r;
}

/* One base name per line; blank lines and '#' comments are skipped. */
static void read_list(const char *path, Gen *g)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open %s%s", path, "");
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *s = line + strspn(line, " \t");
        s[strcspn(s, " \t\r\n#")] = 0;
        if (!*s)
            continue;
        if (g->n == MAX_ENTRIES || strlen(s) >= sizeof g->entries[0].base)
            die("%s: too many or too long names (at %s)", path, s);
        for (int i = 0; i < g->n; i++)
            if (!strcmp(g->entries[i].base, s))
                die("%s: %s listed twice", path, s);
        strcpy(g->entries[g->n++].base, s);
    }
    fclose(f);
    if (!g->n)
        die("%s names no entry points%s", path, "");
}

/* The probe: `void *tc_probe_NAME = (void *)&NAME;` per entry, so NAME goes
 * through cuda.h's macros exactly as it does in the runtime's own code. */
static char *probe_source(const char *cuda_h, const Gen *g)
{
    size_t cap = strlen(cuda_h) + 256 + (size_t)g->n * 200;
    char *src = malloc(cap);
    if (!src)
        die("out of memory%s%s", "", "");
    size_t len = (size_t)snprintf(src, cap, "#include \"%s\"\nCUtensorMap %s;\n", cuda_h,
                                  PROBE_TENSORMAP);
    for (int i = 0; i < g->n; i++)
        len += (size_t)snprintf(src + len, cap - len, "void *%s%s = (void *)&%s;\n", PROBE_PREFIX,
                                g->entries[i].base, g->entries[i].base);
    return src;
}

static char *spell(Gen *g, CXType t)
{
    char *s = dup_cx(clang_getTypeSpelling(t));
    /* Function-pointer and array spellings do not compose into a typedef's
     * parameter list by concatenation; no listed entry needs one yet. */
    if (strpbrk(s, "([") && !g->err)
        g->err = "a parameter or result type that is not a plain (pointer to) named type";
    return s;
}

static void record_function(Gen *g, Entry *e, CXCursor fn)
{
    CXType t = clang_getCursorType(fn);
    if (t.kind != CXType_FunctionProto) {
        g->err = "a function declared without a prototype";
        return;
    }
    e->symbol = dup_cx(clang_getCursorSpelling(fn));
    e->ret = spell(g, clang_getResultType(t));
    e->nargs = clang_getNumArgTypes(t);
    if (e->nargs > MAX_ARGS)
        die("%s has more than %s parameters", e->base, "32");
    for (int i = 0; i < e->nargs; i++)
        e->args[i] = spell(g, clang_getArgType(t, (unsigned)i));
    e->variadic = clang_isFunctionTypeVariadic(t);
    e->found = true;
}

/* Inside a probe's initializer: the first reference to a function. */
static enum CXChildVisitResult find_ref(CXCursor c, CXCursor parent, CXClientData data)
{
    CXCursor *out = data;
    if (clang_getCursorKind(c) == CXCursor_DeclRefExpr) {
        CXCursor ref = clang_getCursorReferenced(c);
        if (clang_getCursorKind(ref) == CXCursor_FunctionDecl) {
            *out = ref;
            return CXChildVisit_Break;
        }
    }
    return CXChildVisit_Recurse;
}

static enum CXChildVisitResult visit_top(CXCursor c, CXCursor parent, CXClientData data)
{
    Gen *g = data;
    if (clang_getCursorKind(c) != CXCursor_VarDecl)
        return CXChildVisit_Continue;
    char *name = dup_cx(clang_getCursorSpelling(c));
    if (!strcmp(name, PROBE_TENSORMAP)) {
        CXType t = clang_getCursorType(c);
        g->tmap_size = clang_Type_getSizeOf(t);
        g->tmap_align = clang_Type_getAlignOf(t);
    } else if (!strncmp(name, PROBE_PREFIX, strlen(PROBE_PREFIX))) {
        const char *base = name + strlen(PROBE_PREFIX);
        for (int i = 0; i < g->n; i++) {
            if (strcmp(g->entries[i].base, base))
                continue;
            CXCursor fn = clang_getNullCursor();
            clang_visitChildren(c, find_ref, &fn);
            if (!clang_Cursor_isNull(fn))
                record_function(g, &g->entries[i], fn);
        }
    }
    free(name);
    return CXChildVisit_Continue;
}

/* Errors inside cuda.h (or a missing system header) make every type
 * suspect; the probe's own "undeclared identifier" errors are reported as
 * missing functions instead. */
static bool header_errors(CXTranslationUnit tu, const char *probe_name)
{
    bool bad = false;
    unsigned n = clang_getNumDiagnostics(tu);
    for (unsigned i = 0; i < n; i++) {
        CXDiagnostic dg = clang_getDiagnostic(tu, i);
        enum CXDiagnosticSeverity sev = clang_getDiagnosticSeverity(dg);
        if (sev >= CXDiagnostic_Error) {
            CXFile file;
            clang_getSpellingLocation(clang_getDiagnosticLocation(dg), &file, NULL, NULL, NULL);
            char *fname = file ? dup_cx(clang_getFileName(file)) : strdup("");
            /* Fatal: a header not found, even from the probe's #include. */
            if (sev == CXDiagnostic_Fatal || !fname || strcmp(fname, probe_name)) {
                char *text = dup_cx(clang_formatDiagnostic(dg, clang_defaultDiagnosticDisplayOptions()));
                fprintf(stderr, "gen_cuda_api: %s\n", text);
                free(text);
                bad = true;
            }
            free(fname);
        }
        clang_disposeDiagnostic(dg);
    }
    return bad;
}

static void parse(const char *cuda_h, Gen *g)
{
    const char *probe_name = "tc_cuda_api_probe.c";
    char *src = probe_source(cuda_h, g);
    struct CXUnsavedFile probe = {probe_name, src, (unsigned long)strlen(src)};
    const char *args[] = {"-x", "c", "-std=gnu17", "-isystem", TC_CLANG_INCLUDE};
    CXIndex idx = clang_createIndex(0, 0);
    CXTranslationUnit tu = NULL;
    enum CXErrorCode rc = clang_parseTranslationUnit2(idx, probe_name, args, 5, &probe, 1,
                                                      CXTranslationUnit_SkipFunctionBodies, &tu);
    if (rc != CXError_Success || !tu)
        die("libclang could not parse %s (error %s)", cuda_h, rc == CXError_Crashed ? "crash" : "code");
    bool bad = header_errors(tu, probe_name);
    g->tmap_size = g->tmap_align = -1;
    clang_visitChildren(clang_getTranslationUnitCursor(tu), visit_top, g);
    clang_disposeTranslationUnit(tu);
    clang_disposeIndex(idx);
    free(src);
    if (bad)
        die("%s does not parse cleanly (see the errors above)%s", cuda_h, "");
}

static void check(const char *cuda_h, const Gen *g)
{
    for (int i = 0; i < g->n; i++)
        if (!g->entries[i].found)
            die("%s declares no function %s (check runtime/cuda_api.list)", cuda_h,
                g->entries[i].base);
    if (g->err)
        die("cannot spell %s%s", g->err, "");
    if (g->tmap_size != TENSORMAP_SIZE || g->tmap_align < TENSORMAP_MIN_ALIGN) {
        fprintf(stderr,
                "gen_cuda_api: %s: sizeof(CUtensorMap) = %lld, alignment %lld; the runtime "
                "needs %d bytes aligned to at least %d\n",
                cuda_h, g->tmap_size, g->tmap_align, TENSORMAP_SIZE, TENSORMAP_MIN_ALIGN);
        exit(1);
    }
}

static void write_typedefs(FILE *f, const Gen *g)
{
    for (int i = 0; i < g->n; i++) {
        const Entry *e = &g->entries[i];
        fprintf(f, "typedef %s (*tc_PFN_%s)(", e->ret, e->base);
        for (int a = 0; a < e->nargs; a++)
            fprintf(f, "%s%s", a ? ", " : "", e->args[a]);
        if (e->variadic)
            fprintf(f, "%s...", e->nargs ? ", " : "");
        else if (!e->nargs)
            fprintf(f, "void");
        fprintf(f, "); /* %s */\n", e->symbol);
    }
    fprintf(f, "\n/* The host compiler must see the same types clang did. */\n");
    for (int i = 0; i < g->n; i++)
        fprintf(f,
                "_Static_assert(__builtin_types_compatible_p(tc_PFN_%s, __typeof__(&%s)), "
                "\"%s: cuda.h's prototype differs from the generated one\");\n",
                g->entries[i].base, g->entries[i].symbol, g->entries[i].symbol);
}

static void write_loader(FILE *f, const Gen *g)
{
    fprintf(f, "\n/* Members are named by base name.  Where cuda.h #defines a base name\n"
               " * (cuMemAlloc -> cuMemAlloc_v2) the member is renamed the same way at\n"
               " * its declaration and at every use, so api->cuMemAlloc still works. */\n"
               "struct CuApi {\n");
    for (int i = 0; i < g->n; i++)
        fprintf(f, "    tc_PFN_%s %s;\n", g->entries[i].base, g->entries[i].base);
    fprintf(f, "};\n\n#define CU_API_COUNT %d\n\n", g->n);
    fprintf(f, "/* Exported symbol of each entry, in struct CuApi's order. */\n"
               "__attribute__((unused)) static const char *cu_api_symbol[CU_API_COUNT] = {\n");
    for (int i = 0; i < g->n; i++)
        fprintf(f, "    \"%s\",\n", g->entries[i].symbol);
    fprintf(f, "};\n\n"
               "/* Resolve every entry in lib (a dlopen handle); false names the first\n"
               " * symbol the driver lacks (an older driver than this cuda.h). */\n"
               "__attribute__((unused)) static bool cu_api_load(void *lib, struct CuApi *api, "
               "char *err, size_t errlen)\n{\n    void *p;\n");
    for (int i = 0; i < g->n; i++)
        fprintf(f,
                "    if (!(p = dlsym(lib, cu_api_symbol[%d])))\n"
                "        goto missing_%d;\n"
                "    api->%s = (tc_PFN_%s)p;\n",
                i, i, g->entries[i].base, g->entries[i].base);
    fprintf(f, "    return true;\n");
    for (int i = 0; i < g->n; i++)
        fprintf(f, "missing_%d:\n    snprintf(err, errlen, \"%%s\", cu_api_symbol[%d]);\n"
                   "    return false;\n", i, i);
    fprintf(f, "}\n");
}

static void write_header(const char *path, const char *cuda_h, const char *list, const Gen *g)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("cannot write %s%s", tmp, "");
    fprintf(f,
            "/* Generated by tools/gen_cuda_api from %s and %s; do not edit.\n"
            " * The CUDA driver entry points the runtime calls, for dlopen/dlsym. */\n"
            "#ifndef TILEC_CUDA_API_H\n#define TILEC_CUDA_API_H\n\n"
            "#include <cuda.h>\n#include <dlfcn.h>\n#include <stdbool.h>\n#include <stddef.h>\n"
            "#include <stdio.h>\n\n",
            cuda_h, list);
    fprintf(f,
            "/* CUtensorMap as libclang laid it out; the runtime relies on %d bytes,\n"
            " * aligned to at least %d. */\n"
            "#define CU_API_TENSORMAP_SIZE %lld\n#define CU_API_TENSORMAP_ALIGN %lld\n"
            "_Static_assert(sizeof(CUtensorMap) == %d, \"CUtensorMap is not %d bytes\");\n"
            "_Static_assert(_Alignof(CUtensorMap) >= %d, \"CUtensorMap is aligned to less than %d\");\n"
            "_Static_assert(sizeof(CUtensorMap) == CU_API_TENSORMAP_SIZE && "
            "_Alignof(CUtensorMap) == CU_API_TENSORMAP_ALIGN, \"CUtensorMap layout differs from libclang's\");\n\n",
            TENSORMAP_SIZE, TENSORMAP_MIN_ALIGN, g->tmap_size, g->tmap_align, TENSORMAP_SIZE,
            TENSORMAP_SIZE, TENSORMAP_MIN_ALIGN, TENSORMAP_MIN_ALIGN);
    write_typedefs(f, g);
    write_loader(f, g);
    fprintf(f, "\n#endif\n");
    if (fclose(f) || rename(tmp, path))
        die("cannot write %s%s", path, "");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: gen_cuda_api CUDA_H LIST OUT_H\n");
        return 2;
    }
    static Gen g;
    read_list(argv[2], &g);
    parse(argv[1], &g);
    check(argv[1], &g);
    write_header(argv[3], argv[1], argv[2], &g);
    printf("gen_cuda_api: %d entry points; CUtensorMap %lld bytes, aligned to %lld\n", g.n,
           g.tmap_size, g.tmap_align);
    for (int i = 0; i < g.n; i++) {
        free(g.entries[i].symbol);
        free(g.entries[i].ret);
        for (int a = 0; a < g.entries[i].nargs; a++)
            free(g.entries[i].args[a]);
    }
    return 0;
}
