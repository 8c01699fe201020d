//! The wasmtime sandbox that runs Weir plugins (`plugins/ABI.md`): one engine per process (the
//! broker's, or `weir plugin test`'s), a compiled [`Plugin`] per module, and a [`Stage`] — an
//! instance with its params applied — per (plugin use, partition), reused across batches.
//!
//! Each call is bounded: linear memory is capped (`StoreLimits`, growth past the cap traps),
//! CPU time is capped by an epoch deadline (a ticker thread advances the engine's epoch every
//! `EPOCH_TICK`), and the output size is checked before it is read. A trap, an error status or a
//! malformed output fails the call with a [`PluginError`]; the broker goes on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::{
    Config, Engine, ExternType, FuncType, Instance, InstancePre, Linker, Memory, Module, Store,
    StoreLimits, StoreLimitsBuilder, Trap, TypedFunc, ValType,
};
use weir_common::limits::{
    MAX_PLUGIN_CALL_TIMEOUT_MS, MAX_PLUGIN_MEMORY_LIMIT_BYTES, MAX_PLUGIN_OUTPUT_BYTES,
    MIN_PLUGIN_CALL_TIMEOUT_MS, PLUGIN_CALL_TIMEOUT_MS, PLUGIN_MEMORY_LIMIT_BYTES,
};

pub use weir_codec::abi::{self, PluginKind};

/// Told of every call of a plugin: its name, how long the call took, whether it succeeded
/// (the broker's metrics).
pub type CallObserver = fn(plugin: &str, took: Duration, ok: bool);

/// How often the engine's epoch advances (the granularity of the CPU deadline).
const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The module is not a valid Weir plugin (at registration).
    #[error("{0}")]
    Invalid(String),
    /// The plugin failed: trap, panic, error status, limit, malformed output. `offset` is the
    /// record it was at (ABI 3 modules tell), `panicked` that `message` is its panic message.
    #[error("plugin {plugin:?} {}{}: {message}", if *.panicked { "panicked" } else { "failed" }, at_offset(*.offset))]
    Failed {
        plugin: String,
        offset: Option<u64>,
        panicked: bool,
        message: String,
    },
}

impl PluginError {
    /// The record a failed plugin was at, when it said.
    pub fn offset(&self) -> Option<u64> {
        match self {
            PluginError::Failed { offset, .. } => *offset,
            PluginError::Invalid(_) => None,
        }
    }

    /// The plugin that failed (`None` for an invalid module).
    pub fn plugin(&self) -> Option<&str> {
        match self {
            PluginError::Failed { plugin, .. } => Some(plugin),
            PluginError::Invalid(_) => None,
        }
    }
}

fn at_offset(offset: Option<u64>) -> String {
    offset
        .map(|o| format!(" at offset {o}"))
        .unwrap_or_default()
}

fn failed(plugin: &str, message: impl Into<String>) -> PluginError {
    PluginError::Failed {
        plugin: plugin.to_string(),
        offset: None,
        panicked: false,
        message: message.into(),
    }
}

/// The largest panic message read from a guest (a longer one is cut).
const MAX_PANIC_MESSAGE_BYTES: usize = 4096;

/// A plugin's sandbox limits, set at registration (defaults: the named constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// CPU (wall-clock) budget of one call.
    pub call_timeout_ms: u64,
    /// Largest output of one call.
    pub output_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: PLUGIN_MEMORY_LIMIT_BYTES,
            call_timeout_ms: PLUGIN_CALL_TIMEOUT_MS,
            output_bytes: MAX_PLUGIN_OUTPUT_BYTES,
        }
    }
}

