"""The stage compiler: jit flags and cache, intrinsics, fused stages, worker loops."""
