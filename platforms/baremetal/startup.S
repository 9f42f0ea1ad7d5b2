@ SPDX-License-Identifier: MIT
@ Reset entry of the bare-metal example (ARMv7-A, hard-float): the compiler emits VFP/NEON instructions
@ anywhere (newlib's memcpy included), so the FPU must be on before newlib's _start runs. After that,
@ rdimon's _start sets up the stack and heap through semihosting and calls main.
    .syntax unified
    .arm
    .section .text.abc_fw_reset, "ax"
    .global abc_fw_reset
    .type abc_fw_reset, %function
abc_fw_reset:
    mrc p15, 0, r0, c1, c0, 2      @ CPACR
    orr r0, r0, #(0xf << 20)       @ cp10 and cp11: full access
    mcr p15, 0, r0, c1, c0, 2
    isb
    mov r0, #(1 << 30)             @ FPEXC.EN
    vmsr fpexc, r0
    b _start
    .size abc_fw_reset, . - abc_fw_reset