impl PluginLimits {
    /// Limits from a request (0: the default), checked against the bounds.
    pub fn from_request(
        memory_bytes: u64,
        call_timeout_ms: u64,
        output_bytes: u64,
    ) -> Result<Self, String> {
        let d = Self::default();
        let pick = |v: u64, default: u64| if v == 0 { default } else { v };
        let memory = pick(memory_bytes, d.memory_bytes as u64);
        let timeout = pick(call_timeout_ms, d.call_timeout_ms);
        let output = pick(output_bytes, d.output_bytes as u64);
        if memory > MAX_PLUGIN_MEMORY_LIMIT_BYTES as u64 {
            return Err(format!(
                "memory limit {memory} bytes is over the maximum {MAX_PLUGIN_MEMORY_LIMIT_BYTES}"
            ));
        }
        if !(MIN_PLUGIN_CALL_TIMEOUT_MS..=MAX_PLUGIN_CALL_TIMEOUT_MS).contains(&timeout) {
            return Err(format!(
                "call timeout {timeout} ms must be between {MIN_PLUGIN_CALL_TIMEOUT_MS} and {MAX_PLUGIN_CALL_TIMEOUT_MS}"
            ));
        }
        if output > MAX_PLUGIN_OUTPUT_BYTES as u64 {
            return Err(format!(
                "output limit {output} bytes is over the maximum {MAX_PLUGIN_OUTPUT_BYTES}"
            ));
        }
        Ok(Self {
            memory_bytes: memory as usize,
            call_timeout_ms: timeout,
            output_bytes: output as usize,
        })
    }

    fn deadline_ticks(&self) -> u64 {
        (self.call_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1)
    }

    /// Turns a wasmtime error into a message a user can act on.
    fn describe_trap(&self, e: &wasmtime::Error) -> String {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "exceeded its CPU time limit of {} ms for one batch",
                self.call_timeout_ms
            ),
            Some(Trap::UnreachableCodeReached) => {
                "trapped: unreachable code reached (a Rust panic in the plugin aborts like this)"
                    .into()
            }
            Some(t) => format!("trapped: {t}"),
            None => {
                let msg = format!("{e:#}");
                if msg.contains("forcing trap when growing memory") {
                    format!("exceeded its memory limit of {}", mib(self.memory_bytes))
                } else {
                    msg
                }
            }
        }
    }
}

/// `n` bytes in MiB (or bytes when not a whole number of MiB) for messages.
fn mib(n: usize) -> String {
    if n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else {
        format!("{n} bytes")
    }
}

/// The broker's one wasmtime engine (compiles modules; its epoch drives CPU deadlines).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    observer: Option<CallObserver>,
}

impl Runtime {
    /// An engine whose plugins tell `observer` of every call.
    pub fn observed(observer: CallObserver) -> Result<Self, PluginError> {
        let mut rt = Self::new()?;
        rt.observer = Some(observer);
        Ok(rt)
    }

    pub fn new() -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // WEIR_WASM_PERFMAP=1: plugins' compiled functions named in `perf report`
        // (/tmp/perf-PID.map) — how the per-record costs in docs/benchmarks.md were found.
        if std::env::var_os("WEIR_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .map_err(|e| PluginError::Invalid(format!("cannot start the wasm engine: {e}")))?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("weir-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Invalid(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self {
            engine,
            observer: None,
        })
    }

    /// Validates and compiles a module (blocking: Cranelift compiles it), checks it is a
    /// plugin of this ABI, and reads its kind.
    pub fn compile(
        &self,
        name: &str,
        wasm: &[u8],
        limits: PluginLimits,
    ) -> Result<Plugin, PluginError> {
        let invalid = |m: String| PluginError::Invalid(format!("plugin {name:?}: {m}"));
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| invalid(format!("not a valid WebAssembly module: {e}")))?;
        if let Some(i) = module.imports().next() {
            return Err(invalid(format!(
                "imports {}::{}; plugins may import nothing (no I/O)",
                i.module(),
                i.name()
            )));
        }
        check_exports(&module).map_err(invalid)?;
        let linker: Linker<StoreData> = Linker::new(&self.engine);
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| invalid(e.to_string()))?;
        let mut plugin = Plugin {
            name: name.to_string(),
            kind: PluginKind::Filter,
            abi_version: abi::MIN_ABI_VERSION,
            limits,
            observer: self.observer,
            engine: self.engine.clone(),
            pre: Arc::new(pre),
        };
        let mut inst = plugin.instantiate()?;
        let version = inst.call0("weir_abi_version")?;
        if !(abi::MIN_ABI_VERSION..=abi::ABI_VERSION).contains(&version) {
            return Err(invalid(format!(
                "built for plugin ABI version {version}; this broker runs versions {} to {}",
                abi::MIN_ABI_VERSION,
                abi::ABI_VERSION
            )));
        }
        if version >= 3 {
            check_exports_of(&module, &V3_EXPORTS).map_err(invalid)?;
        }
        plugin.abi_version = version;
        let code = inst.call0("weir_kind")?;
        plugin.kind = PluginKind::from_code(code)
            .ok_or_else(|| invalid(format!("unknown plugin kind {code}")))?;
        Ok(plugin)
    }
}

