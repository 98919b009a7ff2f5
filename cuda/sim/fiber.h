/* fiber.h — user-space context switching for the SIMT emulator.
 *
 * Every emulated CUDA thread is a fiber: its own stack, switched to and from
 * by a few instructions of assembly (fiber_switch_x86_64.S) — no system call,
 * unlike swapcontext, which saves the signal mask on every switch. Other
 * architectures fall back to ucontext (correct, slower).
 *
 * Under AddressSanitizer every switch is announced with
 * __sanitizer_start/finish_switch_fiber so ASan knows which stack is live. */
#ifndef QILIN_SIM_FIBER_H
#define QILIN_SIM_FIBER_H

#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace qsim {

struct Context {
    void *sp = nullptr;               /* saved stack pointer while switched out */
    void *stack_bottom = nullptr;     /* lowest usable address (above the guard page) */
    size_t stack_size = 0;
    void *asan_fake_stack = nullptr;  /* ASan's per-fiber fake stack handle */
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
};

/* A fiber's stack: `size` usable bytes above a PROT_NONE guard page, so an
 * overflow faults instead of corrupting a neighbour. */
struct Stack {
    void *mapping = nullptr;
    size_t mapping_size = 0;
    void *bottom = nullptr;
    size_t size = 0;
};

/* Maps a stack; false (with errno set) on failure. */
bool stack_map(Stack *stack, size_t size);
void stack_unmap(Stack *stack);

/* Prepares `ctx` so that switching to it calls entry(arg) on `stack`.
 * entry must never return. Also used to reset a fiber abandoned mid-run. */
void context_init(Context *ctx, const Stack &stack, void (*entry)(void *), void *arg);

/* Saves the running context into `from` and resumes `to`. */
void context_switch(Context *from, Context *to);

/* First thing a new fiber does: tells ASan the switch into it completed and
 * records the stack it came from into `from` (the scheduler's own stack). */
void fiber_started(Context *from);

} // namespace qsim

#endif /* QILIN_SIM_FIBER_H */
