/* fiber.cpp — stacks and context switches for the emulator's fibers. */
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#if defined(QILIN_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
extern "C" void qsim_fiber_switch(void **save_sp, void *load_sp);
extern "C" void qsim_fiber_start(void);
#endif

namespace qsim {

bool stack_map(Stack *stack, size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) / page * page;
    size_t total = size + page;
    void *m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) return false;
    if (mprotect(m, page, PROT_NONE) != 0) {
        munmap(m, total);
        return false;
    }
    stack->mapping = m;
    stack->mapping_size = total;
    stack->bottom = (char *)m + page;
    stack->size = size;
    return true;
}

void stack_unmap(Stack *stack) {
    if (stack->mapping) munmap(stack->mapping, stack->mapping_size);
    *stack = Stack{};
}

#if defined(__x86_64__)

void context_init(Context *ctx, const Stack &stack, void (*entry)(void *), void *arg) {
#if defined(QILIN_ASAN)
    __asan_unpoison_memory_region(stack.bottom, stack.size); /* an abandoned run leaves redzones */
#endif
    ctx->stack_bottom = stack.bottom;
    ctx->stack_size = stack.size;
    ctx->asan_fake_stack = nullptr;
    /* X: where rsp points when qsim_fiber_start begins; must be 16-aligned. */
    uintptr_t top = (uintptr_t)stack.bottom + stack.size;
    uintptr_t x = (top - 16) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(x - 64);
    uint32_t mxcsr_and_fcw[2] = {0x1F80u, 0x037Fu}; /* default SSE and x87 control */
    std::memcpy(&frame[0], mxcsr_and_fcw, 8);
    frame[1] = 0;                                    /* r15 */
    frame[2] = 0;                                    /* r14 */
    frame[3] = (uint64_t)(uintptr_t)entry;           /* r13 */
    frame[4] = (uint64_t)(uintptr_t)arg;             /* r12 */
    frame[5] = 0;                                    /* rbx */
    frame[6] = 0;                                    /* rbp: ends frame-pointer walks */
    frame[7] = (uint64_t)(uintptr_t)&qsim_fiber_start; /* return address */
    ctx->sp = frame;
}

static inline void raw_switch(Context *from, Context *to) { qsim_fiber_switch(&from->sp, to->sp); }

#else /* ucontext fallback */

static void ucontext_trampoline(unsigned eh, unsigned el, unsigned ah, unsigned al) {
    auto entry = (void (*)(void *))(((uintptr_t)eh << 32) | el);
    entry((void *)(((uintptr_t)ah << 32) | al));
}

void context_init(Context *ctx, const Stack &stack, void (*entry)(void *), void *arg) {
#if defined(QILIN_ASAN)
    __asan_unpoison_memory_region(stack.bottom, stack.size);
#endif
    ctx->stack_bottom = stack.bottom;
    ctx->stack_size = stack.size;
    ctx->asan_fake_stack = nullptr;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack.bottom;
    ctx->uc.uc_stack.ss_size = stack.size;
    ctx->uc.uc_link = nullptr;
    /* makecontext passes int arguments; split the pointer in two halves. */
    uintptr_t a = (uintptr_t)arg, e = (uintptr_t)entry;
    makecontext(&ctx->uc, (void (*)())ucontext_trampoline, 4, (unsigned)(e >> 32),
                (unsigned)e, (unsigned)(a >> 32), (unsigned)a);
}

static inline void raw_switch(Context *from, Context *to) { swapcontext(&from->uc, &to->uc); }

#endif

void context_switch(Context *from, Context *to) {
#if defined(QILIN_ASAN)
    __sanitizer_start_switch_fiber(&from->asan_fake_stack, to->stack_bottom, to->stack_size);
#endif
    raw_switch(from, to);
#if defined(QILIN_ASAN)
    __sanitizer_finish_switch_fiber(from->asan_fake_stack, nullptr, nullptr);
#endif
}

void fiber_started(Context *from) {
#if defined(QILIN_ASAN)
    const void *bottom = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
    from->stack_bottom = (void *)bottom;
    from->stack_size = size;
#else
    (void)from;
#endif
}

} // namespace qsim
