/* lua.c — the embedded Lua state and the C half of the `tile` module.
 *
 * tile.lua holds the language (operators, loops, checks with the user's
 * line); this file gives it `core`, thin builders over ir/build.c that take
 * and return IR nodes as light userdata, and turns Lua errors into one Diag
 * at the user's file and line. */
#include "frontend/frontend.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

extern const char tile_lua_src[];

enum { MAX_DEPTH = 64, MAX_HELD = 8 };

/* The kernel under construction and the stack of open statement blocks;
 * for T.compose, the kernels built so far (held until joined) and the
 * file whose statements are being built (a part's spec). */
typedef struct Ctx {
    Kernel *k;
    Stmt *blocks[MAX_DEPTH];
    int depth;
    const char *file, *spec_file;
    Kernel *held[MAX_HELD];
    int nheld;
} Ctx;

static Ctx *ctx(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static void *ptr(lua_State *L, int i)
{
    luaL_checktype(L, i, LUA_TLIGHTUSERDATA);
    return lua_touserdata(L, i);
}

static SrcLoc loc_at(lua_State *L, int i)
{
    SrcLoc l = {ctx(L)->file, (int)luaL_optinteger(L, i, 0)};
    return l;
}

static Kernel *kern(lua_State *L)
{
    Kernel *k = ctx(L)->k;
    if (!k)
        luaL_error(L, "tile: no kernel is being built");
    return k;
}

static DType check_dtype(lua_State *L, int i)
{
    DType t = dt_parse(luaL_checkstring(L, i));
    if (t == DT_NONE)
        luaL_error(L, "tile: unknown dtype %s", lua_tostring(L, i));
    return t;
}

static ExprOp check_op(lua_State *L, int i)
{
    const char *name = luaL_checkstring(L, i);
    for (int op = 0; op < EX_COUNT; op++)
        if (!strcmp(ex_name((ExprOp)op), name))
            return (ExprOp)op;
    return luaL_error(L, "tile: unknown op %s", name), EX_CONST;
}

/* A Lua array of light userdata (Expr*) into out; returns its length. */
static int expr_list(lua_State *L, int i, Expr **out, int max)
{
    luaL_checktype(L, i, LUA_TTABLE);
    int n = (int)luaL_len(L, i);
    if (n > max)
        luaL_error(L, "tile: too many dimensions (at most %d)", max);
    for (int j = 0; j < n; j++) {
        lua_geti(L, i, j + 1);
        out[j] = ptr(L, -1);
        lua_pop(L, 1);
    }
    return n;
}

/* {buf = B, off = {e...}, ext = {n...}} into a Region. */
static Region region(lua_State *L, int i)
{
    Region r = {0};
    luaL_checktype(L, i, LUA_TTABLE);
    lua_getfield(L, i, "buf");
    r.buf = ptr(L, -1);
    lua_getfield(L, i, "off");
    expr_list(L, lua_gettop(L), r.off, IR_MAX_RANK);
    lua_getfield(L, i, "ext");
    for (int d = 0; d < r.buf->rank; d++) {
        lua_geti(L, -1, d + 1);
        r.ext[d] = luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
    return r;
}

static void emit(lua_State *L, Stmt *s)
{
    Ctx *c = ctx(L);
    if (c->depth == 0)
        luaL_error(L, "tile: statements must be inside T.grid");
    ir_seq_push(c->k, c->blocks[c->depth - 1], s);
}

/* ------------------------------------------------------------- builders */

static int c_kernel(lua_State *L)
{
    Ctx *c = ctx(L);
    ir_kernel_free(c->k);
    c->k = ir_kernel_new(luaL_checkstring(L, 1), loc_at(L, 2));
    c->depth = 0;
    return 0;
}

/* block_threads(n): the GPU threads per block the spec asks for. */
static int c_block_threads(lua_State *L)
{
    kern(L)->block_threads = (int)luaL_checkinteger(L, 1);
    return 0;
}

static int c_kparam(lua_State *L)
{
    Kernel *k = kern(L);
    const char *kind = luaL_checkstring(L, 2);
    KParamKind kk = !strcmp(kind, "dyn") ? KP_DYN : !strcmp(kind, "fixed") ? KP_FIXED : KP_TUNE;
    KParam *p = ir_kparam_add(k, luaL_checkstring(L, 1), kk, luaL_optstring(L, 3, NULL));
    if (lua_istable(L, 4))
        for (int i = 1; i <= (int)luaL_len(L, 4); i++) {
            lua_geti(L, 4, i);
            ir_kparam_cand(k, p, luaL_tolstring(L, -1, NULL));
            lua_pop(L, 2);
        }
    p->picked = lua_toboolean(L, 5);
    p->variant = !strcmp(kind, "variant");
    if (kk == KP_DYN) {
        p->dyn = ir_param_add(k, p->name, DT_I64);
        lua_pushlightuserdata(L, ir_param(k, p->dyn));
        return 1;
    }
    return 0;
}

static int c_arg(lua_State *L)
{
    Kernel *k = kern(L);
    Expr *dims[IR_MAX_RANK];
    int rank = expr_list(L, 3, dims, IR_MAX_RANK);
    const char *dir = luaL_checkstring(L, 4);
    ArgDir ad = !strcmp(dir, "out") ? ARG_OUT : !strcmp(dir, "inout") ? ARG_INOUT : ARG_IN;
    Buffer *b = ir_arg_add(k, luaL_checkstring(L, 1), check_dtype(L, 2), ad, rank, dims, loc_at(L, 5));
    if (lua_istable(L, 6))
        expr_list(L, 6, b->stride, IR_MAX_RANK);
    lua_pushlightuserdata(L, b);
    return 1;
}

/* core.sample(arg, values, n): the spec's `inputs` for an argument —
 * values a list of n numbers (tile.lua checked them) or one number for all. */
static int c_sample(lua_State *L)
{
    Kernel *k = kern(L);
    Buffer *b = ptr(L, 1);
    lua_Integer n = luaL_checkinteger(L, 3);
    double *v = arena_alloc(k->arena, (size_t)n * sizeof *v);
    bool fill = lua_type(L, 2) == LUA_TNUMBER;
    double all = fill ? lua_tonumber(L, 2) : 0;
    for (lua_Integer i = 0; i < n; i++) {
        if (!fill) {
            lua_geti(L, 2, i + 1);
            all = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        v[i] = all;
    }
    b->sample = v;
    b->nsample = n;
    return 0;
}

/* core.inputs_unset(): the spec's `inputs` wait for dyn sizes. */
static int c_inputs_unset(lua_State *L)
{
    kern(L)->inputs_unset = true;
    return 0;
}

static int c_buf(lua_State *L)
{
    Kernel *k = kern(L);
    static const char *const scopes[] = {"global", "shared", "fragment", "local", NULL};
    Scope sc = (Scope)luaL_checkoption(L, 2, NULL, scopes);
    luaL_checktype(L, 4, LUA_TTABLE);
    int rank = (int)luaL_len(L, 4);
    int64_t shape[IR_MAX_RANK];
    for (int d = 0; d < rank && d < IR_MAX_RANK; d++) {
        lua_geti(L, 4, d + 1);
        shape[d] = luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    Buffer *b = ir_buf_add(k, luaL_checkstring(L, 1), sc, check_dtype(L, 3), rank, shape, loc_at(L, 5));
    lua_pushlightuserdata(L, b);
    return 1;
}

/* Give a buffer the name of the user's local that holds it, if free. */
static int c_rename(lua_State *L)
{
    Kernel *k = kern(L);
    Buffer *b = ptr(L, 1);
    const char *name = luaL_checkstring(L, 2);
    bool free_name = !ir_buf_find(k, name);
    if (free_name)
        b->name = arena_strdup(k->arena, name);
    lua_pushboolean(L, free_name);
    return 1;
}

static int c_var(lua_State *L)
{
    Kernel *k = kern(L);
    Var *v = ir_var_new(k, luaL_checkstring(L, 1));
    lua_pushlightuserdata(L, v);
    lua_pushlightuserdata(L, ir_var(k, v));
    return 2;
}

static int c_const(lua_State *L)
{
    Kernel *k = kern(L);
    if (lua_isboolean(L, 1))
        lua_pushlightuserdata(L, ir_const_bool(k, lua_toboolean(L, 1)));
    else if (lua_isinteger(L, 1))
        lua_pushlightuserdata(L, ir_const_i(k, lua_tointeger(L, 1)));
    else
        lua_pushlightuserdata(L, ir_const_f(k, luaL_checknumber(L, 1)));
    return 1;
}

static int c_unary(lua_State *L)
{
    lua_pushlightuserdata(L, ir_unary(kern(L), check_op(L, 1), ptr(L, 2)));
    return 1;
}

static int c_binary(lua_State *L)
{
    lua_pushlightuserdata(L, ir_binary(kern(L), check_op(L, 1), ptr(L, 2), ptr(L, 3)));
    return 1;
}

static int c_select(lua_State *L)
{
    lua_pushlightuserdata(L, ir_select(kern(L), ptr(L, 1), ptr(L, 2), ptr(L, 3)));
    return 1;
}

static int c_cast(lua_State *L)
{
    lua_pushlightuserdata(L, ir_cast(kern(L), check_dtype(L, 1), ptr(L, 2)));
    return 1;
}

static int c_bitcast(lua_State *L)
{
    lua_pushlightuserdata(L, ir_bitcast(kern(L), check_dtype(L, 1), ptr(L, 2)));
    return 1;
}

static int c_load(lua_State *L)
{
    Buffer *b = ptr(L, 1);
    Expr *idx[IR_MAX_RANK];
    expr_list(L, 2, idx, IR_MAX_RANK);
    lua_pushlightuserdata(L, ir_load(kern(L), b, idx));
    return 1;
}

/* dtype name of an expression, and its value if an integer constant. */
static int c_info(lua_State *L)
{
    Expr *e = ptr(L, 1);
    int64_t v;
    lua_pushstring(L, dt_name(e->dtype));
    if (ir_expr_is_const(e, &v))
        lua_pushinteger(L, v);
    else
        lua_pushnil(L);
    return 2;
}

static int c_print_expr(lua_State *L)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ir_print_expr(ptr(L, 1), f);
    fclose(f);
    lua_pushstring(L, buf);
    free(buf);
    return 1;
}

static int c_push(lua_State *L)
{
    Ctx *c = ctx(L);
    if (c->depth == MAX_DEPTH)
        return luaL_error(L, "tile: loops nested too deeply (%d levels)", MAX_DEPTH);
    c->blocks[c->depth++] = ir_seq(kern(L), loc_at(L, 1));
    return 0;
}

static int c_pop(lua_State *L)
{
    Ctx *c = ctx(L);
    if (c->depth == 0)
        return luaL_error(L, "tile: block stack underflow");
    lua_pushlightuserdata(L, c->blocks[--c->depth]);
    return 1;
}

static int c_depth(lua_State *L)
{
    lua_pushinteger(L, ctx(L)->depth);
    return 1;
}

static int c_store(lua_State *L)
{
    Buffer *b = ptr(L, 1);
    Expr *idx[IR_MAX_RANK];
    expr_list(L, 2, idx, IR_MAX_RANK);
    emit(L, ir_store(kern(L), b, idx, ptr(L, 3), loc_at(L, 4)));
    return 0;
}

static int c_copy(lua_State *L)
{
    bool atomic = lua_toboolean(L, 4);
    Region src = region(L, 1), dst = region(L, 2);
    emit(L, atomic ? ir_atomic_add(kern(L), src, dst, loc_at(L, 3))
                   : ir_copy(kern(L), src, dst, loc_at(L, 3)));
    return 0;
}

static int c_fill(lua_State *L)
{
    emit(L, ir_fill(kern(L), region(L, 1), ptr(L, 2), loc_at(L, 3)));
    return 0;
}

/* gemm(a, b, c, trans_a, trans_b, clear, line [, a_scale [, b_scale [, rows [, fast_accum [, cols]]]]]) */
static int c_gemm(lua_State *L)
{
    Stmt *g = ir_gemm(kern(L), region(L, 1), region(L, 2), region(L, 3), lua_toboolean(L, 4),
                      lua_toboolean(L, 5), lua_toboolean(L, 6), loc_at(L, 7));
    if (!lua_isnoneornil(L, 8))
        g->u.gemm.a_scale = region(L, 8);
    if (!lua_isnoneornil(L, 9))
        g->u.gemm.b_scale = region(L, 9);
    if (!lua_isnoneornil(L, 10))
        g->u.gemm.rows = ptr(L, 10);
    g->u.gemm.fast_accum = lua_toboolean(L, 11);
    if (!lua_isnoneornil(L, 12))
        g->u.gemm.cols = ptr(L, 12);
    emit(L, g);
    return 0;
}

static int c_reduce(lua_State *L)
{
    static const char *const ops[] = {"sum", "max", "min", "absmax", NULL};
    emit(L, ir_reduce(kern(L), region(L, 1), region(L, 2), (int)luaL_checkinteger(L, 3),
                      (ReduceOp)luaL_checkoption(L, 4, NULL, ops), lua_toboolean(L, 5),
                      loc_at(L, 6)));
    return 0;
}

static int c_loop(lua_State *L)
{
    static const char *const kinds[] = {"serial", "parallel", "unroll", "pipelined", NULL};
    emit(L, ir_for(kern(L), ptr(L, 1), ptr(L, 2), (LoopKind)luaL_checkoption(L, 3, NULL, kinds),
                   (int)luaL_optinteger(L, 4, 0), ptr(L, 5), loc_at(L, 6)));
    return 0;
}

static int c_if(lua_State *L)
{
    Stmt *else_ = lua_isnoneornil(L, 3) ? NULL : ptr(L, 3);
    emit(L, ir_if(kern(L), ptr(L, 1), ptr(L, 2), else_, loc_at(L, 4)));
    return 0;
}

static int c_grid(lua_State *L)
{
    Kernel *k = kern(L);
    Var *vars[IR_MAX_GRID];
    Expr *ext[IR_MAX_GRID];
    int n = expr_list(L, 2, ext, IR_MAX_GRID);
    for (int i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        vars[i] = ptr(L, -1);
        lua_pop(L, 1);
    }
    ir_set_grid(k, n, vars, ext);
    k->body = ptr(L, 3);
    return 0;
}

/* ------------------------------------------------------------- T.compose */

/* Detach the kernel just built (a composition's part, or the composed
 * kernel's signature) and hold it until core.compose joins them. */
static int c_take(lua_State *L)
{
    Ctx *c = ctx(L);
    Kernel *k = kern(L);
    if (c->nheld == MAX_HELD)
        return luaL_error(L, "tile: too many kernels in one composition");
    c->held[c->nheld++] = k;
    c->k = NULL;
    lua_pushlightuserdata(L, k);
    return 1;
}

static Kernel *held(lua_State *L, int i)
{
    Ctx *c = ctx(L);
    Kernel *k = ptr(L, i);
    for (int j = 0; j < c->nheld; j++)
        if (c->held[j] == k)
            return k;
    return luaL_error(L, "tile: not a kernel held for composition"), NULL;
}

static void release(Ctx *c, Kernel *k)
{
    for (int j = 0; j < c->nheld; j++)
        if (c->held[j] == k) {
            c->held[j] = c->held[--c->nheld];
            return;
        }
}

/* Statements built from now on are at lines of `path` (a part's spec), or
 * of the spec itself when nil.  The name lives in the arena of `owner`,
 * the composed kernel, which keeps the parts' statements. */
static int c_set_file(lua_State *L)
{
    Ctx *c = ctx(L);
    c->file = lua_isnoneornil(L, 1) ? c->spec_file : arena_strdup(held(L, 2)->arena, luaL_checkstring(L, 1));
    return 0;
}

/* compose(k, producer, consumer, {{out, in}, ...}): k becomes the kernel
 * being built; the parts are freed.  An illegal composition is an error
 * at k's line (the T.compose call). */
static int c_compose(lua_State *L)
{
    Ctx *c = ctx(L);
    Kernel *k = held(L, 1), *p = held(L, 2), *q = held(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    ComposeVia via[8];
    int n = (int)luaL_len(L, 4);
    if (n > 8)
        n = 8;
    for (int i = 0; i < n; i++) {
        lua_geti(L, 4, i + 1);
        lua_geti(L, -1, 1);
        lua_geti(L, -2, 2);
        via[i].out = luaL_checkstring(L, -2);
        via[i].in = luaL_checkstring(L, -1);
        lua_pop(L, 3);
    }
    Diag d = {0};
    if (!ir_compose(k, p, q, via, n, &d)) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, d.msg);
        lua_setfield(L, -2, "msg");
        if (d.hint[0]) {
            lua_pushstring(L, d.hint);
            lua_setfield(L, -2, "hint");
        }
        lua_pushinteger(L, k->loc.line);
        lua_setfield(L, -2, "line");
        return lua_error(L);
    }
    release(c, k);
    release(c, p);
    release(c, q);
    ir_kernel_free(p);
    ir_kernel_free(q);
    ir_kernel_free(c->k);
    c->k = k;
    return 0;
}

static const luaL_Reg core_fns[] = {
    {"kernel", c_kernel}, {"block_threads", c_block_threads}, {"kparam", c_kparam}, {"arg", c_arg},     {"buf", c_buf},
    {"sample", c_sample}, {"inputs_unset", c_inputs_unset},
    {"rename", c_rename}, {"var", c_var},       {"const", c_const}, {"unary", c_unary},
    {"binary", c_binary}, {"select", c_select}, {"cast", c_cast},   {"load", c_load}, {"bitcast", c_bitcast},
    {"info", c_info},     {"print_expr", c_print_expr},            {"push", c_push},
    {"pop", c_pop},       {"depth", c_depth},   {"store", c_store}, {"copy", c_copy},
    {"fill", c_fill},     {"gemm", c_gemm},     {"reduce", c_reduce}, {"loop", c_loop},
    {"if_", c_if},        {"grid", c_grid},     {"take", c_take}, {"set_file", c_set_file},
    {"compose", c_compose}, {NULL, NULL},
};

/* ------------------------------------------------------------- loading */

/* package.preload.tile: run tile.lua with the core table as its argument. */
static int open_tile(lua_State *L)
{
    if (luaL_loadbuffer(L, tile_lua_src, strlen(tile_lua_src), "=tile") != LUA_OK)
        return lua_error(L);
    lua_newtable(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, core_fns, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* Does msg begin with "CHUNK:LINE:" naming the spec?  Lua writes the chunk
 * as the path, or as "..." and its tail when the path is long. */
static bool spec_prefix(const char *msg, const char *path, int *line, const char **rest)
{
    size_t n = strlen(path);
    const char *after = NULL;
    if (!strncmp(msg, path, n) && msg[n] == ':') {
        after = msg + n + 1;
    } else if (!strncmp(msg, "...", 3)) {
        const char *colon = strstr(msg + 3, ":");
        size_t tail = colon ? (size_t)(colon - (msg + 3)) : 0;
        if (colon && tail > 0 && tail <= n && !strncmp(path + n - tail, msg + 3, tail))
            after = colon + 1;
    }
    if (!after)
        return false;
    char *end;
    long l = strtol(after, &end, 10);
    if (end == after || *end != ':')
        return false;
    *line = (int)l;
    for (end++; *end == ' '; end++)
        ;
    *rest = end;
    return true;
}

/* The message handler of every call into the spec: a plain Lua error
 * (a string) becomes {msg=, line=} at the innermost line of the spec on the
 * stack — the user's line even when the error happened in a module the
 * spec required.  tile.lua's own errors are tables already. */
static int on_error(lua_State *L)
{
    if (!lua_isstring(L, 1))
        return 1;
    const char *path = lua_tostring(L, lua_upvalueindex(1));
    const char *msg = lua_tostring(L, 1), *rest = msg;
    int line = 0;
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.source[0] == '@' && !strcmp(ar.source + 1, path) && ar.currentline > 0) {
            line = ar.currentline;
            break;
        }
    }
    int at;
    if (spec_prefix(msg, path, &at, &rest)) /* the error is in the spec itself */
        line = at;
    else
        rest = msg; /* in a module: keep its own file:line in the text */
    lua_createtable(L, 0, 2);
    lua_pushstring(L, rest);
    lua_setfield(L, -2, "msg");
    lua_pushinteger(L, line);
    lua_setfield(L, -2, "line");
    return 1;
}

/* Turn a Lua error into a Diag: a table {msg=, hint=, line=} (from tile.lua
 * or on_error), or a string (a syntax error from loading the spec). */
static void lua_diag(lua_State *L, const char *file, Diag *d)
{
    SrcLoc loc = {file, 0};
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "line");
        loc.line = (int)lua_tointeger(L, -1);
        lua_getfield(L, -2, "msg");
        diag_error(d, loc, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_getfield(L, -3, "hint");
        if (lua_isstring(L, -1))
            diag_hint(d, "%s", lua_tostring(L, -1));
        lua_pop(L, 3);
        return;
    }
    const char *msg = lua_tostring(L, -1), *rest;
    if (!msg)
        msg = "error (not a string)";
    if (spec_prefix(msg, file, &loc.line, &rest))
        msg = rest;
    diag_error(d, loc, "%s", msg);
}

/* What a spec's choose sees of t (T._build): a table, or nil without one. */
static void push_target(lua_State *L, const TargetInfo *t)
{
    if (!t) {
        lua_pushnil(L);
        return;
    }
    lua_newtable(L);
    lua_pushstring(L, t->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, t->vector_bits);
    lua_setfield(L, -2, "vector_bits");
    if (t->gpu_sm) {
        lua_pushinteger(L, t->gpu_sm);
        lua_setfield(L, -2, "sm");
        return;
    }
    lua_pushinteger(L, t->l1_bytes);
    lua_setfield(L, -2, "l1");
    lua_pushinteger(L, t->l2_bytes);
    lua_setfield(L, -2, "l2");
    lua_pushboolean(L, t->has_bf16_dot && t->vector_bits == 512);
    lua_setfield(L, -2, "bf16_dot");
}

Kernel *fe_load(const char *path, const FeSet *sets, int nsets, Diag *d)
{
    return fe_load_for(path, sets, nsets, NULL, d);
}

Kernel *fe_load_for(const char *path, const FeSet *sets, int nsets, const TargetInfo *t, Diag *d)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        SrcLoc loc = {path, 0};
        diag_error(d, loc, "cannot create a Lua state (out of memory)");
        return NULL;
    }
    luaL_openlibs(L);
    Ctx c = {.file = path, .spec_file = path};
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, &c);
    lua_pushcclosure(L, open_tile, 1);
    lua_setfield(L, -2, "tile");
    lua_pop(L, 1);
    /* A spec may require modules that sit beside it: "<dir>/?.lua" first. */
    const char *slash = strrchr(path, '/');
    char dir[1024];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s", dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);

    Kernel *k = NULL;
    FILE *probe = fopen(path, "r");
    if (!probe) {
        SrcLoc loc = {NULL, 0};
        diag_error(d, loc, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    fclose(probe);
    /* The chunk name "@path" makes Lua report the user's path in messages. */
    if (luaL_loadfile(L, path) != LUA_OK) {
        lua_diag(L, path, d);
        goto out;
    }
    /* tile._build(spec_result, sets, path) does the rest in Lua. */
    lua_pushstring(L, path);
    lua_pushcclosure(L, on_error, 1);
    int handler = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "tile");
    if (lua_pcall(L, 1, 1, handler) != LUA_OK) {
        lua_diag(L, path, d);
        goto out;
    }
    lua_getfield(L, -1, "_build");
    lua_pushvalue(L, handler - 1); /* the chunk */
    lua_newtable(L);
    for (int i = 0; i < nsets; i++) {
        lua_pushstring(L, sets[i].value);
        lua_setfield(L, -2, sets[i].name);
    }
    lua_pushstring(L, path);
    push_target(L, t);
    if (lua_pcall(L, 4, 0, handler) != LUA_OK) {
        lua_diag(L, path, d);
        goto out;
    }
    k = c.k;
    c.k = NULL;
    if (!ir_verify(k, d)) {
        ir_kernel_free(k);
        k = NULL;
    }
out:
    ir_kernel_free(c.k);
    for (int i = 0; i < c.nheld; i++)
        ir_kernel_free(c.held[i]);
    lua_close(L);
    return k;
}