type Export = (&'static str, &'static [ValType], &'static [ValType]);

/// The exports every plugin has, with their types (ABI.md).
const EXPORTS: [Export; 7] = [
    ("weir_abi_version", &[], &[ValType::I32]),
    ("weir_kind", &[], &[ValType::I32]),
    ("weir_alloc", &[ValType::I32], &[ValType::I32]),
    ("weir_init", &[ValType::I32, ValType::I32], &[ValType::I32]),
    (
        "weir_process",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
    ),
    ("weir_result_ptr", &[], &[ValType::I32]),
    ("weir_result_len", &[], &[ValType::I32]),
];

/// What ABI version 3 adds: where a failed call was, and the panic message.
const V3_EXPORTS: [Export; 3] = [
    ("weir_offset", &[], &[ValType::I64]),
    ("weir_panic_ptr", &[], &[ValType::I32]),
    ("weir_panic_len", &[], &[ValType::I32]),
];

fn check_exports(module: &Module) -> Result<(), String> {
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err("does not export its memory as \"memory\"".into()),
    }
    check_exports_of(module, &EXPORTS)
}

fn check_exports_of(module: &Module, exports: &[Export]) -> Result<(), String> {
    for (name, params, results) in exports {
        let ok = match module.get_export(name) {
            Some(ExternType::Func(f)) => same_signature(&f, params, results),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "does not export function {name} with params {params:?} and results {results:?} (see plugins/ABI.md; build it with the weir-plugin SDK)"
            ));
        }
    }
    Ok(())
}

fn same_signature(f: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let eq = |a: &ValType, b: &ValType| ValType::eq(a, b);
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(a, b)| eq(&a, b))
        && f.results().zip(results).all(|(a, b)| eq(&a, b))
}

struct StoreData {
    limits: StoreLimits,
}

/// A compiled, validated plugin module.
#[derive(Clone)]
pub struct Plugin {
    pub name: String,
    pub kind: PluginKind,
    /// The ABI version the module was built for (`MIN_ABI_VERSION..=ABI_VERSION`).
    pub abi_version: i32,
    pub limits: PluginLimits,
    observer: Option<CallObserver>,
    engine: Engine,
    pre: Arc<InstancePre<StoreData>>,
}

impl Plugin {
    fn instantiate(&self) -> Result<Instantiated, PluginError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, StoreData { limits });
        store.limiter(|d| &mut d.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| failed(&self.name, self.limits.describe_trap(&e)))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| failed(&self.name, "no memory export"))?;
        Ok(Instantiated {
            name: self.name.clone(),
            limits: self.limits,
            store,
            instance,
            memory,
        })
    }

    /// An instance with `params` (JSON, may be empty) applied: ready for batches.
    pub fn stage(&self, params: &[u8]) -> Result<Stage, PluginError> {
        let mut inst = self.instantiate()?;
        let funcs = Funcs::get(&mut inst, self.abi_version)?;
        let mut stage = Stage {
            kind: self.kind,
            observer: self.observer,
            inst,
            funcs,
            state: Vec::new(),
            broken: None,
        };
        stage.init(params)?;
        Ok(stage)
    }
}

struct Instantiated {
    name: String,
    limits: PluginLimits,
    store: Store<StoreData>,
    instance: Instance,
    memory: Memory,
}

impl Instantiated {
    fn call0(&mut self, export: &str) -> Result<i32, PluginError> {
        let f: TypedFunc<(), i32> = self
            .instance
            .get_typed_func(&mut self.store, export)
            .map_err(|e| failed(&self.name, e.to_string()))?;
        self.store.set_epoch_deadline(self.limits.deadline_ticks());
        f.call(&mut self.store, ())
            .map_err(|e| failed(&self.name, self.limits.describe_trap(&e)))
    }
}

