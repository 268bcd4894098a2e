#!/usr/bin/env python3
# Single-steps a command and every process it forks until that process execs something else;
# writes every distinct instruction address executed in the traced program.
# Used by scripts/gen-symbol-order.sh (x86_64: the register layout is x86_64's).
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_TRACEME, PTRACE_SINGLESTEP, PTRACE_GETREGS, PTRACE_SETOPTIONS, PTRACE_DETACH = 0, 9, 12, 0x4200, 17
O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_TRACEEXEC = 2, 4, 8, 16
__WALL = 0x40000000
class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs".split())]
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    libc.ptrace(PTRACE_TRACEME, 0, None, None)
    os.execv(argv[0], argv)
os.waitpid(pid, 0)
libc.ptrace(PTRACE_SETOPTIONS, pid, None, ctypes.c_void_p(O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC))
seen = set(); regs = Regs(); steps = 0
libc.ptrace(PTRACE_SINGLESTEP, pid, None, None)
alive = {pid}
while alive:
    try:
        p, st = os.waitpid(-1, __WALL)
    except ChildProcessError:
        break
    if os.WIFEXITED(st) or os.WIFSIGNALED(st):
        alive.discard(p); continue
    alive.add(p)
    sig = os.WSTOPSIG(st)
    event = st >> 16
    if event == 4:  # PTRACE_EVENT_EXEC: no longer our program
        libc.ptrace(PTRACE_DETACH, p, None, None); alive.discard(p); continue
    deliver = 0
    if sig == 5 or event:
        libc.ptrace(PTRACE_GETREGS, p, None, ctypes.byref(regs)); seen.add(regs.rip); steps += 1
    elif sig != 19:  # pass real signals on (not the new child's initial SIGSTOP)
        deliver = sig
    libc.ptrace(PTRACE_SINGLESTEP, p, None, ctypes.c_void_p(deliver))
with open(out, "w") as f:
    for a in sorted(seen): f.write("%x\n" % a)
print("steps", steps, "distinct", len(seen), file=sys.stderr)
