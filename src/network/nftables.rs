//! Runs nftables commands: in-process through libnftables (nft's own library, loaded with
//! dlopen when berth first needs it, so that a berth without networks, or a monitor, never
//! maps it), else through the `nft` program. Both take nft's language and apply a buffer as
//! one transaction; in-process saves the program's start (measured in
//! tests/network_firewall.rs: about 3 ms a command on this machine).

use anyhow::{bail, Context, Result};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// How the commands are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// libnftables if it loads, else `nft`.
    Auto,
    /// Always the `nft` program.
    Exec,
}

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxStr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxInt,
    buffer_error: CtxInt,
    get_output: CtxStr,
    get_error: CtxStr,
    set_output_flags: SetFlags,
    run_cmd: RunCmd,
}

/// libnftables' `NFT_CTX_OUTPUT_JSON`.
const OUTPUT_JSON: c_uint = 1 << 4;

/// One command at a time in this process: libnftables' contexts are not meant to be shared,
/// and its initialisation is not known to be thread-safe.
static CALLS: Mutex<()> = Mutex::new(());

fn lib() -> Option<&'static Lib> {
    static LIB: OnceLock<Option<Lib>> = OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the type
        // libnftables' header (nftables/libnftables.h, stable ABI .so.1) declares for it.
        unsafe {
            let h = libc::dlopen(
                c"libnftables.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if h.is_null() {
                return None;
            }
            let sym = |name: &CStr| {
                let p = libc::dlsym(h, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Lib {
                ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
                ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
                buffer_output: std::mem::transmute::<*mut c_void, CtxInt>(sym(
                    c"nft_ctx_buffer_output",
                )?),
                buffer_error: std::mem::transmute::<*mut c_void, CtxInt>(sym(
                    c"nft_ctx_buffer_error",
                )?),
                get_output: std::mem::transmute::<*mut c_void, CtxStr>(sym(
                    c"nft_ctx_get_output_buffer",
                )?),
                get_error: std::mem::transmute::<*mut c_void, CtxStr>(sym(
                    c"nft_ctx_get_error_buffer",
                )?),
                set_output_flags: std::mem::transmute::<*mut c_void, SetFlags>(sym(
                    c"nft_ctx_output_set_flags",
                )?),
                run_cmd: std::mem::transmute::<*mut c_void, RunCmd>(sym(
                    c"nft_run_cmd_from_buffer",
                )?),
            })
        }
    })
    .as_ref()
}

/// Whether libnftables can be used here.
pub fn in_process_available() -> bool {
    lib().is_some()
}

/// Runs `cmds` (nft's language, one transaction) and returns the output (JSON with `json`).
pub fn run(backend: Backend, cmds: &str, json: bool) -> Result<String> {
    if backend == Backend::Auto {
        if let Some(lib) = lib() {
            return run_lib(lib, cmds, json);
        }
    }
    run_exec(cmds, json)
}

fn run_lib(lib: &Lib, cmds: &str, json: bool) -> Result<String> {
    let c = CString::new(cmds).context("a NUL in an nftables command")?;
    let _one = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the context is made, used and freed here only, under CALLS; the buffers it
    // returns are valid until it is freed, and are copied before.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            bail!("nft_ctx_new failed");
        }
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        if json {
            (lib.set_output_flags)(ctx, OUTPUT_JSON);
        }
        let rc = (lib.run_cmd)(ctx, c.as_ptr());
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let out = text((lib.get_output)(ctx));
        let err = text((lib.get_error)(ctx));
        (lib.ctx_free)(ctx);
        if rc != 0 {
            bail!("nft failed: {}", err.trim());
        }
        Ok(out)
    }
}

fn run_exec(cmds: &str, json: bool) -> Result<String> {
    let mut cmd = Command::new("nft");
    if json {
        // With -f, nft's -j is about the input: a listing in JSON is a command line (one
        // simple command: its words hold no quotes).
        cmd.arg("-j").args(cmds.split_whitespace());
    } else {
        cmd.args(["-f", "-"]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (is nftables installed?)")?;
    let stdin = child.stdin.take().expect("piped stdin");
    if !json {
        let mut stdin = stdin;
        stdin
            .write_all(cmds.as_bytes())
            .context("cannot write to nft")?;
    }
    let out = child.wait_with_output().context("nft")?;
    if !out.status.success() {
        bail!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