struct Funcs {
    alloc: TypedFunc<u32, u32>,
    init: TypedFunc<(u32, u32), i32>,
    process: TypedFunc<(u32, u32), i32>,
    result_ptr: TypedFunc<(), u32>,
    result_len: TypedFunc<(), u32>,
    /// ABI 3 and later.
    failure: Option<FailureFuncs>,
}

/// The exports that explain a failed call (ABI 3).
struct FailureFuncs {
    offset: TypedFunc<(), i64>,
    panic_ptr: TypedFunc<(), u32>,
    panic_len: TypedFunc<(), u32>,
}

impl Funcs {
    fn get(inst: &mut Instantiated, abi_version: i32) -> Result<Self, PluginError> {
        let name = inst.name.clone();
        let err = |e: wasmtime::Error| failed(&name, e.to_string());
        let i = &inst.instance;
        let s = &mut inst.store;
        let failure = match abi_version {
            v if v >= 3 => Some(FailureFuncs {
                offset: i.get_typed_func(&mut *s, "weir_offset").map_err(err)?,
                panic_ptr: i.get_typed_func(&mut *s, "weir_panic_ptr").map_err(err)?,
                panic_len: i.get_typed_func(&mut *s, "weir_panic_len").map_err(err)?,
            }),
            _ => None,
        };
        Ok(Self {
            alloc: i.get_typed_func(&mut *s, "weir_alloc").map_err(err)?,
            init: i.get_typed_func(&mut *s, "weir_init").map_err(err)?,
            process: i.get_typed_func(&mut *s, "weir_process").map_err(err)?,
            result_ptr: i.get_typed_func(&mut *s, "weir_result_ptr").map_err(err)?,
            result_len: i.get_typed_func(&mut *s, "weir_result_len").map_err(err)?,
            failure,
        })
    }

    /// After a failed call of an ABI 3 module: the record it was at, and, when it `aborted`,
    /// its panic message (a trap leaves the instance's memory and exports readable). Anything
    /// odd in the answer is ignored: this only adds detail to an error.
    fn explain(&self, inst: &mut Instantiated, aborted: bool) -> (Option<u64>, Option<String>) {
        let Some(f) = &self.failure else {
            return (None, None);
        };
        let s = &mut inst.store;
        s.set_epoch_deadline(inst.limits.deadline_ticks());
        let offset = f
            .offset
            .call(&mut *s, ())
            .ok()
            .and_then(|o| u64::try_from(o).ok());
        if !aborted {
            return (offset, None);
        }
        let (Ok(ptr), Ok(len)) = (f.panic_ptr.call(&mut *s, ()), f.panic_len.call(&mut *s, ()))
        else {
            return (offset, None);
        };
        let (ptr, len) = (ptr as usize, (len as usize).min(MAX_PANIC_MESSAGE_BYTES));
        let message = inst
            .memory
            .data(&*s)
            .get(ptr..ptr.saturating_add(len))
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8_lossy(m).into_owned());
        (offset, message)
    }
}

/// What a stage (or a chain) made of its input batches.
#[derive(Debug)]
pub struct Staged {
    /// Uncompressed batches: the input itself when `unchanged`, else explicit-offset batches
    /// built from the plugin's output (every record at its source record's offset).
    pub batches: Vec<Bytes>,
    /// Every input record from `skip_below` on passed on unchanged, in order.
    pub unchanged: bool,
    /// Records sent to other outputs (a `route` stage, ABI version 4): per output (1..), its
    /// explicit-offset batches. In a chain they leave it there: later stages see only
    /// output 0.
    pub routed: Vec<(u8, Vec<Bytes>)>,
}

/// One instance of a plugin with its params, for one partition of one consumer or pipeline.
/// Not shared: a stage is used by one task at a time, off the async workers.
pub struct Stage {
    kind: PluginKind,
    observer: Option<CallObserver>,
    inst: Instantiated,
    funcs: Funcs,
    /// Aggregate state carried between batches.
    state: Vec<u8>,
    /// Set after a failure: the instance may be half-way through anything; never reuse it.
    broken: Option<PluginError>,
}

