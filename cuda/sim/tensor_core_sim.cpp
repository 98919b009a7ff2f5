/* tensor_core_sim.cpp — tensor_core.cuh's instructions in the emulator.
 *
 * mma and ldmatrix are warp collectives: each lane parks with a pointer to
 * its operands on its own fiber stack, and when all 32 have arrived
 * resolve_matrix_op assembles the matrices from the lanes' registers in the
 * PTX fragment layouts, computes, and scatters the result back — so a kernel
 * that puts an element in the wrong register computes the wrong product
 * here exactly as on the GPU.
 *
 * Arithmetic: products of the inputs are exact in double, summed in double
 * with the accumulator and rounded once to fp32. A tensor core's own
 * summation order and internal precision differ (documented only loosely by
 * NVIDIA), so tests compare with a tolerance of a few fp32 ulps of the sum
 * of |products|; the s8 form is exact integer arithmetic, wrapping at 2^32.
 *
 * cp.async: the source is read when the copy is issued, the destination is
 * poisoned (0xFF bytes: NaN in every float type) at once and receives the
 * data only at the issuing thread's cp_async_wait (or its exit). A thread
 * that reads a tile before its own wait, or another thread's tile before
 * that thread's wait and a barrier, reads NaNs under some schedule. */
#include "tensor_core_sim.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "../tensor_core.cuh"

namespace qsim {
namespace {

struct MmaOperands {
    MmaKind kind;
    const uint32_t *a, *b, *c;
    uint32_t *d;
};

struct LdmatrixOperands {
    int num;
    bool trans;
    const void *row;
    uint32_t *r;
};

const char *kind_name(MmaKind k) {
    switch (k) {
    case MmaKind::bf16_m16n8k16: return "mma.m16n8k16.bf16";
    case MmaKind::f16_m16n8k16: return "mma.m16n8k16.f16";
    case MmaKind::e4m3_m16n8k32: return "mma.m16n8k32.e4m3";
    case MmaKind::e5m2_m16n8k32: return "mma.m16n8k32.e5m2";
    case MmaKind::s8_m16n8k32: return "mma.m16n8k32.s8";
    }
    return "mma";
}

std::string format(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

/* Element e (0-based, low bits first) of a register as a double. */
double element(MmaKind kind, uint32_t reg, int e) {
    switch (kind) {
    case MmaKind::bf16_m16n8k16: {
        uint16_t bits = (uint16_t)(reg >> (16 * e));
        return (double)from_bits<float>((uint32_t)bits << 16);
    }
    case MmaKind::f16_m16n8k16: {
        __half_raw raw;
        raw.x = (uint16_t)(reg >> (16 * e));
        return (double)__half2float(__half(raw));
    }
    case MmaKind::e4m3_m16n8k32: {
        __nv_fp8_e4m3 v;
        v.__x = (__nv_fp8_storage_t)(reg >> (8 * e));
        return (double)(float)v;
    }
    case MmaKind::e5m2_m16n8k32: {
        __nv_fp8_e5m2 v;
        v.__x = (__nv_fp8_storage_t)(reg >> (8 * e));
        return (double)(float)v;
    }
    case MmaKind::s8_m16n8k32: return (double)(int8_t)(reg >> (8 * e));
    }
    return 0.0;
}

/* Gathers A (16 x K, K = 16 or 32) and B (K x 8) from the lanes' fragments:
 * per = elements per register (2 for 16-bit, 4 for 8-bit). */
void gather_ab(const MmaOperands *const ops[32], int per, double A[16][32], double B[32][8]) {
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        const MmaOperands &o = *ops[l];
        for (int reg = 0; reg < 4; reg++) { /* a[0]: rows g, cols lo; a[1]: g+8, lo; a[2]: g, hi; a[3]: g+8, hi */
            int row = g + (reg & 1) * 8, col0 = per * t + (reg >> 1) * 4 * per;
            for (int e = 0; e < per; e++) A[row][col0 + e] = element(o.kind, o.a[reg], e);
        }
        for (int reg = 0; reg < 2; reg++) { /* b[0]: k lo; b[1]: k hi; column n = g */
            int k0 = per * t + reg * 4 * per;
            for (int e = 0; e < per; e++) B[k0 + e][g] = element(o.kind, o.b[reg], e);
        }
    }
}

/* The C/D fragment: lane (g, t) holds (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1). */
inline int cd_row(int lane, int i) { return lane / 4 + (i >> 1) * 8; }
inline int cd_col(int lane, int i) { return 2 * (lane % 4) + (i & 1); }

std::string resolve_mma(void *const operands[32]) {
    const MmaOperands *ops[32];
    for (int l = 0; l < 32; l++) ops[l] = static_cast<const MmaOperands *>(operands[l]);
    const MmaKind kind = ops[0]->kind;
    for (int l = 1; l < 32; l++)
        if (ops[l]->kind != kind)
            return format("lanes of one mma.sync run different variants: lane 0 %s, lane %d %s", kind_name(kind), l,
                          kind_name(ops[l]->kind));
    const bool k32 = kind != MmaKind::bf16_m16n8k16 && kind != MmaKind::f16_m16n8k16;
    const int K = k32 ? 32 : 16, per = k32 ? 4 : 2;
    double A[16][32], B[32][8];
    gather_ab(ops, per, A, B);
    /* Every C is read before any D is written: D may alias C. */
    uint32_t D[16][8];
    if (kind == MmaKind::s8_m16n8k32) {
        int64_t C[16][8];
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++) C[cd_row(l, i)][cd_col(l, i)] = (int32_t)ops[l]->c[i];
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                int64_t acc = C[m][n];
                for (int k = 0; k < K; k++) acc += (int64_t)A[m][k] * (int64_t)B[k][n];
                D[m][n] = (uint32_t)acc; /* wraps modulo 2^32 */
            }
    } else {
        double C[16][8];
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++) C[cd_row(l, i)][cd_col(l, i)] = from_bits<float>(ops[l]->c[i]);
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                double acc = C[m][n];
                for (int k = 0; k < K; k++) acc += A[m][k] * B[k][n];
                D[m][n] = (uint32_t)to_bits((float)acc);
            }
    }
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++) ops[l]->d[i] = D[cd_row(l, i)][cd_col(l, i)];
    return "";
}

