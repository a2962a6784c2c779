//! ThreadSanitizer and AddressSanitizer for plugins built with them: the
//! runtime each child preloads, and the first report of a child's stderr
//! as one line, which becomes the scenario's failure.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// A sanitizer whose runtime the children preload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sanitizer {
    /// ThreadSanitizer (`-fsanitize=thread`): data races.
    Thread,
    /// AddressSanitizer (`-fsanitize=address`): use after free, overflows.
    Address,
}

impl std::str::FromStr for Sanitizer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "thread" => Ok(Sanitizer::Thread),
            "address" => Ok(Sanitizer::Address),
            _ => Err(format!(
                "unknown sanitizer '{s}': expected 'thread' or 'address'"
            )),
        }
    }
}

impl Sanitizer {
    /// `thread` or `address`.
    pub fn name(self) -> &'static str {
        match self {
            Sanitizer::Thread => "thread",
            Sanitizer::Address => "address",
        }
    }

    /// The runtime library's file name.
    pub fn library(self) -> &'static str {
        match self {
            Sanitizer::Thread => "libtsan.so",
            Sanitizer::Address => "libasan.so",
        }
    }

    /// The runtime the C compiler (`$CC`, else `cc`) links with.
    ///
    /// # Errors
    /// [`crate::Error::Sanitizer`] naming the library when the compiler
    /// does not have it.
    pub fn runtime(self) -> crate::Result<PathBuf> {
        let error = |reason: String| crate::Error::Sanitizer {
            sanitizer: self.name(),
            reason,
        };
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .arg(format!("-print-file-name={}", self.library()))
            .output()
            .map_err(|e| error(format!("cannot run '{cc}': {e}")))?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if path.is_absolute() && path.exists() {
            Ok(path)
        } else {
            Err(error(format!(
                "'{cc} -print-file-name={}' finds no runtime (install it, e.g. libtsan2 or libasan8)",
                self.library()
            )))
        }
    }

    /// The environment that preloads the runtime and sets its options.
    ///
    /// # Errors
    /// As [`Sanitizer::runtime`].
    pub fn env(self) -> crate::Result<Vec<(OsString, OsString)>> {
        let runtime = self.runtime()?;
        let mut preload = runtime.into_os_string();
        if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
            preload.push(" ");
            preload.push(old);
        }
        let options = match self {
            Sanitizer::Thread => ("TSAN_OPTIONS", "halt_on_error=0 report_signal_unsafe=0"),
            // The harness itself is not instrumented: its leaks are not
            // the engine's.
            Sanitizer::Address => ("ASAN_OPTIONS", "detect_leaks=0 abort_on_error=0"),
        };
        Ok(vec![
            ("LD_PRELOAD".into(), preload),
            (options.0.into(), options.1.into()),
        ])
    }
}

/// One line from the first ThreadSanitizer or AddressSanitizer report in
/// `stderr`: its kind, then each access or event with the first frame in
/// the engine (not in the sanitizer's runtime), e.g. `ThreadSanitizer:
/// data race: Write of size 4 by thread T2 in refit example.c:559;
/// Previous read of size 4 by thread T1 in conv example.c:400`.
pub(crate) fn sanitizer_summary(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let (start, tool, rest) = lines.iter().enumerate().find_map(|(i, l)| {
        [
            ("WARNING: ThreadSanitizer: ", "ThreadSanitizer"),
            ("ERROR: AddressSanitizer: ", "AddressSanitizer"),
        ]
        .iter()
        .find_map(|(mark, tool)| l.find(mark).map(|at| (i, *tool, &l[at + mark.len()..])))
    })?;
    let what = rest
        .split(" (pid=")
        .next()
        .unwrap_or("")
        .split(" on address ")
        .next()
        .unwrap_or("")
        .trim();
    let mut parts = vec![format!("{tool}: {what}")];
    let mut header: Option<String> = None;
    let mut taken = false;
    for l in &lines[start + 1..] {
        if l.starts_with("SUMMARY:") || parts.len() > 3 {
            break;
        }
        if l.is_empty() {
            continue;
        }
        if let Some(frame) = frame_text(l) {
            if let (Some(h), false) = (&header, taken) {
                if !in_runtime(&frame) {
                    parts.push(format!("{h} in {frame}"));
                    taken = true;
                }
            }
            continue;
        }
        header = Some(clean_header(l));
        taken = false;
    }
    Some(parts.join("; "))
}

/// `#3 0x55af in infer plugins/faulty.c:194` or `#0 conv example.c:400
/// (lib.so+0x5336)` as `infer plugins/faulty.c:194`.
fn frame_text(line: &str) -> Option<String> {
    let rest = line.strip_prefix('#')?;
    let (n, rest) = rest.split_once(' ')?;
    n.parse::<u32>().ok()?;
    let rest = match rest.strip_prefix("0x") {
        Some(r) => r.split_once(" in ").map_or(r, |(_, f)| f),
        None => rest,
    };
    let rest = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => &rest[..i],
        _ => rest,
    };
    Some(rest.trim().to_string())
}

fn in_runtime(frame: &str) -> bool {
    frame.contains("libsanitizer")
        || frame.contains("_interceptors")
        || ["free ", "malloc ", "calloc ", "realloc ", "operator "]
            .iter()
            .any(|f| frame.starts_with(f))
}

/// `Write of size 4 at 0x7b6000000400 by thread T2:` as `Write of size 4
/// by thread T2`.
fn clean_header(line: &str) -> String {
    let mut h = line.trim_end_matches(':').to_string();
    if let Some(i) = h.find(" at 0x") {
        let rest = &h[i + 6..];
        let after = rest.find(' ').map_or("", |j| &rest[j..]).to_string();
        h = format!("{}{after}", &h[..i]);
    }
    h
}
