"""CPU intrinsics for kernels: TSC, prefetch, count-trailing-zeros.

Each has a plain-Python fallback so that kernels also run under
NUMBA_DISABLE_JIT=1 (tests compare the two).
"""
import time

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from pynf.compiler.jit import NO_JIT


@intrinsic
def _rdtsc(typingctx):
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.uint64(), codegen


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch arr[idx] for reading into all cache levels (LLVM llvm.prefetch)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        aryty, _ = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # rw=0 (read), locality=3 (keep in all levels), cache type=1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, idx), codegen


@intrinsic
def _cttz64(typingctx, x):
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        v = context.cast(builder, args[0], signature.args[0], types.uint64)
        fnty = ir.FunctionType(i64, [i64, ir.IntType(1)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.cttz.i64")
        return builder.call(fn, [v, ir.Constant(ir.IntType(1), 0)])
    return types.int64(x), codegen


if NO_JIT:
    _T0 = time.perf_counter_ns()

    def rdtsc():
        """Nanoseconds stand in for TSC cycles when the JIT is off."""
        return time.perf_counter_ns() - _T0

    def prefetch(arr, idx):
        pass

    def cttz64(x):
        x = int(x) & 0xFFFFFFFFFFFFFFFF
        return 64 if x == 0 else (x & -x).bit_length() - 1
else:
    rdtsc = _rdtsc
    prefetch = _prefetch
    cttz64 = _cttz64


# ---- calling a compiled function by its address ----
# An unfused stage (pynf.compiler.stage, unfused=True) calls its NFs through
# their addresses, passed in at run time: its code does not depend on the
# NFs' code, so an edited NF needs only itself compiled (pynf.compiler.edit).

def _make_call(nargs):
    @intrinsic
    def _call(typingctx, addr, *args):
        if len(args) == 1 and isinstance(args[0], types.BaseTuple):
            args = tuple(args[0])           # (Numba hands *args over as one tuple)
        if not isinstance(addr, types.Integer) or len(args) != nargs:
            return None
        argtys = tuple(args)

        def codegen(context, builder, signature, llargs):
            vals = cgutils.unpack_tuple(builder, llargs[1]) if len(llargs) == 2 and nargs != 1 else llargs[1:]
            llty = context.call_conv.get_function_type(types.none, argtys).as_pointer()
            fptr = builder.inttoptr(llargs[0], llty)
            context.call_conv.call_function(builder, fptr, types.none, argtys, list(vals))
            return context.get_dummy_value()
        return types.none(addr, types.StarArgTuple(argtys)), codegen
    return _call


def address_of(dispatcher, sig):
    """The address of a dispatcher's compiled overload for `sig` (compiled
    first if need be), with Numba's calling convention: for call_nf3/4."""
    dispatcher.compile(sig)
    cres = dispatcher.overloads[tuple(sig)]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name), cres.signature.return_type


if NO_JIT:
    def call_nf3(addr, a, b, c):
        raise RuntimeError("an unfused stage needs the JIT")
    call_nf4 = call_nf3
else:
    call_nf3 = _make_call(3)            # call_nf3(addr, pkts, i, st): a per-packet NF
    call_nf4 = _make_call(4)            # call_nf4(addr, pkts, live, n, st): a burst NF


# ---- packet byte access ----
# Big-endian loads and stores at a byte offset into a uint8 array: one
# unaligned load/store and a bswap. NB: plain indexing (mem[o]) costs a
# negative-index check per byte and keeps LLVM from merging the bytes;
# in the parser that alone tripled the cycles per packet.

def _byte_ptr(context, builder, aryty, ary_val, off):
    ary = context.make_array(aryty)(context, builder, ary_val)
    return builder.gep(ary.data, [off])


def _make_load(bits):
    @intrinsic
    def _ld(typingctx, mem, off):
        if not (isinstance(mem, types.Array) and isinstance(off, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            off = context.cast(builder, args[1], signature.args[1], types.intp)
            p = _byte_ptr(context, builder, signature.args[0], args[0], off)
            ity = ir.IntType(bits)
            v = builder.load(builder.bitcast(p, ity.as_pointer()), align=1)
            if bits > 8:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ity, [ity]),
                                                    f"llvm.bswap.i{bits}")
                v = builder.call(fn, [v])
            return builder.zext(v, ir.IntType(64))
        return types.int64(mem, off), codegen
    return _ld


def _make_store(bits):
    @intrinsic
    def _st(typingctx, mem, off, val):
        if not (isinstance(mem, types.Array) and isinstance(off, types.Integer)
                and isinstance(val, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            off = context.cast(builder, args[1], signature.args[1], types.intp)
            v = context.cast(builder, args[2], signature.args[2], types.int64)
            p = _byte_ptr(context, builder, signature.args[0], args[0], off)
            ity = ir.IntType(bits)
            v = builder.trunc(v, ity)
            if bits > 8:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ity, [ity]),
                                                    f"llvm.bswap.i{bits}")
                v = builder.call(fn, [v])
            builder.store(v, builder.bitcast(p, ity.as_pointer()), align=1)
            return context.get_dummy_value()
        return types.void(mem, off, val), codegen
    return _st


if NO_JIT:
    def ld8(mem, o):
        return int(mem[o])

    def ld16(mem, o):
        return (int(mem[o]) << 8) | int(mem[o + 1])

    def ld32(mem, o):
        return (int(mem[o]) << 24) | (int(mem[o + 1]) << 16) | (int(mem[o + 2]) << 8) | int(mem[o + 3])

    def st8(mem, o, v):
        mem[o] = int(v) & 0xFF

    def st16(mem, o, v):
        v = int(v)
        mem[o] = (v >> 8) & 0xFF
        mem[o + 1] = v & 0xFF

    def st32(mem, o, v):
        v = int(v)
        mem[o] = (v >> 24) & 0xFF
        mem[o + 1] = (v >> 16) & 0xFF
        mem[o + 2] = (v >> 8) & 0xFF
        mem[o + 3] = v & 0xFF
else:
    ld8, ld16, ld32 = _make_load(8), _make_load(16), _make_load(32)
    st8, st16, st32 = _make_store(8), _make_store(16), _make_store(32)


@intrinsic
def _copy(typingctx, dst, doff, src, soff, n):
    """dst[doff:doff+n] = src[soff:soff+n] as one memcpy (no overlap)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)):
        return None

    def codegen(context, builder, signature, args):
        d = _byte_ptr(context, builder, signature.args[0], args[0],
                      context.cast(builder, args[1], signature.args[1], types.intp))
        s = _byte_ptr(context, builder, signature.args[2], args[2],
                      context.cast(builder, args[3], signature.args[3], types.intp))
        cnt = context.cast(builder, args[4], signature.args[4], types.intp)
        cgutils.raw_memcpy(builder, d, s, cnt, 1)
        return context.get_dummy_value()
    return types.void(dst, doff, src, soff, n), codegen


if NO_JIT:
    def copy(dst, doff, src, soff, n):
        dst[doff:doff + n] = src[soff:soff + n]
else:
    copy = _copy


# ---- 64 lanes at once ----
# A classifier compares one key with 64 rules held as structure of arrays.
# Written as LLVM vectors (<64 x iN> compares, the <64 x i1> result bitcast
# to an i64), this is a few dozen AVX2 instructions; written as a Numba
# loop that ORs bit i into a mask, LLVM does not vectorise it (13 cycles
# per rule, measured).

def _vec_loads(context, builder, aryty, ary_val, off, count):
    """`count` consecutive <64 x dtype> vectors from ary[off:]."""
    ary = context.make_array(aryty)(context, builder, ary_val)
    bits = aryty.dtype.bitwidth
    vty = ir.VectorType(ir.IntType(bits), 64)
    out = []
    for j in range(count):
        p = builder.gep(ary.data, [builder.add(off, ir.Constant(off.type, 64 * j))])
        out.append(builder.load(builder.bitcast(p, vty.as_pointer()), align=bits // 8))
    return out


def _splat(context, builder, val, fromty, toty):
    ity = ir.IntType(toty.bitwidth)
    v = context.cast(builder, val, fromty, toty)
    vec = builder.insert_element(ir.Constant(ir.VectorType(ity, 64), ir.Undefined), v,
                                 ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), 64), [0] * 64)
    return builder.shuffle_vector(vec, vec, zeros)


def _lanes_ok(arr, off, x):
    return (isinstance(arr, types.Array) and isinstance(arr.dtype, types.Integer)
            and not arr.dtype.signed and isinstance(off, types.Integer) and isinstance(x, types.Integer))


def _lanes64(test):
    """An intrinsic (arr, off, x) -> uint64 whose bit i is test(builder,
    arr[off+i], arr[off+64+i], x) over 64 unsigned lanes."""
    @intrinsic
    def lanes(typingctx, arr, off, x):
        if not _lanes_ok(arr, off, x):
            return None

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            off = context.cast(builder, args[1], signature.args[1], types.intp)
            a, b = _vec_loads(context, builder, aryty, args[0], off, 2)
            xv = _splat(context, builder, args[2], signature.args[2], aryty.dtype)
            return builder.bitcast(test(builder, a, b, xv), ir.IntType(64))
        return types.uint64(arr, off, x), codegen
    return lanes


# lo <= x <= hi, and x & mask == value
_in_ranges64 = _lanes64(lambda bd, lo, hi, x: bd.and_(bd.icmp_unsigned("<=", lo, x),
                                                      bd.icmp_unsigned("<=", x, hi)))
_masked_eq64 = _lanes64(lambda bd, val, mask, x: bd.icmp_unsigned("==", bd.and_(x, mask), val))


if NO_JIT:
    import numpy as _np

    def _bits64(ok):
        return _np.uint64(_np.packbits(ok, bitorder="little").view("<u8")[0])

    def in_ranges64(arr, off, x):
        """Bit i set when arr[off+i] <= x <= arr[off+64+i] (unsigned lanes)."""
        return _bits64((arr[off:off + 64] <= x) & (x <= arr[off + 64:off + 128]))

    def masked_eq64(arr, off, x):
        """Bit i set when x & arr[off+64+i] == arr[off+i] (unsigned lanes)."""
        return _bits64((x & arr[off + 64:off + 128]) == arr[off:off + 64])
else:
    in_ranges64 = _in_ranges64
    masked_eq64 = _masked_eq64
