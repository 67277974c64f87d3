-- tile.lua — the `tile` module: the language kernels are written in.
--
-- Lua runs at build time.  Numbers and tables are build-time values; an E
-- (expression) wraps an IR node and its operators build IR.  Every check
-- here reports at the user's own line (`where`), never at a line of this
-- file.  `core` is the C half (frontend/lua.c): thin IR builders.
local core = ...

local T = {}
local USER_FILE        -- "@path" of the spec being built
local built            -- state of the kernel being built (see T._build)

------------------------------------------------------------------ errors

-- The innermost stack frame that runs the user's file: its line and level.
local function where()
  for level = 2, 64 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source == USER_FILE then return info.currentline, level end
  end
  return built and built.line or 0, nil
end

local function err(msg, hint)
  error({ msg = msg, hint = hint, line = (where()) }, 0)
end

------------------------------------------------------------------ dtypes

local DTYPES = { "f32", "bf16", "f16", "f8e4m3", "f8e5m2", "f4e2m1", "e8m0",
                 "i8", "u8", "i32", "i64", "bool" }
local is_dtype = {}
for _, d in ipairs(DTYPES) do T[d] = d; is_dtype[d] = true end
local function is_float(dt) return dt:sub(1, 1) == "f" or dt == "bf16" or dt == "e8m0" end

------------------------------------------------------------- expressions

local E = {}           -- metatable of expressions
E.__index = E

local function is_E(x) return getmetatable(x) == E end

local function wrap(h)
  local dtype, const = core.info(h)
  return setmetatable({ h = h, dtype = dtype, const = const }, E)
end