impl Stage {
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// Aggregate state (opaque bytes; empty before the first batch).
    pub fn state(&self) -> &[u8] {
        &self.state
    }

    /// Restores aggregate state (a pipeline resuming from RocksDB).
    pub fn set_state(&mut self, state: Vec<u8>) {
        self.state = state;
    }

    /// Runs uncompressed `batches` (in offset order) through the plugin in one call; records
    /// below `skip_below` are not processed and not passed on. Outputs keep their source
    /// record's offset. When the plugin passed every record on unchanged the batches come
    /// back as they were (no copy) with `unchanged` set.
    pub fn run(&mut self, batches: Vec<Bytes>, skip_below: u64) -> Result<Staged, PluginError> {
        let start = std::time::Instant::now();
        let mut called = false;
        let staged = self.run_once(batches, skip_below, &mut called);
        if called && let Some(observe) = self.observer {
            observe(&self.inst.name, start.elapsed(), staged.is_ok());
        }
        staged
    }

    /// [`Stage::run`]; sets `called` when the plugin was called.
    fn run_once(
        &mut self,
        batches: Vec<Bytes>,
        skip_below: u64,
        called: &mut bool,
    ) -> Result<Staged, PluginError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let input = match abi::Input::new(&self.state, skip_below, &batches) {
            Ok(input) => input,
            Err(e) => return Err(failed(&self.inst.name, format!("input batch: {e}"))),
        };
        if input.total == input.skipped {
            return Ok(Staged {
                batches,
                unchanged: true,
                routed: Vec::new(),
            });
        }
        *called = true;
        let (rptr, rlen) = match enter(
            &mut self.inst,
            &self.funcs,
            BufferExport::Process,
            input.encoded_len(),
            |dst| input.write(dst),
        ) {
            Ok(r) => r,
            Err(e) => return Err(self.call_failed(e)),
        };
        // The output is read in place: guest memory is only borrowed while decoding it.
        let result = self
            .inst
            .memory
            .data(&self.inst.store)
            .get(rptr..rptr + rlen);
        let decoded = match result {
            None => Err("returned a result outside its memory".to_string()),
            Some(buf) => abi::decode_output(buf, &input).map(|d| match d {
                abi::Decoded::Unchanged { state } => (state.to_vec(), None),
                abi::Decoded::Changed {
                    state,
                    batches,
                    routed,
                    ..
                } => (state.to_vec(), Some((batches, routed))),
            }),
        };
        let (state, changed) = match decoded {
            Ok(d) => d,
            Err(e) => return Err(self.fail(format!("returned a malformed output: {e}"))),
        };
        if self.kind == PluginKind::Aggregate {
            self.state = state;
        }
        Ok(match changed {
            None => Staged {
                batches,
                unchanged: true,
                routed: Vec::new(),
            },
            Some((batches, routed)) => Staged {
                batches,
                unchanged: false,
                routed,
            },
        })
    }

    fn fail(&mut self, message: String) -> PluginError {
        let e = failed(&self.inst.name, message);
        self.broken = Some(e.clone());
        e
    }

    /// A failed call, with the record it was at and the panic message when the module says.
    fn call_failed(&mut self, e: CallError) -> PluginError {
        let (aborted, message) = match e {
            // The plugin reported an error cleanly: the instance is still sound.
            CallError::Plugin(msg) => {
                let (offset, _) = self.funcs.explain(&mut self.inst, false);
                return PluginError::Failed {
                    plugin: self.inst.name.clone(),
                    offset,
                    panicked: false,
                    message: msg,
                };
            }
            CallError::Trap { aborted, message } => (aborted, message),
            CallError::Fatal(msg) => (false, msg),
        };
        let (offset, panic) = self.funcs.explain(&mut self.inst, aborted);
        let e = PluginError::Failed {
            plugin: self.inst.name.clone(),
            offset,
            panicked: panic.is_some(),
            message: panic.unwrap_or(message),
        };
        self.broken = Some(e.clone());
        e
    }

    /// `weir_init` with the params JSON.
    fn init(&mut self, params: &[u8]) -> Result<(), PluginError> {
        enter(
            &mut self.inst,
            &self.funcs,
            BufferExport::Init,
            params.len(),
            |dst| dst.copy_from_slice(params),
        )
        .map(drop)
        .map_err(|e| self.call_failed(e))
    }
}

