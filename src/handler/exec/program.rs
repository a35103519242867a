//! Finding PROGRAM at startup the way `execvp` would, so a typo or a missing
//! `chmod +x` stops Warren with one clear line instead of failing every task.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// execvp's search path when PATH is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The file `program` refers to: itself when it contains a `/`, else the
/// first executable file of that name in `$PATH`. The error says what is
/// wrong and how to fix it (without the key, which the caller adds).
pub fn resolve(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = Path::new(program);
        return check(path).map(|()| path.to_path_buf());
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut not_executable = None;
    for dir in search.as_bytes().split(|b| *b == b':') {
        // An empty entry means the current directory, as for execvp.
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(why) if candidate.is_file() => not_executable = not_executable.or(Some(why)),
            Err(_) => {}
        }
    }
    Err(not_executable.unwrap_or_else(|| {
        format!(
            "program '{program}' was not found on PATH ({}); install it, or give its full path after `--`",
            search.to_string_lossy()
        )
    }))
}

/// A regular file this process may execute.
fn check(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => Err(format!(
            "program '{shown}' cannot be used ({e}); fix the path given after `--`"
        )),
        Ok(meta) if !meta.is_file() => Err(format!(
            "'{shown}' is not a file; give the program to run after `--`"
        )),
        Ok(_) if !executable(path) => Err(format!(
            "program '{shown}' is not executable; run `chmod +x {shown}`, or name its interpreter first (-- python3 {shown})"
        )),
        Ok(_) => Ok(()),
    }
}

/// access(X_OK): the same permission check exec will make, for our user.
fn executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_programs_like_execvp() {
        assert!(resolve("sh").unwrap().ends_with("sh"));
        assert_eq!(resolve("/bin/sh").unwrap(), PathBuf::from("/bin/sh"));
        let err = resolve("warren-no-such-program").unwrap_err();
        assert!(err.contains("not found on PATH"), "{err}");
        let err = resolve("/nonexistent/prog").unwrap_err();
        assert!(
            err.contains("cannot be used") && err.contains("No such file"),
            "{err}"
        );
        let err = resolve("/tmp/").unwrap_err();
        assert!(err.contains("not a file"), "{err}");
    }

    #[test]
    fn a_file_without_the_x_bit_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("task.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(script.to_str().unwrap()).unwrap_err();
        assert!(err.contains("chmod +x"), "{err}");
    }
}