-- A build-time number or boolean becomes an IR constant.
local function lift(x, what)
  if is_E(x) then return x end
  local t = type(x)
  if t == "number" or t == "boolean" then return wrap(core.const(x)) end
  if type(x) == "table" and x.__proxy then
    err(("%s has rank %d but was indexed with %d index(es)"):format(x.buf.name, x.buf.rank, #x.idx),
        "index every dimension, e.g. x[i][j]")
  end
  err(("expected a number or tile expression%s, got %s"):format(what and (" for " .. what) or "", t))
end

local function binop(op)
  return function(a, b) return wrap(core.binary(op, lift(a).h, lift(b).h)) end
end

E.__add = binop("+")
E.__sub = binop("-")
E.__mul = binop("*")
E.__mod = binop("%")
E.__idiv = function(a, b)
  local x, y = lift(a), lift(b)
  if is_float(x.dtype) or is_float(y.dtype) then
    err("'//' is floor division of integers", "for floats use '/', then T.cast(x, T.i64) if needed")
  end
  return wrap(core.binary("/", x.h, y.h))
end
E.__div = function(a, b)
  local x, y = lift(a), lift(b)
  if not is_float(x.dtype) and not is_float(y.dtype) then
    err("'/' on two integer values is ambiguous", "use // for floor division, or T.cast(x, T.f32) first")
  end
  return wrap(core.binary("/", x.h, y.h))
end
E.__unm = function(a) return wrap(core.unary("neg", a.h)) end
-- Bit operations on integers (quantisation formats are bit layouts).
local function bitop(op)
  return function(a, b)
    local x, y = lift(a), lift(b)
    if is_float(x.dtype) or is_float(y.dtype) then
      err(("'%s' needs integers"):format(op), "reinterpret a float's bits with T.bitcast(x, T.i32)")
    end
    return wrap(core.binary(op, x.h, y.h))
  end
end
E.__band, E.__bor, E.__bxor, E.__shl, E.__shr = bitop("&"), bitop("|"), bitop("^"), bitop("<<"), bitop(">>")
E.__bnot = function(a) return bitop("^")(a, -1) end
local function no_compare()
  err("Lua's comparison operators must return a boolean, so they cannot build IR",
      "use T.lt(a, b), T.le, T.gt, T.ge, T.eq or T.ne")
end
E.__lt, E.__le = no_compare, no_compare
E.__pow = function() err("'^' is not a tile operator", "use T.exp2 or multiply") end
E.__concat = function() err("'..' is not a tile operator") end
E.__tostring = function(e) return core.print_expr(e.h) end
E.__call = function() err("a tile expression is not a function") end
function E.cast(e, dtype) return T.cast(e, dtype) end

local function cast(x, dtype)
  if not is_dtype[dtype] then err(("T.cast: unknown dtype %s"):format(tostring(dtype))) end
  return wrap(core.cast(dtype, lift(x).h))
end

local function unary(name, op)
  T[name] = function(x)
    if x == nil then err(("T.%s needs an argument"):format(name)) end
    return wrap(core.unary(op, lift(x, "T." .. name).h))
  end
end
for _, op in ipairs { "exp", "exp2", "log", "sqrt", "rsqrt", "sigmoid", "silu", "softplus", "abs" } do
  unary(op, op)
end

function T.min(a, b)
  if type(a) == "number" and type(b) == "number" then return math.min(a, b) end
  return wrap(core.binary("min", lift(a).h, lift(b).h))
end
function T.max(a, b)
  if type(a) == "number" and type(b) == "number" then return math.max(a, b) end
  return wrap(core.binary("max", lift(a).h, lift(b).h))
end
function T.clamp(x, lo, hi) return T.min(T.max(x, lo), hi) end
function T.select(c, a, b)
  local cc = lift(c)
  if cc.dtype ~= "bool" then err("T.select: the condition must be a comparison (bool), not " .. cc.dtype) end
  return wrap(core.select(cc.h, lift(a).h, lift(b).h))
end
T.cast = cast

-- Reinterpret the bits of an f32 value as i32, or of an integer as f32.
function T.bitcast(x, dtype)
  local e = lift(x, "T.bitcast")
  local ok = (dtype == "i32" and is_float(e.dtype)) or (dtype == "f32" and not is_float(e.dtype) and e.dtype ~= "bool")
  if not ok then
    err(("T.bitcast(%s value, %s): only f32 <-> i32"):format(e.dtype, tostring(dtype)))
  end
  return wrap(core.bitcast(dtype, e.h))
end

local function cmp(op)
  return function(a, b) return wrap(core.binary(op, lift(a).h, lift(b).h)) end
end
T.lt, T.le, T.eq, T.ne = cmp("<"), cmp("<="), cmp("=="), cmp("!=")
function T.gt(a, b) return T.lt(b, a) end
function T.ge(a, b) return T.le(b, a) end
T.and_, T.or_ = cmp("and"), cmp("or")
function T.not_(a) return wrap(core.unary("not", lift(a).h)) end

function T.ceildiv(a, b)
  if math.type(a) == "integer" and math.type(b) == "integer" then return (a + b - 1) // b end
  return (lift(a) + b - 1) // b
end

----------------------------------------------------------------- buffers

local B = {}           -- metatable of buffers (arguments and scratch)
local Bm = {}          -- buffer methods
local V = {}           -- metatable of tile views
local P = {}           -- metatable of partially indexed buffers

local function is_B(x) return getmetatable(x) == B end

local function shape_str(shape)
  local t = {}
  for i, d in ipairs(shape) do t[i] = tostring(d) end
  return table.concat(t, "x")
end

-- Give a scratch buffer the name of the user's local holding it.
local function autoname(b)
  if b.named then return end
  local _, level = where()
  if not level then return end
  for i = 1, 200 do
    local name, value = debug.getlocal(level - 1, i)
    if not name then break end
    if value == b and name:sub(1, 1) ~= "(" then   -- "(temporary)" etc. are Lua's own
      if core.rename(b.h, name) then b.name, built.names[name] = name, true end
      b.named = true
      return
    end
  end
end

-- Statements exist only inside the grid: check before building one.
local function need_grid(what)
  if core.depth() == 0 then
    err(what .. " must be inside the kernel's T.grid loop", "put the body's statements inside: for b in T.grid(n) do ... end")
  end
end

local function index_expr(x, b)
  local e = lift(x, "an index")
  if is_float(e.dtype) or e.dtype == "bool" then
    err(("index into %s must be an integer, not %s"):format(b.name, e.dtype), "use T.cast(x, T.i64) or //")
  end
  return e.h
end

local function load(b, idx)
  if #idx ~= b.rank then
    err(("%s has rank %d but was indexed with %d index(es)"):format(b.name, b.rank, #idx),
        "index every dimension, e.g. x[i][j]")
  end
  local hs = {}
  for i, x in ipairs(idx) do hs[i] = index_expr(x, b) end
  return wrap(core.load(b.h, hs))
end

local function store(b, idx, v)
  if #idx ~= b.rank then
    err(("%s has rank %d but the store gives %d index(es)"):format(b.name, b.rank, #idx))
  end
  if b.global and b.dir == "in" then
    err(("argument %s is an input; mark it out = true or inout = true to write it"):format(b.name))
  end
  local e = lift(v, "a store")
  if not is_float(b.dtype) and is_float(e.dtype) then
    err(("storing an %s value into %s buffer %s"):format(e.dtype, b.dtype, b.name),
        ("convert explicitly: T.cast(value, T.%s)"):format(b.dtype))
  end
  local hs = {}
  for i, x in ipairs(idx) do hs[i] = index_expr(x, b) end
  need_grid("a store to " .. b.name)
  autoname(b)
  core.store(b.h, hs, e.h, (where()))
end

-- x[i] on a rank-n buffer: a load when n indices are known, else a proxy.
local function index(b, idx)
  if #idx == b.rank then return load(b, idx) end
  return setmetatable({ __proxy = true, buf = b, idx = idx }, P)
end

P.__index = function(p, k)
  local idx = { table.unpack(p.idx) }
  idx[#idx + 1] = k
  return index(p.buf, idx)
end
P.__newindex = function(p, k, v)
  local idx = { table.unpack(p.idx) }
  idx[#idx + 1] = k
  store(p.buf, idx, v)
end
for _, mm in ipairs { "__add", "__sub", "__mul", "__div", "__mod", "__unm", "__idiv" } do
  P[mm] = function(a, b)
    local p = getmetatable(a) == P and a or b
    lift(p)
  end
end

B.__index = function(b, k)
  if type(k) == "string" then
    local m = Bm[k]
    if m then return m end
    err(("buffer %s has no field '%s'"):format(rawget(b, "name"), k), "index with numbers or tile expressions: x[i][j]")
  end
  if type(k) == "table" and not is_E(k) then return load(b, k) end
  return index(b, { k })
end
B.__newindex = function(b, k, v)
  if type(k) == "table" and not is_E(k) then return store(b, k, v) end
  store(b, { k }, v)
end
B.__tostring = function(b) return ("%s %s %s[%s]"):format(b.scope, b.name, b.dtype, shape_str(b.shape)) end

-- A:tile(r0, c0 [, {h, w}]): a window of a buffer at element offsets.
function Bm.tile(b, ...)
  local n = select("#", ...)
  local args = { ... }
  local ext
  if n > 0 and type(args[n]) == "table" and not is_E(args[n]) then
    ext = args[n]; args[n] = nil; n = n - 1
  end
  if n ~= b.rank then
    err(("%s:tile needs %d offsets (one per dimension), got %d"):format(b.name, b.rank, n))
  end
  if ext and #ext ~= b.rank then
    err(("%s:tile: extents {%s} have %d dims, the buffer has %d"):format(b.name, shape_str(ext), #ext, b.rank))
  end
  return setmetatable({ buf = b, off = args, ext = ext }, V)
end
V.__index = function(v, k) err("a tile view is only an operand of T.copy, T.gemm, T.reduce_*, T.fill or T.atomic_add") end

local seq = 0
local function next_seq() seq = seq + 1; return seq end

-- least: the smallest dimension allowed (0 for arguments, which may be
-- empty: a dyn size fixed at 0; 1 for scratch tiles).
local function parse_dims(spec, what, least)
  local dims, dtype = {}, spec.dtype
  for i, x in ipairs(spec) do
    if type(x) == "string" then
      if not is_dtype[x] then err(("%s: unknown dtype '%s'"):format(what, x), "one of " .. table.concat(DTYPES, ", ")) end
      dtype = x
    else
      dims[#dims + 1] = x
    end
  end
  if not dtype then err(what .. " needs a dtype, e.g. T.f32") end
  if #dims == 0 or #dims > 6 then err(("%s needs 1 to 6 dimensions, got %d"):format(what, #dims)) end
  for i, d in ipairs(dims) do
    if is_E(d) then
      if is_float(d.dtype) then err(("%s: dimension %d is a %s expression"):format(what, i, d.dtype)) end
    elseif math.type(d) ~= "integer" or d < least then
      err(("%s: dimension %d must be a %s integer, got %s"):format(what, i, least == 0 and "non-negative" or "positive",
                                                                   tostring(d)))
    end
  end
  return dims, dtype
end

function T.tensor(spec)
  if type(spec) ~= "table" then err("T.tensor{dims..., dtype} takes a table") end
  local dims, dtype = parse_dims(spec, "T.tensor", 0)
  local dir = spec.inout and "inout" or spec.out and "out" or "in"
  if spec.strides ~= nil then
    if type(spec.strides) ~= "table" or #spec.strides ~= #dims then
      err(("T.tensor: strides must list %d values (one per dimension)"):format(#dims))
    end
    for i, st in ipairs(spec.strides) do
      if not is_E(st) and math.type(st) ~= "integer" then
        err(("T.tensor: stride %d must be an integer, got %s"):format(i, tostring(st)))
      end
    end
  end
  return { __tensor = true, dims = dims, dtype = dtype, dir = dir, strides = spec.strides,
           seq = next_seq(), line = (where()) }
end

local scratch_count = {}
local function scratch(scope)
  return function(spec)
    if type(spec) ~= "table" then err(("T.%s{dims..., dtype} takes a table"):format(scope)) end
    if not built or not built.in_body then err(("T.%s is only allowed inside the kernel body"):format(scope)) end
    local dims, dtype = parse_dims(spec, "T." .. scope, 1)
    for i, d in ipairs(dims) do
      if is_E(d) then
        if d.const then dims[i] = d.const
        else err(("T.%s: dimension %d is not a constant (%s)"):format(scope, i, tostring(d)),
                 "scratch buffers need static shapes; tile the dynamic dimension") end
      end
    end
    local n = scratch_count[scope] or 0
    scratch_count[scope] = n + 1
    local name = spec.name or (scope == "fragment" and "frag" or scope) .. n
    if spec.name and built.names[name] then
      err(("T.%s: the name %s is already taken"):format(scope, name), "give the buffer another name")
    end
    built.names[name] = true
    local line = (where())
    local h = core.buf(name, scope, dtype, dims, line)
    return setmetatable({ h = h, name = name, named = spec.name ~= nil, scope = scope, dtype = dtype,
                          shape = dims, rank = #dims, global = false, dir = false, line = line }, B)
  end
end
T.shared, T.fragment, T.local_ = scratch("shared"), scratch("fragment"), scratch("local")
T["local"] = T.local_

------------------------------------------------------------------ regions

local function static_shape(b)
  local ext = {}
  for i, d in ipairs(b.shape) do
    if is_E(d) then
      if not d.const then return nil end
      ext[i] = d.const
    else
      ext[i] = d
    end
  end
  return ext
end

-- Non-unit extents: the shape two operands must agree on.
local function squeeze(ext)
  local t = {}
  for _, n in ipairs(ext) do if n ~= 1 then t[#t + 1] = n end end
  return t
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Extents a view takes from its partner: the same when the ranks agree,
-- else the partner's non-unit extents aligned to the right, 1 elsewhere.
local function fit(rank, other)
  local ext = {}
  if #other == rank then
    for i = 1, rank do ext[i] = other[i] end
    return ext
  end
  local o = squeeze(other)
  for i = 1, rank do ext[i] = 1 end
  if #o > rank then return nil end
  for i = 1, #o do ext[rank - #o + i] = o[i] end
  return ext
end

-- operand → {buf=, off=, ext=} given the partner's extents (or nil).
local function region(x, partner_ext, what)
  local b, off, ext
  if is_B(x) then
    b = x
    ext = static_shape(b)
    if not ext then err(("%s: %s has a dynamic shape; use %s:tile(...) with explicit extents"):format(what, b.name, b.name)) end
    off = {}
    for i = 1, b.rank do off[i] = 0 end
  elseif getmetatable(x) == V then
    b, off, ext = rawget(x, "buf"), rawget(x, "off"), rawget(x, "ext")
    if not ext then
      if not partner_ext then err(("%s: the extents of %s:tile(...) are unknown"):format(what, b.name),
                                  "give them: " .. b.name .. ":tile(r, c, {h, w})") end
      ext = fit(b.rank, partner_ext)
      if not ext then err(("%s: a %s tile does not fit rank-%d %s"):format(what, shape_str(partner_ext), b.rank, b.name)) end
    end
  else
    err(("%s: expected a buffer or a tile view, got %s"):format(what, type(x)))
  end
  autoname(b)
  local hs = {}
  for i, o in ipairs(off) do hs[i] = index_expr(o, b) end
  return { buf = b.h, off = hs, ext = ext, b = b }
end

local function known_ext(x)
  if is_B(x) then return static_shape(x) end
  if getmetatable(x) == V then return rawget(x, "ext") end
end

function T.copy(src, dst)
  need_grid("T.copy")
  local s = region(src, known_ext(dst), "T.copy")
  local d = region(dst, s.ext, "T.copy")
  if not same(squeeze(s.ext), squeeze(d.ext)) then
    err(("T.copy: source is %s but destination is %s"):format(shape_str(s.ext), shape_str(d.ext)))
  end
  if d.b.global and d.b.dir == "in" then
    err(("T.copy: argument %s is an input; mark it out = true to write it"):format(d.b.name))
  end
  if is_float(s.b.dtype) ~= is_float(d.b.dtype) then
    err(("T.copy: %s is %s but %s is %s"):format(s.b.name, s.b.dtype, d.b.name, d.b.dtype), "copy between float buffers, or cast elementwise")
  end
  core.copy(s, d, (where()), false)
end

function T.atomic_add(dst, src)
  need_grid("T.atomic_add")
  local s = region(src, known_ext(dst), "T.atomic_add")
  local d = region(dst, s.ext, "T.atomic_add")
  if not same(squeeze(s.ext), squeeze(d.ext)) then
    err(("T.atomic_add: source is %s but destination is %s"):format(shape_str(s.ext), shape_str(d.ext)))
  end
  if not is_float(d.b.dtype) then err("T.atomic_add: destination must be a float buffer") end
  core.copy(s, d, (where()), true)
end

function T.fill(dst, value)
  need_grid("T.fill")
  local d = region(dst, nil, "T.fill")
  local v = lift(value, "T.fill")
  if not is_float(d.b.dtype) and is_float(v.dtype) then
    err(("T.fill: %s value into %s buffer %s"):format(v.dtype, d.b.dtype, d.b.name))
  end
  core.fill(d, v.h, (where()))
end

function T.clear(dst)
  if not is_B(dst) and getmetatable(dst) ~= V then
    err(("T.clear: expected a buffer or a tile view, got %s"):format(type(dst)))
  end
  local b = is_B(dst) and dst or rawget(dst, "buf")
  T.fill(dst, b and is_float(b.dtype) and 0.0 or 0)
end

local function dims2(r, trans)
  if trans then return r.ext[2], r.ext[1] end
  return r.ext[1], r.ext[2]
end

-- An options table whose keys are all among known (a list): a misspelt
-- option would otherwise be ignored without a word.
local function check_opts(opts, what, known)
  if opts ~= nil and type(opts) ~= "table" then
    err(("%s: options must be a table, got %s"):format(what, type(opts)), "e.g. { trans_b = true }")
  end
  for key in pairs(opts or {}) do
    local ok = false
    for _, k in ipairs(known) do ok = ok or k == key end
    if not ok then
      err(("%s: unknown option %s"):format(what, tostring(key)), "the options are " .. table.concat(known, ", "))
    end
  end
  return opts or {}
end

-- A block scale of a T.gemm operand x (the a_scale or b_scale option):
-- e8m0 or f32, x's rank, extents dividing x's into blocks.  Returns its
-- region, or nil without one.
local function gemm_scale(s, x, what)
  if s == nil then return nil end
  local name = what .. "_scale"
  local r = region(s, nil, "T.gemm " .. name)
  if r.b.dtype ~= "e8m0" and r.b.dtype ~= "f32" then
    err(("T.gemm: %s %s is %s; block scales are e8m0 or f32"):format(name, r.b.name, r.b.dtype))
  end
  if #r.ext ~= #x.ext then
    err(("T.gemm: %s %s is %s but %s is %s (a scale has its operand's rank)"):format(
      name, r.b.name, shape_str(r.ext), x.b.name, shape_str(x.ext)))
  end
  for d = 1, #r.ext do
    if x.ext[d] % r.ext[d] ~= 0 then
      err(("T.gemm: %s %s is %s, which does not divide %s's %s into blocks"):format(
        name, r.b.name, shape_str(r.ext), x.b.name, shape_str(x.ext)),
        ("e.g. %s[N, K/32] for 1x32 blocks of B[N, K]"):format(name))
    end
  end
  return r
end

-- The rows (cols) option of T.gemm: how many of C's m rows (columns) are
-- wanted (an integer expression; a constant one is checked here).
-- Returns its IR, or nil.
local function gemm_wanted(n, m, what)
  if n == nil then return nil end
  local r = lift(n, "T.gemm " .. what)
  if is_float(r.dtype) then err(("T.gemm: %s must be an integer, not %s"):format(what, r.dtype)) end
  if r.const ~= nil and (r.const < 0 or r.const > m) then
    err(("T.gemm: %s = %d, but C has %d %s"):format(what, r.const, m, what == "cols" and "columns" or what))
  end
  return r.h
end

-- A scaled operand may keep leading unit dims (w:tile(e, n, k, {1, BN, BK})):
-- its matrix is the last two.
local function gemm_matrix(r, scaled, what)
  local n = #r.ext
  local ok = n == 2 or (scaled and n > 2)
  for d = 1, n - 2 do ok = ok and r.ext[d] == 1 end
  if not ok then
    err(("T.gemm: %s must be 2-D, %s is %s"):format(what, r.b.name, shape_str(r.ext)),
        scaled and "a block-scaled operand may have leading dims of extent 1 only" or nil)
  end
  return { ext = { r.ext[n - 1], r.ext[n] } }
end

function T.gemm(A, Bt, C, opts)
  need_grid("T.gemm")
  opts = check_opts(opts, "T.gemm", { "trans_a", "trans_b", "clear", "a_scale", "b_scale", "rows", "cols",
                                          "fast_accum" })
  if opts.fast_accum ~= nil and type(opts.fast_accum) ~= "boolean" then
    err(("T.gemm: fast_accum must be true or false, not %s"):format(tostring(opts.fast_accum)))
  end
  local a0, b0, c = region(A, nil, "T.gemm"), region(Bt, nil, "T.gemm"), region(C, nil, "T.gemm")
  local as = gemm_scale(opts.a_scale, a0, "a")
  local bs = gemm_scale(opts.b_scale, b0, "b")
  local a = gemm_matrix(a0, as ~= nil, "A")
  local b = gemm_matrix(b0, bs ~= nil, "B")
  gemm_matrix(c, false, "C")
  a.b, b.b = a0.b, b0.b
  local m, ka = dims2(a, opts.trans_a)
  local kb, n = dims2(b, opts.trans_b)
  local A_s, B_s = shape_str(a.ext), shape_str(b.ext)
  if ka ~= kb then
    err(("T.gemm: A is %s but B is %s (K mismatch)"):format(A_s, B_s),
        opts.trans_b and "with trans_b B is N x K" or "B is K x N; pass {trans_b = true} if it is N x K")
  end
  if c.ext[1] ~= m or c.ext[2] ~= n then
    err(("T.gemm: A·B is %dx%d but C is %s"):format(m, n, shape_str(c.ext)))
  end
  if a.b.dtype ~= b.b.dtype and not (as or bs) then
    err(("T.gemm: A is %s but B is %s (inputs must have the same dtype)"):format(a.b.dtype, b.b.dtype),
        "unless one of them is block-scaled (a_scale, b_scale)")
  end
  for _, x in ipairs { a, b } do
    if not is_float(x.b.dtype) then err(("T.gemm: inputs must be float, not %s"):format(x.b.dtype)) end
  end
  if c.b.dtype ~= "f32" then
    err(("T.gemm: the accumulator C must be f32, not %s"):format(c.b.dtype), "accumulate in a T.fragment{..., T.f32}")
  end
  core.gemm(a0, b0, c, opts.trans_a or false, opts.trans_b or false, opts.clear or false, (where()), as, bs,
            gemm_wanted(opts.rows, m, "rows"), opts.fast_accum or false, gemm_wanted(opts.cols, n, "cols"))
end

local function reducer(op)
  return function(src, dst, axis, opts)
    need_grid("T.reduce_" .. op)
    opts = check_opts(opts, "T.reduce_" .. op, { "clear" })
    local s = region(src, nil, "T.reduce_" .. op)
    local d = region(dst, nil, "T.reduce_" .. op)
    if math.type(axis) ~= "integer" or axis < 0 or axis >= #s.ext then
      err(("T.reduce_%s: axis must be 0..%d for a rank-%d source, got %s"):format(op, #s.ext - 1, #s.ext, tostring(axis)))
    end
    local want = {}
    for i, n in ipairs(s.ext) do if i ~= axis + 1 then want[#want + 1] = n end end
    if #want == 0 then want = { 1 } end
    if not same(want, d.ext) then
      err(("T.reduce_%s: reducing %s over axis %d gives %s, but the destination is %s"):format(
        op, shape_str(s.ext), axis, shape_str(want), shape_str(d.ext)))
    end
    if not is_float(d.b.dtype) then err(("T.reduce_%s: destination must be float"):format(op)) end
    local clear = opts.clear
    if clear == nil then clear = true end
    core.reduce(s, d, axis, op, clear, (where()))
  end
end
for _, op in ipairs { "sum", "max", "min", "absmax" } do T["reduce_" .. op] = reducer(op) end

------------------------------------------------------------------- loops

local function extent(n, what)
  if math.type(n) == "integer" then
    if n < 0 then err(("%s: negative extent %d"):format(what, n)) end
    return core.const(n)
  end
  local e = lift(n, what)
  if is_float(e.dtype) or e.dtype == "bool" then err(("%s: extent must be an integer, not %s"):format(what, e.dtype)) end
  return e.h
end

-- A generic-for over one build-time pass: the iterator yields the loop
-- variables once, and the to-be-closed value closes the IR block when the
-- Lua loop ends (normally, by break, or by error).
local function loop(kind, names, extents, n, arg, what)
  if not built or not built.in_body then err(what .. " is only allowed inside the kernel body") end
  for i = 1, n do
    if extents[i] == nil then err(("%s: extent %d is nil"):format(what, i), "is a parameter misspelt?") end
  end
  if kind ~= "grid" then need_grid(what) end
  local line = (where())
  local vars, exprs = {}, {}
  for i, n in ipairs(extents) do extents[i] = extent(n, what) end
  for i = 1, #extents do
    local v, e = core.var(names[i] or ("i" .. i))
    vars[i], exprs[i] = v, wrap(e)
  end
  core.push(line)
  local depth = core.depth()
  local done = false
  local function iter()
    if done then return nil end
    done = true
    return table.unpack(exprs)
  end
  local closer = setmetatable({}, { __close = function(_, e)
    if e ~= nil then return end -- an error is on its way; nothing to emit
    if core.depth() ~= depth then err(what .. ": unbalanced blocks (a T.if_ body raised?)") end
    local body = core.pop()
    if kind == "grid" then
      if built.grid then err("a kernel has exactly one T.grid") end
      if core.depth() ~= 0 then err("T.grid must be the outermost loop of the body") end
      core.grid(vars, extents, body)
      built.grid = true
      return
    end
    for i = #vars, 1, -1 do
      if i < #vars then
        core.push(line)
        core.loop(vars[i + 1], extents[i + 1], kind, arg, body, line)
        body = core.pop()
      end
    end
    core.loop(vars[1], extents[1], kind, arg, body, line)
  end })
  return iter, nil, nil, closer
end

function T.grid(...)
  local n = select("#", ...)
  if n < 1 or n > 3 then err(("T.grid takes 1 to 3 extents, got %d"):format(n)) end
  if built and built.grid then err("a kernel has exactly one T.grid") end
  local names = ({ { "bx" }, { "by", "bx" }, { "bz", "by", "bx" } })[n]
  return loop("grid", names, { ... }, n, 0, "T.grid")
end
local function check_n(n, what) if n == nil then err(what .. " needs an extent") end end
function T.serial(n) check_n(n, "T.serial"); return loop("serial", { "i" }, { n }, 1, 0, "T.serial") end
function T.unroll(n)
  check_n(n, "T.unroll")
  if math.type(n) ~= "integer" then err("T.unroll needs a constant extent") end
  return loop("unroll", { "u" }, { n }, 1, 0, "T.unroll")
end
function T.pipelined(n, stages)
  check_n(n, "T.pipelined")
  stages = stages or 2
  if math.type(stages) ~= "integer" or stages < 1 then err("T.pipelined: stages must be a positive integer") end
  return loop("pipelined", { "k" }, { n }, 1, stages, "T.pipelined")
end
function T.parallel(...)
  local n = select("#", ...)
  if n < 1 or n > 6 then err(("T.parallel takes 1 to 6 extents, got %d"):format(n)) end
  return loop("parallel", { "i", "j", "l", "m", "n", "o" }, { ... }, n, 0, "T.parallel")
end

function T.if_(cond, then_fn, else_fn)
  need_grid("T.if_")
  local c = lift(cond, "T.if_")
  if c.dtype ~= "bool" then err("T.if_: the condition must be a comparison (bool), not " .. c.dtype, "use T.lt(a, b) and friends") end
  if type(then_fn) ~= "function" then err("T.if_(cond, function() ... end [, function() ... end])") end
  local line = (where())
  core.push(line); then_fn(); local t = core.pop()
  local e
  if else_fn then core.push(line); else_fn(); e = core.pop() end
  core.if_(c.h, t, e, line)
end

-- A spec's own constraint: an error at the caller's line when c is false.
function T.check(c, msg, hint)
  if not c then err(msg, hint) end
end

-------------------------------------------------------------- parameters

local DYN = setmetatable({}, { __tostring = function() return "T.dyn" end })
T.dyn = DYN
function T.tune(cands)
  if type(cands) ~= "table" or #cands == 0 then err("T.tune{...} needs a list of candidates") end
  return { __tune = true, cands = cands }
end
-- A choice of what the kernel computes (a dtype, a mode), set as a tune{}
-- one is but never swept, picked by choose or taken from a results store:
-- two values give two different results, not one result at two speeds.
function T.variant(cands)
  if type(cands) ~= "table" or #cands == 0 then err("T.variant{...} needs a list of values") end
  return { __tune = true, variant = true, cands = cands }
end
function T.size(default)
  if math.type(default) ~= "integer" or default < 1 then err("T.size(n) needs a positive integer default") end
  return { __size = true, default = default }
end

local function names_of(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  return names
end

local function set_error(msg, hint) error({ msg = msg, hint = hint, line = built.line }, 0) end

-- An integer of at least `least` (1 for sizes; 0 for a dyn dimension,
-- which may be empty at run time: an expert with no tokens).
local function int_at_least(least, name, s)
  local v = math.tointeger(tonumber(s))
  if not v or v < least then
    set_error(("--set %s=%s: expected %s integer"):format(name, s, least == 0 and "a non-negative" or "a positive"))
  end
  return v
end

-- One parameter's value from its declaration v and its --set text s.
local function resolve_one(name, v, s, picked)
  if v == DYN then
    if s then
      local n = int_at_least(0, name, s)
      core.kparam(name, "fixed", tostring(n))
      return n
    end
    return wrap(core.kparam(name, "dyn"))
  elseif type(v) == "table" and v.__tune then
    local chosen = v.cands[1]
    if s then
      chosen = nil
      for _, c in ipairs(v.cands) do if tostring(c) == s then chosen = c end end
      if chosen == nil then
        local cs = {}
        for i, c in ipairs(v.cands) do cs[i] = tostring(c) end
        set_error(("--set %s=%s: not one of its %s{} values {%s}"):format(name, s, v.variant and "variant" or "tune",
                  table.concat(cs, ", ")))
      end
    end
    core.kparam(name, v.variant and "variant" or "tune", tostring(chosen), v.cands, picked)
    return chosen
  elseif type(v) == "table" and v.__size then
    local n = s and int_at_least(1, name, s) or v.default
    core.kparam(name, "tune", tostring(n))
    return n
  elseif type(v) == "number" or type(v) == "string" or type(v) == "boolean" then
    if s then
      set_error(("--set %s: parameter %s is fixed (%s)"):format(name, name, tostring(v)),
                "make it T.tune{...}, T.variant{...}, T.size(n) or T.dyn to set it")
    end
    core.kparam(name, "fixed", tostring(v))
    return v
  end
  set_error(("parameter %s: expected a number, a string, T.dyn, T.tune{...}, T.variant{...} or T.size(n)"):format(name))
end

-- choose = function(p, target) ... end: the spec's own defaults for the
-- tune{} parameters left unset, from the shape and the target.  p holds
-- what is known before any is chosen: sizes, fixed values, dyn ones given
-- a number, tune values that were set (an unset tune or dyn one is nil);
-- target is T._build's table.  It returns { NAME = value, ... } with
-- values among each one's candidates; the others take their first.
local function chosen_defaults(choose, params, sets, target)
  if choose == nil or target == nil then return {} end
  if type(choose) ~= "function" then
    set_error(("kernel %s: choose must be a function(p, target) returning tune{} values"):format(built.name))
  end
  local known = {}
  for name, v in pairs(params) do
    local s = sets[name]
    if v == DYN or (type(v) == "table" and v.__size) then
      known[name] = s and math.tointeger(tonumber(s)) or (v ~= DYN and v.default or nil)
    elseif type(v) == "table" and v.__tune then
      for _, c in ipairs(v.cands) do if s and tostring(c) == s then known[name] = c end end
      if v.variant and known[name] == nil then known[name] = v.cands[1] end -- part of the problem: always known
    else
      known[name] = v
    end
  end
  local picks = choose(known, target)
  if type(picks) ~= "table" then
    set_error(("kernel %s: choose returned %s, not a table of tune{} values"):format(built.name, type(picks)))
  end
  local out = {}
  for name, value in pairs(picks) do
    local v = params[name]
    if type(v) ~= "table" or not v.__tune then
      set_error(("kernel %s: choose picked %s, which is not a tune{} parameter"):format(built.name, tostring(name)))
    end
    if v.variant then
      set_error(("kernel %s: choose picked %s, a variant{} (what the kernel computes), not a tune{} parameter")
                :format(built.name, name))
    end
    local ok = false
    for _, c in ipairs(v.cands) do ok = ok or tostring(c) == tostring(value) end
    if not ok then
      local cs = {}
      for i, c in ipairs(v.cands) do cs[i] = tostring(c) end
      set_error(("kernel %s: choose picked %s = %s, not one of its tune{} values {%s}"):format(built.name, name,
                tostring(value), table.concat(cs, ", ")))
    end
    if sets[name] == nil then out[name] = tostring(value) end -- a --set value stays
  end
  return out
end

-- Resolve every parameter (with --set overrides) into p and record it.
-- forced (a composition's part): every parameter takes the composed
-- kernel's value instead (T.dyn: a run-time scalar of the same name).
-- derived (a composition): a function value is a parameter computed from
-- the others, p.X = f(p), recorded after them.
local function resolve_params(params, sets, forced, derived, picks)
  local p = {}
  for name in pairs(sets) do
    if params[name] == nil then
      set_error(("--set %s: kernel %s has no parameter %s"):format(name, built.name, name),
                "its parameters: " .. table.concat(names_of(params), ", "))
    end
  end
  local later = {}
  for _, name in ipairs(names_of(params)) do
    local v, s, picked = params[name], sets[name], false
    if s == nil and picks and picks[name] then s, picked = picks[name], true end
    if forced and forced[name] ~= nil then
      v, s, picked = forced[name], nil, false
    end
    if derived and type(v) == "function" then
      if s then set_error(("--set %s: parameter %s is derived from the others (T.compose params)"):format(name, name)) end
      later[#later + 1] = name
    else
      p[name] = resolve_one(name, v, s, picked)
    end
  end
  -- A misspelt p.X is an error at the user's line, not a nil that fails later.
  setmetatable(p, { __index = function(_, k)
    err(("kernel %s has no parameter %s"):format(built.name, tostring(k)),
        "its parameters: " .. table.concat(names_of(params), ", "))
  end })
  for _, name in ipairs(later) do
    local v = params[name](p)
    if type(v) ~= "number" and type(v) ~= "string" and type(v) ~= "boolean" then
      err(("parameter %s: its function returned %s, not a number, string or boolean"):format(name, type(v)))
    end
    rawset(p, name, v)
    core.kparam(name, "fixed", tostring(v))
  end
  return p
end

-- An argument a configuration leaves out: `ids = hash and T.tensor{...} or T.none`;
-- the body receives nil for it.
T.none = setmetatable({}, { __tostring = function() return "T.none" end })

-- The arguments in declaration order (the order of their T.tensor calls).
local function declare_args(def, p)
  local args = def.args
  if type(args) == "function" then args = args(p) end
  if type(args) ~= "table" then err("kernel " .. built.name .. ": args must be a table or a function returning one") end
  local list = {}
  built.absent = {}
  for name, t in pairs(args) do
    if t == T.none then
      built.absent[name] = true
    elseif type(name) ~= "string" or type(t) ~= "table" or not t.__tensor then
      err(("kernel %s: args.%s must be a T.tensor{...}"):format(built.name, tostring(name)))
    else
      list[#list + 1] = { name = name, t = t }
    end
  end
  table.sort(list, function(a, b) return a.t.seq < b.t.seq end)
  local bufs = {}
  for i, a in ipairs(list) do
    local hs = {}
    for j, d in ipairs(a.t.dims) do hs[j] = lift(d).h end
    local strides
    if a.t.strides then
      strides = {}
      for j, s in ipairs(a.t.strides) do strides[j] = lift(s).h end
    end
    built.names[a.name] = true
    local h = core.arg(a.name, a.t.dtype, hs, a.t.dir, a.t.line, strides)
    bufs[a.name] = setmetatable({ h = h, name = a.name, named = true, scope = "global", dtype = a.t.dtype,
                                  shape = a.t.dims, rank = #a.t.dims, global = true, dir = a.t.dir }, B)
    list[i] = bufs[a.name]
  end
  return bufs, list
end

-- inputs = function(p) return { name = {v1, v2, ...} or v, ... } end: the
-- values 'tilec run' and 'tilec sweep' give those input arguments where no
-- --in file does, in place of random numbers — for inputs with a contract
-- random numbers break (an MoE schedule's row ranges, which must not
-- overlap).  A list holds every element, row-major; a number fills the
-- argument.  Taken only where every dyn size is set (T.dyn parameters are
-- run-time values until --set gives them one).
local function set_inputs(def, p, bufs)
  local inputs = def.inputs
  if inputs == nil then return end
  local line = type(inputs) == "function" and debug.getinfo(inputs, "S").linedefined or built.line
  local function fail(msg, hint)
    error({ msg = ("kernel %s: inputs: %s"):format(built.name, msg), hint = hint, line = line }, 0)
  end
  if type(inputs) ~= "function" then fail("must be a function(p) returning { argument = values }") end
  for _, v in pairs(p) do
    if is_E(v) then core.inputs_unset(); return end
  end
  local vals = inputs(p)
  if type(vals) ~= "table" then fail(("returned %s, not a table { argument = values }"):format(type(vals))) end
  for name in pairs(vals) do
    if type(name) ~= "string" then fail(("a key %s, not an argument's name"):format(tostring(name))) end
  end
  for _, name in ipairs(names_of(vals)) do
    local v, b = vals[name], bufs[name]
    if not b and not built.absent[name] then
      fail(("%s is not an argument"):format(tostring(name)), "arguments: " .. table.concat(names_of(bufs), ", "))
    end
    if b and b.dir == "out" then fail(("%s is an output: it takes no input values"):format(name)) end
    if b then
      local n = 1
      for _, d in ipairs(b.shape) do
        if math.type(d) ~= "integer" then return end -- a shape known only at run time
        n = n * d
      end
      if type(v) == "table" then
        if #v ~= n then fail(("%s: %d values for its %d elements"):format(name, #v, n)) end
        for i = 1, n do
          if type(v[i]) ~= "number" then
            fail(("%s[%d] is %s, not a number"):format(name, i, type(v[i])))
          end
        end
      elseif type(v) ~= "number" then
        fail(("%s: expected a list of %d numbers or one number, got %s"):format(name, n, type(v)))
      end
      core.sample(b.h, v, n)
    end
  end
end

-- body(p, A, B, ...): arguments are matched to the body's parameter names.
local function call_body(def, p, bufs, list)
  local body = def.body
  if type(body) ~= "function" then err("kernel " .. built.name .. ": body must be a function(p, args...)") end
  local info = debug.getinfo(body, "u")
  local actual, n = {}, 0
  if info.nparams <= 1 then
    actual, n = list, #list
  else
    n = info.nparams - 1 -- not #actual: an absent (T.none) argument leaves a hole
    for i = 2, info.nparams do
      local name = debug.getlocal(body, i)
      if not bufs[name] and not built.absent[name] then
        err(("kernel %s: body parameter '%s' is not an argument"):format(built.name, name),
            "arguments: " .. table.concat(names_of(bufs), ", "))
      end
      actual[i - 1] = bufs[name]
    end
  end
  built.in_body = true
  body(p, table.unpack(actual, 1, n))
  built.in_body = false
  if not built.grid then err("kernel " .. built.name .. " has no T.grid", "wrap the body in: for b in T.grid(n) do ... end") end
end

function T.kernel(name)
  if type(name) ~= "string" then err('T.kernel "name" { ... }') end
  local line = (where())
  return function(def)
    if type(def) ~= "table" then err('T.kernel "' .. name .. '" takes a table { params = ..., args = ..., body = ... }') end
    return { __kernel = true, name = name, def = def, line = line }
  end
end

-- threads = N or function(p) ... end: the GPU threads per block (the
-- target chooses when absent; a CPU ignores it).  Whole warps, at most
-- 1024; whether the kernel's tensor-core fragments map onto them is the
-- threads pass's to say, at the gemm's line.
local function set_block_threads(threads, p)
  if threads == nil then return end
  local n = threads
  if type(threads) == "function" then n = threads(p) end
  if math.type(n) ~= "integer" or n < 32 or n > 1024 or n % 32 ~= 0 then
    set_error(("kernel %s: threads = %s: a GPU block has whole warps of 32 threads, 32 to 1024"):format(built.name, tostring(n)))
  end
  core.block_threads(n)
end

-- Build a kernel spec's IR: resolve parameters, declare arguments, run the body.
local function build_kernel(spec, sets, forced, target)
  built = { name = spec.name, line = spec.line, grid = false, in_body = false, names = {} }
  scratch_count = {} -- a composition's parts are named as they are alone
  core.kernel(spec.name, spec.line)
  local params = spec.def.params or {}
  if type(params) ~= "table" then
    set_error(("kernel %s: params must be a table, got %s"):format(spec.name, type(params)),
              "params = { N = 4096, BM = T.tune{64, 128}, M = T.dyn }")
  end
  local picks = not forced and chosen_defaults(spec.def.choose, params, sets, target) or nil
  local p = resolve_params(params, sets, forced, nil, picks)
  set_block_threads(spec.def.threads, p)
  local bufs, list = declare_args(spec.def, p)
  set_inputs(spec.def, p, bufs)
  call_body(spec.def, p, bufs, list)
end

-- T.compose "name" { "producer", "consumer", via = { out = "in" }, params = {...} }:
-- one kernel computing what the producer then the consumer compute, each
-- `via` tensor kept in the block (ir/compose.c).  The parts are specs
-- found next to this one (as `require` finds modules).
function T.compose(name)
  if type(name) ~= "string" then err('T.compose "name" { "producer", "consumer", via = { out = "in" } }') end
  local line = (where())
  return function(def)
    if type(def) ~= "table" then err('T.compose "' .. name .. '" takes a table { "producer", "consumer", via = {...} }') end
    return { __compose = true, name = name, def = def, line = line }
  end
end

-- The part spec `name`: its file and the kernel it returns.
local function load_part(spec, name, fail)
  local file = package.searchpath(name, package.path)
  if not file then fail(("no spec %s.lua next to this one"):format(name)) end
  local chunk, msg = loadfile(file)
  if not chunk then fail(msg) end
  local ok, part = pcall(chunk)
  if not ok then fail(type(part) == "table" and tostring(part.msg) or tostring(part)) end
  if type(part) ~= "table" or not part.__kernel then fail(("%s does not return a T.kernel"):format(file)) end
  return { file = file, spec = part }
end

local function build_compose(spec, sets, path)
  local def = spec.def
  local function fail(msg, hint) error({ msg = ("T.compose %s: %s"):format(spec.name, msg), hint = hint, line = spec.line }, 0) end
  if type(def[1]) ~= "string" or type(def[2]) ~= "string" or def[3] ~= nil then
    fail("name two kernel specs, the producer then the consumer", '{ "rmsnorm", "act_quant", via = { y = "x" } }')
  end
  local via = {}
  if type(def.via) ~= "table" then fail("via = { out = \"in\" } names the tensors the producer hands the consumer") end
  for out, input in pairs(def.via) do
    if type(out) ~= "string" or type(input) ~= "string" then fail("via maps an output name to an input name (strings)") end
    via[#via + 1] = { out, input }
  end
  table.sort(via, function(a, b) return a[1] < b[1] end)
  if def.params ~= nil and type(def.params) ~= "table" then fail("params must be a table") end
  local parts = { load_part(spec, def[1], fail), load_part(spec, def[2], fail) }
  -- The composed kernel's parameters: the parts' by name (the producer's
  -- declaration first), then this spec's params.
  local params = {}
  for _, part in ipairs(parts) do
    local pp = part.spec.def.params or {}
    if type(pp) == "table" then
      for k, v in pairs(pp) do if params[k] == nil then params[k] = v end end
    end
  end
  for k, v in pairs(def.params or {}) do params[k] = v end
  built = { name = spec.name, line = spec.line, grid = false, in_body = false, names = {} }
  core.kernel(spec.name, spec.line)
  local p = resolve_params(params, sets, nil, true)
  local forced = {}
  for name in pairs(params) do
    local v = rawget(p, name)
    forced[name] = is_E(v) and DYN or v
  end
  local composed = core.take()
  local handles = {}
  for i, part in ipairs(parts) do
    USER_FILE = "@" .. part.file
    core.set_file(part.file, composed)
    -- An error in a part names the part's file and line after this spec's.
    local ok, e = xpcall(build_kernel, function(e)
      if type(e) == "table" then return { msg = ("%s:%d: %s"):format(part.file, e.line or 0, tostring(e.msg)), hint = e.hint } end
      return { msg = tostring(e) }
    end, part.spec, {}, forced)
    USER_FILE = "@" .. path
    core.set_file(nil)
    if not ok then fail(e.msg, e.hint) end
    handles[i] = core.take()
  end
  core.compose(composed, handles[1], handles[2], via)
end

-- target (nil: none given) is what a spec's choose sees of the target the
-- kernel is built for: name, vector_bits, l1 and l2 (bytes, the L1 data
-- cache and L2 of one core; CPUs), sm (GPUs: 90, 80; nil on a CPU).
function T._build(chunk, sets, path, target)
  USER_FILE = "@" .. path
  local spec = chunk()
  if type(spec) == "table" and spec.__compose then return build_compose(spec, sets, path) end
  if type(spec) ~= "table" or not spec.__kernel then
    error({ msg = "the spec must return a kernel: return T.kernel \"name\" { ... }", line = 0 }, 0)
  end
  build_kernel(spec, sets, nil, target)
end

------------------------------------------------------- unknown T.* names

local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

setmetatable(T, { __index = function(_, k)
  if type(k) ~= "string" or k:sub(1, 2) == "__" then return nil end
  local best, bd = nil, 3
  for name in pairs(T) do
    if type(name) == "string" and name:sub(1, 1) ~= "_" then
      local d = distance(k, name)
      if d < bd then best, bd = name, d end
    end
  end
  err(("unknown op T.%s"):format(k), best and ("did you mean T." .. best .. "?") or nil)
end })

return T
