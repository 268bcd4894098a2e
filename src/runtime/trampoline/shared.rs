// What berth and its exec trampoline must agree on, included by both with `include!` (the
// trampoline is a separate program, built by build.rs).

/// The trampoline's argv[0] when berth runs it: [MARKER, program path, report fd, LSM label
/// or "", argv...].
/// It holds blanks, which a `#!` line cannot give an interpreter's argv[0] (the kernel cuts
/// the interpreter's name at the first blank): the trampoline run as an interpreter, or any
/// other way, is told apart and execs nothing.
pub const TRAMPOLINE_MARKER: &[u8] = b"berth exec trampoline";

/// How many of the trampoline's arguments come before the program's argv.
pub const TRAMPOLINE_ARGS: usize = 4;

/// The trampoline's exit status when it was not started by berth.
pub const TRAMPOLINE_MISUSE_EXIT: i32 = 126;

/// Its exit status when the program could not be exec'd (as a shell's for "not found").
pub const TRAMPOLINE_EXEC_FAILED_EXIT: i32 = 127;

/// The sync protocol's `Msg::Error` tag (src/runtime/sync.rs): a failed exec is reported as
/// this byte followed by the text, in one write to the report descriptor.
pub const SYNC_ERROR_TAG: u8 = 8;

/// How a failed exec is reported: this, the program's path quoted as Rust's `{:?}` quotes a
/// `CStr`, ": ", and the error's text from the table below.
pub const EXEC_FAILED_PREFIX: &str = "process.args[0]: cannot exec ";

/// The errors execve(2) can give, worded as berth words them (nix's `Errno` Display, "NAME:
/// text"); a unit test of berth checks each against nix. The numbers are asm-generic's, the
/// same on x86_64 and aarch64.
pub const EXEC_ERRNO_TEXT: &[(i32, &str)] = &[
    (1, "EPERM: Operation not permitted"),
    (2, "ENOENT: No such file or directory"),
    (5, "EIO: I/O error"),
    (7, "E2BIG: Argument list too long"),
    (8, "ENOEXEC: Exec format error"),
    (11, "EAGAIN: Try again"),
    (12, "ENOMEM: Out of memory"),
    (13, "EACCES: Permission denied"),
    (14, "EFAULT: Bad address"),
    (20, "ENOTDIR: Not a directory"),
    (21, "EISDIR: Is a directory"),
    (22, "EINVAL: Invalid argument"),
    (23, "ENFILE: File table overflow"),
    (24, "EMFILE: Too many open files"),
    (26, "ETXTBSY: Text file busy"),
    (36, "ENAMETOOLONG: File name too long"),
    (38, "ENOSYS: Function not implemented"),
    (40, "ELOOP: Too many symbolic links encountered"),
    (79, "ELIBACC: Can not access a needed shared library"),
    (80, "ELIBBAD: Accessing a corrupted shared library"),
    (117, "EUCLEAN: Structure needs cleaning"),
];
