//! nftables' own library, `libnftables.so.1`, called in process. It takes the same JSON
//! batches and commands as `nft -j` and answers with the same JSON, without a process per
//! call: a transaction costs a fraction of a millisecond instead of several milliseconds of
//! `nft` starting up, which is most of the host network setup of an instance.
//!
//! The library is opened at run time (`dlopen`), so weft builds without its headers and runs
//! without it: when it cannot be loaded, the caller runs the `nft` program instead.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

/// `NFT_CTX_DEFAULT`: a context for the default netlink socket of the calling thread's
/// network namespace.
const NFT_CTX_DEFAULT: u32 = 0;
/// `NFT_CTX_OUTPUT_JSON`: listings in JSON, the way `nft -j` prints them.
const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;
const LIBRARY: &CStr = c"libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxSetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The functions of the library that weft uses.
pub(crate) struct Libnftables {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    output_set_flags: CtxSetFlags,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_output_buffer: CtxGetBuffer,
    get_error_buffer: CtxGetBuffer,
    run_cmd_from_buffer: RunCmd,
    /// One context per network namespace, kept open. Closing a context's netlink socket
    /// waits until the kernel has freed what earlier transactions removed (an RCU grace
    /// period, several milliseconds), so a context per call would make every removal slow.
    /// The library does not promise that contexts may be used from several threads at once
    /// (parts of its state are global), so calls take turns; the kernel serializes the
    /// nftables transactions of a namespace anyway.
    contexts: Mutex<Vec<(NetnsId, Ctx)>>,
}

/// Network namespaces, told apart by the device and inode of their `nsfs` file.
type NetnsId = (u64, u64);

/// Contexts kept at most: weftd uses one namespace; tests use one per test.
const MAX_CONTEXTS: usize = 8;

/// The network namespace of the calling thread.
fn current_netns() -> Result<NetnsId, String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| format!("reading this thread's network namespace: {e}"))?;
    Ok((meta.dev(), meta.ino()))
}

/// The library, loaded on first use; `None` when it is not installed.
pub(crate) fn library() -> Option<&'static Libnftables> {
    static LOADED: OnceLock<Option<Libnftables>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let lib = Libnftables::load();
            match &lib {
                Some(_) => tracing::debug!("nftables: using libnftables in process"),
                None => tracing::info!("nftables: libnftables.so.1 not found, running nft"),
            }
            lib
        })
        .as_ref()
}

/// Looks up `name` in `handle` as a function of type `T`.
///
/// # Safety
///
/// `T` must be the function pointer type of the symbol's C declaration.
unsafe fn symbol<T: Copy>(handle: *mut c_void, name: &CStr) -> Option<T> {
    // SAFETY: `handle` came from dlopen and is never closed; `name` is NUL-terminated.
    let ptr = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees that `T` is the symbol's function pointer type, which
    // has the size of a data pointer on the platforms weft supports.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&ptr) })
}

impl Libnftables {
    fn load() -> Option<Libnftables> {
        // SAFETY: dlopen takes a NUL-terminated name; the library's constructors only set
        // up its own state. The handle is kept for the life of the process.
        let handle = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: each type is the C declaration of its symbol in <nftables/libnftables.h>:
        // `struct nft_ctx *nft_ctx_new(uint32_t flags)`, `void nft_ctx_free(struct nft_ctx *)`,
        // `void nft_ctx_output_set_flags(struct nft_ctx *, unsigned int)`,
        // `int nft_ctx_buffer_output(struct nft_ctx *)` (and `_error`),
        // `const char *nft_ctx_get_output_buffer(struct nft_ctx *)` (and `_error_`),
        // `int nft_run_cmd_from_buffer(struct nft_ctx *, const char *)`.
        unsafe {
            Some(Libnftables {
                ctx_new: symbol(handle, c"nft_ctx_new")?,
                ctx_free: symbol(handle, c"nft_ctx_free")?,
                output_set_flags: symbol(handle, c"nft_ctx_output_set_flags")?,
                buffer_output: symbol(handle, c"nft_ctx_buffer_output")?,
                buffer_error: symbol(handle, c"nft_ctx_buffer_error")?,
                get_output_buffer: symbol(handle, c"nft_ctx_get_output_buffer")?,
                get_error_buffer: symbol(handle, c"nft_ctx_get_error_buffer")?,
                run_cmd_from_buffer: symbol(handle, c"nft_run_cmd_from_buffer")?,
                contexts: Mutex::new(Vec::new()),
            })
        }
    }

    /// Runs `input` (a JSON batch, or a command such as `list tables ip`) in the calling
    /// thread's network namespace, as one transaction. Returns what nft would print on
    /// stdout, or on failure what it would print on stderr.
    pub(crate) fn run(&self, input: &str) -> Result<String, String> {
        let input = CString::new(input).map_err(|_| "the command holds a NUL byte".to_string())?;
        let netns = current_netns()?;
        let mut contexts = self.contexts.lock().unwrap_or_else(|e| e.into_inner());

        let at = match contexts.iter().position(|(ns, _)| *ns == netns) {
            Some(at) => at,
            None => {
                if contexts.len() >= MAX_CONTEXTS {
                    contexts.remove(0);
                }
                contexts.push((netns, self.new_context()?));
                contexts.len() - 1
            }
        };
        let ctx = contexts[at].1.ptr;

        // SAFETY: `ctx` is a live context owned by `contexts`, which stays locked for the
        // whole call, and `input` is a NUL-terminated string that outlives the call. The
        // buffers the getters return belong to the context and are copied at once; getting
        // them also empties them for the next call.
        unsafe {
            let rc = (self.run_cmd_from_buffer)(ctx, input.as_ptr());
            let output = text((self.get_output_buffer)(ctx));
            let error = text((self.get_error_buffer)(ctx));
            if rc == 0 {
                Ok(output)
            } else if error.trim().is_empty() {
                Err(format!("failed with code {rc}"))
            } else {
                Err(error.trim().to_string())
            }
        }
    }

    /// A context for the calling thread's network namespace, with JSON output and both
    /// output and errors buffered.
    fn new_context(&self) -> Result<Ctx, String> {
        // SAFETY: nft_ctx_new has no preconditions; a null result is checked.
        let ptr = unsafe { (self.ctx_new)(NFT_CTX_DEFAULT) };
        if ptr.is_null() {
            return Err("cannot create an nftables context".into());
        }
        let ctx = Ctx {
            free: self.ctx_free,
            ptr,
        };
        // SAFETY: `ctx.ptr` is the live context just created, owned by `ctx`.
        unsafe {
            (self.output_set_flags)(ctx.ptr, NFT_CTX_OUTPUT_JSON);
            if (self.buffer_output)(ctx.ptr) != 0 || (self.buffer_error)(ctx.ptr) != 0 {
                return Err("cannot buffer nftables output".into());
            }
        }
        Ok(ctx)
    }
}

/// A context of the library, freed when dropped.
struct Ctx {
    free: CtxFree,
    ptr: *mut c_void,
}

// SAFETY: a context is used by one thread at a time (it lives behind a mutex); it holds no
// thread-local state, only memory and a netlink socket bound to a namespace, not a thread.
unsafe impl Send for Ctx {}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the pointer came from nft_ctx_new and is freed exactly once, here.
        unsafe { (self.free)(self.ptr) }
    }
}

/// A copy of a NUL-terminated buffer of the library; empty for null.
///
/// # Safety
///
/// `ptr` is null or points to a NUL-terminated string that stays valid during the call.
unsafe fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}
