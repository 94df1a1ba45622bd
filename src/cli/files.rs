//! Files the commands write: written whole to a temporary file in the same
//! folder, then renamed into place, so a reader never sees half a file, a
//! symlink planted at the path is replaced rather than followed, and an
//! output that would overwrite one of the command's inputs is refused.

use std::io::Write;
use std::path::Path;

/// Whether two paths name the same existing file (links followed).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses an output path that is one of the inputs (or a link to one).
pub fn not_an_input(output: &Path, inputs: &[&Path]) -> Result<(), String> {
    match inputs.iter().find(|i| same_file(output, i)) {
        Some(input) => Err(format!(
            "{} would overwrite the input {}: write the output elsewhere",
            output.display(),
            input.display()
        )),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temporary file in its folder and a
/// rename: the final path component is never followed if it is a link.
pub fn write_file(path: &Path, inputs: &[&Path], bytes: &[u8]) -> Result<(), String> {
    write_with(path, inputs, |f| f.write_all(bytes))
}

/// As [`write_file`], with the content written by `fill`.
pub fn write_with(
    path: &Path,
    inputs: &[&Path],
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), String> {
    not_an_input(path, inputs)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(fail)?;
    let mut out = std::io::BufWriter::new(file);
    let written = fill(&mut out)
        .and_then(|()| out.flush())
        .and_then(|()| out.get_ref().sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(fail(e));
    }
    Ok(())
}
