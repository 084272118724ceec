//! Opening the files a model is made of so that nothing can make the engine wait forever: a
//! FIFO, socket or device in place of a config or a weight file is refused before it is read.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Opens `path` for reading, refusing anything that is not a regular file. The open itself does
/// not block on a FIFO (it is opened non-blocking, then checked).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket, device or folder): give the file itself",
        ));
    }
    set_blocking(&file)?;
    Ok(file)
}

/// Reads a regular text file of at most `max` bytes.
pub fn read_to_string(path: &Path, max: u64) -> io::Result<String> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes is more than a file of this kind holds (at most {max})"),
        ));
    }
    let mut text = String::with_capacity(len as usize);
    file.take(max).read_to_string(&mut text)?;
    Ok(text)
}

/// The largest JSON or YAML config Sumi reads (real ones are a few KB; tokenizers a few MB).
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
fn set_blocking(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with flags read from it.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_blocking(_: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_folders_are_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_to_string(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(open_regular(dir.path()).is_err());
        let file = dir.path().join("ok.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_to_string(&file, 100).unwrap(), "{}");
        assert!(read_to_string(&file, 1).is_err(), "too large");
    }
}