/// Allocates `len` bytes in the guest, lets `write` fill them, calls `which(ptr, len)`
/// and returns where its result is (checked against the output limit). An error status
/// comes back as [`CallError::Plugin`] with the guest's message.
fn enter(
    inst: &mut Instantiated,
    funcs: &Funcs,
    which: BufferExport,
    len: usize,
    write: impl FnOnce(&mut [u8]),
) -> Result<(usize, usize), CallError> {
    let limits = inst.limits;
    let trap = |e: wasmtime::Error| CallError::Trap {
        // A Rust panic aborts the guest this way (and nothing else the SDK builds does).
        aborted: matches!(e.downcast_ref::<Trap>(), Some(Trap::UnreachableCodeReached)),
        message: limits.describe_trap(&e),
    };
    let len32 =
        u32::try_from(len).map_err(|_| CallError::Fatal("input batch over 4 GiB".into()))?;
    let s = &mut inst.store;
    s.set_epoch_deadline(limits.deadline_ticks());
    let ptr = funcs.alloc.call(&mut *s, len32).map_err(trap)? as usize;
    if ptr == 0 && len > 0 {
        return Err(CallError::Fatal(
            "could not allocate memory for the input batch".into(),
        ));
    }
    let dst = inst
        .memory
        .data_mut(&mut *s)
        .get_mut(ptr..ptr.saturating_add(len))
        .ok_or_else(|| CallError::Fatal("returned an input buffer outside its memory".into()))?;
    write(dst);
    let entry = match which {
        BufferExport::Init => &funcs.init,
        BufferExport::Process => &funcs.process,
    };
    let status = entry.call(&mut *s, (ptr as u32, len32)).map_err(trap)?;
    let rptr = funcs.result_ptr.call(&mut *s, ()).map_err(trap)? as usize;
    let rlen = funcs.result_len.call(&mut *s, ()).map_err(trap)? as usize;
    if rlen > limits.output_bytes {
        return Err(CallError::Fatal(format!(
            "returned {rlen} bytes; its output limit is {}",
            mib(limits.output_bytes)
        )));
    }
    let in_memory = rptr
        .checked_add(rlen)
        .is_some_and(|end| end <= inst.memory.data_size(&*s));
    match status {
        _ if !in_memory => Err(CallError::Fatal(
            "returned a result outside its memory".into(),
        )),
        0 => Ok((rptr, rlen)),
        1 => {
            let msg = &inst.memory.data(&*s)[rptr..rptr + rlen];
            Err(CallError::Plugin(String::from_utf8_lossy(msg).into_owned()))
        }
        s => Err(CallError::Fatal(format!("returned unknown status {s}"))),
    }
}

/// The two exports that take a buffer.
#[derive(Clone, Copy)]
enum BufferExport {
    Init,
    Process,
}

