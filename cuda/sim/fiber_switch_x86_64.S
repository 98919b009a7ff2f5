/* fiber_switch_x86_64.S — the emulator's context switch (System V x86-64).
 *
 *   void qsim_fiber_switch(void **save_sp, void *load_sp);
 *
 * Pushes the callee-saved registers and the SSE/x87 control words onto the
 * current stack, stores the stack pointer in *save_sp, loads load_sp and pops
 * the same frame from there. A fresh fiber's stack is prepared by
 * context_init() to look like such a frame whose return address is
 * qsim_fiber_start, with r12 = argument and r13 = entry function.
 *
 * Frame, from the saved stack pointer up:
 *   +0 mxcsr, +4 x87 control word, +8 r15, +16 r14, +24 r13, +32 r12,
 *   +40 rbx, +48 rbp, +56 return address */
    .text
    .globl  qsim_fiber_switch
    .type   qsim_fiber_switch, @function
    .p2align 4
qsim_fiber_switch:
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .size   qsim_fiber_switch, .-qsim_fiber_switch

/* A new fiber starts here with its stack 16-byte aligned: entry(arg). */
    .globl  qsim_fiber_start
    .type   qsim_fiber_start, @function
    .p2align 4
qsim_fiber_start:
    movq    %r12, %rdi
    callq   *%r13
    ud2                         /* entry functions never return */
    .size   qsim_fiber_start, .-qsim_fiber_start

    .section .note.GNU-stack,"",@progbits