std::string resolve_ldmatrix(void *const operands[32], const unsigned char *smem, size_t smem_bytes) {
    const LdmatrixOperands *ops[32];
    for (int l = 0; l < 32; l++) ops[l] = static_cast<const LdmatrixOperands *>(operands[l]);
    const int num = ops[0]->num;
    const bool trans = ops[0]->trans;
    for (int l = 1; l < 32; l++)
        if (ops[l]->num != num || ops[l]->trans != trans)
            return format("lanes of one ldmatrix run different variants: lane 0 .x%d%s, lane %d .x%d%s", num,
                          trans ? ".trans" : "", l, ops[l]->num, ops[l]->trans ? ".trans" : "");
    uint16_t M[4][8][8];
    for (int i = 0; i < num; i++)
        for (int j = 0; j < 8; j++) {
            const int lane = 8 * i + j;
            const unsigned char *row = static_cast<const unsigned char *>(ops[lane]->row);
            if ((uintptr_t)row % 16)
                return format("ldmatrix .x%d: lane %d's row address %p (row %d of matrix %d) is not 16-byte "
                              "aligned",
                              num, lane, (const void *)row, j, i);
            const bool in_dynamic = row >= smem && row + 16 <= smem + smem_bytes;
            if (!in_dynamic && is_device_address(row))
                return format("ldmatrix .x%d: lane %d's row address %p (row %d of matrix %d) is global memory; "
                              "ldmatrix reads shared memory",
                              num, lane, (const void *)row, j, i);
            std::memcpy(M[i][j], row, 16);
        }
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int i = 0; i < num; i++) {
            uint16_t lo = trans ? M[i][2 * t][g] : M[i][g][2 * t];
            uint16_t hi = trans ? M[i][2 * t + 1][g] : M[i][g][2 * t + 1];
            ops[l]->r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
    }
    return "";
}

} // namespace

std::string resolve_matrix_op(WarpOp op, void *const operands[32], const unsigned char *smem, size_t smem_bytes) {
    return op == WarpOp::mma ? resolve_mma(operands) : resolve_ldmatrix(operands, smem, smem_bytes);
}

void land_copies(AsyncCopies &copies, int keep_newer) {
    const int limit = copies.committed - keep_newer; /* groups 1 .. limit complete */
    size_t kept = 0;
    for (size_t i = 0; i < copies.pending.size(); i++) {
        PendingCopy &c = copies.pending[i];
        const bool lands = keep_newer < 0 || (c.group != 0 && c.group <= limit);
        if (lands)
            std::memcpy(c.dst, c.data, (size_t)c.bytes);
        else
            copies.pending[kept++] = c; /* order kept: a later copy to the same bytes lands later */
    }
    copies.pending.resize(kept);
}

void mma(MmaKind kind, uint32_t d[4], const uint32_t a[4], const uint32_t b[2], const uint32_t c[4],
         const char *file, int line) {
    MmaOperands ops{kind, a, b, c, d};
    warp_collective(WarpOp::mma, 0xffffffffu, (uint64_t)(uintptr_t)&ops, 0, 0, file, line);
}

void ldmatrix(int num, bool trans, uint32_t *r, const void *row, const char *file, int line) {
    LdmatrixOperands ops{num, trans, row, r};
    warp_collective(WarpOp::ldmatrix, 0xffffffffu, (uint64_t)(uintptr_t)&ops, 0, 0, file, line);
}

void cp_async(void *dst, const void *src, int bytes, int src_bytes, const char *file, int line) {
    AsyncCopies &copies = current_async_copies("cp.async");
    if (src_bytes < 0 || src_bytes > bytes)
        fault(file, line, "cp.async of %d bytes with src-size %d (must be 0 .. %d)", bytes, src_bytes, bytes);
    if ((uintptr_t)dst % (uintptr_t)bytes || (uintptr_t)src % (uintptr_t)bytes)
        fault(file, line, "cp.async of %d bytes from %p to %p: both addresses must be %d-byte aligned", bytes, src,
              dst, bytes);
    if (src_bytes > 0 && !device_range_live(src, (size_t)src_bytes))
        fault(file, line, "cp.async source %p (%d bytes) is not inside one live device allocation", src,
              src_bytes);
    if (is_device_address(dst))
        fault(file, line, "cp.async destination %p is global memory; cp.async writes shared memory", dst);
    PendingCopy c;
    c.dst = dst;
    c.bytes = bytes;
    c.group = 0;
    std::memcpy(c.data, src_bytes > 0 ? src : c.data, (size_t)src_bytes);
    std::memset(c.data + src_bytes, 0, (size_t)(bytes - src_bytes));
    std::memset(dst, 0xFF, (size_t)bytes); /* poisoned until the wait */
    copies.pending.push_back(c);
}

void cp_async_commit(const char *, int) {
    AsyncCopies &copies = current_async_copies("cp.async.commit_group");
    copies.committed++;
    for (PendingCopy &c : copies.pending)
        if (c.group == 0) c.group = copies.committed;
}

void cp_async_wait(int newer_groups, const char *, int) {
    land_copies(current_async_copies("cp.async.wait_group"), newer_groups);
}

} // namespace qsim