enum CallError {
    /// The plugin returned an error status with a message.
    Plugin(String),
    /// A trap (a panic, a limit): the instance is unusable.
    Trap { aborted: bool, message: String },
    /// A protocol violation: the instance is unusable.
    Fatal(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_common::batch::{BatchBuilder, TimestampType, set_base_offset};

    /// A minimal plugin in WAT: bump allocator, `weir_process` body as given, result = the
    /// `result_len` bytes at address 0 (8 zero bytes: an empty output).
    fn module(version: i32, process_body: &str, result_len: i32) -> Vec<u8> {
        module_with(version, process_body, result_len, "")
    }

    /// [`module`] with more module fields (`extra`).
    fn module_with(version: i32, process_body: &str, result_len: i32, extra: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
              (memory (export "memory") 1)
              (global $heap (mut i32) (i32.const 1024))
              (func (export "weir_abi_version") (result i32) (i32.const {version}))
              (func (export "weir_kind") (result i32) (i32.const 1))
              (func (export "weir_alloc") (param $n i32) (result i32) (local $p i32)
                (local.set $p (global.get $heap))
                (global.set $heap (i32.add (global.get $heap) (local.get $n)))
                (local.get $p))
              (func (export "weir_init") (param i32 i32) (result i32) (i32.const 0))
              (func (export "weir_process") (param i32 i32) (result i32) {process_body})
              (func (export "weir_result_ptr") (result i32) (i32.const 0))
              (func (export "weir_result_len") (result i32) (i32.const {result_len}))
              {extra})"#
        ))
        .unwrap()
    }

    /// An ABI 3 module: as [`module`], plus the failure exports: at offset 42, with the
    /// `panic_len` bytes at 3072 ("index out of bounds ...") as its panic message and an
    /// error status's message ("offset too high") at 0.
    fn module_v3(process_body: &str, result_len: i32, panic_len: i32) -> Vec<u8> {
        module_with(
            3,
            process_body,
            result_len,
            &format!(
                r#"(data (i32.const 0) "offset too high")
                (data (i32.const 3072) "index out of bounds: the len is 3 but the index is 5")
                (func (export "weir_offset") (result i64) (i64.const 42))
                (func (export "weir_panic_ptr") (result i32) (i32.const 3072))
                (func (export "weir_panic_len") (result i32) (i32.const {panic_len}))"#
            ),
        )
    }

    /// One stored batch of `n` records at offsets 100...
    fn records(n: u64) -> Vec<Bytes> {
        let mut b = BatchBuilder::new(TimestampType::CreateTime);
        for _ in 0..n {
            b.push(1, None, b"v", std::iter::empty());
        }
        let mut bytes = b.finish().to_vec();
        set_base_offset(&mut bytes, 100);
        vec![Bytes::from(bytes)]
    }

    fn run(wasm: &[u8]) -> Result<Vec<Bytes>, PluginError> {
        let rt = Runtime::new().unwrap();
        let plugin = rt.compile("p", wasm, PluginLimits::default())?;
        let mut stage = plugin.stage(b"")?;
        stage.run(records(3), 0).map(|s| s.batches)
    }

    fn failure(e: PluginError) -> String {
        match e {
            PluginError::Failed {
                plugin, message, ..
            } => {
                assert_eq!(plugin, "p");
                message
            }
            e => panic!("expected a failure, got {e:?}"),
        }
    }

    #[test]
    fn a_well_formed_module_runs() {
        assert!(run(&module(2, "(i32.const 0)", 8)).unwrap().is_empty());
    }

    #[test]
    fn registration_rejects_what_is_not_a_plugin() {
        let rt = Runtime::new().unwrap();
        let err = |wasm: &[u8]| match rt.compile("p", wasm, PluginLimits::default()) {
            Err(PluginError::Invalid(m)) => m,
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(err(b"not wasm at all").contains("not a valid WebAssembly module"));
        let import = wat::parse_str(r#"(module (import "env" "clock" (func)))"#).unwrap();
        assert!(err(&import).contains("imports env::clock"));
        let bare = wat::parse_str("(module (memory (export \"memory\") 1))").unwrap();
        assert!(err(&bare).contains("weir_abi_version"));
        assert!(err(&module(1, "(i32.const 0)", 8)).contains("ABI version 1"));
        assert!(err(&module(6, "(i32.const 0)", 8)).contains("versions 2 to 5"));
    }

    #[test]
    fn abi_3_failures_name_the_offset_and_the_panic_message() {
        let e = run(&module_v3("unreachable", 8, 52)).unwrap_err();
        assert_eq!(e.offset(), Some(42));
        assert_eq!(
            e.to_string(),
            "plugin \"p\" panicked at offset 42: index out of bounds: the len is 3 but the index is 5"
        );
        // A trap with no panic recorded (a limit, or a panic before the hook): the trap.
        let e = run(&module_v3("unreachable", 8, 0))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("plugin \"p\" failed at offset 42: trapped: unreachable"),
            "{e}"
        );
        let e = run(&module_v3("(loop $l (br $l)) (i32.const 0)", 8, 52))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("failed at offset 42: exceeded its CPU time limit"),
            "{e}"
        );
        // An error status: the plugin's message, at its record.
        let e = run(&module_v3("(i32.const 1)", 15, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"p\" failed at offset 42: offset too high"
        );
        // Version 2 modules keep working, without an offset.
        let e = run(&module(2, "unreachable", 8)).unwrap_err();
        assert_eq!(e.offset(), None);
        // A version 3 module must have the failure exports.
        let rt = Runtime::new().unwrap();
        match rt.compile("p", &module(3, "(i32.const 0)", 8), PluginLimits::default()) {
            Err(PluginError::Invalid(m)) => assert!(m.contains("weir_offset"), "{m}"),
            other => panic!("{:?}", other.map(|p| p.abi_version)),
        }
    }

    #[test]
    fn an_endless_loop_is_interrupted() {
        let e = failure(run(&module(2, "(loop $l (br $l)) (i32.const 0)", 8)).unwrap_err());
        assert!(e.contains("CPU time limit"), "{e}");
    }

    #[test]
    fn unbounded_memory_growth_hits_the_cap() {
        let bomb = "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i32.const 0)";
        let e = failure(run(&module(2, bomb, 8)).unwrap_err());
        assert!(e.contains("memory limit"), "{e}");
    }

    #[test]
    fn traps_and_malformed_outputs_fail_the_call_and_the_stage() {
        let e = failure(run(&module(2, "unreachable", 8)).unwrap_err());
        assert!(e.contains("unreachable"), "{e}");
        let e = failure(run(&module(2, "(i32.const 0)", 3)).unwrap_err());
        assert!(e.contains("malformed output"), "{e}");
        let e = failure(run(&module(2, "(i32.const 0)", 70_000)).unwrap_err());
        assert!(e.contains("outside its memory"), "{e}");
        // A stage that failed stays failed.
        let rt = Runtime::new().unwrap();
        let mut stage = rt
            .compile("p", &module(2, "unreachable", 8), PluginLimits::default())
            .unwrap()
            .stage(b"")
            .unwrap();
        assert!(stage.run(records(1), 0).is_err());
        assert!(stage.run(records(1), 0).is_err());
    }

    #[test]
    fn per_plugin_limits_apply_and_are_checked() {
        let rt = Runtime::new().unwrap();
        let run_with = |body: &str, result_len: i32, limits: PluginLimits| {
            let plugin = rt
                .compile("p", &module(2, body, result_len), limits)
                .unwrap();
            // Init returns the same result buffer as process: it may fail already.
            let outcome = plugin.stage(b"").and_then(|mut s| s.run(records(1), 0));
            failure(outcome.unwrap_err())
        };
        let fast = PluginLimits {
            call_timeout_ms: 50,
            ..PluginLimits::default()
        };
        // The plugin's own limit sets the deadline the interrupt fires at, not the default.
        assert_eq!(
            fast.deadline_ticks(),
            50 / EPOCH_TICK.as_millis() as u64,
            "ticks of {EPOCH_TICK:?}"
        );
        assert!(fast.deadline_ticks() < PluginLimits::default().deadline_ticks());
        let started = std::time::Instant::now();
        let e = run_with("(loop $l (br $l)) (i32.const 0)", 8, fast);
        assert!(e.contains("CPU time limit of 50 ms"), "{e}");
        // Compilation included; printed for docs/benchmarks.md, not asserted.
        eprintln!(
            "a looping plugin with a 50 ms limit failed after {:?}",
            started.elapsed()
        );
        let small = PluginLimits {
            memory_bytes: 2 * 1024 * 1024,
            ..PluginLimits::default()
        };
        let bomb = "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) (i32.const 0)";
        let e = run_with(bomb, 8, small);
        assert!(e.contains("memory limit of 2 MiB"), "{e}");
        let tight = PluginLimits {
            output_bytes: 1024,
            ..PluginLimits::default()
        };
        let e = run_with("(i32.const 0)", 4096, tight);
        assert!(e.contains("output limit is 1024 bytes"), "{e}");

        assert_eq!(
            PluginLimits::from_request(0, 0, 0),
            Ok(PluginLimits::default())
        );
        assert!(
            PluginLimits::from_request(0, 5, 0)
                .unwrap_err()
                .contains("between 10")
        );
        assert!(
            PluginLimits::from_request(2 << 30, 0, 0)
                .unwrap_err()
                .contains("memory limit")
        );
        assert!(
            PluginLimits::from_request(0, 0, 1 << 30)
                .unwrap_err()
                .contains("output limit")
        );
    }
}
